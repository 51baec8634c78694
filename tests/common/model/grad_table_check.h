// The gradient table contract of ModelKernel::ForwardBackward (model_kernel.h), checked on
// one batch: on a table pre-filled with garbage (NaN, infinities, huge values, -0) the
// kernel writes rows 0 .. U-1 (U = 1 + the highest local id) with the bits of the old way
// (a zeroed table, the kernel's adds, then each row multiplied by its factor: key_mean's
// 1 / count and key_sqrt's 1 / sqrt(count)), with the batch's RowScaling off and on, leaves
// the rows from U on as they were, and gives the same scores and loss.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "common/model/model_kernel.h"

namespace fmps::testing_grads {

// The batch's local ids renumbered in first-occurrence order (the bias stays 0), as
// PreparedBatch::Deduplicate numbers them.
inline std::vector<std::uint32_t> FirstOccurrenceIds(const std::vector<std::uint32_t>& local) {
  std::vector<std::uint32_t> to(1 + *std::max_element(local.begin(), local.end()), 0);
  std::uint32_t next = 1;
  std::vector<std::uint32_t> out;
  for (const std::uint32_t u : local) {
    if (to[u] == 0) to[u] = next++;
    out.push_back(to[u]);
  }
  return out;
}

// A RowScaling for a batch: per id the factor of its count (sqrt: key_sqrt, else key_mean;
// the bias counts rows), the ids listed at the row of their last non-zero.
struct Scaling {
  std::vector<float> factors;
  std::vector<std::uint32_t> offsets, ids;

  Scaling(const ModelBatch& b, std::uint32_t table_rows, bool sqrt) {
    std::vector<std::uint32_t> counts(table_rows, 0), last(table_rows, 0);
    counts[0] = static_cast<std::uint32_t>(b.rows);
    for (std::size_t r = 0; r < b.rows; ++r) {
      for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
        ++counts[b.local[j]];
        last[b.local[j]] = static_cast<std::uint32_t>(r);
      }
    }
    std::vector<std::vector<std::uint32_t>> by_row(b.rows);
    for (std::uint32_t u = 0; u < table_rows; ++u) {
      const float fc = static_cast<float>(std::max(counts[u], 1u));
      factors.push_back(sqrt ? 1.0f / std::sqrt(fc) : 1.0f / fc);
      if (u > 0 && counts[u] > 0) by_row[last[u]].push_back(u);
    }
    offsets.push_back(0);
    for (const auto& row : by_row) {
      ids.insert(ids.end(), row.begin(), row.end());
      offsets.push_back(static_cast<std::uint32_t>(ids.size()));
    }
  }
  RowScaling view() const { return {factors.data(), offsets.data(), ids.data()}; }
};

// A copy of a batch with rows of 4 new keys each (ids from table_rows on, fields cycling)
// appended until the table reaches kFoldGradTableBytes: the kernel then zeroes and scales
// row by row (FoldsGradRows).
struct Widened {
  std::vector<float> labels, values, params;
  std::vector<std::size_t> offsets;
  std::vector<std::uint32_t> local, fields;
  std::uint32_t table_rows = 0;

  Widened(const ModelBatch& b, const ModelShape& shape, const float* p, std::uint32_t rows) {
    const std::size_t width = static_cast<std::size_t>(shape.row_width());
    const std::size_t nnz = b.offsets[b.rows];
    labels.assign(b.labels, b.labels + b.rows);
    offsets.assign(b.offsets, b.offsets + b.rows + 1);
    local.assign(b.local, b.local + nnz);
    values.assign(b.values, b.values + nnz);
    if (b.fields != nullptr) fields.assign(b.fields, b.fields + nnz);
    params.assign(p, p + std::size_t{rows} * width);
    for (table_rows = rows; !FoldsGradRows(table_rows, width);) {
      for (int j = 0; j < 4; ++j, ++table_rows) {
        local.push_back(table_rows);
        values.push_back(j == 2 ? 0.75f : 1.0f);
        fields.push_back(shape.fields > 0 ? table_rows % static_cast<std::uint32_t>(shape.fields)
                                          : 0);
        for (std::size_t f = 0; f < width; ++f) {
          params.push_back(0.01f * static_cast<float>((table_rows * 7 + f * 13) % 23) - 0.1f);
        }
      }
      offsets.push_back(local.size());
      labels.push_back(static_cast<float>(table_rows % 3 == 0));
    }
  }
  ModelBatch view() const {
    return {labels.size(), labels.data(), offsets.data(),
            local.data(),  values.data(), fields.data()};
  }
};

