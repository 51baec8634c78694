// Internals of ParamStore (param_store.h), not for use elsewhere: the row arena and the
// word helpers shared by the store's translation units.
//
// Arena: rows of a fixed stride in 2 MiB chunks (one huge page each): growing never moves or
// copies existing chunks, so there is no 2x reallocation spike and the slack is at most one
// chunk. Only the first chunk starts small and doubles (moving its rows) until it is
// full-size, so that small stores stay small. Rows are zero-filled when added. Once the
// arena has kChunksBeforeFaultAhead chunks, the next chunk is mapped and faulted in on a
// background thread while the current one fills, so the page faults are off the owner's
// (the server's) thread; the background thread touches only that new mapping. (Not sooner:
// the chunk held ahead is then at most 1/16 of the arena, which keeps the store's memory
// bound.) Thread safety: none (one owner). Cost: Add and Row are O(1); Row is a multiply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <future>
#include <limits>
#include <vector>

#include "common/base/types.h"

namespace fmps::store_internal {

constexpr std::uintptr_t kLineBytes = 64;

// Row indices are stored +1 in 32 bits (0 marks an empty slot / a missing v).
constexpr std::uint32_t kNoRow = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kMaxRows = kNoRow;  // indices 0 .. 2^32 - 2

inline std::size_t RoundUp(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }

// Prefetches every cache line of [p, p + bytes).
template <bool kWrite>
inline void PrefetchRange(const void* p, std::size_t bytes) {
  const auto begin = reinterpret_cast<std::uintptr_t>(p) & ~(kLineBytes - 1);
  const auto end = reinterpret_cast<std::uintptr_t>(p) + bytes;
  for (std::uintptr_t a = begin; a < end; a += kLineBytes) {
    __builtin_prefetch(reinterpret_cast<const void*>(a), kWrite ? 1 : 0, 3);
  }
}

inline std::uint32_t Load32(const float* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline void Store32(float* p, std::uint32_t v) { std::memcpy(p, &v, sizeof(v)); }

inline Key LoadKey(const float* p) {
  Key k;
  std::memcpy(&k, p, sizeof(k));
  return k;
}

constexpr std::size_t kChunksBeforeFaultAhead = 16;

class Arena {
 public:
  explicit Arena(std::size_t stride_bytes);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Index of a new zero-filled row. Invalidates pointers returned by Row() (the first chunk
  // may move while it grows); indices stay valid.
  std::uint32_t Add() {
    if (rows_ == capacity_) Grow();
    return rows_++;
  }

  char* Row(std::uint32_t i) const {
    __extension__ using U128 = unsigned __int128;
    const auto c = static_cast<std::uint32_t>((static_cast<U128>(magic_) * i) >> 64);
    return chunks_[c] + static_cast<std::size_t>(i - c * rows_per_chunk_) * stride_;
  }

  std::uint32_t rows() const { return rows_; }
  std::size_t stride() const { return stride_; }

  // Copies every row, packed at the stride, to dst (rows() * stride() bytes): one memcpy per
  // chunk.
  void CopyTo(char* dst) const;

  std::size_t bytes() const;  // memory held, the chunk being prepared included

 private:
  void Grow();

  std::size_t stride_;
  std::uint32_t rows_per_chunk_;
  std::uint64_t magic_;
  std::vector<char*> chunks_;
  std::size_t first_bytes_ = 0;
  std::uint32_t rows_ = 0;
  std::uint32_t capacity_ = 0;
  std::future<char*> next_;  // the next full-size chunk, being faulted in
};

}  // namespace fmps::store_internal
