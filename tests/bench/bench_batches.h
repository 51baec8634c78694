// Helpers shared by the micro-benchmarks' batches (fmps_bench.cc, ffm_bench.cc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <unordered_map>
#include <vector>

namespace fmps::bench {

// Renumbers a batch's local ids in first-occurrence order (the first new id 1, then 2, ...),
// as the trainer's batches are (PreparedBatch::Deduplicate): ModelKernel::ForwardBackward
// then zeroes each gradient row where the batch first uses it (model_kernel.h), as in
// training, instead of zeroing every row below a high id at once.
inline void NumberInFirstOccurrenceOrder(std::vector<std::uint32_t>* local) {
  std::unordered_map<std::uint32_t, std::uint32_t> to;
  to.reserve(local->size());
  for (std::uint32_t& u : *local) {
    u = to.emplace(u, static_cast<std::uint32_t>(to.size() + 1)).first->second;
  }
}

}  // namespace fmps::bench
