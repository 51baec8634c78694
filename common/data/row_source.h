// RowSource: where a worker's training or test rows come from. The job (worker/job), the
// Worker and its BatchPrefetcher read rows only through this interface, so the same epoch
// loop trains from files (ShardReader, reader.h) and from arrays in memory (ArrayRowSource,
// array_source.h, used by the Python package).
//
// Cost: one virtual Read per minibatch (plus bytes_consumed and Remaining per batch for
// progress and checkpoints), never a call per row.
//
// Positions are "bytes" of a source's own coordinates: a ShardReader's are bytes of the
// concatenated files, an ArrayRowSource's are row numbers. Remaining() reports the
// position as ranges of those coordinates (what a checkpoint stores).
//
// Thread safety: a source is used by one thread at a time; distinct sources are independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/data/row_block.h"

namespace fmps {

// Counts of bad rows and the first few reports.
struct BadRowStats {
  std::uint64_t count = 0;
  std::vector<std::string> first;  // up to kMaxReported "file:line: reason" strings
  static constexpr std::size_t kMaxReported = 5;
};

// A half-open byte range [begin, end) of the concatenation of a file list.
struct ByteRange {
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
  bool operator==(const ByteRange&) const = default;
};

class RowSource {
 public:
  virtual ~RowSource() = default;

  // Appends up to `max_rows` good rows to *block (which is not cleared). Returns the number
  // appended; 0 means the source is exhausted.
  virtual std::size_t Read(std::size_t max_rows, RowBlock* block) = 0;
  // Starts again from the first row (next epoch). Bad-row stats are kept.
  virtual void Rewind() = 0;
  // The ranges still to read after the last row returned by Read() (reuses *out's capacity).
  virtual void Remaining(std::vector<ByteRange>* out) const = 0;
  // Total size of the source and how much of it was read since the last Rewind (progress).
  virtual std::uint64_t bytes_in_shard() const = 0;
  virtual std::uint64_t bytes_consumed() const = 0;
  virtual const BadRowStats& bad_rows() const = 0;
};

}  // namespace fmps
