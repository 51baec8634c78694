// The field-aware FM (FFM) implementation of ModelKernel (model_kernel.h); use MakeKernel
// rather than this.
//
// A key's row is (w, v_{.,0}, ..., v_{.,F-1}): F vectors of k floats, the one for field f at
// 1 + f * k. Non-zero i of field f_i pairs with non-zero j through <v_{i,f_j}, v_{j,f_i}>, so
// a row of n non-zeros costs O(n^2 k) (n = 39, k = 8: 741 pairs, ~6k multiply-adds).
//
// Blocking: each row is scored, its loss taken and its gradient scattered before the next
// row, so the row's parameter rows (n keys of up to F * k floats, the part the pairs read)
// and their gradient rows are still in cache when the backward pass re-reads them. The pair
// loops use GCC vector extensions for k = 4, 8, 16, 32 (two accumulators per non-zero);
// other k take a scalar loop.
//
// The batch's fields must be set and below shape.fields (ModelBatch::fields).
#pragma once

#include <memory>

#include "common/model/model_kernel.h"

namespace fmps {

// shape.kind must be kFfm and the shape valid (else ModelError).
std::unique_ptr<ModelKernel> MakeFfmKernel(const ModelShape& shape, Loss loss);

}  // namespace fmps
