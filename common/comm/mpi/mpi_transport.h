// Cluster-mode Transport over MPI, plus the MPI session (init/finalize) and job abort.
//
// MPI is initialized with MPI_THREAD_FUNNELED: only the thread that called
// MpiSession's constructor may call MPI. MpiTransport therefore differs from the Transport
// contract in one point: sends are NOT thread-safe; Send, SendControl, Receive and Flush must
// be called from the thread that constructed the transport (checked: another thread gets a
// TransportError).
#pragma once

#include <mpi.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "common/comm/transport.h"
#include "common/comm/wire.h"

namespace fmps {

// Owns MPI initialization for the process: at most one, created first thing in main by
// the thread that will do all MPI calls.
class MpiSession {
 public:
  // MPI_Init_thread asking for MPI_THREAD_FUNNELED. Throws TransportError if MPI was already
  // initialized, or if the library cannot provide that level (MPI is then initialized but
  // unusable: the caller should MpiAbort).
  MpiSession(int* argc, char*** argv);
  // Does NOT finalize: MPI_Finalize waits for the other ranks, so calling it while an
  // exception unwinds could hang the job. Code that fails must call MpiAbort; code that
  // succeeds must call Finalize().
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  // MPI_Finalize (collective: every rank must call it). Idempotent. Every MpiTransport must
  // be flushed and destroyed first.
  void Finalize();

  // Rank and size in MPI_COMM_WORLD.
  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  int rank_ = 0;
  int size_ = 1;
  bool finalized_ = false;
};

// Flushes stdout/stderr and ends the whole MPI job with `code` (MPI_Abort on
// MPI_COMM_WORLD), so no rank waits forever for a failed one. Without an initialized MPI it
// just exits the process with `code`.
[[noreturn]] void MpiAbort(int code);

struct MpiTransportOptions {
  // MPI tag of every frame; nothing else may receive this tag on the transport's comm.
  int tag = 0x46;
  // Largest MPI message; longer encoded messages are split. In [kWireMinChunkBytes,
  // kWireMaxChunkBytes].
  std::size_t chunk_bytes = kWireMaxChunkBytes;
  // Largest MPI message of values sent apart (see below), at most chunk_bytes: small enough
  // that each chunk is still in cache when the receiver checksums it right after MPI wrote it.
  std::size_t value_chunk_bytes = std::size_t{1} << 20;
  // Send buffers kept alive for pending MPI_Isend requests. Above either bound, Send waits
  // for the oldest pending sends (receiving meanwhile, so two ranks sending to each other
  // cannot deadlock). One chunk may exceed max_pending_bytes on its own.
  std::size_t max_pending_bytes = std::size_t{256} << 20;
  std::size_t max_pending_sends = 1024;
  // Longest wait for sends to complete (back-pressure in Send, the destructor).
  std::chrono::milliseconds send_timeout{std::chrono::minutes(10)};
};

// Transport over an MPI communicator; endpoint ids are ranks in `comm`.
//
// Send (data) and SendControl encode the message (common/comm/wire.h; a control message as a
// control frame), split it into chunks of at most chunk_bytes and start an MPI_Isend per
// chunk, keeping each buffer until its request completes; completed sends are reaped on
// every call. Cost: one copy of the message, checksummed as it is copied, O(bytes). A data
// message with at least kMinApartBytes of values sends them apart (WireEncodeOptions): its
// small frame (header, keys, counts) is copied as above, and its value array itself goes to
// MPI_Isend (the transport keeps the vector until those sends complete, then pools it), so
// the values cost one checksum pass and no copy; the receiver takes each value chunk
// straight into the array the message will carry (MPI_Mrecv into the decoder's
// NextValueChunk), checksummed there. Both channels share one MPI tag, so one sender's
// messages (and a message's value chunks) keep their order across channels.
// Buffers are reused, so steady traffic of big messages (an FFM pull reply or push is
// ~16 MB) allocates and page-faults nothing: the buffers of completed sends of
// [kMinPooledBytes, kMaxPooledBytes] (at most kMaxFreeSendBuffers of them), the receive
// buffer (frames up to kMaxPooledBytes), and the value arrays of sent messages up to
// kMaxPooledBytes, which go to a ValueBufferPool (at most kMaxPooledValueArrays) that the
// decoders fill with the values of received messages (common/comm/wire.h). Memory kept for
// reuse: at most (kMaxFreeSendBuffers + kMaxPooledValueArrays + 1) * kMaxPooledBytes; a
// job's bigger frames (a dump's chunks) are allocated and freed as before.
// Receive probes for frames from any rank (MPI_Improbe + MPI_Mrecv), reassembles each
// sender's chunks (MPI keeps order between two ranks on one tag) and queues whole messages
// per channel in arrival order. While idle, it backs off: a few quick probes, then sleeps
// growing from 10 us to 0.5 ms (reset when a frame arrives), so a waiting rank uses little
// CPU (tests/bench/README.md has the measured latencies).
//
// Thread safety: see the top of this file (owner thread only; endpoint() from any thread).
// Errors: malformed frames and send timeouts throw TransportError; MPI's own failures follow
// the communicator's error handler (by default MPI aborts the job).
class MpiTransport : public Transport {
 public:
  // `comm` must stay valid while the transport lives; the caller keeps ownership. Construct
  // on the thread that initialized MPI. Throws TransportError on invalid options.
  explicit MpiTransport(MPI_Comm comm, const MpiTransportOptions& options = {});
  // Waits up to send_timeout for pending sends (none if an exception is unwinding); sends
  // still pending after that are detached (MPI_Request_free) and their buffers leaked, so
  // MPI never reads freed memory. Never throws.
  ~MpiTransport() override;
  MpiTransport(const MpiTransport&) = delete;
  MpiTransport& operator=(const MpiTransport&) = delete;

