// Streaming, sharded readers for the training and test files.
//
// A ShardReader reads a set of byte ranges of a file list, in concatenated-file coordinates
// (the files laid end to end in list order): it yields exactly the rows whose first byte lies
// in one of its ranges (a row that straddles a cut belongs to the range where it starts).
// Shard `i` of `n` is the single range [i*T/n, (i+1)*T/n) of the T total bytes, so n readers
// together yield every row exactly once, whatever n. Any partition of [0, T) into ranges
// does the same, which is what resuming relies on: Remaining() is the reader's position as
// ranges, and SplitRanges() re-divides the remaining ranges of all workers among a new
// number of workers. Files are read with read(2) into a page-aligned buffer; memory use is
// O(buffer + longest line), never O(file).
//
// Parsing turns each line into (label, keys, values, fields) appended to a RowBlock (fields
// per format: row_block.h), with no allocation per row once the block has grown. Malformed
// rows are skipped and counted (the first few are reported as "file:line: reason" warnings)
// or, under on_error: fail, raise DataError with that message. Line numbers are exact even
// for ranges starting mid-file.
//
// Implementation (private to common/data): line_source.h reads the byte ranges as lines,
// row_parser.h dispatches each line to sparse_parser.h (libsvm, libffm), criteo_parser.h or
// csv_parser.h; parse_text.h holds what they share.
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

#include "common/config/config.h"
#include "common/data/row_block.h"
#include "common/data/row_source.h"

namespace fmps {

// Mean and standard deviation of one numeric csv column (first pass, for standardize).
struct NumericStat {
  std::string column;
  double mean = 0.0;
  double std = 1.0;
};

// Whether rows must carry a label. Training and eval read with kRequired (a row without one
// is malformed). kOptional is for scoring data that has no labels (`fmps predict`); a row
// read without a label gets label NaN. What counts as "without a label", per format:
//   libsvm / libffm: per row, the first token contains ':' (it is a feature);
//   criteo: per row, exactly 39 tab-separated cells (I1..I13, C1..C26); 40 or fewer than 39
//     cells keep the first cell as the label, as under kRequired;
//   csv: per file, the header lacks the data.csv.label column.
enum class LabelPolicy : std::uint8_t { kRequired, kOptional };

// Everything needed to turn raw rows into keys: stored in model files so that predict/eval
// reproduce training's features exactly (all but `labels`, which the reader's user sets).
struct FeatureSpec {
  DataConfig data;                         // format, hash_bits, csv roles, on_error
  Loss loss = Loss::kLogistic;             // decides which labels are valid
  std::vector<NumericStat> numeric_stats;  // csv + standardize: one per numeric column
  LabelPolicy labels = LabelPolicy::kRequired;
  // Field ids must be below this (a libffm row with a larger one is malformed, "field id out
  // of range"): model.fields for a field-aware model (FieldLimitOf), else kFieldLimit. Not
  // stored in model files: restored from the model's shape.
  std::uint32_t field_limit = kFieldLimit;
  // Recall models (model.sides; stored in model files): which fields are the user's and
  // which the item's.
  SidesConfig sides;
  // csv: configured feature columns may be absent from a file's header (files of one side,
  // for embed and recall, and the negatives catalogue); absent columns add no non-zero.
  bool partial_columns = false;
  // Join every row with data.negatives.per_positive sampled label-0 rows (training and test
  // readers of a job; never predict/eval). See common/data/negatives.h.
  bool sample_negatives = false;
};

// The log-bucketing of counts used by the Criteo winners: v > 2 -> floor(ln(v)^2), else
// floor(v). Returns the bucket id.
std::int64_t LogBucket(double v);

// First pass over `files` (all of them) computing mean/std of each numeric csv column, as
// needed when spec.data.format == csv and transform == standardize. Rows with an empty or
// unparsable cell are left out of that column's statistics. A column with std 0 gets std 1.
std::vector<NumericStat> ComputeNumericStats(const FeatureSpec& spec,
                                             const std::vector<std::string>& files);

// Total size in bytes of `files` (the length of their concatenation). Throws IoError if a
// file cannot be opened or stat'ed or is not a regular file.
std::uint64_t TotalBytes(const std::vector<std::string>& files);

// Shard `shard` (0-based) of `num_shards` of [0, total_bytes):
// [floor(shard * T / n), floor((shard + 1) * T / n)). Throws ConfigError unless
// 0 <= shard < num_shards.
ByteRange ShardRange(std::uint64_t total_bytes, int shard, int num_shards);

// Cuts the union of `ranges` (sorted, disjoint; touching or empty ones allowed) into `n`
// parts of consecutive bytes, in order: part i holds bytes [floor(i*B/n), floor((i+1)*B/n))
// of the B bytes of the union, so part sizes differ by at most one byte. Each part is a
// sorted list of disjoint, non-touching, non-empty sub-ranges (a part is empty when B < n).
// Cuts may fall mid-row: readers of the n parts together yield exactly the rows of readers
// of `ranges`. Throws ConfigError if n < 1 or the ranges are unsorted, overlapping or have
// begin > end.
std::vector<std::vector<ByteRange>> SplitRanges(const std::vector<ByteRange>& ranges, int n);

// A subset of the rows of a file list chosen by each row's own text, so that every reader,
// whatever its shard, byte ranges or worker count, agrees on it (validation hold-out and
// cross-validation folds, worker/job/job.h). A row's position is RowHashUnit(its line) in
// [0, 1); the subset is the rows whose position lies in [lo, hi) (inside) or outside it. The
// intervals [i/K, (i+1)/K) for i = 0..K-1, computed as i / double(K), partition [0, 1): each
// row lies in exactly one of them. Identical lines share a position.
struct RowSubset {
  double lo = 0.0;
  double hi = 1.0;
  bool inside = true;
  bool all() const { return inside && lo <= 0.0 && hi >= 1.0; }
  bool Keeps(double position) const { return (position >= lo && position < hi) == inside; }
};

// A line's position in [0, 1): the top 53 bits of the XXH3 hash of its text (without the line
// terminator or a trailing '\r'). O(line length).
double RowHashUnit(std::string_view line);

class ShardReader final : public RowSource {
 public:
  // Opens shard `shard` (0-based) of `num_shards` of `files`: the single range
  // ShardRange(TotalBytes(files), shard, num_shards). Throws IoError if a file cannot be
  // opened or stat'ed, ConfigError if the shard is invalid or a csv header does not match
  // spec.data.csv (e.g. missing label column, column without a role).
  ShardReader(FeatureSpec spec, std::vector<std::string> files, int shard, int num_shards);
  // Opens the rows of `files` whose first byte lies in one of `ranges`, read in order.
  // Ranges must be sorted and disjoint and end within TotalBytes(files); empty ones are
  // dropped and touching ones merged (this changes no row). A range may begin or end mid-row
  // or mid-line; csv headers are never rows. Throws as above, ConfigError for bad ranges.
  ShardReader(FeatureSpec spec, std::vector<std::string> files, std::vector<ByteRange> ranges);
  ~ShardReader() override;
  ShardReader(const ShardReader&) = delete;
  ShardReader& operator=(const ShardReader&) = delete;

