// Messages between endpoints (servers, workers, the coordinator) and the Transport that
// carries them. One Transport interface, two implementations: in-process mailboxes
// (single-node mode, below) and MPI (cluster mode).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/base/types.h"

namespace fmps {

enum class MsgKind : std::uint8_t {
  kPull = 1,  // keys -> kPullReply with keys.size() * row_width vals
  kPullReply = 2,
  kPush = 3,       // keys, vals (gradients), optional counts -> kPushReply
  kPushReply = 4,  // bsp: flag kAnyHadData tells whether any worker had rows in that step
  kDump = 5,       // -> kDumpChunk messages (keys ascending) until one with kLast
  kDumpChunk = 6,  // the last one's `step` holds the bytes the server's store uses
  kShutdown = 7,   // server leaves its loop; no reply
  // Checkpoints (step = checkpoint sequence number):
  kCutRequest = 8,     // coordinator -> server: flag push replies with kFlagCut until cut
  kSnapshot = 9,       // coordinator -> server: snapshot now, write the shard, then reply
  kSnapshotAck = 10,   // server -> coordinator: snapshot taken (training may resume)
  kShardWritten = 11,  // server -> coordinator: keys = {bytes, checksum, keys} of its file
  kCutReady = 12,      // worker -> coordinator: quiesced; keys = position, vals = counters
  kShardDone = 13,     // worker -> coordinator: shard finished (step = epoch); vals as above
  kCutResume = 14,     // coordinator -> worker: continue training
  // Accounting at the end of a job:
  kStats = 15,       // coordinator -> server: report your ServerStats
  kStatsReply = 16,  // server -> coordinator: step = server index, keys = ServerStats fields
};

// Bits of Message::flags.
inline constexpr std::uint32_t kFlagCreate = 1;      // kPull: create missing keys
inline constexpr std::uint32_t kFlagHasData = 2;     // kPush (bsp): the worker had rows
inline constexpr std::uint32_t kFlagAnyHadData = 4;  // kPushReply (bsp)
inline constexpr std::uint32_t kFlagLast = 8;        // kDumpChunk: final chunk
inline constexpr std::uint32_t kFlagCut = 16;        // kPushReply: a checkpoint cut is pending
// kPull (with kFlagCreate): the server keeps the keys' rows until a push of the same keys
// refers to this pull (kFlagKeysOfPull), so that push needs no key lookups.
inline constexpr std::uint32_t kFlagKeepRows = 32;
// kPush (async): the keys are exactly those of the sender's kFlagKeepRows pull `ref`, in the
// same order; `keys` is empty.
inline constexpr std::uint32_t kFlagKeysOfPull = 64;
// Most kFlagKeepRows pulls a server holds for one sender (an async worker needs 2).
inline constexpr int kMaxKeptPulls = 8;

struct Message {
  MsgKind kind = MsgKind::kPull;
  int sender = -1;               // endpoint id of the sender
  std::uint64_t request_id = 0;  // echoed in replies
  std::int64_t step = 0;         // bsp step of a push
  std::uint32_t flags = 0;
  std::uint64_t ref = 0;  // kPush with kFlagKeysOfPull: request_id of the pull it repeats
  std::vector<Key> keys;
  std::vector<float> vals;
  std::vector<std::uint32_t> counts;
};

// A bidirectional message endpoint. Send is thread-safe; Recv is called by one thread (the
// endpoint's owner). Messages between one pair of endpoints arrive in the order sent.
class Transport {
 public:
  virtual ~Transport() = default;
  // This endpoint's id.
  virtual int endpoint() const = 0;
  // Queues `msg` for `dest`; sets msg.sender. Throws TransportError if the job was aborted.
  virtual void Send(int dest, Message msg) = 0;
  // Next message for this endpoint, or nullopt after `timeout` without one. Throws
  // TransportError if the job was aborted (message: the abort reason).
  virtual std::optional<Message> Recv(std::chrono::milliseconds timeout) = 0;
  // Whether a sent Message's vectors reach the receiver as they are (moved within one
  // process, capacity included). Then a message may carry a buffer back to its sender for
  // reuse (see KVClient and Server); across processes everything sent goes on the wire.
  virtual bool moves_buffers() const = 0;
};

// In-process transport: one mailbox (mutex + condition variable) per endpoint. Messages are
// moved, never copied. Abort() wakes every blocked Recv with a TransportError, so one
// thread's failure ends the whole single-node job instead of hanging it.
class InProcHub {
 public:
  explicit InProcHub(int endpoints);
  ~InProcHub();
  InProcHub(const InProcHub&) = delete;
  InProcHub& operator=(const InProcHub&) = delete;

  // A Transport for endpoint `id`; the hub must outlive it.
  std::unique_ptr<Transport> Connect(int id);
  // Makes every current and future Send/Recv throw TransportError(reason).
  void Abort(const std::string& reason);

 private:
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<Message> queue;
  };
  class Endpoint;
  std::vector<std::unique_ptr<Mailbox>> boxes_;
  std::mutex abort_mu_;
  std::string abort_reason_;  // non-empty once aborted; guarded by abort_mu_ and each box mu
  bool aborted_ = false;
};

}  // namespace fmps
