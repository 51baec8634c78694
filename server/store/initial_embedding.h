// The deterministic initial embedding of a key (ParamStore gives it to every new v).
#pragma once

#include <cstdint>

#include "common/base/types.h"

namespace fmps {

// Deterministic N(0, std^2) initial embedding of `key`: writes n floats to out. Depends only
// on (seed, key, n), not on sharding or arrival order. Thread-safe. Cost: O(n), a few ns per
// float (vectorised Box-Muller).
void InitialEmbedding(std::uint64_t seed, Key key, int n, float std, float* out);

}  // namespace fmps
