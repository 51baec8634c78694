#include "server/store/arena.h"

#include <algorithm>
#include <stdexcept>

#include "common/base/huge_pages.h"

namespace fmps::store_internal {
namespace {

// A zeroed, 2 MiB-aligned huge-page chunk whose pages are already faulted in: the kernel
// zeroes a transparent huge page on its first touch, a cost worth moving off the owner's
// thread.
char* FaultedChunk() {
  char* p = MapZeroed(kHugePageBytes);
  for (std::size_t off = 0; off < kHugePageBytes; off += kPageBytes) {
    reinterpret_cast<volatile char*>(p)[off] = 0;
  }
  return p;
}

}  // namespace

Arena::Arena(std::size_t stride_bytes)
    : stride_(stride_bytes),
      rows_per_chunk_(static_cast<std::uint32_t>(kHugePageBytes / stride_bytes)),
      // Lemire's fastdiv: i / rows_per_chunk_ == (magic_ * i) >> 64 for every 32-bit i.
      magic_(~std::uint64_t{0} / rows_per_chunk_ + 1) {
  if (rows_per_chunk_ < 2) throw std::invalid_argument("ParamStore: row too wide");
}

Arena::~Arena() {
  for (std::size_t c = 0; c < chunks_.size(); ++c) {
    Unmap(chunks_[c], c == 0 ? first_bytes_ : kHugePageBytes);
  }
  if (next_.valid()) {
    try {
      Unmap(next_.get(), kHugePageBytes);
    } catch (...) {  // the background mapping failed: nothing to unmap
    }
  }
}

void Arena::CopyTo(char* dst) const {
  std::size_t left = rows_;
  for (std::size_t c = 0; c < chunks_.size() && left > 0; ++c) {
    const std::size_t n = std::min<std::size_t>(left, rows_per_chunk_);
    std::memcpy(dst, chunks_[c], n * stride_);
    dst += n * stride_;
    left -= n;
  }
}

std::size_t Arena::bytes() const {
  std::size_t b = chunks_.capacity() * sizeof(char*);
  if (!chunks_.empty()) b += first_bytes_ + (chunks_.size() - 1) * kHugePageBytes;
  if (next_.valid()) b += kHugePageBytes;  // the chunk being prepared
  return b;
}

void Arena::Grow() {
  if (rows_ >= kMaxRows) throw std::length_error("ParamStore: more than 2^32 - 1 rows");
  if (chunks_.empty()) {
    first_bytes_ = std::min(
        kHugePageBytes, RoundUp(std::max<std::size_t>(16 * stride_, 4 * kPageBytes), kPageBytes));
    chunks_.push_back(MapZeroed(first_bytes_));
  } else if (chunks_.size() == 1 && first_bytes_ < kHugePageBytes) {
    const std::size_t bytes = std::min(kHugePageBytes, 2 * first_bytes_);
    char* grown = MapZeroed(bytes);
    std::memcpy(grown, chunks_[0], static_cast<std::size_t>(rows_) * stride_);
    Unmap(chunks_[0], first_bytes_);
    chunks_[0] = grown;
    first_bytes_ = bytes;
  } else {
    // get() rethrows a failed background mapping (std::bad_alloc) here, on the owner.
    chunks_.push_back(next_.valid() ? next_.get() : FaultedChunk());
  }
  if (chunks_.size() >= kChunksBeforeFaultAhead && !next_.valid()) {
    next_ = std::async(std::launch::async, FaultedChunk);
  }
  const std::uint64_t first_rows = std::min<std::uint64_t>(rows_per_chunk_, first_bytes_ / stride_);
  const std::uint64_t cap = chunks_.size() == 1
                                ? first_rows
                                : static_cast<std::uint64_t>(chunks_.size()) * rows_per_chunk_;
  capacity_ = static_cast<std::uint32_t>(std::min(cap, kMaxRows));
}

}  // namespace fmps::store_internal
