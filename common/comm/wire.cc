#include "common/comm/wire.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include "common/base/error.h"
#include "fmps.pb.h"

namespace fmps {

static_assert(std::endian::native == std::endian::little,
              "the wire format copies little-endian arrays verbatim");
static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4);
static_assert(sizeof(Key) == 8);

namespace {

constexpr std::uint32_t kWireVersion = 1;
constexpr std::size_t kPrefixBytes = 4;   // u32 header length
constexpr std::size_t kTrailerBytes = 8;  // u64 checksum
constexpr std::uint32_t kMinKind = static_cast<std::uint32_t>(MsgKind::kPull);
constexpr std::uint32_t kMaxKind = static_cast<std::uint32_t>(MsgKind::kStatsReply);

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

void Hash(XXH3_state_t* state, const void* data, std::size_t size) {
  if (size > 0) XXH3_64bits_update(state, data, size);
}

// Checksum of the stream up to (not including) its trailer.
std::uint64_t StreamChecksum(std::string_view head, const Message& m) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  Hash(&state, head.data(), head.size());
  Hash(&state, m.keys.data(), m.keys.size() * sizeof(Key));
  Hash(&state, m.vals.data(), m.vals.size() * sizeof(float));
  Hash(&state, m.counts.data(), m.counts.size() * sizeof(std::uint32_t));
  return XXH3_64bits_digest(&state);
}

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
void Gather(const Segment& seg, std::uint64_t at, std::uint64_t len, std::uint8_t* out) {
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

}  // namespace

// ---- WireEncoder ----

WireEncoder::WireEncoder(const Message& msg, std::size_t chunk_bytes) : msg_(msg) {
  if (chunk_bytes < kWireMinChunkBytes) {
    throw TransportError(std::string("wire chunk size ") + std::to_string(chunk_bytes) +
                         " is below the " + std::to_string(kWireMinChunkBytes) + "-byte minimum");
  }
  const auto kind = static_cast<std::uint32_t>(msg.kind);
  if (kind < kMinKind || kind > kMaxKind) {
    throw TransportError(std::string("cannot encode a message of unknown kind ") +
                         std::to_string(kind));
  }
  pb::WireHeader h;
  h.set_version(kWireVersion);
  h.set_kind(kind);
  h.set_request_id(msg.request_id);
  h.set_step(msg.step);
  h.set_flags(msg.flags);
  h.set_ref(msg.ref);
  h.set_num_keys(msg.keys.size());
  h.set_num_vals(msg.vals.size());
  h.set_num_counts(msg.counts.size());
  // fixed64 fields: any non-zero placeholder gives the final encoded length.
  h.set_total_bytes(1);
  h.set_chunk_bytes(1);
  const std::size_t header_bytes = h.ByteSizeLong();
  std::uint64_t total = kPrefixBytes + header_bytes + kTrailerBytes;
  if (!AddArray(&total, msg.keys.size(), sizeof(Key)) ||
      !AddArray(&total, msg.vals.size(), sizeof(float)) ||
      !AddArray(&total, msg.counts.size(), sizeof(std::uint32_t))) {
    throw TransportError(std::string("message too large to encode: ") +
                         std::to_string(msg.keys.size()) + " keys, " +
                         std::to_string(msg.vals.size()) + " values, " +
                         std::to_string(msg.counts.size()) + " counts");
  }
  total_bytes_ = total;
  chunk_bytes_ = total <= chunk_bytes ? static_cast<std::size_t>(total) : chunk_bytes;
  num_chunks_ = static_cast<std::size_t>((total + chunk_bytes_ - 1) / chunk_bytes_);
  h.set_total_bytes(total_bytes_);
  h.set_chunk_bytes(chunk_bytes_);
  const auto header_len = static_cast<std::uint32_t>(header_bytes);
  head_.resize(kPrefixBytes + header_bytes);
  std::memcpy(head_.data(), &header_len, kPrefixBytes);
  if (h.ByteSizeLong() != header_bytes ||
      !h.SerializeToArray(head_.data() + kPrefixBytes, static_cast<int>(header_bytes))) {
    throw TransportError("internal error: wire header serialization failed");
  }
  checksum_ = StreamChecksum(head_, msg_);
}

std::size_t WireEncoder::ChunkSize(std::size_t i) const {
  const std::uint64_t begin = static_cast<std::uint64_t>(i) * chunk_bytes_;
  return static_cast<std::size_t>(std::min<std::uint64_t>(chunk_bytes_, total_bytes_ - begin));
}

void WireEncoder::WriteChunk(std::size_t i, std::uint8_t* out) const {
  const std::uint64_t at = static_cast<std::uint64_t>(i) * chunk_bytes_;
  const std::size_t len = ChunkSize(i);
  const std::uint64_t keys_at = head_.size();
  const std::uint64_t vals_at = keys_at + msg_.keys.size() * sizeof(Key);
  const std::uint64_t counts_at = vals_at + msg_.vals.size() * sizeof(float);
  const std::uint64_t trailer_at = counts_at + msg_.counts.size() * sizeof(std::uint32_t);
  std::uint8_t trailer[kTrailerBytes];
  std::memcpy(trailer, &checksum_, kTrailerBytes);
  const Segment segments[] = {
      {0, reinterpret_cast<const std::uint8_t*>(head_.data()), head_.size()},
      {keys_at, BytesOf(msg_.keys), vals_at - keys_at},
      {vals_at, BytesOf(msg_.vals), counts_at - vals_at},
      {counts_at, BytesOf(msg_.counts), trailer_at - counts_at},
      {trailer_at, trailer, kTrailerBytes},
  };
  for (const Segment& s : segments) Gather(s, at, len, out);
}

