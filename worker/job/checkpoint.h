// Checkpoints of a training job: the coordinator's side of a consistent cut, the manifest,
// the choice of a checkpoint at resume, and pruning.
//
// Layout: <checkpoint.dir>/ckpt-<seq>/shard-<s>.bin (one per server, server/store/checkpoint_shard.h)
// and <checkpoint.dir>/ckpt-<seq>/MANIFEST (YAML), written last and atomically. A checkpoint
// is complete when its MANIFEST exists and every shard it lists has the recorded size and
// checksum.
//
// A cut: the coordinator sends kCutRequest to every server; servers flag push replies with
// kFlagCut; each worker, at its next batch boundary, waits for its pushes to be applied and
// reports its position (the byte ranges still to read) with kCutReady, or has already
// reported kShardDone; the coordinator then has every server snapshot its store (kSnapshot,
// acknowledged once copied in memory) and lets the workers go on (kCutResume). The servers
// write their shards in the background and report them (kShardWritten); the coordinator then
// writes the MANIFEST and deletes checkpoints beyond checkpoint.keep. Training pauses only
// for the quiescing and the in-memory copies.
//
// Thread safety: a Checkpointer is used by the coordinating thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/comm/kv.h"
#include "common/data/reader.h"
#include "server/store/checkpoint_shard.h"
#include "worker/worker.h"

namespace fmps {

// A worker's state at a cut (or at the end of its shard).
struct WorkerReport {
  bool done = false;                 // finished its shard this epoch
  std::vector<ByteRange> remaining;  // data still to read in this epoch
  double rows = 0.0;                 // rows trained by this worker since the job (re)started
  double loss = 0.0;                 // their loss sum
};

// A worker's report from its live counters (rows and loss since this process started).
WorkerReport ReportOf(const Progress& progress, bool done, std::vector<ByteRange> remaining);

// kCutReady / kShardDone messages (the worker's report to the coordinator).
Message EncodeReport(MsgKind kind, std::int64_t step, const WorkerReport& report);
WorkerReport DecodeReport(const Message& m);

struct Manifest {
  std::uint64_t seq = 0;
  std::string config_digest;  // see ConfigDigest
  int epoch = 1;              // epoch in progress (or just finished, if epoch_done)
  bool epoch_done = false;
  double rows = 0.0;                            // rows trained in the whole job up to the cut
  double loss = 0.0;                            // their loss sum
  std::uint64_t train_bytes = 0;                // total size of the training files (sanity check)
  std::vector<ShardFileInfo> shards;            // path relative to the checkpoint dir
  std::vector<std::vector<ByteRange>> workers;  // remaining ranges per worker
};

// Digest of the settings a checkpoint depends on (data, model, optimizer, seed, batching):
// resuming with a config that differs in them is refused; cluster sizes, epochs, outputs and
// checkpoint settings may change.
std::string ConfigDigest(const Config& config);

// Newest complete checkpoint in `dir` (nullopt if none). Checkpoints whose manifest is
// unreadable or whose shards are missing, truncated or fail their checksum are skipped with
// a warning naming the file. Throws ConfigError if the chosen one was written with a
// different config digest or different training files.
std::optional<Manifest> FindResumePoint(const std::string& dir, const std::string& digest,
                                        std::uint64_t train_bytes);

// Where a (resumed) job starts.
struct ResumePoint {
  std::optional<Manifest> manifest;  // the checkpoint resumed from, if any
  int first_epoch = 1;               // first epoch to train
  bool mid_epoch = false;            // first_epoch continues from manifest positions
  double rows_base = 0.0;            // rows trained before the restart
  double loss_base = 0.0;
};

// The resume point for `fmps train --resume` (a fresh start when `resume` is false or no
// complete checkpoint exists, which is logged). ConfigError if resume is asked without
// checkpoint.dir. Creates checkpoint.dir when set (IoError naming it if that fails), so an
// unusable directory stops the job before training.
ResumePoint FindResume(const Config& config, bool resume, std::uint64_t train_bytes);

// Reads the manifest of checkpoint `seq` in `dir` (no verification of the shards; used by
// ranks other than the one that chose the checkpoint with FindResume).
Manifest LoadManifest(const std::string& dir, std::uint64_t seq);
// The resume point of a chosen checkpoint.
ResumePoint ResumeFrom(Manifest manifest);

// First-epoch byte ranges of worker w of W after a mid-epoch resume: its own remaining
// ranges when the number of workers is unchanged, else an even re-split of all that
// remained, so no row is trained twice or skipped.
std::vector<ByteRange> ResumeRanges(const Manifest& manifest, int w, int num_workers);

// Restores, from every shard of the checkpoint, the keys server `s` of `num_servers` owns
// (re-sharding when the number of servers changed). Throws ModelError on a bad shard.
void LoadCheckpoint(const Manifest& manifest, int s, int num_servers, ParamStore* store);

// Who takes part in the cuts of a job and where its counters start.
struct CheckpointerOptions {
  int num_servers = 1;  // endpoints 0 .. num_servers - 1
  int num_workers = 1;  // endpoints num_servers .. num_servers + num_workers - 1
  // The index of the worker the coordinator itself runs (its report comes with Cut), or
  // -1 when the coordinator runs none.
  int own_worker = 0;
  std::uint64_t train_bytes = 0;  // total size of the training files (in the manifest)
  double rows_base = 0.0;         // counters of the job before a resume
  double loss_base = 0.0;
};

class Checkpointer {
 public:
  // `client` is the coordinator's KVClient, used by every method but the destructor.
  // Sequence numbers continue after the checkpoints already in checkpoint.dir.
  Checkpointer(const Config& config, KVClient* client, const CheckpointerOptions& options);
  // Removes the directories of checkpoints this Checkpointer started but did not complete
  // (no MANIFEST), e.g. when the job fails; the servers must no longer be writing shards.
  ~Checkpointer();
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  bool enabled() const { return enabled_; }
  // A periodic checkpoint is due and none is in progress.
  bool Due() const;
  // Starts a cut: servers begin flagging push replies.
  void Request();
  bool requested() const { return requested_; }