// The garbage a caller's table may hold.
inline std::vector<float> Garbage(std::size_t n) {
  const float pattern[] = {std::numeric_limits<float>::quiet_NaN(),
                           3e38f,
                           -std::numeric_limits<float>::infinity(),
                           -0.0f,
                           1e-45f,
                           -7.5f};
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = pattern[i % 6];
  return g;
}

inline void ExpectSameBitsOn(const ModelKernel& kernel, ModelBatch batch, const float* params,
                             std::uint32_t table_rows) {
  const std::size_t width = static_cast<std::size_t>(kernel.shape().row_width());
  const std::size_t nnz = batch.offsets[batch.rows];
  std::uint32_t top = 0;
  for (std::size_t j = 0; j < nnz; ++j) top = std::max(top, batch.local[j]);
  const std::size_t written = (std::size_t{top} + 1) * width;
  const std::size_t n = std::size_t{table_rows} * width;
  batch.scaling = {};
  std::vector<float> zeroed(n, 0.0f), scores_old(batch.rows), scores(batch.rows);
  const double loss_old = kernel.ForwardBackward(batch, params, zeroed.data(), scores_old.data());
  for (const bool sqrt : {false, true}) {
    for (const bool scaled : {false, true}) {
      if (sqrt && !scaled) continue;  // the unscaled run once
      SCOPED_TRACE(std::string(scaled ? "scaled" : "unscaled") + (sqrt ? " sqrt" : " mean"));
      const Scaling scaling(batch, table_rows, sqrt);
      std::vector<float> want = zeroed;
      for (std::size_t u = 0; scaled && u <= top; ++u) {
        for (std::size_t f = 0; f < width; ++f) want[u * width + f] *= scaling.factors[u];
      }
      if (scaled) batch.scaling = scaling.view();
      std::vector<float> got = Garbage(n);
      EXPECT_EQ(kernel.ForwardBackward(batch, params, got.data(), scores.data()), loss_old);
      batch.scaling = {};
      EXPECT_EQ(scores, scores_old);
      for (std::size_t p = 0; p < written; ++p) {
        ASSERT_EQ(0, std::memcmp(&got[p], &want[p], sizeof(float)))
            << "row " << p / width << " float " << p % width << ": " << got[p] << " vs " << want[p];
      }
      const std::vector<float> garbage = Garbage(n);
      EXPECT_EQ(0, std::memcmp(got.data() + written, garbage.data() + written,
                               (n - written) * sizeof(float)))
          << "rows from " << top + 1 << " on were touched";
    }
  }
}

// The check on the batch as it is (a small table: zeroed and scaled whole) and widened (row
// by row).
inline void ExpectSameBitsOnGarbageTable(const ModelKernel& kernel, const ModelBatch& batch,
                                         const float* params, std::uint32_t table_rows) {
  {
    SCOPED_TRACE("small table");
    ExpectSameBitsOn(kernel, batch, params, table_rows);
  }
  SCOPED_TRACE("table of rows zeroed and scaled one by one");
  const Widened wide(batch, kernel.shape(), params, table_rows);
  ExpectSameBitsOn(kernel, wide.view(), wide.params.data(), wide.table_rows);
}

}  // namespace fmps::testing_grads
