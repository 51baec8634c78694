// Checkpoints of a training job: the coordinator's side of a consistent cut, the manifest,
// the choice of a checkpoint at resume, and pruning.
//
// Layout: <checkpoint.dir>/ckpt-<seq>/shard-<s>.bin (one per server,
// server/store/checkpoint_shard.h) and <checkpoint.dir>/ckpt-<seq>/MANIFEST (YAML), written last
// and atomically. A checkpoint is complete when its MANIFEST exists and every shard it lists has
// the recorded size and checksum.
//
// A cut (control messages, common/proto/control.proto): the coordinator sends CutRequest to
// every server; servers flag push replies with DataFlag::kCut; each worker, at its next batch
// boundary, waits for its pushes to be applied and reports its position (the byte ranges
// still to read) with CutReady (ReportCutReady, then AwaitCutResume), or has already
// reported ShardDone (ReportShardDone); the coordinator then has every server snapshot its
// store (Snapshot, acknowledged by SnapshotAck once copied in memory) and lets the workers
// go on (CutResume). The servers write their shards in the background and report them
// (ShardWritten); the coordinator then writes the MANIFEST and deletes checkpoints beyond
// checkpoint.keep. Training pauses only for the quiescing and the in-memory copies.
//
// Thread safety: a Checkpointer is used by the coordinating thread only; the worker-side
// functions by the worker's thread (the owner of its ControlChannel).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/comm/control.h"
#include "common/config/config.h"
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

// The report as it travels in CutReady / ShardDone, and back. FromProto throws
// TransportError naming `sender` if a byte range is reversed.
pb::WorkerReport ToProto(const WorkerReport& report);
WorkerReport FromProto(const pb::WorkerReport& report, int sender);

// The worker's side of a cut. ReportCutReady tells the coordinator (endpoint `coordinator`)
// that this worker is quiesced at `report`; AwaitCutResume then blocks until the
// coordinator's CutResume (TransportError after the channel's timeout).
void ReportCutReady(ControlChannel* control, int coordinator, const WorkerReport& report);
void AwaitCutResume(ControlChannel* control);
// Tells the coordinator this worker finished its shard of `epoch`.
void ReportShardDone(ControlChannel* control, int coordinator, int epoch,
                     const WorkerReport& report);

// The validation state of a job with validation rows (worker/job/early_stop.h): each epoch's
// metric and the best epoch. best_seq is the checkpoint holding the best epoch's parameters
// (its epoch-end checkpoint; 0: none written yet); the Checkpointer never prunes it, so a
// resumed job restores the best model into the servers from it (job_server.h).
struct ValidationRecord {
  int best_epoch = 0;  // 0: none yet
  double best_value = 0.0;
  std::uint64_t best_seq = 0;
  std::vector<double> history;  // history[e - 1]: the metric of epoch e
  // The best epoch's test metrics (with data.test; best_test_rows 0: not measured), so that
  // a resumed job reports those of the model it writes.
  std::uint64_t best_test_rows = 0;
  double best_test_logloss = 0.0;
  double best_test_auc = 0.0;
  double best_test_rmse = 0.0;
};

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
  ValidationRecord validation = {};             // as of the last finished epoch
};

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
  ValidationRecord validation = {};  // of a resumed job (its best checkpoint is kept)
};

class Checkpointer {
 public:
  // `control` is the coordinator's ControlChannel, used by every method but the destructor.
  // Sequence numbers continue after the checkpoints already in checkpoint.dir.
  Checkpointer(const Config& config, ControlChannel* control, const CheckpointerOptions& options);
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

  // Records ShardDone reports of the other workers for this epoch (blocking until every
  // worker that has not reported yet does); call after the epoch's training, before Cut
  // with epoch_done. Returns their reports (own worker excluded).
  void CollectShardDone(int epoch);

  // Writes the manifests of checkpoints whose shards are all written; prunes. Non-blocking.
  void Poll();
  // Waits until every started checkpoint is complete (end of job).
  void Drain();

  // The validation state the next manifests record. When record.best_epoch is the epoch of
  // the next epoch-end Cut, that checkpoint becomes the best one (best_seq); an unchanged
  // best epoch keeps its best_seq. The best checkpoint is never pruned.
  void SetValidation(const ValidationRecord& record);

 private:
  struct PendingCheckpoint {
    Manifest manifest;
    int written = 0;
  };
  void Complete(PendingCheckpoint* p);
  void Prune();
  void Apply(const ControlMessage& m);
  // Sends `msg` to servers 0 .. num_servers-1.
  void SendToServers(const pb::Control& msg);
  // Collects the reports of the workers missing from *reports (ShardDone seen or CutReady
  // now); marks in *waiting those that reported CutReady.
  void AwaitReports(int epoch, std::vector<std::optional<WorkerReport>>* reports,
                    std::vector<bool>* waiting);
  // The worker index of a report's sender (TransportError if it is no worker).
  int WorkerOf(const ControlMessage& m) const;

  Config config_;
  ControlChannel* control_;
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
  std::vector<std::optional<WorkerReport>> done_;  // ShardDone seen this epoch, per worker
  std::vector<PendingCheckpoint> pending_;
  ValidationRecord validation_;
};

}  // namespace fmps
