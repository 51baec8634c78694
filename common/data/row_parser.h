// RowParser: one line of any format into a row of a RowBlock (private to common/data).
// Dispatches once per line to the format's parser (sparse_parser.h, criteo_parser.h,
// csv_parser.h); a line that turns out malformed leaves the block as it was.
//
// Cost: that of the format's parser plus one switch per line; no allocation once the
// scratch buffers, the block and the reason string have grown. Parse requires kLinePadding
// readable bytes after the line's end. Not thread-safe (one per thread).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/data/criteo_parser.h"
#include "common/data/csv_parser.h"
#include "common/data/reader.h"
#include "common/data/sparse_parser.h"

namespace fmps::data_internal {

class RowParser {
 public:
  // `header` is the csv header (csv only; ignored otherwise); `file` names it in errors.
  // Throws ConfigError as CsvParser does.
  RowParser(const FeatureSpec& spec, const std::vector<std::string>& header, std::string_view file);

  // On success appends one row (label, keys, values, fields; the values scaled to unit L2
  // norm under data.normalize: instance) and returns true; on failure
  // leaves *block unchanged, sets *reason and returns false.
  bool Parse(std::string_view line, RowBlock* block, std::string* reason);

 private:
  DataFormat format_;
  bool normalize_;  // data.normalize: instance and a format whose parser does not normalise
  SparseParser sparse_;
  CriteoParser criteo_;
  std::optional<CsvParser> csv_;  // csv only
};

}  // namespace fmps::data_internal
