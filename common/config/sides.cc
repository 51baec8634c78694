// Sides of a recall model: see sides.h.

#include "common/config/sides.h"

#include <algorithm>
#include <charconv>

#include "common/base/error.h"

namespace fmps {
namespace {

// The field id of `name` under `data`, or -1 when it names no field.
std::int64_t FieldId(const DataConfig& data, const std::string& name) {
  if (data.format == DataFormat::kLibffm) {
    std::uint64_t id = 0;
    const char* end = name.data() + name.size();
    auto [p, ec] = std::from_chars(name.data(), end, id);
    if (ec != std::errc() || p != end || id >= 0xffffffffull) return -1;
    return static_cast<std::int64_t>(id);
  }
  const std::vector<std::string> names = FieldNames(data);
  auto it = std::find(names.begin(), names.end(), name);
  return it == names.end() ? -1 : it - names.begin();
}

void CheckSide(const Config& c, const std::vector<std::string>& side, const char* key,
               std::vector<std::string>* seen) {
  if (side.empty()) {
    throw ConfigError(std::string(key) + ": empty (model.sides needs a user and an item side)");
  }
  for (const std::string& name : side) {
    if (FieldId(c.data, name) < 0) {
      throw ConfigError(std::string(key) + ": '" + name + "' is not a field of data.format " +
                        ToString(c.data.format) +
                        (c.data.format == DataFormat::kCsv
                             ? " (list it under data.csv.numeric or data.csv.categorical)"
                             : ""));
    }
    if (std::find(seen->begin(), seen->end(), name) != seen->end()) {
      throw ConfigError(std::string(key) + ": field '" + name +
                        "' is on a side already (each field on exactly one side)");
    }
    seen->push_back(name);
  }
}

void ValidateSides(const Config& c) {
  const SidesConfig& s = c.model.sides;
  if (s.user.empty() && s.item.empty()) return;
  if (!SidesSupported(c.model)) throw ConfigError("model.sides: applies to model.kind fm only");
  if (c.data.format == DataFormat::kLibsvm) {
    throw ConfigError("model.sides: data.format libsvm has no fields (use csv, libffm or criteo)");
  }
  if (c.data.normalize != Normalize::kNone) {
    throw ConfigError(
        "data.normalize: a recall model (model.sides) needs data.normalize: none (scaling a "
        "row by its norm mixes the user's and the item's features, so the score no longer "
        "splits into a user and an item vector)");
  }
  std::vector<std::string> seen;
  CheckSide(c, s.user, "model.sides.user", &seen);
  CheckSide(c, s.item, "model.sides.item", &seen);
  for (const std::string& name : FieldNames(c.data)) {
    if (std::find(seen.begin(), seen.end(), name) == seen.end()) {
      throw ConfigError("model.sides: field '" + name +
                        "' is on no side (every field on exactly one side)");
    }
  }
}

void ValidateMultiAndNegatives(const Config& c) {
  for (const std::string& name : c.data.csv.multi) {
    const auto& cat = c.data.csv.categorical;
    if (std::find(cat.begin(), cat.end(), name) == cat.end()) {
      throw ConfigError("data.csv.multi: column '" + name +
                        "' is not in data.csv.categorical (multi-valued columns are categorical)");
    }
  }
  if (c.data.negatives.per_positive == 0) return;
  if (c.data.format != DataFormat::kCsv) {
    throw ConfigError("data.negatives: needs data.format csv (the catalogue is a csv file)");
  }
  if (c.model.sides.item.empty()) {
    throw ConfigError("data.negatives: needs model.sides (which columns are the item's)");
  }
  if (c.model.loss != Loss::kLogistic) {
    throw ConfigError("data.negatives: needs model.loss logistic (negatives have label 0)");
  }
}

}  // namespace

std::vector<std::string> FieldNames(const DataConfig& data) {
  std::vector<std::string> names;
  if (data.format == DataFormat::kCsv) {
    names = data.csv.numeric;
    names.insert(names.end(), data.csv.categorical.begin(), data.csv.categorical.end());
  } else if (data.format == DataFormat::kCriteo) {
    for (int i = 0; i < 39; ++i) {
      std::string name(1, i < 13 ? 'I' : 'C');
      name.append(std::to_string(i < 13 ? i + 1 : i - 12));
      names.push_back(std::move(name));
    }
  }
  return names;
}

bool SidesSupported(const ModelConfig& model) { return model.kind == ModelKind::kFm; }

void ValidateRecallConfig(const Config& config) {
  ValidateSides(config);
  ValidateMultiAndNegatives(config);
}

SideMap::SideMap(const DataConfig& data, const SidesConfig& sides) {
  auto mark = [&](const std::vector<std::string>& names, Side side) {
    for (const std::string& name : names) {
      const std::int64_t id = FieldId(data, name);
      if (id < 0) throw ConfigError("model.sides: '" + name + "' is not a field");
      if (static_cast<std::size_t>(id) >= sides_.size()) sides_.resize(id + 1, Side::kNone);
      sides_[id] = side;
    }
  };
  mark(sides.user, Side::kUser);
  mark(sides.item, Side::kItem);
  if (!sides.item.empty())
    item_id_field_ = static_cast<std::uint32_t>(FieldId(data, sides.item[0]));
  if (!sides.user.empty())
    user_id_field_ = static_cast<std::uint32_t>(FieldId(data, sides.user[0]));
}

}  // namespace fmps
