#include "common/base/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace fmps {

char* MapZeroed(std::size_t bytes) {
  const bool huge = bytes >= kHugePageBytes;
  const std::size_t reserve = huge ? bytes + kHugePageBytes : bytes;
  void* p = mmap(nullptr, reserve, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (!huge) return static_cast<char*>(p);
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t aligned = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  if (aligned > begin) munmap(p, aligned - begin);
  const std::uintptr_t end = begin + reserve;
  if (end > aligned + bytes) {
    munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  }
  madvise(reinterpret_cast<void*>(aligned), bytes, MADV_HUGEPAGE);
  return reinterpret_cast<char*>(aligned);
}

void Unmap(void* p, std::size_t bytes) {
  if (p != nullptr) munmap(p, bytes);
}

void ReserveHugeFloats(std::vector<float>* buffer, std::size_t n) {
  if (buffer->capacity() >= n) return;
  std::vector<float>().swap(*buffer);  // drop the old array first: nothing to copy
  buffer->reserve(n + n / 8);
  const auto begin = reinterpret_cast<std::uintptr_t>(buffer->data());
  const std::uintptr_t end = begin + buffer->capacity() * sizeof(float);
  const std::uintptr_t first = (begin + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  const std::uintptr_t last = end / kHugePageBytes * kHugePageBytes;
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
}

}  // namespace fmps
