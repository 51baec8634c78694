#include "common/comm/wire.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>

// Compiled here, for this machine's vector units (the shared library is built for the
// baseline ISA): the checksums of ~16 MB frames run about 2.5x faster in cache. Same bits.
// (GCC 12 warns falsely inside its own AVX-512 intrinsics that xxhash inlines.)
#define XXH_INLINE_ALL
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <xxhash.h>
#pragma GCC diagnostic pop
#else
#include <xxhash.h>
#endif

#include "common/base/error.h"
#include "common/base/huge_pages.h"
#include "common/base/raw_arrays.h"
#include "common/comm/buffer_pool.h"
#include "fmps.pb.h"

namespace fmps {

namespace {

constexpr std::uint32_t kWireVersion = 2;
constexpr std::size_t kPrefixBytes = 4;   // u32 header length
constexpr std::size_t kTrailerBytes = 8;  // u64 checksum
constexpr std::uint32_t kMinKind = static_cast<std::uint32_t>(MsgKind::kPull);
constexpr std::uint32_t kDataChannel = 0;
constexpr std::uint32_t kControlChannel = 1;

const Message& EmptyMessage() {
  static const Message empty;
  return empty;
}

// *total += count * width, false if that would pass kWireMaxMessageBytes.
bool AddArray(std::uint64_t* total, std::uint64_t count, std::uint64_t width) {
  if (count > kWireMaxMessageBytes / width) return false;
  *total += count * width;
  return *total <= kWireMaxMessageBytes;
}

template <typename T>
const std::uint8_t* BytesOf(const std::vector<T>& v) {
  return reinterpret_cast<const std::uint8_t*>(v.data());
}

// Copies and checksums go block by block: each block is hashed right after it is copied,
// while it is still in cache (one pass over the bytes instead of a copy and a hash pass).
constexpr std::size_t kHashBlock = std::size_t{256} << 10;

std::uint32_t LoadU32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// One stretch of the stream: [begin, begin + size) read from `data`.
struct Segment {
  std::uint64_t begin;
  const std::uint8_t* data;
  std::uint64_t size;
};

// Copies the part of `seg` that overlaps stream bytes [at, at + len) into out[0, len).
void GatherSegment(const Segment& seg, std::uint64_t at, std::uint64_t len, std::uint8_t* out) {
  const std::uint64_t lo = std::max(at, seg.begin);
  const std::uint64_t hi = std::min(at + len, seg.begin + seg.size);
  if (lo < hi) std::memcpy(out + (lo - at), seg.data + (lo - seg.begin), hi - lo);
}

// Copies the part of `chunk` (which starts at stream offset `at`) that falls in the array
// occupying stream bytes [begin, end) into *v, growing v (within its reserved capacity) only
// as far as the bytes received reach.
template <typename T>
void Scatter(std::span<const std::uint8_t> chunk, std::uint64_t at, std::uint64_t begin,
             std::uint64_t end, std::vector<T>* v) {
  const std::uint64_t lo = std::max(at, begin);
  const std::uint64_t hi = std::min(at + chunk.size(), end);
  if (lo >= hi) return;
  const std::size_t need = static_cast<std::size_t>((hi - begin + sizeof(T) - 1) / sizeof(T));
  if (v->size() < need) v->resize(need);
  std::memcpy(reinterpret_cast<std::uint8_t*>(v->data()) + (lo - begin), chunk.data() + (lo - at),
              hi - lo);
}

// Stream bytes the header's body and arrays need (prefix and trailer included), or nullopt
// past kWireMaxMessageBytes.
std::optional<std::uint64_t> StreamBytes(const pb::WireHeader& h, std::uint64_t header_bytes) {
  std::uint64_t total = kPrefixBytes + header_bytes + kTrailerBytes;
  const std::uint64_t stream_vals = h.vals_apart() ? 0 : h.num_vals();
  if (!AddArray(&total, h.num_control_bytes(), 1) || !AddArray(&total, h.num_keys(), sizeof(Key)) ||
      !AddArray(&total, stream_vals, sizeof(float)) ||
      !AddArray(&total, h.num_counts(), sizeof(std::uint32_t))) {
    return std::nullopt;
  }
  return total;
}

// Why the values-apart fields of data header `h` are inconsistent ("" if they are not).
std::string ValuesApartFault(const pb::WireHeader& h) {
  if (!h.vals_apart()) {
    if (h.vals_checksum() != 0 || h.vals_chunk_bytes() != 0)
      return "value fields without values apart";
    return "";
  }
  if (h.num_vals() == 0) return "values apart without values";
  const std::uint64_t c = h.vals_chunk_bytes();
  if (c < kWireMinChunkBytes || c > kWireMaxChunkBytes) {
    return "invalid value chunk size " + std::to_string(c);
  }
  return "";
}

// Why header `h` does not describe a valid frame ("" if it does); sizes aside.
std::string HeaderFault(const pb::WireHeader& h) {
  if (h.version() != kWireVersion) return "unsupported version " + std::to_string(h.version());
  if (h.channel() == kControlChannel) {
    if (h.kind() != 0 || h.request_id() != 0 || h.bsp_step() != 0 || h.flags() != 0 ||
        h.ref() != 0 || h.num_keys() != 0 || h.num_vals() != 0 || h.num_counts() != 0 ||
        h.vals_apart() || h.vals_checksum() != 0 || h.vals_chunk_bytes() != 0) {
      return "control frame with data fields";
    }
    if (h.num_control_bytes() == 0 || h.num_control_bytes() > kWireMaxControlBytes) {
      return "control frame of " + std::to_string(h.num_control_bytes()) + " bytes";
    }
    return "";
  }
  if (h.channel() != kDataChannel) return "unknown channel " + std::to_string(h.channel());
  if (h.num_control_bytes() != 0) return "data frame with a control body";
  if (h.kind() < kMinKind || h.kind() > kMaxMsgKind) {
    return "unknown message kind " + std::to_string(h.kind());
  }
  if (!DataFlags::FromBits(h.flags()).within(AllowedFlags(static_cast<MsgKind>(h.kind())))) {
    return "flags " + std::to_string(h.flags()) + " not allowed for message kind " +
           std::to_string(h.kind());
  }
  return ValuesApartFault(h);
}

}  // namespace

// ---- ValueBufferPool ----

namespace {
std::size_t Capacity(const std::vector<float>& v) { return v.capacity(); }
}  // namespace

void ValueBufferPool::Put(std::vector<float>&& buffer) {
  if (buffer.capacity() == 0 || buffer.capacity() > max_buffer_floats_) return;
  KeepLargest(&buffers_, max_buffers_, std::move(buffer), Capacity);
}

std::vector<float> ValueBufferPool::Take(std::size_t n, IfNoneFits none_fits) {
  if (n == 0) return {};
  const auto best = SmallestFitting(buffers_, n, Capacity);
  std::vector<float> v;
  if (best != buffers_.end()) {
    v = std::move(*best);
    buffers_.erase(best);
    v.resize(n);  // within capacity: fills only past the old size
  } else if (none_fits == IfNoneFits::kEmpty) {
    return v;
  } else if (n <= max_buffer_floats_) {
    ReserveHugeFloats(&v, n);  // will be reused: slack, and huge pages for the kernels
  } else {
    v.reserve(n);  // too big to keep (a dump's chunk): used once, as a plain allocation
  }
  return v;
}

// ---- WireEncoder ----

WireEncoder::WireEncoder(WireEncoder&&) noexcept = default;
WireEncoder::~WireEncoder() = default;

WireEncoder::WireEncoder(const Message& msg, std::size_t chunk_bytes)
    : WireEncoder(msg, WireEncodeOptions{.chunk_bytes = chunk_bytes}) {}

WireEncoder::WireEncoder(const Message& msg, const WireEncodeOptions& options) : msg_(msg) {
  const auto kind = static_cast<std::uint32_t>(msg.kind);
  if (kind < kMinKind || kind > kMaxMsgKind) {
    throw TransportError(std::string("cannot encode a message of unknown kind ") +
                         std::to_string(kind));
  }
  if (!msg.flags.within(AllowedFlags(msg.kind))) {
    throw TransportError("cannot encode flags " + std::to_string(msg.flags.bits()) +
                         " on a message of kind " + std::to_string(kind));
  }
  const bool apart = options.values_apart && !msg.vals.empty();
  inline_vals_ = apart ? 0 : msg.vals.size();
  if (apart && options.chunk_bytes >= kWireMinChunkBytes) {
    const std::uint64_t bytes = msg.vals.size() * sizeof(float);
    const std::size_t c =
        options.value_chunk_bytes == 0 ? options.chunk_bytes : options.value_chunk_bytes;
    if (c < kWireMinChunkBytes || c > options.chunk_bytes) {
      throw TransportError("value chunk size " + std::to_string(c) + " outside [" +
                           std::to_string(kWireMinChunkBytes) + ", " +
                           std::to_string(options.chunk_bytes) + "]");
    }
    value_chunk_bytes_ = std::min(c, kWireMaxChunkBytes);
    num_value_chunks_ =
        static_cast<std::size_t>((bytes + value_chunk_bytes_ - 1) / value_chunk_bytes_);
  }
  Init(kDataChannel, options.chunk_bytes);
}

struct StreamChecksum::State {
  XXH3_state_t state;
};

StreamChecksum::StreamChecksum() : state_(std::make_unique<State>()) { Reset(); }

StreamChecksum::~StreamChecksum() = default;
StreamChecksum::StreamChecksum(StreamChecksum&&) noexcept = default;
StreamChecksum& StreamChecksum::operator=(StreamChecksum&&) noexcept = default;

void StreamChecksum::Reset() { XXH3_64bits_reset(&state_->state); }

void StreamChecksum::Update(const void* bytes, std::size_t n) {
  XXH3_64bits_update(&state_->state, bytes, n);
}

std::uint64_t StreamChecksum::Digest() const { return XXH3_64bits_digest(&state_->state); }

WireEncoder::WireEncoder(const pb::Control& msg, std::size_t chunk_bytes) : msg_(EmptyMessage()) {
  if (msg.body_case() == pb::Control::BODY_NOT_SET) {
    throw TransportError("cannot encode a control message without a body");
  }
  if (msg.ByteSizeLong() > kWireMaxControlBytes || !msg.SerializeToString(&control_)) {
    throw TransportError("cannot encode a control message of " +
                         std::to_string(msg.ByteSizeLong()) + " bytes");
  }
  Init(kControlChannel, chunk_bytes);
}

void WireEncoder::Init(std::uint32_t channel, std::size_t chunk_bytes) {
  if (chunk_bytes < kWireMinChunkBytes) {
    throw TransportError(std::string("wire chunk size ") + std::to_string(chunk_bytes) +
                         " is below the " + std::to_string(kWireMinChunkBytes) + "-byte minimum");
  }
  const Message& msg = msg_;
  pb::WireHeader h;
  h.set_version(kWireVersion);
  h.set_channel(channel);
  h.set_num_control_bytes(control_.size());
  h.set_kind(channel == kDataChannel ? static_cast<std::uint32_t>(msg.kind) : 0);
  h.set_request_id(msg.request_id);
  h.set_bsp_step(msg.bsp_step);
  h.set_flags(msg.flags.bits());
  h.set_ref(msg.ref);
  h.set_num_keys(msg.keys.size());
  h.set_num_vals(msg.vals.size());
  h.set_num_counts(msg.counts.size());
  if (num_value_chunks_ > 0) {
    h.set_vals_apart(true);
    h.set_vals_checksum(msg.vals_checksum
                            ? *msg.vals_checksum
                            : XXH3_64bits(msg.vals.data(), msg.vals.size() * sizeof(float)));
    h.set_vals_chunk_bytes(value_chunk_bytes_);
  }
  // fixed64 fields: any non-zero placeholder gives the final encoded length.
  h.set_total_bytes(1);
  h.set_chunk_bytes(1);
  const std::size_t header_bytes = h.ByteSizeLong();
  const std::optional<std::uint64_t> total = StreamBytes(h, header_bytes);
  if (!total) {
    throw TransportError(std::string("message too large to encode: ") +
                         std::to_string(msg.keys.size()) + " keys, " +
                         std::to_string(msg.vals.size()) + " values, " +
                         std::to_string(msg.counts.size()) + " counts");
  }
  total_bytes_ = *total;
  chunk_bytes_ = *total <= chunk_bytes ? static_cast<std::size_t>(*total) : chunk_bytes;
  num_chunks_ = static_cast<std::size_t>((*total + chunk_bytes_ - 1) / chunk_bytes_);
  h.set_total_bytes(total_bytes_);
  h.set_chunk_bytes(chunk_bytes_);
  const auto header_len = static_cast<std::uint32_t>(header_bytes);
  head_.resize(kPrefixBytes + header_bytes);
  std::memcpy(head_.data(), &header_len, kPrefixBytes);
  if (h.ByteSizeLong() != header_bytes ||
      !h.SerializeToArray(head_.data() + kPrefixBytes, static_cast<int>(header_bytes))) {
    throw TransportError("internal error: wire header serialization failed");
  }
  trailer_at_ = total_bytes_ - kTrailerBytes;
  hash_.Reset();
}

std::size_t WireEncoder::ChunkSize(std::size_t i) const {
  const std::uint64_t begin = static_cast<std::uint64_t>(i) * chunk_bytes_;
  return static_cast<std::size_t>(std::min<std::uint64_t>(chunk_bytes_, total_bytes_ - begin));
}

void WireEncoder::WriteChunk(std::size_t i, std::uint8_t* out) {
  if (i != next_chunk_ || i >= num_chunks_) {
    throw std::logic_error("WireEncoder::WriteChunk: chunk " + std::to_string(i) +
                           " written out of order (next is " + std::to_string(next_chunk_) +
                           " of " + std::to_string(num_chunks_) + ")");
  }
  const std::uint64_t at = static_cast<std::uint64_t>(i) * chunk_bytes_;
  const std::size_t len = ChunkSize(i);
  for (std::size_t off = 0; off < len; off += kHashBlock) {
    const std::uint64_t b = at + off;
    const std::size_t n = std::min(kHashBlock, len - off);
    const std::size_t body =
        b < trailer_at_ ? static_cast<std::size_t>(std::min<std::uint64_t>(n, trailer_at_ - b)) : 0;
    if (body > 0) {
      Gather(b, body, out + off);
      hash_.Update(out + off, body);
    }
    if (body < n) {  // the trailer: every byte before it has been hashed
      checksum_ = hash_.Digest();
      Gather(b + body, n - body, out + off + body);
    }
  }
  ++next_chunk_;
}

void WireEncoder::Gather(std::uint64_t at, std::size_t len, std::uint8_t* out) const {
  const std::uint64_t control_at = head_.size();
  const std::uint64_t keys_at = control_at + control_.size();
  const std::uint64_t vals_at = keys_at + msg_.keys.size() * sizeof(Key);
  const std::uint64_t counts_at = vals_at + inline_vals_ * sizeof(float);
  const std::uint64_t trailer_at = counts_at + msg_.counts.size() * sizeof(std::uint32_t);
  std::uint8_t trailer[kTrailerBytes];
  std::memcpy(trailer, &checksum_, kTrailerBytes);
  const Segment segments[] = {
      {0, reinterpret_cast<const std::uint8_t*>(head_.data()), head_.size()},
      {control_at, reinterpret_cast<const std::uint8_t*>(control_.data()), control_.size()},
      {keys_at, BytesOf(msg_.keys), vals_at - keys_at},
      {vals_at, BytesOf(msg_.vals), counts_at - vals_at},
      {counts_at, BytesOf(msg_.counts), trailer_at - counts_at},
      {trailer_at, trailer, kTrailerBytes},
  };
  for (const Segment& s : segments) GatherSegment(s, at, len, out);
}

std::span<const std::uint8_t> WireEncoder::ValueChunk(std::size_t i) const {
  if (i >= num_value_chunks_) {
    throw std::logic_error("WireEncoder::ValueChunk: no value chunk " + std::to_string(i));
  }
  const std::size_t bytes = msg_.vals.size() * sizeof(float);
  const std::size_t at = i * value_chunk_bytes_;
  return {BytesOf(msg_.vals) + at, std::min(value_chunk_bytes_, bytes - at)};
}

// ---- WireDecoder ----

WireDecoder::WireDecoder(WireDecoder&&) noexcept = default;
WireDecoder& WireDecoder::operator=(WireDecoder&&) noexcept = default;
WireDecoder::~WireDecoder() = default;

WireDecoder::WireDecoder(int sender, ValueBufferPool* pool) : sender_(sender), pool_(pool) {}

void WireDecoder::Fail(const std::string& what) {
  in_progress_ = false;
  awaiting_values_ = false;
  msg_ = Message();
  control_.clear();
  throw TransportError(std::string("malformed message from endpoint ") + std::to_string(sender_) +
                       ": " + what);
}

void WireDecoder::StartMessage(std::span<const std::uint8_t> chunk) {
  if (chunk.size() < kPrefixBytes) {
    Fail(std::string("truncated: ") + std::to_string(chunk.size()) +
         " bytes, no room for the header length");
  }
  const std::uint32_t header_bytes = LoadU32(chunk.data());
  if (header_bytes > kWireMaxHeaderBytes) {
    Fail(std::string("header length ") + std::to_string(header_bytes) + " exceeds the maximum of " +
         std::to_string(kWireMaxHeaderBytes));
  }
  if (kPrefixBytes + header_bytes > chunk.size()) {
    Fail(std::string("truncated: header of ") + std::to_string(header_bytes) +
         " bytes in a chunk of " + std::to_string(chunk.size()));
  }
  pb::WireHeader h;
  if (!h.ParseFromArray(chunk.data() + kPrefixBytes, static_cast<int>(header_bytes))) {
    Fail("header does not parse");
  }
  if (const std::string fault = HeaderFault(h); !fault.empty()) Fail(fault);
  const std::optional<std::uint64_t> total = StreamBytes(h, header_bytes);
  if (!total) {
    Fail(std::string("array sizes too large: ") + std::to_string(h.num_keys()) + " keys, " +
         std::to_string(h.num_vals()) + " values, " + std::to_string(h.num_counts()) + " counts");
  }
  if (h.total_bytes() != *total) {
    Fail(std::string("header states ") + std::to_string(h.total_bytes()) +
         " bytes but its arrays need " + std::to_string(*total));
  }
  const std::uint64_t chunk_bytes = h.chunk_bytes();
  if (chunk_bytes == 0 || chunk_bytes > *total ||
      (chunk_bytes < *total && chunk_bytes < kWireMinChunkBytes)) {
    Fail(std::string("invalid chunk size ") + std::to_string(chunk_bytes) + " for a stream of " +
         std::to_string(*total) + " bytes");
  }
  if (chunk.size() != chunk_bytes) {
    Fail(std::string("first chunk has ") + std::to_string(chunk.size()) +
         " bytes, the header says " + std::to_string(chunk_bytes));
  }
  total_bytes_ = *total;
  chunk_bytes_ = chunk_bytes;
  Prepare(h, header_bytes);
}

void WireDecoder::Prepare(const pb::WireHeader& h, std::uint64_t header_bytes) {
  control_frame_ = h.channel() == kControlChannel;
  msg_ = Message();
  msg_.kind = static_cast<MsgKind>(h.kind());
  msg_.sender = sender_;
  msg_.request_id = h.request_id();
  msg_.bsp_step = h.bsp_step();
  msg_.flags = DataFlags::FromBits(h.flags());
  msg_.ref = h.ref();
  vals_apart_ = h.vals_apart();
  vals_checksum_ = h.vals_checksum();
  value_bytes_ = h.vals_apart() ? h.num_vals() * sizeof(float) : 0;
  value_chunk_bytes_ = h.vals_chunk_bytes();
  values_received_ = 0;
  control_.clear();
  try {
    // Reserve only: pages are touched as chunks arrive (see Scatter).
    control_.reserve(static_cast<std::size_t>(h.num_control_bytes()));
    msg_.keys.reserve(static_cast<std::size_t>(h.num_keys()));
    const auto num_vals = static_cast<std::size_t>(h.num_vals());
    // A pooled vector already has num_vals values (stale ones, all overwritten below).
    if (pool_ != nullptr) msg_.vals = pool_->Take(num_vals, ValueBufferPool::IfNoneFits::kAllocate);
    msg_.vals.reserve(num_vals);
    msg_.counts.reserve(static_cast<std::size_t>(h.num_counts()));
  } catch (const std::bad_alloc&) {
    Fail(std::string("cannot allocate a message of ") + std::to_string(total_bytes_) + " bytes");
  }
  control_at_ = kPrefixBytes + header_bytes;
  keys_at_ = control_at_ + h.num_control_bytes();
  vals_at_ = keys_at_ + h.num_keys() * sizeof(Key);
  counts_at_ = vals_at_ + (vals_apart_ ? 0 : h.num_vals() * sizeof(float));
  trailer_at_ = counts_at_ + h.num_counts() * sizeof(std::uint32_t);
  received_ = 0;
  hash_.Reset();
  in_progress_ = true;
}

void WireDecoder::Copy(std::span<const std::uint8_t> chunk) {
  for (std::size_t off = 0; off < chunk.size(); off += kHashBlock) {
    const std::span<const std::uint8_t> block =
        chunk.subspan(off, std::min(kHashBlock, chunk.size() - off));
    const std::uint64_t at = received_;
    CopyBlock(block);
    if (at < trailer_at_) {
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), trailer_at_ - at));
      hash_.Update(block.data(), n);
    }
  }
}

