// Record files: the framing shared by model files (common/model/model_file.h) and checkpoint
// shards (server/store/checkpoint_shard.h). A file is 8 magic bytes, then records, each a
// little-endian uint32 byte length (at most kMaxRecordBytes) and a serialized protobuf message.
// Writer and reader keep the XXH3-64 of every byte; each format ends with a final record of its
// own message type carrying the digest of every byte before it, which the reader checks
// (CheckFinal). What the records hold is the caller's business.
//
// Errors name the file first: ModelError "<name>: <what>" on one line for a damaged or foreign
// file (protobuf's own logging is silenced while parsing), IoError for the file system.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t by value
#include <xxhash.h>

namespace google::protobuf {
class MessageLite;
}

namespace fmps {

inline constexpr std::uint32_t kMaxRecordBytes = 1u << 30;

// One file format: its magic (8 bytes) and what its files are called in messages.
struct RecordFileKind {
  std::string_view magic;  // exactly 8 bytes
  std::string_view noun;   // e.g. "model file": "damaged model file (checksum mismatch)"
};

// Writes a record file, to a path or to a string.
// - To a path: the bytes go to a temp file "<path>.tmp.<pid>.<n>" in the same directory (n
//   from a process-wide atomic counter, so concurrent writers never share a temp file).
//   Commit() fsyncs it, renames it into place and fsyncs the directory: `path` is either
//   absent/old or complete. A writer destroyed before Commit (an exception) removes the temp.
// - To a string: the same bytes go to *sink (borrowed, cleared first); nothing is touched on
//   disk and Commit only ends the writing.
// - Bytes are gathered in a block buffer of kWriteBlockBytes and written a whole block at a
//   time, to a file opened with O_DIRECT where the file system allows it (else buffered):
//   the bytes go from that buffer to the disk without a copy into the page cache (for a model
//   of hundreds of MB that copy, into memory the system had not handed out before, cost more
//   CPU than everything else of the save). Commit writes the last partial block buffered.
// Thread safety: a writer belongs to one thread; distinct writers are independent.
// Errors: IoError naming the temp file or the path. Cost: one serialization into a reused
// buffer per Write, a copy into the block buffer, hashing as it fills (cache-hot), and one
// write() per block.
class RecordWriter {
 public:
  RecordWriter(const std::string& path, const RecordFileKind& kind);
  RecordWriter(std::string* sink, const RecordFileKind& kind);
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  void Write(const google::protobuf::MessageLite& record);
  // Appends raw bytes: a caller that encodes a record itself (its 4-byte length, then the
  // message's canonical encoding) in pieces, to spare copies of large arrays.
  void WriteBytes(const void* data, std::size_t n);
  // XXH3-64 and count of every byte written so far (magic included).
  std::uint64_t digest();
  std::uint64_t bytes() const { return bytes_; }
  // Writes the final record, a `Chunk` (the format's chunk message) with last = true, no keys
  // and the digest of every byte before it, then commits: the file is complete.
  template <typename Chunk>
  void Finish() {
    Seal<Chunk>();
    Commit();
  }
  // Finish in two steps: Seal writes that final record and makes the temp file durable
  // (Sync); the file is complete but not yet at `path` until Commit. A writer destroyed
  // between the two still removes the temp file.
  template <typename Chunk>
  void Seal() {
    Chunk final;
    final.set_last(true);
    final.set_checksum(digest());
    Write(final);
    Sync();
  }
  // Writes what is buffered, fsyncs and closes the temp file; nothing may be written after.
  // Idempotent; a no-op for a string sink.
  void Sync();
  // Sync() (unless done), then renames the temp file into place and fsyncs the directory.
  void Commit();

  static constexpr std::size_t kWriteBlockBytes = std::size_t{4} << 20;

 private:
  // Hashes the buffered bytes not yet hashed.
  void HashBuffered();
  // Clears O_DIRECT: what follows is written through the page cache.
  void EndDirect();
  // Writes block_[0, n) to the file (n a multiple of the direct-I/O alignment unless the
  // file is no longer direct) and empties the buffer.
  void WriteBlock(std::size_t n);
  std::string path_;
  std::string tmp_path_;
  std::string* sink_ = nullptr;
  int fd_ = -1;
  bool committed_ = false;
  bool synced_ = false;  // Sync() done: the temp file is complete and closed
  XXH3_state_t hash_;
  std::uint64_t bytes_ = 0;
  std::string record_;      // the record being written: 4 length bytes, then the message
  bool direct_ = false;     // fd_ has O_DIRECT
  char* block_ = nullptr;   // kWriteBlockBytes, page-aligned (file mode only)
  std::size_t used_ = 0;    // bytes in block_
  std::size_t hashed_ = 0;  // of which hashed
};

// Reads a record file front to back (Start() rewinds for another pass), hashing every byte.
// Each record length is checked against the bytes left in the file before its buffer is
// allocated, so allocation is bounded by the file. The file must not change while it is read.
// Thread safety: a reader belongs to one thread. Messages: see the file comment; "<name>" is
// the path, or the name given with the bytes.
class RecordReader {
 public:
  // Opens `path` (IoError "cannot open <noun> <path>: <reason>").
  RecordReader(const std::string& path, const RecordFileKind& kind);
  // Reads the file held in `bytes` (borrowed), called `name` in messages.
  RecordReader(std::string_view bytes, const std::string& name, const RecordFileKind& kind);
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  [[noreturn]] void Fail(const std::string& what) const;      // ModelError "<name>: <what>"
  [[noreturn]] void Damaged(const std::string& why) const;    // "damaged <noun> (<why>)"
  [[noreturn]] void Truncated(const std::string& why) const;  // "truncated <noun> (<why>)"
  const std::string& name() const { return name_; }
  std::uint64_t size() const { return size_; }
  std::uint64_t remaining() const { return size_ - offset_; }
  std::uint64_t digest() const { return XXH3_64bits_digest(&hash_); }  // of the bytes read

  // Rewinds to byte 0 and checks the magic: the first call on a reader.
  void Start();
  // Reads the next record's bytes into record(); false at a clean end of the file.
  bool ReadRecord();
  const std::string& record() const { return record_; }
  // Reads and parses the header record (the first after the magic) into *header.
  void ReadHeader(google::protobuf::MessageLite* header);
  // Reads and parses the record after the header numbered `index` into *chunk; the file
  // must not end before the final record. Returns the digest of every byte before it (what a
  // final record's checksum must equal).
  std::uint64_t ReadChunk(google::protobuf::MessageLite* chunk, std::uint64_t index);
  // Checks the final record just read by ReadChunk, a `Chunk` (the format's chunk message):
  // it holds no keys, its checksum equals `before`, its bytes are the canonical encoding of
  // `final` (the checksum does not cover them) and nothing follows it.
  template <typename Chunk>
  void CheckFinal(const Chunk& final, std::uint64_t before) {
    if (!final.keys().empty()) Damaged("final record holds keys");
    if (final.checksum() != before) Damaged("checksum mismatch");
    CheckFinalBytes(final);
  }

 private:
  // CheckFinal's last two checks: the canonical encoding, then the end of the file.
  void CheckFinalBytes(const google::protobuf::MessageLite& final);
  // False on a clean end of file before any byte; Truncated on a partial read.
  bool ReadExact(void* out, std::size_t n);
  std::string name_;
  RecordFileKind kind_;
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
  XXH3_state_t hash_;
  std::string record_;
};

}  // namespace fmps
