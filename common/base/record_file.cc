#include "common/base/record_file.h"

#include <fcntl.h>
#include <google/protobuf/message_lite.h>
#include <google/protobuf/stubs/logging.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "common/base/error.h"

namespace fmps {
namespace {

std::string Errno() { return std::strerror(errno); }

// O_DIRECT's alignment of buffer addresses, sizes and file offsets (a page: a multiple of
// every block size in use).
constexpr std::size_t kDirectAlign = 4096;
// Bytes hashed at a time while the block buffer fills.
constexpr std::size_t kHashPieceBytes = std::size_t{256} << 10;

std::string TempPath(const std::string& path) {
  static std::atomic<std::uint64_t> counter{0};  // unique temp names across threads
  return path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
}

void SyncDirectory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open directory " + dir + ": " + Errno());
  const int rc = ::fsync(fd);
  const std::string err = Errno();
  ::close(fd);
  if (rc != 0) throw IoError("cannot fsync directory " + dir + ": " + err);
}

}  // namespace

RecordWriter::RecordWriter(const std::string& path, const RecordFileKind& kind)
    : path_(path), tmp_path_(TempPath(path)) {
  XXH3_64bits_reset(&hash_);
  constexpr int kFlags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
  fd_ = ::open(tmp_path_.c_str(), kFlags | O_DIRECT, 0644);
  direct_ = fd_ >= 0;
  if (fd_ < 0 && errno == EINVAL) {  // a file system without direct I/O (e.g. tmpfs)
    std::remove(tmp_path_.c_str());
    fd_ = ::open(tmp_path_.c_str(), kFlags, 0644);
  }
  if (fd_ < 0) throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  block_ = static_cast<char*>(std::aligned_alloc(kDirectAlign, kWriteBlockBytes));
  if (block_ == nullptr) {
    ::close(fd_);
    std::remove(tmp_path_.c_str());
    throw std::bad_alloc();
  }
  WriteBytes(kind.magic.data(), kind.magic.size());
}

RecordWriter::RecordWriter(std::string* sink, const RecordFileKind& kind) : sink_(sink) {
  XXH3_64bits_reset(&hash_);
  sink_->clear();
  WriteBytes(kind.magic.data(), kind.magic.size());
}

RecordWriter::~RecordWriter() {
  if (fd_ >= 0) ::close(fd_);
  std::free(block_);
  if (sink_ == nullptr && !committed_) std::remove(tmp_path_.c_str());
}

void RecordWriter::WriteBytes(const void* data, std::size_t n) {
  bytes_ += n;
  if (sink_ != nullptr) {
    XXH3_64bits_update(&hash_, data, n);
    sink_->append(static_cast<const char*>(data), n);
    return;
  }
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const std::size_t take = std::min(n, kWriteBlockBytes - used_);
    std::memcpy(block_ + used_, p, take);
    used_ += take;
    p += take;
    n -= take;
    if (used_ - hashed_ >= kHashPieceBytes) HashBuffered();  // while the bytes are in cache
    if (used_ == kWriteBlockBytes) WriteBlock(used_);
  }
}

void RecordWriter::HashBuffered() {
  XXH3_64bits_update(&hash_, block_ + hashed_, used_ - hashed_);
  hashed_ = used_;
}

std::uint64_t RecordWriter::digest() {
  if (sink_ == nullptr) HashBuffered();
  return XXH3_64bits_digest(&hash_);
}

void RecordWriter::WriteBlock(std::size_t n) {
  HashBuffered();
  const char* p = block_;
  std::size_t left = n;
  while (left > 0) {
    const ssize_t got = ::write(fd_, p, left);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EINVAL && direct_) {  // opened O_DIRECT but refuses it: write buffered
        EndDirect();
        continue;
      }
      throw IoError("cannot write " + tmp_path_ + ": " + Errno());
    }
    // A short direct write leaves an unaligned offset: write the rest buffered.
    if (direct_ && static_cast<std::size_t>(got) < left) EndDirect();
    p += got;
    left -= static_cast<std::size_t>(got);
  }
  std::memmove(block_, block_ + n, used_ - n);
  used_ -= n;
  hashed_ = used_;
}

void RecordWriter::EndDirect() {
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) {
    throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  }
  direct_ = false;
}

void RecordWriter::Write(const google::protobuf::MessageLite& record) {
  record_.assign(4, '\0');
  if (!record.AppendToString(&record_)) throw std::logic_error("record serialization failed");
  const std::size_t n = record_.size() - 4;
  if (n > kMaxRecordBytes) throw IoError("cannot write " + tmp_path_ + ": record too large");
  for (int i = 0; i < 4; ++i) record_[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  WriteBytes(record_.data(), record_.size());
}

void RecordWriter::Sync() {
  if (sink_ != nullptr || synced_) return;
  const std::size_t aligned = used_ / kDirectAlign * kDirectAlign;
  if (direct_ && aligned > 0) WriteBlock(aligned);
  if (direct_) EndDirect();  // the last partial block: O_DIRECT needs whole blocks
  if (used_ > 0) WriteBlock(used_);
  if (::fsync(fd_) != 0) throw IoError("cannot fsync " + tmp_path_ + ": " + Errno());
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) throw IoError("cannot close " + tmp_path_ + ": " + Errno());
  synced_ = true;
}

