#include "common/comm/mpi/mpi_transport.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <string>
#include <utility>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/comm/buffer_pool.h"

namespace fmps {

namespace {

using Clock = std::chrono::steady_clock;

// Idle back-off of Receive and of waits for sends: kQuickProbes probes back to back, then
// sleeps from kFirstSleep doubling up to kMaxSleep. A message arriving during a sleep waits
// for its end, so kMaxSleep bounds the latency an idle rank adds (a busy server's replies
// come within a few sleeps); an idle rank costs about one probe per kMaxSleep
// (MpiTransportTest keeps it under 10% of a core; tests/bench/README.md).
constexpr int kQuickProbes = 16;
constexpr std::chrono::nanoseconds kFirstSleep = std::chrono::microseconds(10);
constexpr std::chrono::nanoseconds kMaxSleep = std::chrono::microseconds(500);

class Backoff {
 public:
  void Reset() {
    quick_ = 0;
    sleep_ = kFirstSleep;
  }
  // One idle step: returns at once for the first probes, else sleeps (never past deadline).
  void Idle(Clock::time_point deadline) {
    if (quick_ < kQuickProbes) {
      ++quick_;
      return;
    }
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return;
    std::this_thread::sleep_for(std::min<Clock::duration>(sleep_, left));
    sleep_ = std::min(sleep_ * 2, kMaxSleep);
  }

 private:
  int quick_ = 0;
  std::chrono::nanoseconds sleep_ = kFirstSleep;
};

// now + timeout, saturating instead of overflowing for huge timeouts.
Clock::time_point Deadline(std::chrono::milliseconds timeout) {
  const auto now = Clock::now();
  if (timeout <= std::chrono::milliseconds::zero()) return now;
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::time_point::max() - now);
  return timeout >= left ? Clock::time_point::max() : now + timeout;
}

std::string Millis(std::chrono::milliseconds d) { return std::to_string(d.count()) + " ms"; }

// Turns a failed MPI call into a TransportError (reached only if the communicator's error
// handler returns errors instead of aborting the job).
void CheckMpi(int rc, int rank, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) len = 0;
  throw TransportError(std::string("rank ") + std::to_string(rank) + ": " + call +
                       " failed: " + std::string(text, static_cast<std::size_t>(len)));
}

}  // namespace

// ---- MpiSession / MpiAbort ----

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) throw TransportError("MPI is already initialized");
  int provided = 0;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    throw TransportError("MPI_Init_thread failed");
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  if (provided < MPI_THREAD_FUNNELED) {
    throw TransportError(std::string("rank ") + std::to_string(rank_) +
                         ": the MPI library does not provide MPI_THREAD_FUNNELED (level " +
                         std::to_string(provided) + ")");
  }
}

MpiSession::~MpiSession() {
  if (!finalized_ && std::uncaught_exceptions() == 0) {
    try {
      Warn(std::string("rank ") + std::to_string(rank_) + ": MPI session ended without Finalize()");
    } catch (...) {
    }
  }
}

void MpiSession::Finalize() {
  if (finalized_) return;
  finalized_ = true;
  if (MPI_Finalize() != MPI_SUCCESS) {
    throw TransportError(std::string("rank ") + std::to_string(rank_) + ": MPI_Finalize failed");
  }
}

