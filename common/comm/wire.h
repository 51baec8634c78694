// The one codec between messages and bytes (used by the MPI transport), for both channels.
//
// Stream layout (see WireHeader in common/proto/fmps.proto):
//   u32 LE header length | serialized WireHeader | num_control_bytes of a serialized Control
//   | num_keys u64 LE keys | num_vals f32 LE vals | num_counts u32 LE counts
//   | u64 LE XXH3-64 checksum of every byte before it.
// A data frame (channel 0) has no control bytes; a control frame (channel 1) has only them
// (kind, request_id, bsp_step, flags, ref all zero, no arrays). The data path serializes
// only the small header; the arrays are copied as they are.
// A stream longer than the sender's chunk size is cut into chunks of exactly that size (the
// last one shorter), sent in order over one ordered channel; only the first chunk holds the
// header, which also states the total size and the chunk size, so the receiver checks every
// chunk's size as it arrives.
// Values apart (a data frame's option, for big value arrays): the stream leaves the values
// out (num_vals still states their count) and its header carries their XXH3-64 and the size
// of their chunks; right after the stream, over the same ordered channel, the value bytes
// follow as chunks of that size (the last one shorter), sent straight from the message's
// array and received straight into the destination array, so a value is never copied by
// the codec. The receiver checks each value chunk's size and the values' checksum.
//
// Decoding validates everything (header length and parse, version, channel, kind, the flags
// the kind allows, that the sizes add up exactly without overflow, every chunk's size, the
// checksum, that a control body parses and has a known type) and throws TransportError
// naming the sender and the fault. Malformed input never crashes and never yields a Message.
// Memory for the arrays is reserved up front but only touched as chunks arrive, so a forged
// huge size costs nothing until real bytes back it (values decoded into a pooled vector
// touch only memory that vector already owns).
//
// The numeric arrays are copied with memcpy: the format is little-endian and so must be the
// host (checked at compile time).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/comm/transport.h"

namespace fmps::pb {
class WireHeader;
}

namespace fmps {

// Smallest allowed chunk size of a multi-chunk stream (the header always fits in it).
inline constexpr std::size_t kWireMinChunkBytes = 256;
// Largest chunk that fits MPI's int byte count: 2^31 - 4096.
inline constexpr std::size_t kWireMaxChunkBytes = (std::size_t{1} << 31) - 4096;
// Longest serialized WireHeader accepted (the real one is under 100 bytes).
inline constexpr std::size_t kWireMaxHeaderBytes = 128;
// Largest stream accepted (1 TiB): bounds every size computation far below overflow.
inline constexpr std::uint64_t kWireMaxMessageBytes = std::uint64_t{1} << 40;
// Largest serialized Control accepted (64 MiB; real ones are under a few KiB).
inline constexpr std::uint64_t kWireMaxControlBytes = std::uint64_t{64} << 20;

// Value arrays kept for reuse: a decoder given a pool decodes a message's values into one of
// its vectors instead of a fresh allocation, which would page-fault and be zero-filled before
// the copy (an FFM pull reply or push is ~16 MB). The MPI transport puts the value arrays of
// the messages it has sent into its pool, so each rank's sends feed its receives.
// Not thread-safe (one owner). Holds at most max_buffers vectors (Put drops the smallest
// beyond that) of at most max_buffer_floats floats of capacity each (bigger ones, such as a
// dump's chunks, are not kept), so it retains at most max_buffers * max_buffer_floats * 4
// bytes. Cost: O(max_buffers) per call, no copies.
class ValueBufferPool {
 public:
  ValueBufferPool(std::size_t max_buffers, std::size_t max_buffer_floats)
      : max_buffers_(max_buffers), max_buffer_floats_(max_buffer_floats) {}
  // Keeps `buffer`'s storage (its contents are garbage from now on); empty ones are dropped.
  void Put(std::vector<float>&& buffer);
  // What Take returns when no kept vector fits.
  enum class IfNoneFits {
    kEmpty,     // an empty vector without storage
    kAllocate,  // an empty vector with capacity for n (one the pool would keep: 1/8 slack
                // and huge pages, see ReserveHugeFloats; a bigger one: exactly n, plain pages)
  };
  // A vector of size n: a kept one whose capacity fits n (the smallest such) with its stale
  // contents (zero-filled only where it grows past its old size), or else what `none_fits`
  // says. The caller overwrites all n values.
  std::vector<float> Take(std::size_t n, IfNoneFits none_fits);
  std::size_t size() const { return buffers_.size(); }

