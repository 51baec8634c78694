// The per-key gradient scalings of optimizer.gradient: key_mean divides each key's summed
// gradient row by the key's occurrence count in the batch (the bias: by the number of rows),
// key_sqrt by the count's square root. Both multiply a row by a reciprocal (from a table for
// counts below 1024, else computed), the same float for the same count wherever it is used:
// the worker's kernel scales rows at their last use (ModelBatch::scaling) with ScaleFactors;
// DivideByCounts / DivideBySqrtCounts scale a finished table (tests and benches compare).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/config/config.h"

namespace fmps {

// The key_mean scaling: divides key u's `width` gradients (grads[u * width ...]) by
// counts[u] when it is above 1. O(counts.size() * width); no allocation.
void DivideByCounts(std::span<const std::uint32_t> counts, int width, float* grads);
// The key_sqrt scaling: the same with sqrt(counts[u]). O(counts.size() * width).
void DivideBySqrtCounts(std::span<const std::uint32_t> counts, int width, float* grads);

// (*factors)[u] = what DivideByCounts (kKeyMean) or DivideBySqrtCounts (kKeySqrt) multiplies
// row u by; another `gradient` throws std::invalid_argument. O(counts.size()).
void ScaleFactors(GradientScale gradient, std::span<const std::uint32_t> counts,
                  std::vector<float>* factors);

}  // namespace fmps
