// Parsers of the sparse text formats (private to common/data):
//   libsvm  "<label> <id>:<value> ..."            every non-zero gets field 0 (no fields)
//   libffm  "<label> <field>:<id>:<value> ..."    every non-zero gets its field as written
// Separators are runs of spaces and tabs. A value of 0 adds no non-zero. With
// RowRules::normalize each row is scaled to unit L2 norm (RowBlock::NormalizeLastRow, its
// sum of squares gathered while the values are parsed). Ids are kept
// (hash_bits 0; id 2^64-1, the bias key, is then out of range) or hashed into 2^hash_bits.
// A libffm field must be an integer in [0, kFieldLimit): else the row is bad, "bad field id"
// ("bad field" when the field is no integer at all); with a FeatureSpec::field_limit (a
// field-aware model) a field at or above it is "field id out of range (model.fields is F)".
//
// Cost: O(line length), no allocation once the block and the reason string have grown; the
// line must be followed by kLinePadding readable bytes. Not thread-safe (one per thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/data/parse_text.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"

namespace fmps::data_internal {

class SparseParser {
 public:
  // LabelPolicy::kOptional: a row whose first token contains ':' has no label (label NaN).
  explicit SparseParser(const RowRules& rules) : rules_(rules) {}

  // Each appends one row to *block and returns true, or returns false with *reason set and
  // possibly some non-zeros of the row appended (the caller abandons the row).
  bool ParseLibsvm(std::string_view line, RowBlock* block, std::string* reason) const;
  bool ParseLibffm(std::string_view line, RowBlock* block, std::string* reason) const;

 private:
  template <bool kFfm, bool kNormalize>
  bool ParseSparse(std::string_view line, RowBlock* block, std::string* reason) const;
  bool ParseSparseLabel(std::string_view tok, float* y, std::string* reason) const;
  // Rejects raw id 2^64-1 (the bias key) when ids are kept as given.
  bool IdInRange(std::uint64_t id) const { return rules_.hash_bits != 0 || id != kBiasKey; }
  bool IdError(const char* tok, const char* end, int feature, std::string* reason) const;
  bool FfmError(const char* tok, const char* end, int feature, std::string* reason) const;

  RowRules rules_;
};

}  // namespace fmps::data_internal