  int endpoint() const override { return rank_; }
  bool moves_buffers() const override { return false; }
  // Keeps the buffer in the decoders' ValueBufferPool (see above).
  void Lend(std::vector<float>&& buffer) override;
  // True for arrays sent apart (>= kMinApartBytes): their checksum is stated up front, from
  // Message::vals_checksum when set, else from one more pass over the values.
  bool ChecksumsValues(std::size_t num_vals) const override {
    return num_vals * sizeof(float) >= kMinApartBytes;
  }
  // Number of endpoints (ranks in comm).
  int size() const { return size_; }

  // Throw TransportError for an unknown dest, from a non-owner thread, or when
  // back-pressure waits longer than send_timeout. Sending to oneself works. Messages that
  // arrive while a send (or Flush) waits are queued for Receive.
  void Send(int dest, Message msg) override;
  void SendControl(int dest, pb::Control msg) override;
  // Never blocks past `timeout` (plus one sleep slice of at most 0.5 ms).
  std::optional<Received> Receive(std::chrono::milliseconds timeout, Channels from) override;

  // Waits until every pending send has completed, receiving meanwhile; throws
  // TransportError naming the oldest unfinished send after `timeout`.
  void Flush(std::chrono::milliseconds timeout);

  // Bytes of every frame this transport has sent / received so far (wire frames: encoded
  // messages with their headers and checksums, not MPI's or TCP's own framing).
  std::uint64_t bytes_sent() const { return bytes_sent_; }
  std::uint64_t bytes_received() const { return bytes_received_; }
  // Bytes of those frames copied through the transport's own buffers (encoded into a send
  // buffer, or received into the receive buffer and decoded out of it): all but the values
  // sent apart, which MPI reads from and writes to the value arrays themselves.
  std::uint64_t bytes_copied() const { return bytes_copied_; }

  // Sends started but not known to be complete, and their bytes.
  std::size_t pending_sends() const { return pending_.size(); }
  std::size_t pending_bytes() const { return pending_bytes_; }

