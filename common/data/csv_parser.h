// csv parsing (private to common/data): RFC 4180 cell splitting, the mapping of a file's
// header to column roles, and the row parser.
//
// Columns are matched to roles (data.csv: label, numeric, categorical, ignore) by name, so
// files may order their columns differently; a column's hash identity and its field come
// from its name and the config, never from its position:
//   - categorical cell -> KeyFromToken(column id, cell), value 1;
//   - numeric cell -> one key per column with the (transformed) value, or under log_bucket
//     the categorical feature of its LogBucket;
//   - field = index of the column in data.csv.numeric followed by data.csv.categorical
//     (numeric columns 0..N-1, then categorical ones N..N+C-1: the config's order, which is
//     the header order when the config lists the columns as the header does).
// Empty numeric and categorical cells add no non-zero.
//
// Cost: O(line length) per row, no allocation once the scratch buffers, the block and the
// reason string have grown. Not thread-safe (one parser per thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/types.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"

namespace fmps::data_internal {

// Splits a csv line into cells (RFC 4180 quoting). Cells are views into `line` or, for quoted
// cells containing "", into *scratch (reserved up front so views stay valid). Returns false
// with *reason set on an unterminated quote or text after a closing quote.
bool SplitCsv(std::string_view line, char delim, std::vector<std::string_view>* cells,
              std::string* scratch, std::string* reason);

enum class CsvRole : std::uint8_t { kIgnore, kLabel, kNumeric, kCategorical };

struct CsvColumn {
  std::string name;
  CsvRole role = CsvRole::kIgnore;
  std::uint32_t id = 0;     // hash identity, from the name
  std::uint32_t field = 0;  // numeric / categorical: see the file comment; else 0
  Key numeric_key = 0;      // numeric under standardize / none
  bool multi = false;       // categorical listed in data.csv.multi
  double mean = 0.0;        // standardize
  double std = 1.0;
};

// Maps a csv header to column roles. Throws ConfigError on any mismatch with `csv` (no
// label column under LabelPolicy::kRequired, a configured feature column missing, a column
// without a role or with two), naming `file` (or "the csv header" when empty).
// With `partial` (FeatureSpec::partial_columns) configured feature columns may be absent.
std::vector<CsvColumn> BuildCsvColumns(const CsvSpec& csv, const std::vector<std::string>& header,
                                       std::string_view file, LabelPolicy labels,
                                       bool partial = false);

// The header cells of a csv file (BOM and '\r' stripped). Throws IoError if it cannot be
// read, ConfigError if it is empty or malformed.
std::vector<std::string> ReadCsvHeader(const std::string& path, char delim);

class CsvParser {
 public:
  // Columns of `header` (see BuildCsvColumns, with spec.labels). Under transform
  // standardize every numeric column needs its statistics in spec.numeric_stats
  // (ConfigError otherwise).
  CsvParser(const FeatureSpec& spec, const std::vector<std::string>& header, std::string_view file);

  // Appends one row to *block and returns true, or returns false with *reason set and
  // possibly some non-zeros of the row appended (the caller abandons the row).
  bool Parse(std::string_view line, RowBlock* block, std::string* reason);

 private:
  bool AddNumeric(const CsvColumn& c, std::string_view cell, RowBlock* block,
                  std::string* reason) const;
  void AddMulti(const CsvColumn& c, std::string_view cell, RowBlock* block) const;

  int hash_bits_;
  bool logistic_;
  char delim_;
  char multi_separator_;
  NumericTransform transform_;
  std::vector<CsvColumn> columns_;
  bool has_label_;                       // false: the header lacks the label (label NaN)
  std::vector<std::string_view> cells_;  // scratch
  std::string unescaped_;                // scratch
};

}  // namespace fmps::data_internal