  // Completes a cut once the coordinator's own worker (if any) is quiesced with `own`:
  // collects every other worker's report, snapshots the servers, resumes the workers.
  // With epoch_done, every worker has finished the epoch (no request needed).
  void Cut(int epoch, bool epoch_done, const std::optional<WorkerReport>& own);

  // Records kShardDone reports of the other workers for this epoch (blocking until every
  // worker that has not reported yet does); call after the epoch's training, before Cut
  // with epoch_done. Returns their reports (own worker excluded).
  void CollectShardDone(int epoch);

  // Writes the manifests of checkpoints whose shards are all written; prunes. Non-blocking.
  void Poll();
  // Waits until every started checkpoint is complete (end of job).
  void Drain();

 private:
  struct PendingCheckpoint {
    Manifest manifest;
    int written = 0;
  };
  void Complete(PendingCheckpoint* p);
  void Prune();
  void Apply(const Message& m);

  // Cut's steps: every worker's report (`waiting`: those that wait for kCutResume), the
  // servers' snapshots, the resumption, the pending manifest.
  std::vector<std::optional<WorkerReport>> CollectCutReports(
      int epoch, const std::optional<WorkerReport>& own, std::vector<bool>* waiting);
  void SnapshotServers(std::uint64_t seq);
  void ResumeWorkers(std::uint64_t seq, const std::vector<bool>& waiting);
  void AddPending(std::uint64_t seq, int epoch, bool epoch_done,
                  const std::vector<std::optional<WorkerReport>>& reports);

  Config config_;
  KVClient* client_;
  int num_servers_;
  int num_workers_;
  int first_worker_;
  int own_worker_;
  std::uint64_t train_bytes_;
  std::uint64_t next_seq_;
  std::uint64_t first_seq_;  // the first sequence number this Checkpointer uses
  double rows_base_;
  double loss_base_;
  bool enabled_;
  bool requested_ = false;
  std::chrono::steady_clock::time_point last_;
  std::vector<std::optional<WorkerReport>> done_;  // kShardDone seen this epoch, per worker
  std::vector<PendingCheckpoint> pending_;
};

}  // namespace fmps