void MpiAbort(int code) {
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  int initialized = 0;
  int finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

// ---- MpiTransport ----

MpiTransport::MpiTransport(MPI_Comm comm, const MpiTransportOptions& options)
    : comm_(comm), options_(options), owner_(std::this_thread::get_id()) {
  if (options_.chunk_bytes < kWireMinChunkBytes || options_.chunk_bytes > kWireMaxChunkBytes) {
    throw TransportError(std::string("MPI transport: chunk_bytes ") +
                         std::to_string(options_.chunk_bytes) + " outside [" +
                         std::to_string(kWireMinChunkBytes) + ", " +
                         std::to_string(kWireMaxChunkBytes) + "]");
  }
  if (options_.value_chunk_bytes < kWireMinChunkBytes) {
    throw TransportError(std::string("MPI transport: value_chunk_bytes ") +
                         std::to_string(options_.value_chunk_bytes) + " below " +
                         std::to_string(kWireMinChunkBytes));
  }
  int* tag_ub = nullptr;
  int has_tag_ub = 0;
  MPI_Comm_get_attr(comm, MPI_TAG_UB, &tag_ub, &has_tag_ub);
  if (options_.tag < 0 || (has_tag_ub && tag_ub != nullptr && options_.tag > *tag_ub)) {
    throw TransportError(std::string("MPI transport: tag ") + std::to_string(options_.tag) +
                         " outside the communicator's range");
  }
  if (options_.max_pending_sends == 0) {
    throw TransportError("MPI transport: max_pending_sends must be positive");
  }
  CheckMpi(MPI_Comm_rank(comm_, &rank_), -1, "MPI_Comm_rank");
  CheckMpi(MPI_Comm_size(comm_, &size_), rank_, "MPI_Comm_size");
  decoders_.reserve(size_);
  for (int r = 0; r < size_; ++r) decoders_.emplace_back(r, &value_pool_);
}

MpiTransport::~MpiTransport() {
  if (pending_.empty()) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) {
    Detach();  // too late to ask MPI anything; keep the buffers alive
    return;
  }
  if (std::uncaught_exceptions() == 0 && std::this_thread::get_id() == owner_) {
    try {
      Flush(options_.send_timeout);
    } catch (const std::exception& e) {
      try {
        Warn(e.what());
      } catch (...) {
      }
    }
  }
  Detach();
}

void MpiTransport::Detach() noexcept {
  if (pending_.empty()) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  for (PendingSend& p : pending_) {
    if (!finalized && p.request != MPI_REQUEST_NULL) MPI_Request_free(&p.request);
    (void)p.buffer.data.release();  // MPI may still read it: leak rather than free
    if (p.values) new std::shared_ptr<std::vector<float>>(std::move(p.values));  // leaked too
  }
  try {
    Warn(std::string("rank ") + std::to_string(rank_) + ": " + std::to_string(pending_.size()) +
         " MPI send(s) still pending at shutdown were detached");
  } catch (...) {
  }
  pending_.clear();
  pending_bytes_ = 0;
}

void MpiTransport::CheckThread(const char* what) const {
  if (std::this_thread::get_id() != owner_) {
    throw TransportError(std::string("rank ") + std::to_string(rank_) + ": MpiTransport::" + what +
                         " called from a thread other than its owner (MPI is FUNNELED)");
  }
}

void MpiTransport::Reap() {
  if (pending_.empty()) return;
  requests_scratch_.resize(pending_.size());
  indices_scratch_.resize(pending_.size());
  for (std::size_t i = 0; i < pending_.size(); ++i) requests_scratch_[i] = pending_[i].request;
  int done = 0;
  CheckMpi(MPI_Testsome(static_cast<int>(requests_scratch_.size()), requests_scratch_.data(), &done,
                        indices_scratch_.data(), MPI_STATUSES_IGNORE),
           rank_, "MPI_Testsome");
  if (done <= 0) return;  // 0, or MPI_UNDEFINED if every request were null
  for (int j = 0; j < done; ++j) {
    PendingSend& p = pending_[indices_scratch_[j]];
    p.request = MPI_REQUEST_NULL;
    pending_bytes_ -= p.bytes;
    Recycle(std::move(p));
  }
  std::erase_if(pending_, [](const PendingSend& p) { return p.request == MPI_REQUEST_NULL; });
}

bool MpiTransport::PollOnce() {
  int flag = 0;
  MPI_Message handle = MPI_MESSAGE_NULL;
  MPI_Status status;
  CheckMpi(MPI_Improbe(MPI_ANY_SOURCE, options_.tag, comm_, &flag, &handle, &status), rank_,
           "MPI_Improbe");
  if (!flag) {
    // Open MPI's probe looks for a match before it progresses the network, so a frame that
    // progress has just pulled in shows only on the next probe. Without this second probe
    // an idle receiver notices a message one whole sleep later.
    CheckMpi(MPI_Improbe(MPI_ANY_SOURCE, options_.tag, comm_, &flag, &handle, &status), rank_,
             "MPI_Improbe");
  }
  if (!flag) return false;
  int count = 0;
  MPI_Get_count(&status, MPI_BYTE, &count);
  const int source = status.MPI_SOURCE;
  if (count < 0 || source < 0 || source >= size_) {
    throw TransportError(std::string("rank ") + std::to_string(rank_) +
                         ": MPI frame of unknown size or source (" + std::to_string(count) +
                         " bytes from rank " + std::to_string(source) + ")");
  }
  const auto bytes = static_cast<std::size_t>(count);
  bytes_received_ += bytes;
  WireDecoder& decoder = decoders_[source];
  std::optional<Received> m;
  // A value chunk of the expected size goes straight into the message's array; anything
  // else goes through the receive buffer and Add (which rejects a wrong-sized chunk).
  if (const std::span<std::uint8_t> into = decoder.NextValueChunk();
      !into.empty() && into.size() == bytes) {
    CheckMpi(MPI_Mrecv(into.data(), count, MPI_BYTE, &handle, MPI_STATUS_IGNORE), rank_,
             "MPI_Mrecv");
    m = decoder.ValueChunkWritten();
  } else {
    std::unique_ptr<std::uint8_t[]> huge;
    std::uint8_t* buf = RecvBuffer(bytes, &huge);
    CheckMpi(MPI_Mrecv(buf, count, MPI_BYTE, &handle, MPI_STATUS_IGNORE), rank_, "MPI_Mrecv");
    bytes_copied_ += bytes;
    m = decoder.Add({buf, bytes});
  }
  if (m) inbox_.Push(std::move(*m));
  return true;
}

