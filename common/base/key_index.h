// KeyIndex: an open-addressing map from Key to a dense index 0, 1, 2, ... in insertion
// order. Used to deduplicate the keys of a minibatch (worker), to sum gradients per key
// (server, bsp) and to look keys up in a loaded model (predict/eval).
//
// Linear probing over a power-of-two table kept at most half full. Clear() is O(size) in
// the number of keys inserted, not in the capacity, so a reused index costs nothing per
// batch beyond its keys. Not thread-safe for writers; concurrent Find() calls on an index
// that nobody modifies are safe.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/base/huge_pages.h"
#include "common/base/types.h"

namespace fmps {

class KeyIndex {
 public:
  static constexpr std::uint32_t kNotFound = ~std::uint32_t{0};

  explicit KeyIndex(std::size_t expected_keys = 1024) { Rehash(Capacity(expected_keys)); }

  // Index of `key`, inserting it with index size() if absent. Sets *inserted accordingly.
  // The probe loop has one well-predicted branch and the insert no branch at all: whether a
  // key is new is close to a coin flip in minibatch deduplication, and mispredicted branches
  // cost more there than the probes themselves.
  std::uint32_t Insert(Key key, bool* inserted) {
    if (size_ >= max_size_) Rehash(slots_.size() * 2);
    std::size_t i = Slot(key);
    std::uint32_t s = slots_[i];
    // Probe on while the slot is taken by another key. keys_[0] is a dummy, so keys_[s] is
    // safe to read for an empty slot; the product (rather than &&, which compilers turn
    // into two branches that each mispredict half the time) leaves one branch, and that
    // one almost always exits at the home slot.
    while (static_cast<std::uint64_t>(s != 0) * (keys_[s] ^ key) != 0) {
      i = (i + 1) & mask_;
      s = slots_[i];
    }
    const bool added = s == 0;
    const auto next = static_cast<std::uint32_t>(size_ + 1);
    s |= next & (0u - static_cast<std::uint32_t>(added));  // s = added ? next : s, no branch
    slots_[i] = s;
    keys_[next] = key;  // harmless when not added: slot next is unused until then
    size_ += added;
    *inserted = added;
    return s - 1;
  }

  std::uint32_t Insert(Key key) {
    bool inserted;
    return Insert(key, &inserted);
  }

  // out[i] = Insert(keys[i]) for n keys, with the home slots prefetched kAhead keys ahead.
  void InsertMany(const Key* keys, std::size_t n, std::uint32_t* out) {
    constexpr std::size_t kAhead = 16;
    for (std::size_t i = 0; i < std::min(kAhead, n); ++i) Prefetch(keys[i]);
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) Prefetch(keys[i + kAhead]);
      out[i] = Insert(keys[i]);
    }
  }

  // Index of `key`, or kNotFound.
  std::uint32_t Find(Key key) const {
    std::size_t i = Slot(key);
    while (true) {
      const std::uint32_t s = slots_[i];
      if (s == 0) return kNotFound;
      if (keys_[s] == key) return s - 1;
      i = (i + 1) & mask_;
    }
  }

  // Find for n keys: out[i] = Find(keys[i]). Pipelined for large tables: the home slots of
  // keys 2D ahead and the key entries their slots point to D ahead are prefetched, so
  // the two dependent cache misses of each lookup overlap with other keys' lookups.
  void FindMany(const Key* keys, std::size_t n, std::uint32_t* out) const {
    constexpr std::size_t kD = 32;
    for (std::size_t i = 0; i < n + 2 * kD; ++i) {
      if (i < n) Prefetch(keys[i]);
      if (i >= kD && i - kD < n) __builtin_prefetch(&keys_[slots_[Slot(keys[i - kD])]]);
      if (i >= 2 * kD) out[i - 2 * kD] = Find(keys[i - 2 * kD]);
    }
  }

  // Hints the CPU to fetch the first probe slot of `key`.
  void Prefetch(Key key) const { __builtin_prefetch(&slots_[Slot(key)]); }

  // Removes every key; keeps capacity.
  void Clear() {
    if (size_ * 8 < slots_.size()) {
      for (std::size_t idx = 1; idx <= size_; ++idx) {
        std::size_t i = Slot(keys_[idx]);
        while (slots_[i] != idx) i = (i + 1) & mask_;
        slots_[i] = 0;
      }
    } else {
      std::fill(slots_.begin(), slots_.end(), 0u);
    }
    size_ = 0;
  }

  std::size_t size() const { return size_; }
  // Keys in insertion order: keys()[Find(k)] == k. Valid until the next Insert or Clear.
  std::span<const Key> keys() const { return {keys_.data() + 1, size_}; }

 private:
  static std::size_t Capacity(std::size_t n) {
    std::size_t c = 16;
    while (c < 2 * n + 2) c *= 2;  // n keys fit without a rehash
    return c;
  }
  // Fibonacci hashing: the top bits of key * 2^64/phi. Two instructions, and every key bit
  // reaches the top bits (keys are mostly hashes already; raw sequential ids spread evenly).
  std::size_t Slot(Key key) const { return (key * 0x9e3779b97f4a7c15ULL) >> shift_; }
  // Slots hold index + 1 (0 = empty); keys_[1 + index] is the key, keys_[0] a dummy, and
  // keys_ always has room for one more key than the table may hold.
  void Rehash(std::size_t capacity) {
    slots_.assign(capacity, 0u);
    mask_ = capacity - 1;
    max_size_ = capacity / 2 - 1;  // load <= 1/2
    shift_ = 64 - std::countr_zero(capacity);
    keys_.resize(capacity / 2 + 2);
    for (std::size_t idx = 1; idx <= size_; ++idx) {
      std::size_t i = Slot(keys_[idx]);
      while (slots_[i] != 0) i = (i + 1) & mask_;
      slots_[i] = static_cast<std::uint32_t>(idx);
    }
  }

  // Huge pages once a table reaches 2 MiB (a model's index in predict: random lookups).
  std::vector<std::uint32_t, HugePageAllocator<std::uint32_t>> slots_;
  std::vector<Key, HugePageAllocator<Key>> keys_;
  std::size_t size_ = 0;
  std::size_t max_size_ = 0;  // Insert rehashes beyond this many keys
  std::size_t mask_ = 0;
  int shift_ = 64;
};

}  // namespace fmps
