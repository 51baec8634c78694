// Messages between endpoints (servers, workers, the coordinator) and the Transport that
// carries them. One Transport interface, two implementations: in-process mailboxes
// (single-node mode, below) and MPI (cluster mode).
//
// Two logical channels share each ordered link between two endpoints:
//  * data: Message (pulls, pushes, their replies, dump chunks): keys, values, counts and the
//    few fields that belong to them. Nothing on this path is serialized in-process.
//  * control: ControlMessage, a typed protobuf (common/proto/control.proto) for checkpoint
//    cuts, statistics, dumps and shutdown. Rare; see ControlChannel (common/comm/control.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/base/types.h"
#include "control.pb.h"

namespace fmps {

// Kinds of data messages. Control messages have their own types (pb::Control::BodyCase).
enum class MsgKind : std::uint8_t {
  kPull = 1,       // keys -> kPullReply with keys.size() * row_width vals
  kPullReply = 2,  //
  kPush = 3,       // keys, vals (gradients), optional counts -> kPushReply
  kPushReply = 4,  // vals: a buffer handed back (in-process), else empty
  kDumpChunk = 5,  // server -> coordinator after a DumpRequest: keys (store order), their rows
};
inline constexpr std::uint32_t kMaxMsgKind = static_cast<std::uint32_t>(MsgKind::kDumpChunk);

// Per-message flags of data messages. Each belongs to one kind (AllowedFlags).
enum class DataFlag : std::uint32_t {
  kCreate = 1u << 0,    // kPull: create missing keys (training); else they read as zeros
  kKeepRows = 1u << 1,  // kPull (with kCreate): keep the keys' rows for one kKeysOfPull push
  kHasData = 1u << 2,   // kPush (bsp): the worker had rows in this step
  // kPush (async): the keys are exactly those of the sender's kKeepRows pull `ref`, in the
  // same order; `keys` is empty.
  kKeysOfPull = 1u << 3,
  kAnyHadData = 1u << 4,  // kPushReply (bsp): some worker had rows in that step
  kCut = 1u << 5,         // kPushReply: a checkpoint cut is pending
};

// A set of DataFlag.
class DataFlags {
 public:
  constexpr DataFlags() = default;
  constexpr DataFlags(DataFlag f) : bits_(static_cast<std::uint32_t>(f)) {}  // NOLINT: implicit
  static constexpr DataFlags FromBits(std::uint32_t bits) {
    DataFlags f;
    f.bits_ = bits;
    return f;
  }
  constexpr bool has(DataFlag f) const { return (bits_ & static_cast<std::uint32_t>(f)) != 0; }
  constexpr void set(DataFlag f, bool on = true) {
    const auto b = static_cast<std::uint32_t>(f);
    bits_ = on ? (bits_ | b) : (bits_ & ~b);
  }
  // Whether every flag of *this is in `allowed`.
  constexpr bool within(DataFlags allowed) const { return (bits_ & ~allowed.bits_) == 0; }
  constexpr std::uint32_t bits() const { return bits_; }
  friend constexpr DataFlags operator|(DataFlags a, DataFlags b) {
    return FromBits(a.bits_ | b.bits_);
  }
  friend constexpr bool operator==(DataFlags a, DataFlags b) = default;

