// NegativeSampler: see negatives.h.

#include "common/data/negatives.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "common/base/error.h"
#include "common/base/hash.h"

namespace fmps {
namespace {

// The key in the item id field of row `r`, or 0 when the row has none.
Key ItemIdOf(const RowBlock& b, std::size_t r, std::uint32_t id_field) {
  for (std::size_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) {
    if (b.fields[i] == id_field) return b.keys[i];
  }
  return 0;
}

// Reads every row of `files` with `spec` into *block (one pass).
void ReadAll(const FeatureSpec& spec, const std::vector<std::string>& files, RowBlock* block) {
  ShardReader reader(spec, files, 0, 1);
  while (reader.Read(1 << 16, block) > 0) {
  }
}

}  // namespace

std::uint64_t NegativeRowHash(const RowBlock& block, std::size_t row, std::uint64_t seed,
                              std::uint64_t pass) {
  std::uint64_t h = Mix64(seed ^ 0x6e65676174697665ULL) ^ Mix64(pass + 0x9e3779b97f4a7c15ULL);
  for (std::size_t i = block.offsets[row]; i < block.offsets[row + 1]; ++i) {
    std::uint32_t bits;
    std::memcpy(&bits, &block.values[i], sizeof(bits));
    h = Mix64(h ^ block.keys[i]) + bits;
  }
  return Mix64(h);
}

NegativeSampler::NegativeSampler(const FeatureSpec& spec)
    : sides_(spec.data, spec.sides),
      per_positive_(spec.data.negatives.per_positive),
      seed_(spec.data.negatives.seed) {
  LoadCatalogue(spec);
  if (spec.data.negatives.distribution == NegativeDistribution::kPopularity) CountPopularity(spec);
}

void NegativeSampler::LoadCatalogue(const FeatureSpec& spec) {
  FeatureSpec items = spec;
  items.labels = LabelPolicy::kOptional;
  items.partial_columns = true;
  items.sample_negatives = false;
  items.data.on_error = OnError::kFail;
  RowBlock all;
  ReadAll(items, {spec.data.negatives.items}, &all);
  if (all.rows() == 0) {
    throw ConfigError("data.negatives.items: '" + spec.data.negatives.items + "' has no items");
  }
  for (std::size_t r = 0; r < all.rows(); ++r) {
    const Key id = ItemIdOf(all, r, sides_.item_id_field());
    if (id == 0) {
      throw ConfigError("data.negatives.items: item " + std::to_string(r + 1) + " of '" +
                        spec.data.negatives.items + "' has no value in the item id column '" +
                        spec.sides.item.front() + "'");
    }
    item_ids_.push_back(id);
    for (std::size_t i = all.offsets[r]; i < all.offsets[r + 1]; ++i) {
      if (sides_.Of(all.fields[i]) == Side::kItem) {
        catalogue_.AddFeature(all.keys[i], all.values[i], all.fields[i]);
      }
    }
    catalogue_.FinishRow(0.0f);
  }
}

void NegativeSampler::CountPopularity(const FeatureSpec& spec) {
  FeatureSpec train = spec;
  train.sample_negatives = false;
  train.data.on_error = OnError::kSkip;
  std::unordered_map<Key, std::uint64_t> counts;
  {
    ShardReader reader(train, ExpandPaths(spec.data.train, "data.train"), 0, 1);
    RowBlock block;
    while (reader.Read(1 << 16, &block) > 0) {
      for (std::size_t r = 0; r < block.rows(); ++r) {
        ++counts[ItemIdOf(block, r, sides_.item_id_field())];
      }
      block.Clear();
    }
  }
  cumulative_.resize(items());
  double total = 0.0;
  for (std::size_t i = 0; i < items(); ++i) {
    auto it = counts.find(item_ids_[i]);
    const double n = it == counts.end() ? 0.0 : static_cast<double>(it->second);
    total += n == 0.0 && spec.data.negatives.exponent != 0.0
                 ? 0.0
                 : std::pow(n, spec.data.negatives.exponent);
    cumulative_[i] = total;
  }
  if (total <= 0.0) {
    throw ConfigError(
        "data.negatives.distribution: popularity, but no catalogue item occurs in "
        "data.train");
  }
}

double NegativeSampler::Probability(std::size_t i) const {
  if (cumulative_.empty()) return 1.0 / static_cast<double>(items());
  return (cumulative_[i] - (i == 0 ? 0.0 : cumulative_[i - 1])) / cumulative_.back();
}

std::size_t NegativeSampler::DrawOnce(std::uint64_t h) const {
  if (cumulative_.empty()) {
    return static_cast<std::size_t>((static_cast<Uint128>(h) * items()) >> 64);
  }
  // u in [0, total): 53 random bits.
  const double u = static_cast<double>(h >> 11) * 0x1.0p-53 * cumulative_.back();
  const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
  return std::min<std::size_t>(it - cumulative_.begin(), items() - 1);
}

std::size_t NegativeSampler::Draw(std::uint64_t row_hash, int j, Key positive) const {
  // Redraws (a fresh hash each time) while the draw is the positive item; an item that is
  // the only one with weight gives up after 64 tries.
  for (std::uint64_t attempt = 0; attempt < 64; ++attempt) {
    const std::uint64_t h = Mix64(row_hash + Mix64((static_cast<std::uint64_t>(j) << 8) + attempt));
    const std::size_t i = DrawOnce(h);
    if (positive == 0 || item_ids_[i] != positive) return i;
  }
  return std::numeric_limits<std::size_t>::max();
}

void NegativeSampler::Append(RowBlock* block, std::size_t first_row, std::uint64_t pass) const {
  const std::size_t end_row = block->rows();
  for (std::size_t r = first_row; r < end_row; ++r) {
    const std::uint64_t h = NegativeRowHash(*block, r, seed_, pass);
    const Key positive = ItemIdOf(*block, r, sides_.item_id_field());
    for (int j = 0; j < per_positive_; ++j) {
      const std::size_t item = Draw(h, j, positive);
      if (item == std::numeric_limits<std::size_t>::max()) continue;
      for (std::size_t i = block->offsets[r]; i < block->offsets[r + 1]; ++i) {
        if (sides_.Of(block->fields[i]) != Side::kItem) {
          block->AddFeature(block->keys[i], block->values[i], block->fields[i]);
        }
      }
      for (std::size_t i = catalogue_.offsets[item]; i < catalogue_.offsets[item + 1]; ++i) {
        block->AddFeature(catalogue_.keys[i], catalogue_.values[i], catalogue_.fields[i]);
      }
      block->FinishRow(0.0f);
    }
  }
}

}  // namespace fmps