void WireDecoder::CopyBlock(std::span<const std::uint8_t> chunk) {
  const std::uint64_t at = received_;
  Scatter(chunk, at, control_at_, keys_at_, &control_);
  Scatter(chunk, at, keys_at_, vals_at_, &msg_.keys);
  Scatter(chunk, at, vals_at_, counts_at_, &msg_.vals);
  Scatter(chunk, at, counts_at_, trailer_at_, &msg_.counts);
  const std::uint64_t lo = std::max(at, trailer_at_);
  const std::uint64_t hi = at + chunk.size();  // never past total_bytes_ (checked by Add)
  if (lo < hi) std::memcpy(trailer_ + (lo - trailer_at_), chunk.data() + (lo - at), hi - lo);
  received_ += chunk.size();
}

std::optional<Received> WireDecoder::Add(std::span<const std::uint8_t> chunk) {
  if (awaiting_values_) {
    const std::span<std::uint8_t> into = NextValueChunk();
    if (chunk.size() != into.size()) {
      Fail(std::string("value chunk at byte ") + std::to_string(values_received_) + " of " +
           std::to_string(value_bytes_) + " has " + std::to_string(chunk.size()) +
           " bytes, expected " + std::to_string(into.size()));
    }
    std::memcpy(into.data(), chunk.data(), chunk.size());
    return ValueChunkWritten();
  }
  if (!in_progress_) {
    StartMessage(chunk);
  } else {
    const std::uint64_t expected = std::min(chunk_bytes_, total_bytes_ - received_);
    if (chunk.size() != expected) {
      Fail(std::string("chunk at byte ") + std::to_string(received_) + " of " +
           std::to_string(total_bytes_) + " has " + std::to_string(chunk.size()) +
           " bytes, expected " + std::to_string(expected));
    }
  }
  Copy(chunk);
  if (received_ < total_bytes_) return std::nullopt;
  if (vals_apart_) {
    AwaitValues();
    return std::nullopt;
  }
  return Finish();
}

