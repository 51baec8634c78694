// Server: one shard's request loop. Receives data messages (pulls, pushes) and control
// messages (common/proto/control.proto) from its Transport and dispatches them to the
// ParamStore; the math lives in ParamStore/Optimizer.
//
// Consistency:
//  * async: each push is applied on arrival and acknowledged.
//  * bsp: every worker pushes once per step (possibly with no keys); when all workers'
//    pushes for the current step are in, their gradients are summed per key in worker
//    order and applied once, then every worker is acknowledged. So a bsp run is
//    reproducible bit for bit, whatever the number of servers.
// Non-finite gradient rows are never applied: they are dropped and counted.
//
// Kept rows: a pull flagged kKeepRows has its keys' row handles kept (at most kMaxKeptPulls
// per sender, ~4 bytes per key) until the sender's kKeysOfPull push refers to it; that push
// carries no keys and is applied without lookups.
//
// Control: CutRequest makes every later push reply carry kCut (so workers quiesce at their
// next batch boundary); Snapshot copies the store in memory (the only pause), replies
// SnapshotAck, and a background thread writes the shard, reported by ShardWritten.
// KeepBest copies the store in memory as the best model so far (early stopping; replaced by
// the next KeepBest), replies BestKept; DumpBestRequest dumps that copy (the store when none
// was kept) as DumpRequest dumps the store. The copy costs the store's row memory once more
// (no hash table), for the job's lifetime.
// StatsRequest -> Stats (the counters below, with the process's peak resident memory), so a
// job can check that every push a worker sent was applied exactly once. DumpRequest ->
// kDumpChunk data messages, then DumpDone. Shutdown ends Run. Any other message (a reply
// kind, a flag its kind does not allow, a worker's control type) is a protocol error.
//
// Replies: every request is answered in the order served. An async push's reply may wait
// while more requests are queued: it goes out just before the server's next reply, or as
// soon as the server finds no request waiting (fewer wake-ups of a worker blocked on its
// next pull; tests/bench/README.md).
//
// Memory: the server holds no queue of its own beyond those held-back push replies (one per
// push served since the last other reply) and, over MPI, one spare minibatch's value array.
// What can wait for it is capped by the workers: each has at most train.max_delay requests
// outstanding, so at most workers * max_delay requests (each at most one minibatch's unique
// keys) are in flight to one server, plus their replies in the transport's send buffers.
//
// Thread safety: Run() is called by one thread, which owns the store while it runs.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/key_index.h"
#include "common/comm/transport.h"
#include "common/config/config.h"
#include "server/store/checkpoint_shard.h"
#include "server/store/param_store.h"

namespace fmps {

struct ServerOptions {
  int index = 0;  // this server's index (0 .. servers-1), names its checkpoint shard
  int num_workers = 1;
  int first_worker_endpoint = 1;  // workers are endpoints first .. first + num_workers - 1
  Consistency consistency = Consistency::kAsync;
  std::string checkpoint_dir;  // where kSnapshot writes shards (checkpoint.dir)
  // optimizer.clip_gradient: > 0 clamps every finite element of each update's gradient
  // (async: a push; bsp: the step's sum) to [-clip, clip] before the optimizer; 0 = off.
  // Non-finite elements are left as they are, so their rows are still rejected.
  float clip_gradient = 0.0f;
  // > 0: Run throws TransportError once no message at all has arrived for this long, so a
  // server cut off from every worker (a dead link) ends instead of waiting forever; 0 =
  // wait forever. Workers talk to their servers at least once per batch, evaluation batch
  // and checkpoint; the longest silence of a healthy job is the root writing model.fmps.
  std::chrono::milliseconds idle_timeout{0};
};

struct ServerStats {
  std::uint64_t pulls = 0;
  std::uint64_t pushes = 0;
  std::uint64_t keys_pulled = 0;
  std::uint64_t keys_pushed = 0;
  std::uint64_t rejected_rows = 0;   // gradient rows with a non-finite value
  std::uint64_t peak_rss_bytes = 0;  // of the whole process (VmHWM), when last reported
  // CPU time of the server's thread spent handling pulls and pushes (store work, codec
  // aside from MPI's own progress): with the keys served, the server's in-situ cost per key.
  std::uint64_t busy_ns = 0;
};

class Server {
 public:
  // store and transport must outlive the server.
  Server(ParamStore* store, Transport* transport, const ServerOptions& options);
  // Waits for a shard write still in progress.
  ~Server();

