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
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/hash.h"
#include "common/types.h"

namespace fmps {

class KeyIndex {
 public:
  static constexpr std::uint32_t kNotFound = ~std::uint32_t{0};

  explicit KeyIndex(std::size_t expected_keys = 1024) { Rehash(Capacity(expected_keys)); }

  // Index of `key`, inserting it with index size() if absent. Sets *inserted accordingly.
  std::uint32_t Insert(Key key, bool* inserted) {
    if ((keys_.size() + 1) * 2 > slots_.size()) Rehash(slots_.size() * 2);
    std::size_t i = Slot(key);
    while (true) {
      std::uint32_t idx = slots_[i];
      if (idx == kNotFound) {
        idx = static_cast<std::uint32_t>(keys_.size());
        slots_[i] = idx;
        keys_.push_back(key);
        *inserted = true;
        return idx;
      }
      if (keys_[idx] == key) {
        *inserted = false;
        return idx;
      }
      i = (i + 1) & mask_;
    }
  }

  std::uint32_t Insert(Key key) {
    bool inserted;
    return Insert(key, &inserted);
  }

  // Index of `key`, or kNotFound.
  std::uint32_t Find(Key key) const {
    std::size_t i = Slot(key);
    while (true) {
      std::uint32_t idx = slots_[i];
      if (idx == kNotFound || keys_[idx] == key) return idx;
      i = (i + 1) & mask_;
    }
  }

  // Hints the CPU to fetch the first probe slot of `key`.
  void Prefetch(Key key) const { __builtin_prefetch(&slots_[Slot(key)]); }

  // Removes every key; keeps capacity.
  void Clear() {
    if (keys_.size() * 8 < slots_.size()) {
      for (Key k : keys_) {
        std::size_t i = Slot(k);
        while (slots_[i] == kNotFound || keys_[slots_[i]] != k) i = (i + 1) & mask_;
        slots_[i] = kNotFound;
      }
    } else {
      std::fill(slots_.begin(), slots_.end(), kNotFound);
    }
    keys_.clear();
  }

  std::size_t size() const { return keys_.size(); }
  // Keys in insertion order: keys()[Find(k)] == k.
  const std::vector<Key>& keys() const { return keys_; }

 private:
  static std::size_t Capacity(std::size_t n) {
    std::size_t c = 16;
    while (c < 2 * n) c *= 2;
    return c;
  }
  std::size_t Slot(Key key) const { return Mix64(key) & mask_; }
  void Rehash(std::size_t capacity) {
    slots_.assign(capacity, kNotFound);
    mask_ = capacity - 1;
    for (std::size_t idx = 0; idx < keys_.size(); ++idx) {
      std::size_t i = Slot(keys_[idx]);
      while (slots_[i] != kNotFound) i = (i + 1) & mask_;
      slots_[i] = static_cast<std::uint32_t>(idx);
    }
  }

  std::vector<std::uint32_t> slots_;
  std::vector<Key> keys_;
  std::size_t mask_ = 0;
};

}  // namespace fmps
