#include "server/store/arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "common/base/huge_pages.h"

namespace fmps::store_internal {
namespace {

// An arena grown in a tight loop well past the point where it starts faulting chunks ahead
// (faster than the background thread faults 2 MiB chunks, so the owner waits on some): every
// row is zero when added and keeps what was written to it, indices are dense, a copy is the
// rows in order, and the memory held never exceeds the chunks the rows need plus one ahead.
TEST(ArenaTest, FastGrowthKeepsRowsAndAtMostOneChunkAhead) {
  constexpr std::size_t kStride = 2560;  // an FFM row at 39 fields, k 8, AdaGrad
  const std::size_t per_chunk = kHugePageBytes / kStride;
  const std::size_t rows = per_chunk * (kChunksBeforeFaultAhead + 24);
  Arena arena(kStride);
  const std::vector<char> zeros(kStride, 0);
  for (std::size_t i = 0; i < rows; ++i) {
    const std::uint32_t idx = arena.Add();
    ASSERT_EQ(idx, i);
    char* r = arena.Row(idx);
    ASSERT_EQ(std::memcmp(r, zeros.data(), kStride), 0) << "row " << i;
    const std::uint64_t mark = i * 0x9e3779b97f4a7c15ULL + 1;
    std::memcpy(r, &mark, sizeof(mark));
    std::memcpy(r + kStride - sizeof(mark), &mark, sizeof(mark));
    const std::size_t chunks = (i + per_chunk) / per_chunk;  // the rows' chunks, rounded up
    ASSERT_LE(arena.bytes(), (chunks + 1) * kHugePageBytes + kPageBytes) << "row " << i;
    ASSERT_GE(arena.bytes(), (i + 1) * kStride);
  }
  for (std::size_t i = 0; i < rows; ++i) {
    const char* r = arena.Row(static_cast<std::uint32_t>(i));
    const std::uint64_t mark = i * 0x9e3779b97f4a7c15ULL + 1;
    std::uint64_t head = 0, tail = 0;
    std::memcpy(&head, r, sizeof(head));
    std::memcpy(&tail, r + kStride - sizeof(tail), sizeof(tail));
    ASSERT_EQ(head, mark) << "row " << i;
    ASSERT_EQ(tail, mark) << "row " << i;
  }
  std::vector<char> copy(rows * kStride);
  arena.CopyTo(copy.data());
  for (std::size_t i = 0; i < rows; i += per_chunk / 2) {
    ASSERT_EQ(
        std::memcmp(copy.data() + i * kStride, arena.Row(static_cast<std::uint32_t>(i)), kStride),
        0);
  }
}

}  // namespace
}  // namespace fmps::store_internal