 private:
  std::size_t max_buffers_;
  std::size_t max_buffer_floats_;
  std::vector<std::vector<float>> buffers_;
};

// An XXH3-64 over bytes fed block by block, in order: the same 64 bits as the one-shot hash
// of all of them. The codec hashes its streams with it, and a writer of a value array may
// hash each block right after writing it, while it is in cache, to state the values'
// checksum (what the wire states for values apart; see Message::vals_checksum). Uses the
// codec's XXH3 build. Not thread-safe; movable. Cost: one pass over the bytes fed.
class StreamChecksum {
 public:
  StreamChecksum();
  ~StreamChecksum();
  StreamChecksum(StreamChecksum&&) noexcept;
  StreamChecksum& operator=(StreamChecksum&&) noexcept;
  StreamChecksum(const StreamChecksum&) = delete;
  StreamChecksum& operator=(const StreamChecksum&) = delete;
  // Starts over (nothing fed).
  void Reset();
  // Feeds the next bytes.
  void Update(const void* bytes, std::size_t n);
  void Update(std::span<const float> vals) { Update(vals.data(), vals.size_bytes()); }
  // The hash of everything fed so far (feeding may go on).
  std::uint64_t Digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct WireEncodeOptions {
  // Largest chunk (>= kWireMinChunkBytes), of the stream and of the values sent apart.
  std::size_t chunk_bytes = kWireMaxChunkBytes;
  // Send a data frame's values apart (see the top of this file); ignored without values.
  bool values_apart = false;
  // Largest value chunk when apart (0: chunk_bytes); in [kWireMinChunkBytes, chunk_bytes].
  std::size_t value_chunk_bytes = 0;
};

// Encodes one message as a stream of chunks. Construction serializes the header (and a
// control body): O(header), plus one checksum pass over the values if they go apart (none
// if msg.vals_checksum is set: stated as theirs, unchecked; the receiver checks). Chunks are
// produced one at a time and IN ORDER (chunk 0, 1, ..., each once): the arrays are checksummed
// block by block right after each block is copied (one pass over the values), and the checksum
// lands in the trailer of the last chunk. So sending a huge message needs only one chunk of extra
// memory at a time. Not thread-safe.
class WireEncoder {
 public:
  // `msg` must outlive the encoder, unchanged. `chunk_bytes` >= kWireMinChunkBytes (else
  // TransportError); a stream no longer than chunk_bytes is one chunk. Throws TransportError
  // if msg.kind is not a MsgKind, msg.flags are not allowed for it, or the stream would
  // exceed kWireMaxMessageBytes. msg.sender is not encoded: the receiver knows the sender.
  WireEncoder(const Message& msg, std::size_t chunk_bytes);
  WireEncoder(const Message& msg, const WireEncodeOptions& options);
  // A control frame. Throws TransportError if msg has no body or is over
  // kWireMaxControlBytes. The encoder keeps its own serialized copy.
  WireEncoder(const pb::Control& msg, std::size_t chunk_bytes);

  std::uint64_t total_bytes() const { return total_bytes_; }
  std::size_t num_chunks() const { return num_chunks_; }
  // Size of chunk i (< num_chunks()).
  std::size_t ChunkSize(std::size_t i) const;
  // Writes the ChunkSize(i) bytes of chunk i to out. O(ChunkSize(i)). Chunks must be
  // written in order: i must be the number of chunks written so far (else std::logic_error).
  void WriteChunk(std::size_t i, std::uint8_t* out);

  // Values apart: the chunks of value bytes to send after the stream's chunks, in order
  // (0 of them otherwise). ValueChunk(i) points into msg.vals itself: no copy, and msg.vals
  // must stay unchanged (its buffer may move with the vector) until each chunk is sent.
  std::size_t num_value_chunks() const { return num_value_chunks_; }
  std::span<const std::uint8_t> ValueChunk(std::size_t i) const;

  WireEncoder(WireEncoder&&) noexcept;
  ~WireEncoder();

 private:
  // Serializes the header; msg_ and control_ are set.
  void Init(std::uint32_t channel, std::size_t chunk_bytes);
  // Copies stream bytes [at, at + len) to out (the trailer once the hash is final).
  void Gather(std::uint64_t at, std::size_t len, std::uint8_t* out) const;

