#include "server/store/param_store.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <experimental/simd>
#include <limits>
#include <stdexcept>
#include <utility>

#include "common/base/hash.h"
#include "common/base/huge_pages.h"
#include "server/store/initial_embedding.h"
#include "server/store/param_store_impl.h"

// Construction, lookup, Pull and Push: the hot path, in one translation unit so that the
// per-key code inlines into the loops.
namespace fmps {

using store_internal::kLineBytes;
using store_internal::kMaxRows;
using store_internal::Load32;
using store_internal::LoadKey;
using store_internal::PrefetchRange;
using store_internal::RoundUp;
using store_internal::Store32;

namespace {

// Table: load factor kept in (0.8 / 1.5, 0.8]; capacity in multiples of one page of slots.
constexpr std::uint64_t kSlotsPerPage = kPageBytes / sizeof(std::uint64_t);
constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 32;  // Home() needs fp * cap < 2^64

// Sub-batch of keys looked up together: hashes and slot prefetches first, then probes and
// row prefetches, then the rows themselves (memory-level parallelism on 10^6+ key stores).
constexpr std::size_t kBatch = 64;

// Cache lines requested ahead of the row being worked on: rows are prefetched whole, as many
// keys ahead as this budget holds, up to a limit in keys. FM rows at k 8 (1-2 lines) get the
// key limits as before; FFM's wide rows (20-41 lines at 39 fields, k 8) 3-6 keys: 32 rows of
// 41 lines requested at once (1,300 lines) far exceed the core's line-fill buffers, and the
// prefetch instructions themselves stalled (94% of PushRows' samples). 64 lines did as well.
constexpr std::size_t kPrefetchLines = 128;

// Keys ahead to prefetch rows of `bytes` at, at most `most`.
inline std::size_t KeysAhead(std::size_t bytes, std::size_t most) {
  const std::size_t lines = RoundUp(bytes, kLineBytes) / kLineBytes;
  return std::clamp<std::size_t>(kPrefetchLines / lines, 1, most);
}

// Floats per optimizer call in the fused update of a wide row (PushWideRows). A multiple of 8:
// the optimizers work in blocks of 8 floats from the group's start, then 4, then singles, so
// the chunks compute exactly the blocks one call over the row would.
constexpr int kUpdateChunk = 128;
static_assert(kUpdateChunk % 8 == 0);

// Whether g[0..n) are all finite: x * 0 is +-0 for finite x and NaN otherwise, summed in
// blocks of 8 lanes (one vector; much cheaper than a scalar bit test per float).
inline bool AllFinite(const float* g, int n) {
  namespace stdx = std::experimental;
  using V8 = stdx::fixed_size_simd<float, 8>;
  V8 acc8 = 0.0f;
  int i = 0;
  for (; i + 8 <= n; i += 8) acc8 += V8(g + i, stdx::element_aligned) * 0.0f;
  float acc = 0.0f;
  if (i + 4 <= n) {  // the tail in straight-line code (n is a row width: usually 9, 17, ...)
    acc += g[i] * 0.0f + g[i + 1] * 0.0f + g[i + 2] * 0.0f + g[i + 3] * 0.0f;
    i += 4;
  }
  if (i + 2 <= n) {
    acc += g[i] * 0.0f + g[i + 1] * 0.0f;
    i += 2;
  }
  if (i < n) acc += g[i] * 0.0f;
  return stdx::all_of(acc8 == 0.0f) && acc == 0.0f;
}

// Copies n floats with inline fixed-size moves (a memcpy of runtime size is a library call,
// and a loop for the tail gets vectorised with alias checks costing more than the copy).
// No loop over the 8-float blocks either: GCC turns one into a memmove call. Rows of up to 4
// blocks (k <= 32) are moved inline; longer ones are worth the call.
inline void CopyFloats(float* __restrict dst, const float* __restrict src, int n) {
  constexpr std::size_t kBlock = 8 * sizeof(float);
  const int blocks = n / 8;
  switch (blocks) {
    case 4:
      std::memcpy(dst + 24, src + 24, kBlock);
      [[fallthrough]];
    case 3:
      std::memcpy(dst + 16, src + 16, kBlock);
      [[fallthrough]];
    case 2:
      std::memcpy(dst + 8, src + 8, kBlock);
      [[fallthrough]];
    case 1:
      std::memcpy(dst, src, kBlock);
      [[fallthrough]];
    case 0:
      break;
    default:
      std::memcpy(dst, src, static_cast<std::size_t>(blocks) * kBlock);
  }
  int i = blocks * 8;
  if (i + 4 <= n) {
    std::memcpy(dst + i, src + i, 4 * sizeof(float));
    i += 4;
  }
  if (i + 2 <= n) {
    std::memcpy(dst + i, src + i, 2 * sizeof(float));
    i += 2;
  }
  if (i < n) dst[i] = src[i];
}

std::unique_ptr<Optimizer> CheckedOptimizer(std::unique_ptr<Optimizer> optimizer) {
  if (!optimizer) throw std::invalid_argument("ParamStore: null optimizer");
  return optimizer;
}

int CheckedVWidth(const ModelShape& shape) {
  shape.Validate("ParamStore");
  return shape.v_width();
}

// Rows a little under a multiple of 64 bytes are padded to it: with line-aligned chunks
// each row then spans the fewest cache lines (e.g. Adam/FTRL at k = 8: 124/116 -> 128
// bytes, 2 lines per push instead of ~2.9, and 1 line per pull instead of ~1.7). Padding
// is only done when it costs at most 1/8 of the row.
std::size_t PaddedStride(std::size_t bytes) {
  const std::size_t padded = RoundUp(bytes, kLineBytes);
  return bytes > kLineBytes && (padded - bytes) * 8 <= bytes ? padded : bytes;
}

std::size_t RowStride(const StoreOptions& o, int state, int vstate, bool steps) {
  const std::size_t v = static_cast<std::size_t>(o.shape.v_width());
  const std::size_t s = static_cast<std::size_t>(state);
  std::size_t words = 3 + s + (steps ? 2 : 0);
  words += o.min_count > 1 ? 2 : v + static_cast<std::size_t>(vstate);
  return PaddedStride(words * sizeof(float));
}

}  // namespace

ParamStore::Impl::Impl(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer)
    : options_(options),
      optimizer_(CheckedOptimizer(std::move(optimizer))),
      v_width_(CheckedVWidth(options.shape)),
      row_width_(options.shape.row_width()),
      state_(optimizer_->state_floats()),
      vec_(optimizer_->rowwise() ? options.shape.k : 1),
      vstate_(optimizer_->GroupStateFloats(v_width_, vec_)),
      lazy_v_(options.min_count > 1),
      steps_(optimizer_->uses_step()),
      fused_(!lazy_v_ && !steps_ && state_ <= 1 && !optimizer_->rowwise() &&
             options.l2_w == options.l2_v),
      wide_(row_width_ > kUpdateChunk && (fused_ || (optimizer_->rowwise() && !lazy_v_))),
      rows_(RowStride(options, state_, vstate_, steps_)),
      vrows_(PaddedStride(static_cast<std::size_t>(v_width_ + vstate_) * sizeof(float))) {
  int next = 3;  // key[2], w
  if (!lazy_v_) {
    v_ = next;
    next += v_width_;
  }
  ws_ = next;
  next += state_;
  if (!lazy_v_) {
    vs_ = next;
    next += vstate_;
  }
  if (steps_) {
    step_ = next;
    next += 2;
  }
  if (lazy_v_) {
    count_ = next;
    vref_ = next + 1;
    next += 2;
  }
  row_bytes_ = static_cast<std::size_t>(next) * sizeof(float);  // used part of the stride
  pull_bytes_ = static_cast<std::size_t>(lazy_v_ ? 3 : 3 + v_width_) * sizeof(float);
  vrow_bytes_ = static_cast<std::size_t>(v_width_ + vstate_) * sizeof(float);
  format_ = {.shape = options.shape,
             .optimizer = optimizer_->name(),
             .state_floats = state_,
             .rowwise = optimizer_->rowwise(),
             .step_counters = steps_,
             .min_count = options.min_count,
             .seed = options.seed,
             .init_std = options.init_std};
  AllocateTable(kSlotsPerPage);
}

ParamStore::Impl::~Impl() { Unmap(slots_, slot_bytes_); }

template <bool kCreate, bool kWrite, class Fn>
void ParamStore::Impl::ForKeys(const Key* keys, std::size_t n, Fn&& fn) {
  std::uint64_t hashes[kBatch];
  std::uint64_t homes[kBatch];
  std::uint32_t idx[kBatch];
  const std::size_t prefetch_bytes = kWrite ? row_bytes_ : pull_bytes_;
  // Rows `ahead` keys on are prefetched while a key is handled (all of a sub-batch's rows at
  // once for narrow rows; lazily embedded stores' w rows are always narrow).
  const std::size_t ahead = lazy_v_ ? kBatch : KeysAhead(prefetch_bytes, kBatch);
  for (std::size_t base = 0; base < n; base += kBatch) {
    const std::size_t m = std::min(kBatch, n - base);
    const Key* batch_keys = keys + base;
    for (std::size_t j = 0; j < m; ++j) {
      const std::uint64_t h = Hash(batch_keys[j]);
      hashes[j] = h;
      homes[j] = Home(Fingerprint(h));
      __builtin_prefetch(slots_ + homes[j], 0, 3);
    }
    for (std::size_t j = 0; j < m; ++j) {
      const std::uint32_t c = ProbeFingerprint(Fingerprint(hashes[j]), homes[j]);
      idx[j] = c;
      if (c != kNoRow && j < ahead) PrefetchRange<kWrite>(rows_.Row(c), prefetch_bytes);
    }
    // Rows created below may move the first arena chunk: pointers are derived afresh.
    if (!lazy_v_) {
      for (std::size_t j = 0; j < m; ++j) {
        if (j + ahead < m && idx[j + ahead] != kNoRow) {
          PrefetchRange<kWrite>(rows_.Row(idx[j + ahead]), prefetch_bytes);
        }
        fn(base + j, Resolve<kCreate>(batch_keys[j], hashes[j], idx[j]));
      }
      continue;
    }
    for (std::size_t j = 0; j < m; ++j) {
      const std::uint32_t c = Resolve<kCreate>(batch_keys[j], hashes[j], idx[j]);
      idx[j] = c;
      if (c == kNoRow) continue;
      const std::uint32_t vref = Load32(WRow(c) + vref_);
      if (vref != 0) {
        PrefetchRange<kWrite>(
            vrows_.Row(vref - 1),
            kWrite ? vrow_bytes_ : static_cast<std::size_t>(v_width_) * sizeof(float));
      }
    }
    for (std::size_t j = 0; j < m; ++j) fn(base + j, idx[j]);
  }
}

inline void ParamStore::Impl::Pull(const Key* keys, std::size_t n, bool create, float* out,
                                   std::uint32_t* handles) {
  const std::size_t width = static_cast<std::size_t>(row_width_);
  auto copy = [&](std::size_t j, std::uint32_t idx) {
    if (handles != nullptr) handles[j] = idx;
    float* o = out + j * width;
    if (idx == kNoRow) {
      std::fill(o, o + width, 0.0f);
      return;
    }
    const float* r = WRow(idx);
    if (!lazy_v_) {
      CopyFloats(o, r + kW, row_width_);
      return;
    }
    o[0] = r[kW];
    const std::uint32_t vref = Load32(r + vref_);
    if (vref != 0) {
      CopyFloats(o + 1, VRow(vref - 1), v_width_);
    } else {
      std::fill(o + 1, o + width, 0.0f);
    }
  };
  if (create) {
    ForKeys<true, false>(keys, n, copy);
  } else {
    ForKeys<false, false>(keys, n, copy);
  }
}

inline std::size_t ParamStore::Impl::Push(const Key* keys, std::size_t n, const float* grads,
                                          const std::uint32_t* counts) {
  std::size_t rejected = 0;
  ForKeys<true, true>(keys, n, [&](std::size_t j, std::uint32_t idx) {
    rejected += Update(idx, j, grads, counts) ? 0 : 1;
  });
  return rejected;
}

inline std::size_t ParamStore::Impl::PushRows(const std::uint32_t* rows, std::size_t n,
                                              const float* grads, const std::uint32_t* counts) {
  // Rows are prefetched kAhead keys ahead (fewer when wider than kUpdateChunk floats or not
  // fused: KeysAhead); a lazily allocated v row (found through its w row, by then usually
  // cached) half as far ahead.
  constexpr std::size_t kAhead = 32;
  const bool narrow_fused = fused_ && row_width_ <= kUpdateChunk;
  const std::size_t ahead = narrow_fused ? kAhead : KeysAhead(row_bytes_, kAhead);
  const std::size_t size = rows_.rows();
  for (std::size_t j = 0; j < n; ++j) {
    if (rows[j] >= size) throw std::out_of_range("ParamStore::PushRows: not a row handle");
  }
  for (std::size_t j = 0; j < std::min(n, ahead); ++j) {
    PrefetchRange<true>(rows_.Row(rows[j]), row_bytes_);
  }
  if (wide_) return PushWideRows(rows, n, grads, counts, ahead);
  std::size_t rejected = 0;
  if (fused_) {  // the common case in a tight loop: one optimizer call per key, no lookups
    const int width = row_width_;
    for (std::size_t j = 0; j < n; ++j) {
      if (j + kAhead < n) PrefetchRange<true>(rows_.Row(rows[j + kAhead]), row_bytes_);
      float* r = WRow(rows[j]);
      const float* g = grads + j * static_cast<std::size_t>(width);
      if (LoadKey(r) == kBiasKey) {
        rejected += Update(rows[j], j, grads, counts) ? 0 : 1;
      } else if (AllFinite(g, width)) {
        optimizer_->Update(r + kW, r + ws_, g, width, options_.l2_w, nullptr);
      } else {
        ++rejected;
      }
    }
    return rejected;
  }
  for (std::size_t j = 0; j < n; ++j) {
    if (j + ahead < n) PrefetchRange<true>(rows_.Row(rows[j + ahead]), row_bytes_);
    if (lazy_v_ && j + ahead / 2 < n) {
      const std::uint32_t vref = Load32(WRow(rows[j + ahead / 2]) + vref_);
      if (vref != 0) PrefetchRange<true>(vrows_.Row(vref - 1), vrow_bytes_);
    }
    rejected += Update(rows[j], j, grads, counts) ? 0 : 1;
  }
  return rejected;
}

std::size_t ParamStore::Impl::PushWideRows(const std::uint32_t* rows, std::size_t n,
                                           const float* grads, const std::uint32_t* counts,
                                           std::size_t ahead) {
  const int width = row_width_;
  // Fused rows update w and v as one group in chunks of kUpdateChunk floats; row-wise rows
  // update w, then v in chunks of whole vectors (each chunk's state starts at its first
  // vector's accumulator): the same calls, split, as Update makes.
  const int body = fused_ ? width : v_width_;
  const int chunk = fused_ ? kUpdateChunk : std::max(vec_, kUpdateChunk / vec_ * vec_);
  // The row `ahead` keys on is prefetched in one slice of whole lines per chunk, each just
  // before a chunk of this row is computed: its lines arrive while the sqrt/div arithmetic
  // runs, instead of all requests queueing at once and the arithmetic then waiting alone.
  const int parts = (body + chunk - 1) / chunk;
  const std::size_t slice = RoundUp(row_bytes_, static_cast<std::size_t>(parts) * kLineBytes) /
                            static_cast<std::size_t>(parts);
  std::size_t rejected = 0;
  for (std::size_t j = 0; j < n; ++j) {
    const char* next = j + ahead < n ? rows_.Row(rows[j + ahead]) : nullptr;
    float* r = WRow(rows[j]);
    const float* g = grads + j * static_cast<std::size_t>(width);
    if (LoadKey(r) != kBiasKey && AllFinite(g, width)) {
      if (!fused_) optimizer_->Update(r + kW, r + ws_, g, 1, options_.l2_w, nullptr);
      for (int c = 0, off = 0; off < body; ++c, off += chunk) {
        if (next != nullptr) PrefetchRange<true>(next + static_cast<std::size_t>(c) * slice, slice);
        if (fused_) {
          optimizer_->Update(r + kW + off, r + ws_ + off, g + off, std::min(chunk, width - off),
                             options_.l2_w, nullptr);
        } else {
          optimizer_->UpdateVectors(r + v_ + off, r + vs_ + off / vec_ * state_, g + 1 + off,
                                    std::min(chunk, body - off), vec_, options_.l2_v, nullptr);
        }
      }
      continue;
    }
    if (next != nullptr) PrefetchRange<true>(next, row_bytes_);
    rejected += Update(rows[j], j, grads, counts) ? 0 : 1;  // the bias key, or rejected
  }
  return rejected;
}

inline bool ParamStore::Impl::Update(std::uint32_t idx, std::size_t j, const float* grads,
                                     const std::uint32_t* counts) {
  const std::size_t width = static_cast<std::size_t>(row_width_);
  const float* g = grads + j * width;
  if (!AllFinite(g, static_cast<int>(width))) return false;
  float* r = WRow(idx);
  const Key key = LoadKey(r);
  if (fused_ && key != kBiasKey) {  // w, v and their states each contiguous: one group
    optimizer_->Update(r + kW, r + ws_, g, static_cast<int>(width), options_.l2_w, nullptr);
    return true;
  }
  float* v = nullptr;
  if (!lazy_v_) {
    if (key != kBiasKey) v = r + v_;
  } else {
    const std::uint32_t vref = Load32(r + vref_);
    if (vref != 0) {
      v = VRow(vref - 1);
    } else if (key != kBiasKey) {
      const std::uint64_t c = std::uint64_t{Load32(r + count_)} + (counts ? counts[j] : 1);
      const auto saturated = static_cast<std::uint32_t>(std::min<std::uint64_t>(c, kNoRow));
      Store32(r + count_, saturated);
      // The v gradients of this push were computed against v = 0: dropped.
      if (saturated >= options_.min_count) AddV(r);
    }
  }
  std::uint32_t steps[2] = {0, 0};
  if (steps_) std::memcpy(steps, r + step_, sizeof(steps));
  optimizer_->Update(r + kW, r + ws_, g, 1, options_.l2_w, &steps[0]);
  if (v != nullptr) {
    float* vs = lazy_v_ ? v + v_width_ : r + vs_;
    optimizer_->UpdateVectors(v, vs, g + 1, v_width_, vec_, options_.l2_v, &steps[1]);
  }
  if (steps_) std::memcpy(r + step_, steps, sizeof(steps));
  return true;
}

inline void ParamStore::Impl::AllocateTable(std::uint64_t capacity) {
  slot_bytes_ = RoundUp(capacity * sizeof(std::uint64_t), kPageBytes);
  slots_ = reinterpret_cast<std::uint64_t*>(MapZeroed(slot_bytes_));
  capacity_ = capacity;
  grow_at_ = capacity * 4 / 5;
}

inline void ParamStore::Impl::GrowTable() {
  if (capacity_ >= kMaxCapacity) throw std::length_error("ParamStore: hash table full");
  std::uint64_t* old = slots_;
  const std::uint64_t old_capacity = capacity_;
  const std::size_t old_bytes = slot_bytes_;
  AllocateTable(std::min(kMaxCapacity, RoundUp(old_capacity * 3 / 2, kSlotsPerPage)));
  for (std::uint64_t i = 0; i < old_capacity; ++i) {
    const std::uint64_t s = old[i];
    if (s == 0) continue;
    std::uint64_t pos = Home(static_cast<std::uint32_t>(s >> 32));
    while (slots_[pos] != 0) pos = Next(pos);
    slots_[pos] = s;
  }
  Unmap(old, old_bytes);
}

inline std::uint32_t ParamStore::Impl::FindSlow(Key key, std::uint64_t h, bool create, bool init) {
  const std::uint32_t fp = Fingerprint(h);
  std::uint64_t pos = Home(fp);
  for (;; pos = Next(pos)) {
    const std::uint64_t s = slots_[pos];
    if (s == 0) break;
    if (static_cast<std::uint32_t>(s >> 32) == fp) {
      const auto idx = static_cast<std::uint32_t>(s) - 1;
      if (LoadKey(WRow(idx)) == key) return idx;
    }
  }
  if (!create) return kNoRow;
  if (rows_.rows() + std::uint64_t{1} > grow_at_) {
    GrowTable();
    pos = Home(fp);
    while (slots_[pos] != 0) pos = Next(pos);
  }
  const std::uint32_t idx = CreateRow(key, init);
  slots_[pos] = (static_cast<std::uint64_t>(fp) << 32) | (std::uint64_t{idx} + 1);
  return idx;
}

inline std::uint32_t ParamStore::Impl::CreateRow(Key key, bool init) {
  const std::uint32_t idx = rows_.Add();
  float* r = WRow(idx);
  std::memcpy(r, &key, sizeof(key));
  if (key == kBiasKey) has_bias_ = true;
  if (!init) return idx;
  optimizer_->InitState(r + kW, r + ws_, 1, options_.l2_w);
  if (key != kBiasKey && !lazy_v_) {
    InitialEmbedding(options_.seed, key, v_width_, options_.init_std, r + v_);
    optimizer_->InitVectors(r + v_, r + vs_, v_width_, vec_, options_.l2_v);
  }
  return idx;
}

inline std::uint32_t ParamStore::Impl::AddV(float* r) {
  const std::uint32_t vi = vrows_.Add();
  Store32(r + vref_, vi + 1);
  float* v = VRow(vi);
  InitialEmbedding(options_.seed, LoadKey(r), v_width_, options_.init_std, v);
  optimizer_->InitVectors(v, v + v_width_, v_width_, vec_, options_.l2_v);
  return vi;
}

ParamStore::ParamStore(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer)
    : impl_(std::make_unique<Impl>(options, std::move(optimizer))) {}

ParamStore::~ParamStore() = default;

std::uint32_t ParamStore::Impl::LookUp(Key key, bool create, bool init) {
  return FindSlow(key, Hash(key), create, init);
}

std::uint32_t ParamStore::Impl::GiveV(float* r) { return AddV(r); }

const ModelShape& ParamStore::shape() const { return impl_->shape(); }

void ParamStore::Pull(const Key* keys, std::size_t n, bool create, float* out, RowHandle* handles) {
  impl_->Pull(keys, n, create, out, handles);
}

std::size_t ParamStore::Push(const Key* keys, std::size_t n, const float* grads,
                             const std::uint32_t* counts) {
  return impl_->Push(keys, n, grads, counts);
}

std::size_t ParamStore::PushRows(const RowHandle* rows, std::size_t n, const float* grads,
                                 const std::uint32_t* counts) {
  return impl_->PushRows(rows, n, grads, counts);
}

void ParamStore::Set(Key key, const float* row) { impl_->Set(key, row); }

bool ParamStore::Restore(const KeyRecord& record) { return impl_->Restore(record); }

StoreSnapshot ParamStore::Snapshot(StoreSnapshot recycle) const {
  if (!recycle.data_) recycle.data_ = std::make_unique<StoreSnapshot::Data>();  // moved-from
  impl_->FillSnapshot(recycle.data_.get());
  return recycle;
}

const StoreFormat& ParamStore::format() const { return impl_->format(); }

std::size_t ParamStore::size() const { return impl_->size(); }

std::size_t ParamStore::embedded() const { return impl_->embedded(); }

std::size_t ParamStore::MemoryBytes() const { return impl_->MemoryBytes(); }

void ParamStore::ForEach(const std::function<void(Key, const float*)>& fn) const {
  impl_->ForEach(fn);
}

}  // namespace fmps