void WireDecoder::AwaitValues() {
  std::uint64_t stated;
  std::memcpy(&stated, trailer_, kTrailerBytes);
  if (stated != hash_.Digest()) Fail("checksum mismatch");
  hash_.Reset();
  awaiting_values_ = true;
}

std::span<std::uint8_t> WireDecoder::NextValueChunk() {
  if (!awaiting_values_) return {};
  const std::uint64_t n = std::min(value_chunk_bytes_, value_bytes_ - values_received_);
  const auto floats =
      static_cast<std::size_t>((values_received_ + n + sizeof(float) - 1) / sizeof(float));
  try {
    // Grows only as far as the chunks reach (a pooled array already has every value).
    if (msg_.vals.size() < floats) msg_.vals.resize(floats);
  } catch (const std::bad_alloc&) {
    Fail(std::string("cannot allocate ") + std::to_string(value_bytes_) + " bytes of values");
  }
  return {reinterpret_cast<std::uint8_t*>(msg_.vals.data()) + values_received_,
          static_cast<std::size_t>(n)};
}

std::optional<Received> WireDecoder::ValueChunkWritten() {
  const std::span<const std::uint8_t> written = NextValueChunk();
  if (written.empty()) throw std::logic_error("WireDecoder::ValueChunkWritten: none expected");
  hash_.Update(written.data(), written.size());
  values_received_ += written.size();
  if (values_received_ < value_bytes_) return std::nullopt;
  if (hash_.Digest() != vals_checksum_) Fail("value checksum mismatch");
  awaiting_values_ = false;
  in_progress_ = false;
  return Received(std::in_place_type<Message>, std::move(msg_));
}

