// Sides of a recall model (model.sides) and the checks of the recall settings.
//
// A field is named as the config names it: a csv column (data.csv.numeric, then
// data.csv.categorical: field ids 0..N+C-1 in that order, see common/data/csv_parser.h),
// a criteo column I1..I13, C1..C26 (field ids 0..38), or a libffm field id in decimal.
// libsvm has no fields, hence no sides. The first item-side field is the item id: negative
// sampling, embed and recall identify an item by its value there.
//
// Thread safety: plain values and pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config/config.h"

namespace fmps {

enum class Side : std::uint8_t { kNone, kUser, kItem };

// The names of the fields of `data` in field-id order; empty for libffm (any id) and libsvm.
std::vector<std::string> FieldNames(const DataConfig& data);

// Whether model.sides may be set for this model. FM only (sides need the score to split
// into a user part, an item part and an inner product); a new kind is one line here.
bool SidesSupported(const ModelConfig& model);

// Checks model.sides, data.csv.multi and data.negatives against the rest of the config:
// every side field exists, each on exactly one side, every field of a csv or criteo config
// on a side; multi columns are categorical; negatives need csv and sides. Throws
// ConfigError naming the key.
void ValidateRecallConfig(const Config& config);

// Field id -> side, for the fields of a validated config.
class SideMap {
 public:
  SideMap() = default;
  SideMap(const DataConfig& data, const SidesConfig& sides);
  bool empty() const { return sides_.empty(); }
  // The side of `field`; kNone for a field on no side (possible for libffm only).
  Side Of(std::uint32_t field) const { return field < sides_.size() ? sides_[field] : Side::kNone; }
  std::uint32_t item_id_field() const { return item_id_field_; }
  std::uint32_t user_id_field() const { return user_id_field_; }

 private:
  std::vector<Side> sides_;  // indexed by field id
  std::uint32_t item_id_field_ = 0;
  std::uint32_t user_id_field_ = 0;
};

}  // namespace fmps
