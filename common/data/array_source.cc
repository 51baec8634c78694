#include "common/data/array_source.h"

#include <algorithm>
#include <limits>

#include "common/base/error.h"

namespace fmps {

ByteRange ArrayShard(std::size_t rows, int w, int n) {
  const std::uint64_t q = rows / static_cast<std::uint64_t>(n);
  const std::uint64_t r = rows % static_cast<std::uint64_t>(n);
  const auto cut = [&](int i) {  // floor(rows * i / n) without overflow
    const auto u = static_cast<std::uint64_t>(i);
    return q * u + r * u / static_cast<std::uint64_t>(n);
  };
  return {cut(w), cut(w + 1)};
}

ArrayRowSource::ArrayRowSource(const CsrArrays& arrays, ByteRange range, Normalize normalize)
    : arrays_(arrays),
      range_(range),
      normalize_(normalize == Normalize::kInstance),
      next_(range.begin) {
  if (range.begin > range.end || range.end > arrays.rows) {
    throw ConfigError("array rows [" + std::to_string(range.begin) + ", " +
                      std::to_string(range.end) + ") outside a matrix of " +
                      std::to_string(arrays.rows) + " rows");
  }
}

template <typename I, typename V>
void ArrayRowSource::AppendRows(std::size_t first, std::size_t count, RowBlock* block) const {
  const I* indptr = static_cast<const I*>(arrays_.indptr);
  const I* indices = static_cast<const I*>(arrays_.indices);
  const V* data = static_cast<const V*>(arrays_.data);
  const std::size_t begin = static_cast<std::size_t>(indptr[first]);
  const std::size_t end = static_cast<std::size_t>(indptr[first + count]);
  const std::size_t base = block->keys.size();
  const std::size_t n = end - begin;
  block->keys.resize(base + n);
  block->values.resize(base + n);
  block->fields.resize(base + n);
  Key* keys = block->keys.data() + base;
  float* values = block->values.data() + base;
  std::uint32_t* fields = block->fields.data() + base;
  for (std::size_t i = 0; i < n; ++i) {
    const auto col = static_cast<std::size_t>(indices[begin + i]);
    keys[i] = col;
    values[i] = static_cast<float>(data[begin + i]);
    fields[i] = arrays_.fields == nullptr ? 0u : arrays_.fields[col];
  }
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::size_t r = first; r < first + count; ++r) {
    block->labels.push_back(arrays_.labels == nullptr ? nan : arrays_.labels[r]);
    block->offsets.push_back(base + static_cast<std::size_t>(indptr[r + 1]) - begin);
    if (normalize_) block->NormalizeLastRow();
  }
}

std::size_t ArrayRowSource::Read(std::size_t max_rows, RowBlock* block) {
  const std::size_t count = std::min<std::size_t>(max_rows, range_.end - next_);
  if (count == 0) return 0;
  const bool wide = arrays_.index == CsrArrays::Index::kInt64;
  const bool dbl = arrays_.value == CsrArrays::Value::kFloat64;
  if (wide && dbl) AppendRows<std::int64_t, double>(next_, count, block);
  if (wide && !dbl) AppendRows<std::int64_t, float>(next_, count, block);
  if (!wide && dbl) AppendRows<std::int32_t, double>(next_, count, block);
  if (!wide && !dbl) AppendRows<std::int32_t, float>(next_, count, block);
  next_ += count;
  return count;
}

void ArrayRowSource::Remaining(std::vector<ByteRange>* out) const {
  out->clear();
  if (next_ < range_.end) out->push_back({next_, range_.end});
}

}  // namespace fmps