  // Serves requests until a Shutdown control message arrives. Throws TransportError on a
  // malformed or unexpected message or when the transport is aborted.
  void Run();

  const ServerStats& stats() const { return stats_; }

  // Sets the best model kept (a resumed job's, restored from its best checkpoint). Before Run.
  void SetBest(StoreSnapshot best);

 private:
  // Throws TransportError when options_.idle_timeout has passed since last_heard.
  void CheckIdle(std::chrono::steady_clock::time_point last_heard) const;
  void HandleData(Message&& m);
  // Returns false on Shutdown.
  bool HandleControl(const ControlMessage& m);
  void HandlePull(Message&& m);
  // Fills reply->vals (n rows) from the store. When the transport checksums values that
  // many, fills them in blocks that stay in L2, hashing each right after it is written, and
  // sets reply->vals_checksum (saving the transport a pass from memory); else one Pull.
  void PullInto(const Key* keys, std::size_t n, bool create, ParamStore::RowHandle* handles,
                Message* reply);
  void HandlePush(Message&& m);
  void HandleDump(int requester, bool best);
  void HandleKeepBest(int requester);
  void ApplyBspStep();
  void HandleSnapshot(int requester, std::uint64_t seq);
  void HandleStats(int requester);
  // Reports a finished background shard write (rethrows its error).
  void FinishWrite();
  // Applies an async push (by keys, or by the rows of the pull it refers to) and replies.
  void ApplyAsyncPush(Message&& m);
  // Applies clip_gradient (when on) to n gradient floats.
  void Clip(float* grads, std::size_t n) const;
  void Check(bool ok, const Message& m, const char* what) const;
  [[noreturn]] void ProtocolError(int sender, const std::string& what) const;
  // Sends msg to dest after the held-back push replies (every reply goes through here).
  void Reply(int dest, Message&& msg);
  void ReplyControl(int dest, pb::Control&& msg);
  // Sends the held-back push replies, oldest first.
  void SendHeldReplies();
  // A consumed push's gradient array: back to the client in its reply when the transport
  // moves buffers (in-process), else kept (the largest one) as the next pull reply's array,
  // so that no pull reply allocates and zero-fills a fresh one.
  void Recycle(std::vector<float>&& grads, Message* reply);

  ParamStore* store_;
  Transport* transport_;
  ServerOptions options_;
  ServerStats stats_;
  // bsp state
  std::int64_t step_ = 0;
  std::vector<Message> step_pushes_;  // per worker, the step's push once arrived
  std::vector<bool> arrived_;
  int arrived_count_ = 0;
  KeyIndex agg_index_;
  std::vector<float> agg_grads_;
  std::vector<std::uint32_t> agg_counts_;
  // kept rows of kKeepRows pulls, oldest first; spare_rows_ recycles their buffers
  struct KeptRows {
    int sender = -1;
    std::uint64_t pull_id = 0;
    std::vector<ParamStore::RowHandle> rows;
  };
  std::vector<KeptRows> kept_;
  std::vector<std::vector<ParamStore::RowHandle>> spare_rows_;
  // async push replies not sent yet (dest, reply), oldest first; see "Replies" above
  std::vector<std::pair<int, Message>> held_;
  std::vector<float> spare_vals_;  // see Recycle
  // checkpoints
  bool cut_pending_ = false;
  StoreSnapshot snapshot_;  // being written (and reused for the next snapshot)
  std::thread writer_;
  std::atomic<bool> write_done_{false};
  std::exception_ptr write_error_;
  ShardFileInfo written_;
  int write_requester_ = -1;
  std::uint64_t write_seq_ = 0;
  // early stopping: the best model kept (KeepBest)
  StoreSnapshot best_;
  bool has_best_ = false;
};

}  // namespace fmps
