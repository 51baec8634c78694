// RowBlock: a batch of sparse rows in CSR form, the unit the readers produce and the
// worker trains on. Not thread-safe; owned by one thread at a time. Clear() keeps capacity,
// so a reused block makes no allocation once it has grown to the batch size.
//
// Fields: every non-zero carries the field (feature group) it belongs to, for field-aware
// models and for splitting a row into sides; the FM ignores them. The readers set it as
// follows (see common/data/*_parser.h):
//   libffm  the field written in the file ("field:id:value"), below kFieldLimit;
//   criteo  the column index 0..38 (13 integer columns, then 26 categorical ones);
//   csv     the column's index in data.csv.numeric followed by data.csv.categorical;
//   libsvm  0 for every non-zero (the format has no fields).
// Blocks from the readers keep fields.size() == nnz(); a block built by hand through
// AddFeature does too, one built by pushing to keys/values directly may leave fields empty.
#pragma once

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/base/types.h"

namespace fmps {

// Field ids are below kFieldLimit (2^32 - 1): the top value is reserved.
inline constexpr std::uint32_t kFieldLimit = 0xffffffffu;

struct RowBlock {
  std::vector<float> labels;            // one per row
  std::vector<std::size_t> offsets{0};  // rows + 1 entries; row r is [offsets[r], offsets[r+1])
  std::vector<Key> keys;                // feature keys, one per non-zero
  std::vector<float> values;            // feature values, parallel to keys
  std::vector<std::uint32_t> fields;    // feature fields, parallel to keys (see above)

  std::size_t rows() const { return labels.size(); }
  std::size_t nnz() const { return keys.size(); }

  void Clear() {
    labels.clear();
    offsets.assign(1, 0);
    keys.clear();
    values.clear();
    fields.clear();
  }
  // Appends one non-zero to the row being built. Amortised O(1).
  void AddFeature(Key key, float value, std::uint32_t field = 0) {
    keys.push_back(key);
    values.push_back(value);
    fields.push_back(field);
  }
  // Closes the row being built with its label.
  void FinishRow(float label) {
    labels.push_back(label);
    offsets.push_back(keys.size());
  }
  // What NormalizeLastRow needs of a row's values, gathered value by value in row order as
  // a parser adds them (Add), so that normalising is then one pass of multiplies: the same
  // bits as NormalizeLastRow() computes from the finished row.
  static constexpr std::uint32_t kOneBits = 0x3f800000u;  // 1.0f
  static_assert(std::bit_cast<float>(kOneBits) == 1.0f);
  struct RowSquares {
    std::uint32_t diff = 0;  // 0 iff every value is 1.0f (compared as bits)
    double sum = 0.0;        // sum of squares, in double, in row order
    void Add(float v) {
      diff |= std::bit_cast<std::uint32_t>(v) ^ kOneBits;
      sum += static_cast<double>(v) * v;
    }
  };
  // Scales the values of the last finished row to unit L2 norm (a row of zeros, or one
  // without features, is left as it is). O(row's non-zeros). A row whose values are all 1
  // (one-hot data) takes a shortcut with the same bits: its sum of squares is exactly n, and
  // 1 * inv is inv. The general loop's sum is a chain of dependent double additions, about
  // 4 cycles a non-zero, which was 15-20% of libsvm parsing.
  void NormalizeLastRow() {
    const std::size_t begin = offsets[offsets.size() - 2];
    const std::size_t end = offsets.back();
    if (begin == end) return;
    std::uint32_t diff = 0;  // 0 iff every value is 1.0f (compared as bits: vectorizes)
    for (std::size_t i = begin; i < end; ++i)
      diff |= std::bit_cast<std::uint32_t>(values[i]) ^ kOneBits;
    RowSquares sq{.diff = diff};
    if (diff != 0) {
      for (std::size_t i = begin; i < end; ++i)
        sq.sum += static_cast<double>(values[i]) * values[i];
    }
    NormalizeLastRow(sq);
  }
  // The same, given the row's RowSquares (every value of the row Add-ed in order).
  void NormalizeLastRow(const RowSquares& sq) {
    const std::size_t begin = offsets[offsets.size() - 2];
    const std::size_t end = offsets.back();
    if (begin == end) return;
    if (sq.diff == 0) {
      const auto inv = static_cast<float>(1.0 / std::sqrt(static_cast<double>(end - begin)));
      for (std::size_t i = begin; i < end; ++i) values[i] = inv;
      return;
    }
    if (sq.sum == 0.0) return;
    const double inv = 1.0 / std::sqrt(sq.sum);
    for (std::size_t i = begin; i < end; ++i) values[i] = static_cast<float>(values[i] * inv);
  }
  // Drops the non-zeros added since the last FinishRow (used when a row turns out malformed).
  void AbandonRow() {
    keys.resize(offsets.back());
    values.resize(offsets.back());
    fields.resize(offsets.back());
  }
};

}  // namespace fmps
