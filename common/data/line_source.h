// Byte ranges of a file list turned into lines (private to common/data).
//
// Coordinates are those of the files' concatenation (the files laid end to end in list
// order). A LineSource yields exactly the lines whose first byte lies in one of its ranges,
// in order; a line straddling a range's end belongs to the range where it starts. Files are
// read with read(2) into a page-aligned buffer of kBufferSize bytes that grows only for lines
// longer than half of it: memory is O(buffer + longest line), never O(file). Every line
// returned is followed by kLinePadding readable bytes (for the parsers' 8-byte loads).
//
// Not thread-safe: one LineSource per reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/data/reader.h"

namespace fmps::data_internal {

// 128 KiB: the read buffer stays in the parsing core's L2 (see tests/bench/README.md).
inline constexpr std::size_t kBufferSize = std::size_t{1} << 17;

// Size of a regular file; throws IoError if it cannot be opened or stat'ed or is not regular.
std::uint64_t FileSize(const std::string& path);

// The first line of a file (BOM and '\r' stripped), for csv headers. Throws IoError if it
// cannot be read, ConfigError if the file is empty.
std::string ReadFirstLine(const std::string& path);

// "[begin, end)" for messages.
std::string RangeText(const ByteRange& r);

// Checks that the non-empty `ranges` are sorted and disjoint and that begin <= end; returns
// them without the empty ones and with touching ones merged. Throws ConfigError naming `what`
// otherwise. O(number of ranges).
std::vector<ByteRange> NormalizeRanges(const std::vector<ByteRange>& ranges, std::string_view what);

class LineSource {
 public:
  // Stats the files (IoError on failure). Reads nothing until SetRanges.
  explicit LineSource(std::vector<std::string> paths);
  ~LineSource();
  LineSource(const LineSource&) = delete;
  LineSource& operator=(const LineSource&) = delete;

  std::uint64_t total_bytes() const { return total_; }

  // Sets the ranges to read (see NormalizeRanges; ConfigError if one ends beyond the files)
  // and rewinds.
  void SetRanges(const std::vector<ByteRange>& ranges);

  // Back to the first line of the first range.
  void Rewind();

  // Next line of the ranges (terminator, trailing '\r' and a leading BOM removed); false at
  // the end. The view is valid until the next call. Amortised O(line length).
  bool Next(std::string_view* line);

  // The current line's file (index and path) and its byte offset in that file.
  std::size_t file_index() const { return file_; }
  const std::string& path() const { return files_[file_].path; }
  std::uint64_t line_offset() const { return line_off_; }

  // 1-based line number of the current line in its file. The lines before the segment's
  // first line are counted once, lazily, the first time a number is needed (from the start
  // of an earlier counted segment of the same file when there is one): a cold path that
  // reads the file from there.
  std::uint64_t LineNumber();

  std::uint64_t range_bytes() const { return bytes_; }

  // Bytes of the ranges before the position after the last line returned. O(ranges).
  std::uint64_t consumed() const;

  // The ranges after the position after the last line returned (see ShardReader::Remaining).
  void Remaining(std::vector<ByteRange>* out) const;

 private:
  struct File {
    std::string path;
    std::uint64_t size;
    std::uint64_t begin;  // offset in the concatenation
  };

  // The part of one range within one file: lines starting in [begin, end) of the file.
  struct Segment {
    std::size_t file;
    std::uint64_t begin, end;
    std::uint64_t first_line_off = 0;  // offset of the segment's first line (once reached)
    std::int64_t base = -1;            // '\n' count before first_line_off, or -1 if unknown
  };

  bool OpenNextSegment();
  void CloseFile();
  void Refill();

  std::vector<File> files_;
  std::uint64_t total_ = 0;        // bytes of all files
  std::vector<ByteRange> ranges_;  // normalized, in concatenated coordinates
  std::uint64_t bytes_ = 0;        // of ranges_
  std::vector<Segment> segments_;  // ranges_ cut at file boundaries, in order
  std::size_t next_seg_ = 0;
  std::size_t seg_ = 0;   // current segment
  std::size_t file_ = 0;  // its file
  int fd_ = -1;
  char* buf_ = nullptr;
  std::size_t cap_ = 0;
  std::size_t pos_ = 0;         // next unconsumed byte
  std::size_t lim_ = 0;         // end of valid data
  std::size_t scanned_ = 0;     // bytes after pos_ known to hold no '\n'
  std::uint64_t read_off_ = 0;  // file offset of buf_[lim_]
  bool eof_ = false;
  bool skipping_ = false;
  std::uint64_t local_end_ = 0;  // lines starting at or after this offset are not ours
  std::uint64_t lines_ = 0;      // lines returned from this segment so far
  std::uint64_t line_off_ = 0;   // offset of the current line
  std::uint64_t next_pos_ = 0;   // concatenated offset just after the last line returned
  bool exhausted_ = false;       // every segment done
};

}  // namespace fmps::data_internal
