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
    for (const std::uint32_t c : counts) {
      const float fc = static_cast<float>(std::max(c, 1u));
      factors.push_back(sqrt ? 1.0f / std::sqrt(fc) : 1.0f / fc);
    }
    offsets.push_back(0);
    for (std::size_t r = 0; r < b.rows; ++r) {
      for (std::uint32_t u = 1; u < table_rows; ++u) {
        if (counts[u] > 0 && last[u] == r) ids.push_back(u);
      }
      offsets.push_back(static_cast<std::uint32_t>(ids.size()));
    }
  }
  RowScaling view() const { return {factors.data(), offsets.data(), ids.data()}; }
};

// The garbage a caller's table may hold.
inline std::vector<float> Garbage(std::size_t n) {
  const float pattern[] = {std::numeric_limits<float>::quiet_NaN(), 3e38f,
                           -std::numeric_limits<float>::infinity(), -0.0f, 1e-45f, -7.5f};
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = pattern[i % 6];
  return g;
}

inline void ExpectSameBitsOnGarbageTable(const ModelKernel& kernel, ModelBatch batch,
                                         const float* params, std::uint32_t table_rows) {
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

}  // namespace fmps::testing_grads