  const Message& msg_;          // a data frame's message (an empty one for control frames)
  std::string control_;         // a control frame's serialized body
  std::string head_;            // u32 length prefix + serialized header
  std::uint64_t checksum_ = 0;  // valid once every byte before the trailer is hashed
  std::uint64_t trailer_at_ = 0;
  std::uint64_t total_bytes_ = 0;
  std::size_t chunk_bytes_ = 0;  // as stated in the header: total_bytes_ if one chunk
  std::size_t num_chunks_ = 0;
  std::size_t next_chunk_ = 0;   // chunks written so far
  std::size_t inline_vals_ = 0;  // values in the stream: msg.vals.size() unless apart
  std::size_t value_chunk_bytes_ = 0;
  std::size_t num_value_chunks_ = 0;
  StreamChecksum hash_;  // over the stream bytes written so far
};

// Reassembles the chunk streams of one sender: feed its chunks in the order they were sent.
// Holds the partial message between chunks. Not thread-safe; one decoder per sender.
class WireDecoder {
 public:
  // `sender` becomes the messages' sender and is named in errors. With a `pool` (which must
  // outlive the decoder), a data message's values are decoded into a vector taken from it
  // (ValueBufferPool::Take): the message holds exactly the values sent, never stale ones.
  explicit WireDecoder(int sender, ValueBufferPool* pool = nullptr);
  WireDecoder(WireDecoder&&) noexcept;
  WireDecoder& operator=(WireDecoder&&) noexcept;
  ~WireDecoder();

  // Consumes the next chunk. Returns the message (data or control) once its last chunk is
  // in, else nullopt. Throws TransportError on malformed input, and then forgets the partial
  // message. O(chunk bytes): each chunk is checksummed as it is copied in.
  std::optional<Received> Add(std::span<const std::uint8_t> chunk);

  // Values apart: once a message's stream is in (and checked), the bytes its next value
  // chunk must fill, inside the message's own value array (taken from the pool: the final
  // destination); empty when no value chunk is expected. The transport receives the chunk
  // straight into them and then calls ValueChunkWritten(); a chunk of any other size must go
  // through Add (which rejects it). Throws TransportError if the array cannot be allocated.
  std::span<std::uint8_t> NextValueChunk();
  // The NextValueChunk() bytes have been written: checksums them and returns the message
  // once its last value chunk is in (its checksum verified), else nullopt. Throws
  // TransportError on a checksum mismatch.
  std::optional<Received> ValueChunkWritten();

  // True between the first and last chunk of a multi-chunk message (value chunks included).
  bool in_progress() const { return in_progress_; }
  int sender() const { return sender_; }

 private:
  void StartMessage(std::span<const std::uint8_t> chunk);
  // Sets up msg_, the array offsets and the reservations for the stream `h` describes.
  void Prepare(const pb::WireHeader& h, std::uint64_t header_bytes);
  // Copies the chunk into the message and feeds it to the running checksum, block by block.
  void Copy(std::span<const std::uint8_t> chunk);
  void CopyBlock(std::span<const std::uint8_t> chunk);
  // The finished message (checksum verified).
  Received Finish();
  // Checks the stream's checksum and starts expecting the values apart.
  void AwaitValues();
  [[noreturn]] void Fail(const std::string& what);

  int sender_;
  bool in_progress_ = false;
  bool control_frame_ = false;
  Message msg_;                        // being assembled (data frame)
  std::vector<std::uint8_t> control_;  // being assembled (control frame)
  std::uint64_t control_at_ = 0;       // stream offsets of the control body, arrays, trailer
  std::uint64_t keys_at_ = 0;
  std::uint64_t vals_at_ = 0;
  std::uint64_t counts_at_ = 0;
  std::uint64_t trailer_at_ = 0;
  std::uint64_t total_bytes_ = 0;
  std::uint64_t chunk_bytes_ = 0;
  std::uint64_t received_ = 0;  // stream bytes consumed so far
  std::uint8_t trailer_[8] = {};
  bool vals_apart_ = false;          // the message being assembled sends its values apart
  bool awaiting_values_ = false;     // its stream is in; value chunks are expected
  std::uint64_t vals_checksum_ = 0;  // stated by the header
  std::uint64_t value_bytes_ = 0;
  std::uint64_t value_chunk_bytes_ = 0;
  std::uint64_t values_received_ = 0;  // value bytes written so far
  ValueBufferPool* pool_ = nullptr;
  StreamChecksum hash_;  // over the stream bytes received so far, reset per message
};

// The whole stream of `msg` as one buffer (one chunk). O(message bytes).
std::vector<std::uint8_t> EncodeMessage(const Message& msg);
std::vector<std::uint8_t> EncodeControl(const pb::Control& msg);

// Decodes one complete single-chunk stream from `sender`. Throws TransportError if `bytes`
// is not exactly one valid stream.
Received DecodeFrame(std::span<const std::uint8_t> bytes, int sender);
// The same, also throwing TransportError if the stream is not a data (resp. control) frame.
Message DecodeMessage(std::span<const std::uint8_t> bytes, int sender);
ControlMessage DecodeControl(std::span<const std::uint8_t> bytes, int sender);

}  // namespace fmps