 private:
  // A send buffer of `capacity` bytes.
  struct SendBuffer {
    std::unique_ptr<std::uint8_t[]> data;
    std::size_t capacity = 0;
  };
  static std::size_t CapacityOf(const SendBuffer& b);
  struct PendingSend {
    MPI_Request request = MPI_REQUEST_NULL;
    SendBuffer buffer;  // read by MPI until the request completes
    // A value chunk sent apart: the message's value array (shared by its chunks' sends;
    // pooled once the last of them completes). MPI reads it until the request completes.
    std::shared_ptr<std::vector<float>> values;
    std::size_t bytes = 0;
    int dest = -1;
  };
  // Sends of at least kMinPooledBytes reuse buffers (smaller ones: fresh and cheap);
  // buffers, receive buffers and value arrays over kMaxPooledBytes are not kept.
  static constexpr std::size_t kMinPooledBytes = std::size_t{64} << 10;
  static constexpr std::size_t kMaxPooledBytes = std::size_t{64} << 20;
  static constexpr std::size_t kMaxFreeSendBuffers = 4;
  // Value arrays in flight (sent apart, until the receiver takes them) and being received
  // both come from and go back to the pool: room for a few of each.
  static constexpr std::size_t kMaxPooledValueArrays = 4;
  // Smallest value array sent apart (smaller ones: one copy is cheaper than a second send).
  static constexpr std::size_t kMinApartBytes = std::size_t{64} << 10;

  void CheckThread(const char* what) const;
  void CheckDest(int dest) const;
  // Starts the sends of every chunk of `encoder` to dest.
  void SendChunks(int dest, WireEncoder* encoder);
  // Starts the sends of the value chunks of `encoder` (whose message's vals are `vals`).
  void SendValueChunks(int dest, const WireEncoder& encoder, std::vector<float>&& vals);
  // Starts one MPI_Isend of `p` (buffer or values set by the caller) and queues it.
  void StartSend(PendingSend&& p, const void* data);
  // Reaped send `p`: its buffer or value array goes back for reuse.
  void Recycle(PendingSend&& p);
  // A buffer of at least `bytes` (a free one that fits, else a new one).
  SendBuffer TakeSendBuffer(std::size_t bytes);
  // Keeps a completed send's buffer for reuse (or frees it).
  void ReturnSendBuffer(SendBuffer&& buffer);
  // The receive buffer for a frame of `bytes` (huge ones go to *huge and are freed after).
  std::uint8_t* RecvBuffer(std::size_t bytes, std::unique_ptr<std::uint8_t[]>* huge);
  // Tests every pending send and drops completed ones (keeps order).
  void Reap();
  // Receives at most one frame if one is waiting; queues a completed message in inbox_.
  // Returns whether a frame arrived.
  bool PollOnce();
  // Whether a new send of `extra_bytes` fits the pending bounds (always if none pending).
  bool HasRoom(std::size_t extra_bytes) const;
  // Waits, receiving meanwhile, until HasRoom(extra_bytes) (or, if `all`, until nothing is
  // pending). Throws TransportError after `timeout`.
  void WaitForSends(std::size_t extra_bytes, bool all, std::chrono::milliseconds timeout);
  // Drops every pending send without waiting; leaks their buffers.
  void Detach() noexcept;

  MPI_Comm comm_;
  MpiTransportOptions options_;
  int rank_ = 0;
  int size_ = 0;
  std::thread::id owner_;
  std::vector<PendingSend> pending_;  // oldest first
  std::size_t pending_bytes_ = 0;
  std::uint64_t bytes_sent_ = 0;
  std::uint64_t bytes_received_ = 0;
  std::uint64_t bytes_copied_ = 0;
  std::vector<MPI_Request> requests_scratch_;  // for MPI_Testsome
  std::vector<int> indices_scratch_;
  std::vector<std::span<const std::uint8_t>> value_chunks_;  // SendValueChunks' scratch
  std::vector<SendBuffer> free_send_buffers_;                // of completed sends, for reuse
  ValueBufferPool value_pool_{kMaxPooledValueArrays, kMaxPooledBytes / sizeof(float)};
  std::vector<WireDecoder> decoders_;         // per sender rank (using value_pool_)
  ChannelQueues inbox_;                       // complete messages not yet received
  std::unique_ptr<std::uint8_t[]> recv_buf_;  // reused for frames that are not huge
  std::size_t recv_capacity_ = 0;
};

}  // namespace fmps
