// Parser of Criteo's tab-separated lines (private to common/data): a label, 13 integer
// columns I1..I13, then 26 categorical columns C1..C26. Lines may stop early (ragged rows);
// empty cells add no non-zero. An integer cell becomes the categorical feature "its
// LogBucket" of its column; a categorical cell is hashed with its column index (1..39).
// Non-zeros all have value 1 and field = column index - 1 (0..12 integers, 13..38
// categoricals).
//
// Cost: O(line length), one hash per non-empty cell, no allocation once the block and the
// reason string have grown. Not thread-safe (one per thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/data/parse_text.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"

namespace fmps::data_internal {

// Appends the non-zero of a log-bucketed number: KeyFromToken(column, decimal LogBucket(v)),
// value 1, `field`. Shared with csv's log_bucket transform.
void AddLogBucketFeature(std::uint32_t column, double v, std::uint32_t field, int hash_bits,
                         RowBlock* block);

class CriteoParser {
 public:
  // LabelPolicy::kOptional: a line of exactly 39 cells has no label (label NaN); its first
  // cell is I1.
  explicit CriteoParser(const RowRules& rules) : rules_(rules) {}

  // Appends one row to *block and returns true, or returns false with *reason set and
  // possibly some non-zeros of the row appended (the caller abandons the row).
  bool Parse(std::string_view line, RowBlock* block, std::string* reason) const;

 private:
  RowRules rules_;
};

}  // namespace fmps::data_internal
