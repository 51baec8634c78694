// Streaming, sharded readers for the training and test files.
//
// A ShardReader reads shard `i` of `n` of a file list: the concatenation of the files is cut
// into n equal byte ranges and the reader yields exactly the rows whose first byte lies in
// its range (a row that straddles a cut belongs to the range where it starts). So n readers
// together yield every row exactly once, whatever n. Files are read with read(2) into a
// page-aligned buffer; memory use is O(buffer + longest line), never O(file).
//
// Parsing turns each line into (label, keys, values) appended to a RowBlock, with no
// allocation per row once the block has grown. Malformed rows are skipped and counted (the
// first few are reported as "file:line: reason" warnings) or, under on_error: fail, raise
// DataError with that message. Line numbers are exact even for shards starting mid-file.
//
// Thread safety: a ShardReader is used by one thread at a time; distinct readers are
// independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/row_block.h"

namespace fmps {

// Mean and standard deviation of one numeric csv column (first pass, for standardize).
struct NumericStat {
  std::string column;
  double mean = 0.0;
  double std = 1.0;
};

// Everything needed to turn raw rows into keys: stored in model files so that predict/eval
// reproduce training's features exactly.
struct FeatureSpec {
  DataConfig data;                        // format, hash_bits, csv roles, on_error
  Loss loss = Loss::kLogistic;            // decides which labels are valid
  std::vector<NumericStat> numeric_stats; // csv + standardize: one per numeric column
};

// The log-bucketing of counts used by the Criteo winners: v > 2 -> floor(ln(v)^2), else
// floor(v). Returns the bucket id.
std::int64_t LogBucket(double v);

// First pass over `files` (all of them) computing mean/std of each numeric csv column, as
// needed when spec.data.format == csv and transform == standardize. Rows with an empty or
// unparsable cell are left out of that column's statistics. A column with std 0 gets std 1.
std::vector<NumericStat> ComputeNumericStats(const FeatureSpec& spec,
                                             const std::vector<std::string>& files);

// Counts of bad rows and the first few reports.
struct BadRowStats {
  std::uint64_t count = 0;
  std::vector<std::string> first;  // up to kMaxReported "file:line: reason" strings
  static constexpr std::size_t kMaxReported = 5;
};

class ShardReader {
 public:
  // Opens shard `shard` (0-based) of `num_shards` of `files`. Throws IoError if a file
  // cannot be opened or stat'ed, ConfigError if a csv header does not match spec.data.csv
  // (e.g. missing label column, column without a role).
  ShardReader(FeatureSpec spec, std::vector<std::string> files, int shard, int num_shards);
  ~ShardReader();
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  // Appends up to `max_rows` good rows to *block (which is not cleared). Returns the number
  // appended; 0 means the shard is exhausted. Throws DataError under on_error: fail.
  std::size_t Read(std::size_t max_rows, RowBlock* block);

  // Starts the shard again from its first row (next epoch). Bad-row stats are kept.
  void Rewind();

  std::uint64_t rows_read() const;     // good rows returned since construction
  std::uint64_t bytes_in_shard() const;
  std::uint64_t bytes_consumed() const;  // of the shard, since the last Rewind (progress)
  const BadRowStats& bad_rows() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses one line (without its line terminator; a trailing '\r' is tolerated) into *block.
// On success appends one row and returns true. On failure leaves *block unchanged, sets
// *reason to a short description ("bad number 'x' in feature 3") and returns false.
// `csv_columns` maps the csv header of the file (ignored for other formats).
// Exposed for tests and fuzzers.
class LineParser {
 public:
  LineParser(const FeatureSpec& spec, std::vector<std::string> csv_header);
  bool Parse(std::string_view line, RowBlock* block, std::string* reason);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fmps