 private:
  std::uint32_t bits_ = 0;
};

constexpr DataFlags operator|(DataFlag a, DataFlag b) { return DataFlags(a) | DataFlags(b); }

// The flags a message of `kind` may carry; anything else is a protocol error.
constexpr DataFlags AllowedFlags(MsgKind kind) {
  switch (kind) {
    case MsgKind::kPull:
      return DataFlag::kCreate | DataFlag::kKeepRows;
    case MsgKind::kPush:
      return DataFlag::kHasData | DataFlag::kKeysOfPull;
    case MsgKind::kPushReply:
      return DataFlag::kAnyHadData | DataFlag::kCut;
    default:
      return {};
  }
}

// Most kKeepRows pulls a server holds for one sender (an async worker needs 2).
inline constexpr int kMaxKeptPulls = 8;

// A data message.
struct Message {
  MsgKind kind = MsgKind::kPull;
  int sender = -1;               // endpoint id of the sender (set by the transport)
  std::uint64_t request_id = 0;  // kPull, kPush: the client's id; echoed in their replies
  std::int64_t bsp_step = 0;     // kPush (bsp): the step it belongs to
  DataFlags flags;
  std::uint64_t ref = 0;  // kPush with kKeysOfPull: request_id of the pull it repeats
  std::vector<Key> keys;
  std::vector<float> vals;
  std::vector<std::uint32_t> counts;
  // Optional: the XXH3-64 of exactly vals' bytes (vals.size() * 4 bytes, as they are in
  // memory), set by a sender that computed it anyway while filling vals (the server's pull
  // reply, see Transport::ChecksumsValues), so that a transport which checksums values uses
  // it instead of hashing them again. Only the code that wrote vals may set it, and vals must
  // not change afterwards. A wrong one is not trusted blindly: the receiver checks the bytes
  // it got against it and rejects the message (TransportError naming the sender). Transports
  // that do not checksum values (in-process) ignore it. Receivers must not rely on it (the MPI
  // transport does not deliver it).
  std::optional<std::uint64_t> vals_checksum;
};

// A control message and who sent it.
struct ControlMessage {
  int sender = -1;  // set by the transport
  pb::Control body;
};

// What a receive on both channels returns.
using Received = std::variant<Message, ControlMessage>;

// Which channels a receive takes messages from.
enum class Channels : std::uint8_t { kData, kControl, kBoth };

// A bidirectional message endpoint. Send is thread-safe; receives are made by one thread
// (the endpoint's owner). Messages from one sender arrive in the order sent, across both
// channels: a receive on kBoth sees them in send order, and a message on one channel is
// never delivered before one its sender sent earlier on the other.
class Transport {
 public:
  virtual ~Transport() = default;
  // This endpoint's id.
  virtual int endpoint() const = 0;
  // Queues `msg` for `dest` on the data channel; sets msg.sender. Throws TransportError if
  // the job was aborted or dest is unknown.
  virtual void Send(int dest, Message msg) = 0;
  // The same on the control channel. Throws TransportError also if msg has no body.
  virtual void SendControl(int dest, pb::Control msg) = 0;
  // Next message on `from`, or nullopt after `timeout` without one. Throws TransportError
  // if the job was aborted (message: the abort reason) or on malformed input.
  virtual std::optional<Received> Receive(std::chrono::milliseconds timeout, Channels from) = 0;
  // Whether a sent Message's vectors reach the receiver as they are (moved within one
  // process, capacity included). Then a message may carry a buffer back to its sender for
  // reuse (see KVClient and Server); across processes everything sent goes on the wire (and
  // MpiTransport keeps the value arrays of sent messages to decode later messages into).
  virtual bool moves_buffers() const = 0;
  // Lends the storage of a value array the caller no longer needs (its contents are garbage
  // from now on) for the values of a message this endpoint will receive. A transport that
  // decodes received messages (MPI) keeps a few and decodes into them instead of allocating
  // (see ValueBufferPool); one that moves buffers drops it. Same thread rules as a receive.
  virtual void Lend(std::vector<float>&& buffer) { std::vector<float>().swap(buffer); }
  // Whether Send checksums the values of a data message with `num_vals` values (the MPI
  // transport does for arrays it sends apart). Then a sender that writes such an array block
  // by block may hash each block while it is still in cache (StreamChecksum in
  // common/comm/wire.h) and set Message::vals_checksum, saving the transport a pass over the
  // values from memory. False (the default): hashing would be wasted work. O(1).
  virtual bool ChecksumsValues(std::size_t /*num_vals*/) const { return false; }

  // Receive restricted to one channel.
  std::optional<Message> Recv(std::chrono::milliseconds timeout) {
    std::optional<Received> r = Receive(timeout, Channels::kData);
    if (!r) return std::nullopt;
    return std::get<Message>(std::move(*r));
  }
  std::optional<ControlMessage> RecvControl(std::chrono::milliseconds timeout) {
    std::optional<Received> r = Receive(timeout, Channels::kControl);
    if (!r) return std::nullopt;
    return std::get<ControlMessage>(std::move(*r));
  }
};

// Both channels' queues of one receiver, each entry stamped with its arrival number so a
// receive on both returns the older front. Not thread-safe (the owner synchronizes).
class ChannelQueues {
 public:
  void Push(Received r);
  bool Empty(Channels from) const;
  // Pops the oldest message on `from`; the queue must not be Empty(from).
  Received Pop(Channels from);

 private:
  std::uint64_t next_ = 0;
  std::deque<std::pair<std::uint64_t, Message>> data_;
  std::deque<std::pair<std::uint64_t, ControlMessage>> control_;
};

// In-process transport: one mailbox (mutex + condition variable) per endpoint. Messages are
// moved, never copied or serialized. Abort() wakes every blocked receive with a
// TransportError, so one thread's failure ends the whole single-node job instead of
// hanging it.
class InProcHub {
 public:
  explicit InProcHub(int endpoints);
  ~InProcHub();
  InProcHub(const InProcHub&) = delete;
  InProcHub& operator=(const InProcHub&) = delete;

  // A Transport for endpoint `id`; the hub must outlive it.
  std::unique_ptr<Transport> Connect(int id);
  // Makes every current and future send and receive throw TransportError(reason).
  void Abort(const std::string& reason);

 private:
  struct Mailbox {
    std::mutex mu;
    std::condition_variable cv;
    ChannelQueues queues;
  };
  class Endpoint;
  std::vector<std::unique_ptr<Mailbox>> boxes_;
  std::mutex abort_mu_;
  std::string abort_reason_;  // non-empty once aborted; guarded by abort_mu_ and each box mu
  bool aborted_ = false;
};

}  // namespace fmps