// ---- WireDecoder ----

WireDecoder::WireDecoder(int sender) : sender_(sender) {}

void WireDecoder::Fail(const std::string& what) {
  in_progress_ = false;
  msg_ = Message();
  head_.clear();
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
  if (h.version() != kWireVersion)
    Fail(std::string("unsupported version ") + std::to_string(h.version()));
  if (h.kind() < kMinKind || h.kind() > kMaxKind) {
    Fail(std::string("unknown message kind ") + std::to_string(h.kind()));
  }
  std::uint64_t total = kPrefixBytes + header_bytes + kTrailerBytes;
  if (!AddArray(&total, h.num_keys(), sizeof(Key)) ||
      !AddArray(&total, h.num_vals(), sizeof(float)) ||
      !AddArray(&total, h.num_counts(), sizeof(std::uint32_t))) {
    Fail(std::string("array sizes too large: ") + std::to_string(h.num_keys()) + " keys, " +
         std::to_string(h.num_vals()) + " values, " + std::to_string(h.num_counts()) + " counts");
  }
  if (h.total_bytes() != total) {
    Fail(std::string("header states ") + std::to_string(h.total_bytes()) +
         " bytes but its arrays need " + std::to_string(total));
  }
  const std::uint64_t chunk_bytes = h.chunk_bytes();
  if (chunk_bytes == 0 || chunk_bytes > total ||
      (chunk_bytes < total && chunk_bytes < kWireMinChunkBytes)) {
    Fail(std::string("invalid chunk size ") + std::to_string(chunk_bytes) + " for a stream of " +
         std::to_string(total) + " bytes");
  }
  if (chunk.size() != chunk_bytes) {
    Fail(std::string("first chunk has ") + std::to_string(chunk.size()) +
         " bytes, the header says " + std::to_string(chunk_bytes));
  }
  msg_ = Message();
  msg_.kind = static_cast<MsgKind>(h.kind());
  msg_.sender = sender_;
  msg_.request_id = h.request_id();
  msg_.step = h.step();
  msg_.flags = h.flags();
  msg_.ref = h.ref();
  try {
    // Reserve only: pages are touched as chunks arrive (see Scatter).
    msg_.keys.reserve(static_cast<std::size_t>(h.num_keys()));
    msg_.vals.reserve(static_cast<std::size_t>(h.num_vals()));
    msg_.counts.reserve(static_cast<std::size_t>(h.num_counts()));
  } catch (const std::bad_alloc&) {
    Fail(std::string("cannot allocate a message of ") + std::to_string(total) + " bytes");
  }
  head_.assign(reinterpret_cast<const char*>(chunk.data()), kPrefixBytes + header_bytes);
  keys_at_ = head_.size();
  vals_at_ = keys_at_ + h.num_keys() * sizeof(Key);
  counts_at_ = vals_at_ + h.num_vals() * sizeof(float);
  trailer_at_ = counts_at_ + h.num_counts() * sizeof(std::uint32_t);
  total_bytes_ = total;
  chunk_bytes_ = chunk_bytes;
  received_ = 0;
  in_progress_ = true;
}

void WireDecoder::Copy(std::span<const std::uint8_t> chunk) {
  const std::uint64_t at = received_;
  Scatter(chunk, at, keys_at_, vals_at_, &msg_.keys);
  Scatter(chunk, at, vals_at_, counts_at_, &msg_.vals);
  Scatter(chunk, at, counts_at_, trailer_at_, &msg_.counts);
  const std::uint64_t lo = std::max(at, trailer_at_);
  const std::uint64_t hi = at + chunk.size();  // never past total_bytes_ (checked by Add)
  if (lo < hi) std::memcpy(trailer_ + (lo - trailer_at_), chunk.data() + (lo - at), hi - lo);
  received_ += chunk.size();
}

std::optional<Message> WireDecoder::Add(std::span<const std::uint8_t> chunk) {
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
  std::uint64_t stated;
  std::memcpy(&stated, trailer_, kTrailerBytes);
  if (stated != StreamChecksum(head_, msg_)) Fail("checksum mismatch");
  in_progress_ = false;
  head_.clear();
  return std::move(msg_);
}

std::vector<std::uint8_t> EncodeMessage(const Message& msg) {
  WireEncoder encoder(msg, std::numeric_limits<std::size_t>::max());
  std::vector<std::uint8_t> out(encoder.ChunkSize(0));
  encoder.WriteChunk(0, out.data());
  return out;
}

Message DecodeMessage(std::span<const std::uint8_t> bytes, int sender) {
  WireDecoder decoder(sender);
  std::optional<Message> m = decoder.Add(bytes);
  if (!m) {
    throw TransportError(std::string("malformed message from endpoint ") + std::to_string(sender) +
                         ": first chunk of a multi-chunk stream where one whole message was "
                         "expected");
  }
  return std::move(*m);
}

}  // namespace fmps