Received WireDecoder::Finish() {
  std::uint64_t stated;
  std::memcpy(&stated, trailer_, kTrailerBytes);
  if (stated != hash_.Digest()) Fail("checksum mismatch");
  in_progress_ = false;
  if (!control_frame_) return Received(std::in_place_type<Message>, std::move(msg_));
  ControlMessage c;
  c.sender = sender_;
  if (!c.body.ParseFromArray(control_.data(), static_cast<int>(control_.size()))) {
    Fail("control message does not parse");
  }
  if (c.body.body_case() == pb::Control::BODY_NOT_SET) Fail("control message of unknown type");
  control_.clear();
  return Received(std::in_place_type<ControlMessage>, std::move(c));
}

std::vector<std::uint8_t> EncodeMessage(const Message& msg) {
  WireEncoder encoder(msg, std::numeric_limits<std::size_t>::max());
  std::vector<std::uint8_t> out(encoder.ChunkSize(0));
  encoder.WriteChunk(0, out.data());
  return out;
}

std::vector<std::uint8_t> EncodeControl(const pb::Control& msg) {
  WireEncoder encoder(msg, std::numeric_limits<std::size_t>::max());
  std::vector<std::uint8_t> out(encoder.ChunkSize(0));
  encoder.WriteChunk(0, out.data());
  return out;
}

Received DecodeFrame(std::span<const std::uint8_t> bytes, int sender) {
  WireDecoder decoder(sender);
  std::optional<Received> m = decoder.Add(bytes);
  if (!m) {
    throw TransportError(std::string("malformed message from endpoint ") + std::to_string(sender) +
                         ": first chunk of a multi-chunk stream where one whole message was "
                         "expected");
  }
  return std::move(*m);
}

namespace {
[[noreturn]] void WrongChannel(int sender, const char* expected) {
  throw TransportError(std::string("malformed message from endpoint ") + std::to_string(sender) +
                       ": not a " + expected + " frame");
}
}  // namespace

Message DecodeMessage(std::span<const std::uint8_t> bytes, int sender) {
  Received r = DecodeFrame(bytes, sender);
  if (!std::holds_alternative<Message>(r)) WrongChannel(sender, "data");
  return std::get<Message>(std::move(r));
}

ControlMessage DecodeControl(std::span<const std::uint8_t> bytes, int sender) {
  Received r = DecodeFrame(bytes, sender);
  if (!std::holds_alternative<ControlMessage>(r)) WrongChannel(sender, "control");
  return std::get<ControlMessage>(std::move(r));
}

}  // namespace fmps
