// Internals of ParamStore (param_store.h), not for use elsewhere: the Impl class shared by
// the store's translation units (param_store.cc: construction, lookup, pull and push, the
// hot path, kept in one unit so that it inlines; store_state.cc: Set, Restore, snapshots,
// iteration) and the snapshot's data.
//
// Layout (4-byte words per row; V = the shape's v_width (k for FM), S = optimizer state
// floats, VS = v's state floats: S*V, or S*V/k with row-wise state):
//   min_count <= 1:  key[2] w v[V] w_state[S] v_state[VS] (steps[2] if Adam)
//   min_count > 1:   key[2] w w_state[S] (steps[2] if Adam) count vref
//                    plus, once embedded, a row v[V] v_state[VS] in a second arena
//                    (vref = its index + 1, 0 = none).
// Strides may be padded (PaddedStride). key, w and v come first so that Pull reads a prefix.
// Table slots are 64-bit: (32-bit fingerprint << 32) | (row index + 1), 0 = empty. The home
// slot is multiply-shift of the fingerprint, so growth rehashes from the slots alone, in
// nearly sequential order, without touching the rows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>

#include "common/base/hash.h"
#include "common/base/huge_pages.h"
#include "server/store/arena.h"
#include "server/store/param_store.h"

namespace fmps {

// A snapshot holds the store's row arenas copied verbatim (packed at their strides) together
// with the word offsets needed to read them.
struct StoreSnapshot::Data {
  StoreFormat format;
  bool lazy_v = false;
  int v = -1;  // word offsets in a w-row, as in ParamStore::Impl
  int ws = -1;
  int vs = -1;
  int step = -1;
  int count = -1;
  int vref = -1;
  std::size_t stride = 0;  // bytes per w-row / v-row
  std::size_t vstride = 0;
  std::size_t rows = 0;
  std::size_t embedded = 0;
  char* buf = nullptr;  // one mapping of buf_bytes holding both row copies
  std::size_t buf_bytes = 0;
  const char* wbuf = nullptr;  // rows * stride bytes at buf
  const char* vbuf = nullptr;  // lazy_v: the v-rows, after the w-rows

  Data() = default;
  Data(const Data&) = delete;
  Data& operator=(const Data&) = delete;
  ~Data() { Unmap(buf, buf_bytes); }
};

class ParamStore::Impl {
 public:
  Impl(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer);
  ~Impl();

  const ModelShape& shape() const { return options_.shape; }

  // The hot path; see ParamStore. Its functions are declared inline and defined in
  // param_store.cc, their only user, so that GCC inlines them into one another there as it
  // would functions defined in the class.
  inline void Pull(const Key* keys, std::size_t n, bool create, float* out, std::uint32_t* handles);
  inline std::size_t Push(const Key* keys, std::size_t n, const float* grads,
                          const std::uint32_t* counts);
  inline std::size_t PushRows(const std::uint32_t* rows, std::size_t n, const float* grads,
                              const std::uint32_t* counts);

  // Bulk state in and out (store_state.cc); see ParamStore.
  void Set(Key key, const float* row);
  bool Restore(const KeyRecord& rec);
  // Fills d (whose buffer, if any, may be reused).
  void FillSnapshot(StoreSnapshot::Data* d) const;
  void ForEach(const std::function<void(Key, const float*)>& fn) const;

  const StoreFormat& format() const { return format_; }
  std::size_t size() const { return rows_.rows(); }
  std::size_t embedded() const {
    return lazy_v_ ? vrows_.rows() : rows_.rows() - (has_bias_ ? 1 : 0);
  }
  std::size_t MemoryBytes() const {
    return sizeof(*this) + slot_bytes_ + rows_.bytes() + (lazy_v_ ? vrows_.bytes() : 0);
  }

 private:
  using Arena = store_internal::Arena;
  static constexpr std::uint32_t kNoRow = store_internal::kNoRow;
  static constexpr int kW = 2;  // word offset of w (after the 2-word key)
  // Salt keeping the table hash independent of ServerOfKey (a shard's keys share the high
  // bits of ServerOfKey's hash, so the table must not reuse it) and of InitialEmbedding.
  static constexpr std::uint64_t kTableSalt = 0xd6e8feb86659fd93ULL;