std::size_t MpiTransport::CapacityOf(const SendBuffer& b) { return b.capacity; }

std::uint8_t* MpiTransport::RecvBuffer(std::size_t bytes, std::unique_ptr<std::uint8_t[]>* huge) {
  if (bytes > kMaxPooledBytes) {
    *huge = std::make_unique_for_overwrite<std::uint8_t[]>(bytes);
    return huge->get();
  }
  if (recv_capacity_ < bytes || !recv_buf_) {
    recv_buf_.reset();  // nothing to keep: free before allocating
    // 1/8 slack, so frames that vary a little in size (minibatches) fit the next time too.
    recv_capacity_ = std::min(kMaxPooledBytes, std::max<std::size_t>(bytes + bytes / 8, 64 << 10));
    recv_buf_ = std::make_unique_for_overwrite<std::uint8_t[]>(recv_capacity_);
  }
  return recv_buf_.get();
}

MpiTransport::SendBuffer MpiTransport::TakeSendBuffer(std::size_t bytes) {
  SendBuffer b;
  if (bytes >= kMinPooledBytes && bytes <= kMaxPooledBytes) {
    const auto best = SmallestFitting(free_send_buffers_, bytes, CapacityOf);
    if (best != free_send_buffers_.end()) {
      b = std::move(*best);
      free_send_buffers_.erase(best);
      return b;
    }
    bytes = std::min(kMaxPooledBytes, bytes + bytes / 8);  // slack, as for the receive buffer
  }
  b.data = std::make_unique_for_overwrite<std::uint8_t[]>(bytes);
  b.capacity = bytes;
  return b;
}

void MpiTransport::ReturnSendBuffer(SendBuffer&& buffer) {
  if (buffer.capacity < kMinPooledBytes || buffer.capacity > kMaxPooledBytes) return;
  KeepLargest(&free_send_buffers_, kMaxFreeSendBuffers, std::move(buffer), CapacityOf);
}

bool MpiTransport::HasRoom(std::size_t extra_bytes) const {
  return pending_.empty() || (pending_bytes_ + extra_bytes <= options_.max_pending_bytes &&
                              pending_.size() < options_.max_pending_sends);
}

void MpiTransport::WaitForSends(std::size_t extra_bytes, bool all,
                                std::chrono::milliseconds timeout) {
  auto satisfied = [&] { return all ? pending_.empty() : HasRoom(extra_bytes); };
  Reap();
  if (satisfied()) return;
  const auto deadline = Deadline(timeout);
  Backoff backoff;
  while (true) {
    // Receiving keeps a peer that is itself blocked sending to us able to finish.
    if (PollOnce()) backoff.Reset();
    Reap();
    if (satisfied()) return;
    if (Clock::now() >= deadline) {
      const PendingSend& oldest = pending_.front();
      throw TransportError(std::string("rank ") + std::to_string(rank_) + ": send of " +
                           std::to_string(oldest.bytes) + " bytes to rank " +
                           std::to_string(oldest.dest) + " not complete after " + Millis(timeout) +
                           " (" + std::to_string(pending_.size()) + " sends pending)");
    }
    backoff.Idle(deadline);
  }
}

