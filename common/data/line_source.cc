#include "common/data/line_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <system_error>
#include <utility>

#include "common/base/error.h"
#include "common/data/parse_text.h"

namespace fmps::data_internal {
namespace {

constexpr std::size_t kPage = 4096;

std::string ErrnoText(int err) { return std::error_code(err, std::generic_category()).message(); }

std::size_t RoundUp(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// Opens `path` read-only or throws IoError naming it.
int OpenFile(const std::string& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw IoError("cannot open '" + path + "': " + ErrnoText(errno));
  return fd;
}

// read(2) with EINTR handling; throws IoError.
std::size_t ReadSome(int fd, char* dst, std::size_t n, const std::string& path) {
  for (;;) {
    ssize_t r = ::read(fd, dst, n);
    if (r >= 0) return static_cast<std::size_t>(r);
    if (errno != EINTR) throw IoError("cannot read '" + path + "': " + ErrnoText(errno));
  }
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Number of '\n' bytes in [from, limit) of a file (cold path: line numbers of bad rows).
std::uint64_t CountNewlines(const std::string& path, std::uint64_t from, std::uint64_t limit) {
  Fd fd(OpenFile(path));
  if (from > 0 && ::lseek(fd.get(), static_cast<off_t>(from), SEEK_SET) < 0) {
    throw IoError("cannot seek in '" + path + "': " + ErrnoText(errno));
  }
  std::vector<char> buf(kBufferSize);
  std::uint64_t count = 0, done = from;
  while (done < limit) {
    std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), limit - done));
    std::size_t n = ReadSome(fd.get(), buf.data(), want, path);
    if (n == 0) break;
    count += static_cast<std::uint64_t>(std::count(buf.data(), buf.data() + n, '\n'));
    done += n;
  }
  return count;
}

// A page-aligned buffer of `size` bytes plus kLinePadding readable bytes after it, zeroed
// (so that loads past a line's end never touch uninitialised memory).
char* AllocateBuffer(std::size_t size) {
  void* mem = nullptr;
  if (posix_memalign(&mem, kPage, size + kLinePadding) != 0) throw std::bad_alloc();
  std::memset(mem, 0, size + kLinePadding);
  return static_cast<char*>(mem);
}

}  // namespace

std::string ReadFirstLine(const std::string& path) {
  Fd fd(OpenFile(path));
  std::string line;
  char buf[65536];
  for (;;) {
    std::size_t n = ReadSome(fd.get(), buf, sizeof(buf), path);
    if (n == 0) break;
    const char* nl = static_cast<const char*>(std::memchr(buf, '\n', n));
    line.append(buf, nl ? static_cast<std::size_t>(nl - buf) : n);
    if (nl) break;
  }
  std::string_view v = StripBom(StripLineEnd(line));
  if (v.empty() && line.empty()) {
    throw ConfigError("data.csv: '" + path + "' is empty; a csv file needs a header row");
  }
  return std::string(v);
}

std::uint64_t FileSize(const std::string& path) {
  Fd fd(OpenFile(path));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) throw IoError("cannot stat '" + path + "': " + ErrnoText(errno));
  if (!S_ISREG(st.st_mode)) throw IoError("'" + path + "' is not a regular file");
  return static_cast<std::uint64_t>(st.st_size);
}

LineSource::LineSource(std::vector<std::string> paths) {
  for (auto& p : paths) {
    const std::uint64_t size = FileSize(p);
    files_.push_back({std::move(p), size, total_});
    total_ += size;
  }
  buf_ = AllocateBuffer(kBufferSize);
  cap_ = kBufferSize;
}

LineSource::~LineSource() {
  CloseFile();
  std::free(buf_);
}

void LineSource::SetRanges(const std::vector<ByteRange>& ranges) {
  ranges_ = NormalizeRanges(ranges, "data ranges");
  if (!ranges_.empty() && ranges_.back().end > total_) {
    std::string msg("data ranges: range ");
    msg.append(RangeText(ranges_.back()));
    msg.append(" ends beyond the files (");
    AppendUint(&msg, total_);
    msg.append(" bytes); were the data files changed?");
    throw ConfigError(msg);
  }
  bytes_ = 0;
  segments_.clear();
  for (const ByteRange& r : ranges_) {
    bytes_ += r.end - r.begin;
    for (std::size_t i = 0; i < files_.size(); ++i) {
      const File& f = files_[i];
      const std::uint64_t b = std::max(r.begin, f.begin);
      const std::uint64_t e = std::min(r.end, f.begin + f.size);
      if (b < e) segments_.push_back({i, b - f.begin, e - f.begin});
    }
  }
  Rewind();
}

void LineSource::Rewind() {
  CloseFile();
  next_seg_ = 0;
  next_pos_ = 0;
  exhausted_ = false;
}

