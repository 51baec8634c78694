// Factorization Machine math on a minibatch, O(k * nnz):
//   y(x) = w0 + sum_i w_i x_i + 1/2 sum_f [ (sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2 ].
//
// The batch refers to parameters through local indices into a table of rows pulled from
// the servers: row u is params[u * (1 + k) ...] = (w_u, v_u[0..k)). Row 0 is the bias: its w
// is w0 (its v is unused). Gradients use the same layout. Pure functions; thread-safe on
// distinct outputs.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/config/config.h"

namespace fmps {

struct FmBatch {
  std::size_t rows = 0;
  const float* labels = nullptr;         // rows
  const std::size_t* offsets = nullptr;  // rows + 1
  const std::uint32_t* local = nullptr;  // nnz local row indices (never 0: that is the bias)
  const float* values = nullptr;         // nnz
};

// Writes the raw score of each row into scores[rows].
void FmScores(const FmBatch& batch, const float* params, int k, float* scores);

// Scores every row, adds d(sum of losses)/d(param) into grads (same layout as params; the
// caller zeroes it first; the bias gradient goes to grads[0]; it must not overlap params) and
// returns the sum of the rows' losses. If `scores` is non-null the raw scores are written
// there too.
double FmForwardBackward(const FmBatch& batch, const float* params, int k, Loss loss, float* grads,
                         float* scores);

}  // namespace fmps