  // PushRows of a fused or row-wise (not lazily embedded) store whose rows are wider than
  // kUpdateChunk floats (FFM): each row updated in chunks, with the row `ahead` keys on
  // prefetched a slice per chunk. Not inlined, so that PushRows' loop for narrow rows
  // compiles as it did without it.
  __attribute__((noinline)) std::size_t PushWideRows(const std::uint32_t* rows, std::size_t n,
                                                     const float* grads,
                                                     const std::uint32_t* counts,
                                                     std::size_t ahead);
  // One key's optimizer update with gradient row j of grads (see Push); false (nothing
  // changed) if that row has a non-finite value.
  inline bool Update(std::uint32_t idx, std::size_t j, const float* grads,
                     const std::uint32_t* counts);

  static std::uint64_t Hash(Key key) { return Mix64(key ^ kTableSalt); }
  static std::uint32_t Fingerprint(std::uint64_t h) { return static_cast<std::uint32_t>(h >> 32); }

  std::uint64_t Home(std::uint32_t fp) const {
    return (static_cast<std::uint64_t>(fp) * capacity_) >> 32;
  }
  std::uint64_t Next(std::uint64_t pos) const { return pos + 1 == capacity_ ? 0 : pos + 1; }

  float* WRow(std::uint32_t i) const { return reinterpret_cast<float*>(rows_.Row(i)); }
  float* VRow(std::uint32_t i) const { return reinterpret_cast<float*>(vrows_.Row(i)); }

  inline void AllocateTable(std::uint64_t capacity);
  // Grows the table by 1.5x (keeps the load factor in (0.53, 0.8]).
  inline void GrowTable();

  // Row of the first slot in the probe run whose fingerprint matches (a candidate to verify
  // against the key), or kNoRow if the run ends first (the key is certainly absent).
  std::uint32_t ProbeFingerprint(std::uint32_t fp, std::uint64_t pos) const {
    for (;; pos = Next(pos)) {
      const std::uint64_t s = slots_[pos];
      if (s == 0) return kNoRow;
      if (static_cast<std::uint32_t>(s >> 32) == fp) return static_cast<std::uint32_t>(s) - 1;
    }
  }

  // Full lookup comparing keys; creates the row if missing and `create` (initialised if
  // `init`, else zero but for the key).
  inline std::uint32_t FindSlow(Key key, std::uint64_t h, bool create, bool init = true);
  inline std::uint32_t CreateRow(Key key, bool init);
  // Gives the (w-)row r its v, initialised; returns the v row's index.
  inline std::uint32_t AddV(float* r);
  // FindSlow and AddV out of line, for store_state.cc.
  std::uint32_t LookUp(Key key, bool create, bool init);
  std::uint32_t GiveV(float* r);

  // Resolves keys[0..n) to row indices (kNoRow when missing and !kCreate) and calls
  // fn(j, index) in order, looking keys up in sub-batches with prefetching. Rows created
  // here are complete before fn runs. Defined in param_store.cc (its only user).
  template <bool kCreate, bool kWrite, class Fn>
  void ForKeys(const Key* keys, std::size_t n, Fn&& fn);

  // The row of key given the candidate found by ProbeFingerprint.
  template <bool kCreate>
  std::uint32_t Resolve(Key key, std::uint64_t h, std::uint32_t candidate) {
    if (candidate != kNoRow && store_internal::LoadKey(WRow(candidate)) == key) return candidate;
    return FindSlow(key, h, kCreate);
  }

  StoreOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  StoreFormat format_;
  int v_width_;    // floats of a v: shape().v_width()
  int row_width_;  // floats of a key's row in Pull/Push: shape().row_width()
  int state_;
  int vec_;     // floats per vector of v's state: k when row-wise, else 1 (per float)
  int vstate_;  // state floats of a key's v (VS in the layout)
  bool lazy_v_;
  bool steps_;
  // w and v update as one group of one row width (an elementwise optimizer, one l2, the
  // layout key w v w_state v_state with at most one state float: both arrays contiguous;
  // never with row-wise state, whose w and v vectors differ in width).
  bool fused_;
  // Rows wider than kUpdateChunk floats pushed by PushWideRows in chunks: fused ones, and
  // row-wise ones stored in one row (w first, then v in chunks of whole vectors).
  bool wide_;
  bool has_bias_ = false;
  // Word offsets in a w-row (see the layout above); -1 when absent.
  int v_ = -1;
  int ws_ = -1;
  int vs_ = -1;
  int step_ = -1;
  int count_ = -1;
  int vref_ = -1;
  std::size_t row_bytes_ = 0;
  std::size_t pull_bytes_ = 0;
  std::size_t vrow_bytes_ = 0;
  Arena rows_;
  Arena vrows_;
  std::uint64_t* slots_ = nullptr;
  std::uint64_t capacity_ = 0;
  std::uint64_t grow_at_ = 0;
  std::size_t slot_bytes_ = 0;
};

}  // namespace fmps