bool LineSource::Next(std::string_view* line) {
  for (;;) {
    if (fd_ < 0 && !OpenNextSegment()) return false;
    const std::size_t avail = lim_ - pos_;
    const std::uint64_t off = read_off_ - avail;  // file offset of buf_[pos_]
    if (!skipping_ && off >= local_end_) {
      CloseFile();
      continue;
    }
    char* s = buf_ + pos_;
    const void* nl = avail > scanned_ ? std::memchr(s + scanned_, '\n', avail - scanned_) : nullptr;
    std::size_t len;
    if (nl == nullptr) {
      if (!eof_) {
        if (skipping_) {
          pos_ = lim_;
          scanned_ = 0;
        } else {
          scanned_ = avail;
        }
        Refill();
        continue;
      }
      if (avail == 0 || skipping_) {
        CloseFile();
        continue;
      }
      len = avail;  // last line without a newline
      pos_ = lim_;
    } else {
      len = static_cast<std::size_t>(static_cast<const char*>(nl) - s);
      pos_ += len + 1;
      if (skipping_) {  // the partial line before the segment's first line start
        skipping_ = false;
        scanned_ = 0;
        segments_[seg_].first_line_off = off + len + 1;
        continue;
      }
    }
    scanned_ = 0;
    line_off_ = off;
    ++lines_;
    next_pos_ = files_[file_].begin + (read_off_ - (lim_ - pos_));
    std::string_view v(s, len);
    if (!v.empty() && v.back() == '\r') v.remove_suffix(1);
    if (off == 0) v = StripBom(v);
    *line = v;
    return true;
  }
}

std::uint64_t LineSource::LineNumber() {
  Segment& s = segments_[seg_];
  if (s.base < 0) {
    std::uint64_t from = 0, count = 0;
    for (std::size_t j = seg_; j-- > 0 && segments_[j].file == s.file;) {
      const Segment& p = segments_[j];
      if (p.base >= 0 && p.first_line_off <= s.first_line_off) {
        from = p.first_line_off;
        count = static_cast<std::uint64_t>(p.base);
        break;
      }
    }
    s.base = static_cast<std::int64_t>(count + CountNewlines(path(), from, s.first_line_off));
  }
  return static_cast<std::uint64_t>(s.base) + lines_;
}

std::uint64_t LineSource::consumed() const {
  if (exhausted_) return bytes_;
  std::uint64_t c = 0;
  for (const ByteRange& r : ranges_) {
    if (next_pos_ <= r.begin) break;
    c += std::min(next_pos_, r.end) - r.begin;
  }
  return c;
}

void LineSource::Remaining(std::vector<ByteRange>* out) const {
  out->clear();
  if (exhausted_) return;
  for (const ByteRange& r : ranges_) {
    if (r.end <= next_pos_) continue;
    out->push_back({std::max(r.begin, next_pos_), r.end});
  }
}

bool LineSource::OpenNextSegment() {
  if (next_seg_ >= segments_.size()) {
    exhausted_ = true;
    return false;
  }
  seg_ = next_seg_++;
  Segment& sg = segments_[seg_];
  const File& f = files_[sg.file];
  local_end_ = sg.end;
  file_ = sg.file;
  fd_ = OpenFile(f.path);
#ifdef POSIX_FADV_SEQUENTIAL
  ::posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
  pos_ = lim_ = scanned_ = 0;
  eof_ = false;
  lines_ = 0;
  if (sg.begin == 0) {
    read_off_ = 0;
    skipping_ = false;
    sg.first_line_off = 0;
    sg.base = 0;
  } else {
    // Start at b-1: the first line start >= b follows the first '\n' at or after b-1.
    const std::uint64_t start = (sg.begin - 1) / kPage * kPage;
    if (::lseek(fd_, static_cast<off_t>(start), SEEK_SET) < 0) {
      throw IoError("cannot seek in '" + f.path + "': " + ErrnoText(errno));
    }
    read_off_ = start;
    Refill();
    pos_ = std::min<std::size_t>(lim_, static_cast<std::size_t>(sg.begin - 1 - start));
    skipping_ = true;
  }
  return true;
}

void LineSource::CloseFile() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

// Keeps the unfinished line [pos_, lim_) and reads more after it. The kept bytes are placed
// so that read(2) always writes to a page-aligned address; the buffer grows for long lines.
void LineSource::Refill() {
  const std::size_t rem = lim_ - pos_;
  const std::size_t dst = RoundUp(rem, kPage);
  if (cap_ - dst < kBufferSize / 2) {
    const std::size_t new_cap = std::max(cap_ * 2, dst + kBufferSize);
    char* nb = AllocateBuffer(new_cap);
    std::memcpy(nb + dst - rem, buf_ + pos_, rem);
    std::free(buf_);
    buf_ = nb;
    cap_ = new_cap;
  } else if (pos_ != dst - rem && rem > 0) {
    std::memmove(buf_ + dst - rem, buf_ + pos_, rem);
  }
  pos_ = dst - rem;
  lim_ = dst;
  const std::size_t n = ReadSome(fd_, buf_ + lim_, cap_ - lim_, files_[file_].path);
  if (n == 0) eof_ = true;
  lim_ += n;
  read_off_ += n;
}

}  // namespace fmps::data_internal
