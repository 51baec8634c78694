// Memory for large, randomly accessed tables: anonymous mappings advised as transparent huge
// pages (opt-in on hosts whose THP mode is "madvise"), so that random accesses into tens of
// MB miss the TLB far less (4 KiB pages cover 8 MB of a 2048-entry TLB; 2 MiB pages, 4 GB).
//
// Thread safety: the functions and the allocator are stateless and thread-safe. Cost: a
// mapping is one mmap (plus up to two munmaps to align it) and one madvise; the kernel
// zeroes its pages on first touch.
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace fmps {

inline constexpr std::size_t kPageBytes = 4096;
inline constexpr std::size_t kHugePageBytes = std::size_t{2} << 20;

// A zero-filled anonymous mapping of `bytes` (a multiple of kPageBytes). Mappings of at
// least one huge page are 2 MiB-aligned and advised as transparent huge pages. Throws
// std::bad_alloc if the mapping fails.
char* MapZeroed(std::size_t bytes);

// Unmaps a MapZeroed(bytes) mapping; p may be null.
void Unmap(void* p, std::size_t bytes);

// Makes *buffer's capacity at least n floats for a buffer whose contents are about to be
// overwritten (a pull or gradient buffer of tens of MB, read at random by a model kernel):
// when it must grow, its old contents are dropped (not copied), it gets 1/8 slack, and the
// whole 2 MiB pages inside its new allocation are advised as transparent huge pages before
// anything touches them. Its size is unchanged when no growth is needed; a buffer that grew
// is empty. Cost: nothing when the capacity suffices; else one allocation and one madvise.
void ReserveHugeFloats(std::vector<float>* buffer, std::size_t n);

// std::allocator's stand-in for vectors that hold lookup tables: allocations of at least one
// huge page get their own MapZeroed mapping (rounded up to whole pages), smaller ones come
// from operator new.
template <class T>
struct HugePageAllocator {
  using value_type = T;

  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}  // NOLINT: rebinding, as std::allocator

  T* allocate(std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) return static_cast<T*>(::operator new(bytes));
    return reinterpret_cast<T*>(MapZeroed(RoundToPages(bytes)));
  }
  void deallocate(T* p, std::size_t n) {
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugePageBytes) {
      ::operator delete(p);
    } else {
      Unmap(p, RoundToPages(bytes));
    }
  }

  template <class U>
  bool operator==(const HugePageAllocator<U>&) const {
    return true;
  }

 private:
  static std::size_t RoundToPages(std::size_t bytes) {
    return (bytes + kPageBytes - 1) / kPageBytes * kPageBytes;
  }
};

}  // namespace fmps