  // Appends up to `max_rows` good rows to *block (which is not cleared). Returns the number
  // appended; 0 means the shard is exhausted. Throws DataError under on_error: fail.
  std::size_t Read(std::size_t max_rows, RowBlock* block) override;

  // Yields only the rows of `subset` from the next Read on (default: every row). Rows left
  // out are neither returned nor counted (good or bad). Cost: one hash of each line's text
  // unless subset.all().
  void SetSubset(const RowSubset& subset);

  // Starts the shard again from its first row, at the first range (next epoch). Bad-row
  // stats are kept.
  void Rewind() override;

  // The reader's position: the ranges still to read after the last row returned by Read()
  // (all ranges before the first Read or after Rewind, none once Read has returned 0).
  // A reader on (spec, files, Remaining()) yields exactly the rows this reader has not yet
  // returned, in the same order. The first range starts at the first byte of the next
  // unread line when a line has been read from the current range, else at the range's own
  // begin; ranges are clipped, never split, so their count is at most that of the
  // constructor's. O(number of ranges), no I/O; the out-parameter form reuses its capacity
  // (no allocation once grown). Not to be called concurrently with Read.
  std::vector<ByteRange> Remaining() const;
  void Remaining(std::vector<ByteRange>* out) const override;

  std::uint64_t rows_read() const;                // good rows returned since construction
  std::uint64_t bytes_in_shard() const override;  // total bytes of the ranges
  // Bytes of the ranges before the reader's position, since the last Rewind (progress):
  // bytes_in_shard() minus the bytes of Remaining(). O(number of ranges).
  std::uint64_t bytes_consumed() const override;
  const BadRowStats& bad_rows() const override;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Parses one line (without its line terminator; a trailing '\r' is tolerated) into *block,
// exactly as ShardReader does. On success appends one row and returns true. On failure
// leaves *block unchanged, sets *reason (when not null) to a short description ("bad number
// 'x' in feature 3") and returns false. `csv_header` is the csv header of the file (ignored
// for other formats). Copies the line once (to pad it). Exposed for tests and fuzzers.
// Splits one csv line into its cells (RFC 4180 quoting, as the csv reader does), for tools
// that need a row's raw cells (the ids of embed and recall). Returns false on bad quoting.
bool SplitCsvCells(std::string_view line, char delim, std::vector<std::string>* cells);

class LineParser {
 public:
  LineParser(const FeatureSpec& spec, std::vector<std::string> csv_header);
  bool Parse(std::string_view line, RowBlock* block, std::string* reason);

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace fmps