void MpiTransport::CheckDest(int dest) const {
  if (dest < 0 || dest >= size_) {
    throw TransportError(std::string("rank ") + std::to_string(rank_) +
                         ": send to unknown endpoint " + std::to_string(dest) + " (" +
                         std::to_string(size_) + " ranks)");
  }
}

void MpiTransport::Send(int dest, Message msg) {
  CheckThread("Send");
  CheckDest(dest);
  msg.sender = rank_;
  const bool apart = msg.vals.size() * sizeof(float) >= kMinApartBytes;
  WireEncoder encoder(
      msg, {.chunk_bytes = options_.chunk_bytes,
            .values_apart = apart,
            .value_chunk_bytes = std::min(options_.value_chunk_bytes, options_.chunk_bytes)});
  SendChunks(dest, &encoder);
  if (encoder.num_value_chunks() > 0) {
    SendValueChunks(dest, encoder, std::move(msg.vals));
  } else {
    Lend(std::move(msg.vals));  // copied out: decode a later message into it
  }
}

void MpiTransport::SendValueChunks(int dest, const WireEncoder& encoder,
                                   std::vector<float>&& vals) {
  // The chunks point into vals' buffer, which moving the vector keeps where it is.
  value_chunks_.clear();
  for (std::size_t i = 0; i < encoder.num_value_chunks(); ++i) {
    value_chunks_.push_back(encoder.ValueChunk(i));
  }
  auto values = std::make_shared<std::vector<float>>(std::move(vals));
  for (const std::span<const std::uint8_t> chunk : value_chunks_) {
    WaitForSends(chunk.size(), /*all=*/false, options_.send_timeout);
    PendingSend p;
    p.values = values;
    p.bytes = chunk.size();
    p.dest = dest;
    StartSend(std::move(p), chunk.data());
  }
}

void MpiTransport::StartSend(PendingSend&& p, const void* data) {
  CheckMpi(
      MPI_Isend(data, static_cast<int>(p.bytes), MPI_BYTE, p.dest, options_.tag, comm_, &p.request),
      rank_, "MPI_Isend");
  pending_bytes_ += p.bytes;
  bytes_sent_ += p.bytes;
  pending_.push_back(std::move(p));  // moves the pointers only; the bytes stay put
}

void MpiTransport::Recycle(PendingSend&& p) {
  ReturnSendBuffer(std::move(p.buffer));
  // The last of a value array's sends hands the array to the decoders' pool.
  if (p.values && p.values.use_count() == 1) value_pool_.Put(std::move(*p.values));
  p.values.reset();
}

void MpiTransport::Lend(std::vector<float>&& buffer) {
  CheckThread("Lend");
  value_pool_.Put(std::move(buffer));
}

void MpiTransport::SendControl(int dest, pb::Control msg) {
  CheckThread("SendControl");
  CheckDest(dest);
  WireEncoder encoder(msg, options_.chunk_bytes);
  SendChunks(dest, &encoder);
}

void MpiTransport::SendChunks(int dest, WireEncoder* encoder) {
  for (std::size_t i = 0; i < encoder->num_chunks(); ++i) {
    const std::size_t bytes = encoder->ChunkSize(i);
    WaitForSends(bytes, /*all=*/false, options_.send_timeout);
    PendingSend p;
    p.buffer = TakeSendBuffer(bytes);
    p.bytes = bytes;
    p.dest = dest;
    encoder->WriteChunk(i, p.buffer.data.get());
    bytes_copied_ += bytes;
    const std::uint8_t* data = p.buffer.data.get();
    StartSend(std::move(p), data);
  }
}

std::optional<Received> MpiTransport::Receive(std::chrono::milliseconds timeout, Channels from) {
  CheckThread("Receive");
  Reap();
  if (inbox_.Empty(from)) {
    const auto deadline = Deadline(timeout);
    Backoff backoff;
    while (inbox_.Empty(from)) {
      const bool got_frame = PollOnce();
      if (!inbox_.Empty(from)) break;
      // Also while a multi-chunk message streams in: its rest waits in the decoder.
      if (Clock::now() >= deadline) return std::nullopt;
      if (got_frame) {
        backoff.Reset();
      } else {
        backoff.Idle(deadline);
        Reap();
      }
    }
  }
  return inbox_.Pop(from);
}

void MpiTransport::Flush(std::chrono::milliseconds timeout) {
  CheckThread("Flush");
  WaitForSends(0, /*all=*/true, timeout);
}

}  // namespace fmps