void RecordWriter::Commit() {
  if (sink_ != nullptr) return;
  Sync();
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw IoError("cannot rename " + tmp_path_ + " to " + path_ + ": " + Errno());
  }
  committed_ = true;
  const std::filesystem::path parent = std::filesystem::path(path_).parent_path();
  SyncDirectory(parent.empty() ? std::string(".") : parent.string());
}

RecordReader::RecordReader(const std::string& path, const RecordFileKind& kind)
    : name_(path), kind_(kind) {
  file_ = std::fopen(path.c_str(), "rb");
  if (file_ == nullptr) {
    throw IoError("cannot open " + std::string(kind.noun) + " " + path + ": " + Errno());
  }
  struct stat st;
  if (::fstat(fileno(file_), &st) != 0) {
    const std::string err = Errno();
    std::fclose(file_);
    throw IoError("cannot stat " + path + ": " + err);
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
}

RecordReader::RecordReader(std::string_view bytes, const std::string& name,
                           const RecordFileKind& kind)
    : name_(name), kind_(kind), size_(bytes.size()) {
  // fmemopen does not accept a zero size: an empty buffer reads as a one-byte stream of
  // which nothing is read (size_ stays 0, so the magic check fails first).
  static char empty = 0;
  void* data = bytes.empty() ? &empty : const_cast<char*>(bytes.data());
  file_ = ::fmemopen(data, bytes.empty() ? 1 : bytes.size(), "rb");
  if (file_ == nullptr) throw IoError("cannot read " + name + ": " + Errno());
}

RecordReader::~RecordReader() { std::fclose(file_); }

void RecordReader::Fail(const std::string& what) const { throw ModelError(name_ + ": " + what); }

void RecordReader::Damaged(const std::string& why) const {
  Fail("damaged " + std::string(kind_.noun) + " (" + why + ")");
}

void RecordReader::Truncated(const std::string& why) const {
  Fail("truncated " + std::string(kind_.noun) + " (" + why + ")");
}

bool RecordReader::ReadExact(void* out, std::size_t n) {
  const std::size_t got = std::fread(out, 1, n, file_);
  if (std::ferror(file_)) throw IoError("cannot read " + name_ + ": " + Errno());
  if (got == 0 && n > 0) return false;
  if (got != n) Truncated("at byte " + std::to_string(offset_ + got));
  XXH3_64bits_update(&hash_, out, n);
  offset_ += n;
  return true;
}

void RecordReader::Start() {
  if (std::fseek(file_, 0, SEEK_SET) != 0) {
    throw IoError("cannot seek in " + name_ + ": " + Errno());
  }
  XXH3_64bits_reset(&hash_);
  offset_ = 0;
  char magic[8];
  if (!ReadExact(magic, sizeof(magic))) Truncated("no magic");
  if (kind_.magic.size() != sizeof(magic) || std::memcmp(magic, kind_.magic.data(), 8) != 0) {
    Fail("not an fmps " + std::string(kind_.noun) + " (bad magic)");
  }
}

bool RecordReader::ReadRecord() {
  unsigned char len[4];
  if (!ReadExact(len, 4)) return false;
  const std::uint32_t n =
      len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<std::uint32_t>(len[3]) << 24);
  const std::string where = std::to_string(n) + " bytes at byte " + std::to_string(offset_ - 4);
  if (n > kMaxRecordBytes) Damaged("record length of " + where);
  if (n > remaining()) Truncated("record of " + where + " passes the end of the file");
  record_.resize(n);
  if (n > 0 && !ReadExact(record_.data(), n)) Truncated("record body");
  return true;
}

void RecordReader::ReadHeader(google::protobuf::MessageLite* header) {
  if (!ReadRecord()) Truncated("no header");
  google::protobuf::LogSilencer quiet;  // a damaged string field: our one-line error only
  if (!header->ParseFromString(record_)) Damaged("corrupt header");
}

std::uint64_t RecordReader::ReadChunk(google::protobuf::MessageLite* chunk, std::uint64_t index) {
  const std::uint64_t before = digest();
  const std::uint64_t at = offset_;
  if (!ReadRecord()) Truncated("no final record");
  google::protobuf::LogSilencer quiet;
  if (!chunk->ParseFromString(record_)) {
    Damaged("corrupt chunk " + std::to_string(index) + " at byte " + std::to_string(at));
  }
  return before;
}

void RecordReader::CheckFinalBytes(const google::protobuf::MessageLite& final) {
  // E.g. last = 0x5b would parse as true.
  if (final.SerializeAsString() != record_) Damaged("corrupt final record");
  char extra;
  if (ReadExact(&extra, 1)) Damaged("bytes after the final record");
}

}  // namespace fmps
