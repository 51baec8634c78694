// The bookkeeping shared by the transport's buffer pools (ValueBufferPool's value arrays,
// MpiTransport's send buffers): best fit on take, keep the largest on return. Plain functions
// over a vector of buffers; `capacity_of(buffer)` gives a buffer's capacity. Not thread-safe
// (the owner's). Cost: O(buffers.size()) per call, no copies of the buffers' contents.
#pragma once

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace fmps {

// The kept buffer whose capacity is the smallest that holds n (buffers.end() when none does).
template <class Buffer, class CapacityOf>
typename std::vector<Buffer>::iterator SmallestFitting(std::vector<Buffer>& buffers, std::size_t n,
                                                       CapacityOf capacity_of) {
  auto best = buffers.end();
  for (auto it = buffers.begin(); it != buffers.end(); ++it) {
    if (capacity_of(*it) >= n && (best == buffers.end() || capacity_of(*it) < capacity_of(*best))) {
      best = it;
    }
  }
  return best;
}

// Keeps `buffer` among at most max_buffers: when they are all taken it replaces the smallest
// kept one if it is bigger, else it is dropped.
template <class Buffer, class CapacityOf>
void KeepLargest(std::vector<Buffer>* buffers, std::size_t max_buffers, Buffer&& buffer,
                 CapacityOf capacity_of) {
  if (max_buffers == 0) return;
  if (buffers->size() < max_buffers) {
    buffers->push_back(std::move(buffer));
    return;
  }
  auto smallest = std::min_element(
      buffers->begin(), buffers->end(),
      [&](const Buffer& a, const Buffer& b) { return capacity_of(a) < capacity_of(b); });
  if (capacity_of(*smallest) < capacity_of(buffer)) *smallest = std::move(buffer);
}

}  // namespace fmps
