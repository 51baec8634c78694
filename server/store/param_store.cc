#include "server/store/param_store.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <experimental/simd>
#include <future>
#include <limits>
#include <new>
#include <numbers>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/base/hash.h"
#include "common/base/huge_pages.h"

namespace fmps {
namespace {

constexpr std::uintptr_t kLineBytes = 64;

// Salts keeping the table hash and the embedding streams independent of each other and of
// ServerOfKey (a shard's keys share the high bits of ServerOfKey's hash, so the table must
// not reuse it).
constexpr std::uint64_t kTableSalt = 0xd6e8feb86659fd93ULL;
constexpr std::uint64_t kSeedSalt = 0x2545f4914f6cdd1dULL;
constexpr std::uint64_t kStreamStep = 0x9e3779b97f4a7c15ULL;

// Row indices are stored +1 in 32 bits (0 marks an empty slot / a missing v).
constexpr std::uint32_t kNoRow = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kMaxRows = kNoRow;  // indices 0 .. 2^32 - 2

// Table: load factor kept in (0.8 / 1.5, 0.8]; capacity in multiples of one page of slots.
constexpr std::uint64_t kSlotsPerPage = kPageBytes / sizeof(std::uint64_t);
constexpr std::uint64_t kMaxCapacity = std::uint64_t{1} << 32;  // Home() needs fp * cap < 2^64

// Sub-batch of keys looked up together: hashes and slot prefetches first, then probes and
// row prefetches, then the rows themselves (memory-level parallelism on 10^6+ key stores).
constexpr std::size_t kBatch = 64;

std::size_t RoundUp(std::size_t x, std::size_t a) { return (x + a - 1) / a * a; }

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

// Whether g[0..n) are all finite: x * 0 is +-0 for finite x and NaN otherwise, summed in
// blocks of 8 lanes (one vector; a scalar bit test per float costs ~5x more).
inline bool AllFinite(const float* g, int n) {
  namespace stdx = std::experimental;
  using V8 = stdx::fixed_size_simd<float, 8>;
  V8 acc8 = 0.0f;
  int i = 0;
  for (; i + 8 <= n; i += 8) acc8 += V8(g + i, stdx::element_aligned) * 0.0f;
  float acc = 0.0f;
  if (i + 4 <= n) {  // the tail in straight-line code (n is 1 + k: usually 9, 17, ...)
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
// No loop over the 8-float blocks either: GCC turns one into a memmove call (seen: 4 % of
// the server thread in a pull of 9-float rows). Rows of up to 4 blocks (k <= 32) are moved
// inline; longer ones are worth the call.
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

// A zeroed, 2 MiB-aligned huge-page chunk whose pages are already faulted in: the kernel
// zeroes a transparent huge page on its first touch, which on this kind of (virtual) machine
// costs ~0.5-1 ms per 2 MiB page.
char* FaultedChunk() {
  char* p = MapZeroed(kHugePageBytes);
  for (std::size_t off = 0; off < kHugePageBytes; off += kPageBytes) {
    reinterpret_cast<volatile char*>(p)[off] = 0;
  }
  return p;
}

// Rows of a fixed stride in 2 MiB chunks (one huge page each): growing never moves or copies
// existing chunks, so there is no 2x reallocation spike and the slack is at most one chunk.
// Only the first chunk starts small and doubles (moving its rows) until it is full-size, so
// that small stores stay small. Rows are zero-filled when added. Once the arena has
// kChunksBeforeFaultAhead chunks, the next chunk is mapped and faulted in on a background
// thread while the current one fills, so the page faults are off the owner's (the server's)
// thread; the background thread touches only that new mapping. (Not sooner: the chunk held
// ahead is then at most 1/16 of the arena, which keeps the store's memory bound.)
constexpr std::size_t kChunksBeforeFaultAhead = 16;

class Arena {
 public:
  explicit Arena(std::size_t stride_bytes)
      : stride_(stride_bytes),
        rows_per_chunk_(static_cast<std::uint32_t>(kHugePageBytes / stride_bytes)),
        // Lemire's fastdiv: i / rows_per_chunk_ == (magic_ * i) >> 64 for every 32-bit i.
        magic_(~std::uint64_t{0} / rows_per_chunk_ + 1) {
    if (rows_per_chunk_ < 2) throw std::invalid_argument("ParamStore: row too wide");
  }

  ~Arena() {
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
  void CopyTo(char* dst) const {
    std::size_t left = rows_;
    for (std::size_t c = 0; c < chunks_.size() && left > 0; ++c) {
      const std::size_t n = std::min<std::size_t>(left, rows_per_chunk_);
      std::memcpy(dst, chunks_[c], n * stride_);
      dst += n * stride_;
      left -= n;
    }
  }

  std::size_t bytes() const {
    std::size_t b = chunks_.capacity() * sizeof(char*);
    if (!chunks_.empty()) b += first_bytes_ + (chunks_.size() - 1) * kHugePageBytes;
    if (next_.valid()) b += kHugePageBytes;  // the chunk being prepared
    return b;
  }

 private:
  void Grow() {
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
    const std::uint64_t first_rows =
        std::min<std::uint64_t>(rows_per_chunk_, first_bytes_ / stride_);
    const std::uint64_t cap = chunks_.size() == 1
                                  ? first_rows
                                  : static_cast<std::uint64_t>(chunks_.size()) * rows_per_chunk_;
    capacity_ = static_cast<std::uint32_t>(std::min(cap, kMaxRows));
  }

  std::size_t stride_;
  std::uint32_t rows_per_chunk_;
  std::uint64_t magic_;
  std::vector<char*> chunks_;
  std::size_t first_bytes_ = 0;
  std::uint32_t rows_ = 0;
  std::uint32_t capacity_ = 0;
  std::future<char*> next_;  // the next full-size chunk, being faulted in
};

}  // namespace

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

StoreSnapshot::StoreSnapshot() : data_(std::make_unique<Data>()) {}
StoreSnapshot::~StoreSnapshot() = default;
StoreSnapshot::StoreSnapshot(StoreSnapshot&&) noexcept = default;
StoreSnapshot& StoreSnapshot::operator=(StoreSnapshot&&) noexcept = default;

const StoreFormat& StoreSnapshot::format() const { return data_->format; }
std::size_t StoreSnapshot::size() const { return data_->rows; }
std::size_t StoreSnapshot::embedded() const { return data_->embedded; }
std::size_t StoreSnapshot::bytes() const { return sizeof(*this) + sizeof(Data) + data_->buf_bytes; }

KeyRecord StoreSnapshot::record(std::size_t i) const {
  const Data& d = *data_;
  const float* r = reinterpret_cast<const float*>(d.wbuf + i * d.stride);
  KeyRecord rec;
  rec.key = LoadKey(r);
  rec.w = r[2];
  rec.w_state = r + d.ws;
  if (d.format.step_counters) {
    rec.step_w = Load32(r + d.step);
    rec.step_v = Load32(r + d.step + 1);
  }
  if (!d.lazy_v) {
    if (rec.key != kBiasKey) {
      rec.v = r + d.v;
      rec.v_state = r + d.vs;
    }
  } else {
    rec.count = Load32(r + d.count);
    if (const std::uint32_t vref = Load32(r + d.vref); vref != 0) {
      rec.v = reinterpret_cast<const float*>(d.vbuf + (vref - 1) * d.vstride);
      rec.v_state = rec.v + d.format.k;
    }
  }
  return rec;
}

namespace {

// cos and sin of 2 pi i / 2^kCircleBits: InitialEmbedding's angles are a table entry plus a
// residual below 2 pi / 2^kCircleBits, whose cos and sin short Taylor series give to ~1e-16
// (the floats written are those of std::cos/std::sin, at less than half their cost).
constexpr int kCircleBits = 10;
struct UnitCircle {
  std::array<double, 1 << kCircleBits> cos, sin;
};

const UnitCircle& Circle() {
  static const UnitCircle circle = [] {
    UnitCircle t;
    for (int i = 0; i < (1 << kCircleBits); ++i) {
      const double a = 2.0 * std::numbers::pi * i / (1 << kCircleBits);
      t.cos[i] = std::cos(a);
      t.sin[i] = std::sin(a);
    }
    return t;
  }();
  return circle;
}

// ln(u) for u in (0, 1] to ~1e-15 relative, branch-free (so that a block of them
// vectorises): u = 2^e m with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s) with
// s = (m - 1) / (m + 1), |s| <= 0.1716, as an odd series through s^17 (next term < 1e-15).
// m - 1 is exact, so u near 1 keeps full relative accuracy.
inline double LogUnit(double u) {
  constexpr std::uint64_t kMantissa = (std::uint64_t{1} << 52) - 1;
  constexpr std::uint64_t kOne = std::uint64_t{1023} << 52;
  const auto bits = std::bit_cast<std::uint64_t>(u);
  double e = static_cast<double>(static_cast<std::int64_t>(bits >> 52) - 1023);
  double m = std::bit_cast<double>((bits & kMantissa) | kOne);
  const bool big = m > std::numbers::sqrt2;
  m = big ? 0.5 * m : m;
  e = big ? e + 1.0 : e;
  const double s = (m - 1.0) / (m + 1.0);
  const double s2 = s * s;
  double p = 1.0 / 17;
  for (const double c : {1.0 / 15, 1.0 / 13, 1.0 / 11, 1.0 / 9, 1.0 / 7, 1.0 / 5, 1.0 / 3, 1.0}) {
    p = p * s2 + c;
  }
  constexpr double kLn2Hi = 0x1.62e42fefa3800p-1;  // ln 2 = hi + lo; e * hi is exact
  constexpr double kLn2Lo = 0x1.ef35793c76730p-45;
  return e * kLn2Hi + (e * kLn2Lo + 2.0 * s * p);
}

}  // namespace

void InitialEmbedding(std::uint64_t seed, Key key, int k, float std, float* out) {
  // Counter-based: pair f/2 of the row uses Mix64(base + (f/2 + 1) * step), Box-Muller on its
  // two 32-bit halves (radius from the high half, angle 2 pi * low / 2^32). Depends on
  // nothing but (seed, key, f). Pairs are computed kPairs at a time in straight-line,
  // vectorisable code (a new key's embedding is on the server thread's path).
  const UnitCircle& circle = Circle();
  const std::uint64_t base = Mix64(key ^ Mix64(seed + kSeedSalt));
  constexpr int kResidualBits = 32 - kCircleBits;
  constexpr int kPairs = 4;
  for (int f0 = 0; f0 < k; f0 += 2 * kPairs) {
    double x[kPairs], y[kPairs];
    for (int p = 0; p < kPairs; ++p) {
      const std::uint64_t h =
          Mix64(base + static_cast<std::uint64_t>(f0 / 2 + p + 1) * kStreamStep);
      const double u1 = (static_cast<double>(h >> 32) + 1.0) * 0x1p-32;  // (0, 1]
      const double r = std::sqrt(-2.0 * LogUnit(u1)) * static_cast<double>(std);
      const auto low = static_cast<std::uint32_t>(h);
      const std::uint32_t i = low >> kResidualBits;
      const double d = static_cast<double>(low & ((1u << kResidualBits) - 1)) *
                       (2.0 * std::numbers::pi * 0x1p-32);
      const double d2 = d * d;
      const double cos_d = 1.0 - d2 * (0.5 - d2 * (1.0 / 24));
      const double sin_d = d * (1.0 - d2 * (1.0 / 6 - d2 * (1.0 / 120)));
      x[p] = r * (circle.cos[i] * cos_d - circle.sin[i] * sin_d);
      y[p] = r * (circle.sin[i] * cos_d + circle.cos[i] * sin_d);
    }
    const int n = std::min(2 * kPairs, k - f0);
    for (int j = 0; j < n; ++j) {
      out[f0 + j] = static_cast<float>(j % 2 == 0 ? x[j / 2] : y[j / 2]);
    }
  }
}

// Layout (4-byte words per row; k = embedding size, S = optimizer state floats):
//   min_count <= 1:  key[2] w v[k] w_state[S] v_state[S*k] (steps[2] if Adam)
//   min_count > 1:   key[2] w w_state[S] (steps[2] if Adam) count vref
//                    plus, once embedded, a row v[k] v_state[S*k] in a second arena
//                    (vref = its index + 1, 0 = none).
// Strides may be padded (PaddedStride). key, w and v come first so that Pull reads a prefix.
// Table slots are 64-bit: (32-bit fingerprint << 32) | (row index + 1), 0 = empty. The home
// slot is multiply-shift of the fingerprint, so growth rehashes from the slots alone, in
// nearly sequential order, without touching the rows.
class ParamStore::Impl {
 public:
  Impl(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer)
      : options_(options),
        optimizer_(CheckedOptimizer(std::move(optimizer))),
        k_(CheckedK(options.k)),
        state_(optimizer_->state_floats()),
        lazy_v_(options.min_count > 1),
        steps_(optimizer_->uses_step()),
        fused_(!lazy_v_ && !steps_ && state_ <= 1 && options.l2_w == options.l2_v),
        rows_(RowStride(options, state_, steps_)),
        vrows_(PaddedStride(static_cast<std::size_t>(k_) * (1 + state_) * sizeof(float))) {
    int next = 3;  // key[2], w
    if (!lazy_v_) {
      v_ = next;
      next += k_;
    }
    ws_ = next;
    next += state_;
    if (!lazy_v_) {
      vs_ = next;
      next += state_ * k_;
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
    pull_bytes_ = static_cast<std::size_t>(lazy_v_ ? 3 : 3 + k_) * sizeof(float);
    vrow_bytes_ = static_cast<std::size_t>(k_) * (1 + state_) * sizeof(float);
    format_ = {.k = k_,
               .optimizer = optimizer_->name(),
               .state_floats = state_,
               .step_counters = steps_,
               .min_count = options.min_count,
               .seed = options.seed,
               .init_std = options.init_std};
    AllocateTable(kSlotsPerPage);
  }

  ~Impl() { Unmap(slots_, slot_bytes_); }

  int k() const { return k_; }

  void Pull(const Key* keys, std::size_t n, bool create, float* out, std::uint32_t* handles) {
    const std::size_t width = 1 + static_cast<std::size_t>(k_);
    auto copy = [&](std::size_t j, std::uint32_t idx) {
      if (handles != nullptr) handles[j] = idx;
      float* o = out + j * width;
      if (idx == kNoRow) {
        std::fill(o, o + width, 0.0f);
        return;
      }
      const float* r = WRow(idx);
      if (!lazy_v_) {
        CopyFloats(o, r + kW, k_ + 1);
        return;
      }
      o[0] = r[kW];
      const std::uint32_t vref = Load32(r + vref_);
      if (vref != 0) {
        CopyFloats(o + 1, VRow(vref - 1), k_);
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

  std::size_t Push(const Key* keys, std::size_t n, const float* grads,
                   const std::uint32_t* counts) {
    std::size_t rejected = 0;
    ForKeys<true, true>(keys, n, [&](std::size_t j, std::uint32_t idx) {
      rejected += Update(idx, j, grads, counts) ? 0 : 1;
    });
    return rejected;
  }

  std::size_t PushRows(const std::uint32_t* rows, std::size_t n, const float* grads,
                       const std::uint32_t* counts) {
    // Rows are prefetched kAhead keys ahead; a lazily allocated v row (found through its w
    // row, by then usually cached) half as far ahead.
    constexpr std::size_t kAhead = 32;
    const std::size_t size = rows_.rows();
    for (std::size_t j = 0; j < n; ++j) {
      if (rows[j] >= size) throw std::out_of_range("ParamStore::PushRows: not a row handle");
    }
    for (std::size_t j = 0; j < std::min(n, kAhead); ++j) {
      PrefetchRange<true>(rows_.Row(rows[j]), row_bytes_);
    }
    std::size_t rejected = 0;
    if (fused_) {  // the common case in a tight loop: one optimizer call per key, no lookups
      const int width = 1 + k_;
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
      if (j + kAhead < n) PrefetchRange<true>(rows_.Row(rows[j + kAhead]), row_bytes_);
      if (lazy_v_ && j + kAhead / 2 < n) {
        const std::uint32_t vref = Load32(WRow(rows[j + kAhead / 2]) + vref_);
        if (vref != 0) PrefetchRange<true>(vrows_.Row(vref - 1), vrow_bytes_);
      }
      rejected += Update(rows[j], j, grads, counts) ? 0 : 1;
    }
    return rejected;
  }

  void Set(Key key, const float* row) {
    const std::uint32_t idx = FindSlow(key, Hash(key), true);
    float* r = WRow(idx);
    r[kW] = row[0];
    optimizer_->InitState(r + kW, r + ws_, 1, options_.l2_w);
    if (steps_) {
      Store32(r + step_, 0);
      Store32(r + step_ + 1, 0);
    }
    if (key == kBiasKey) return;
    const float* v_in = row + 1;
    float* v = nullptr;
    float* vs = nullptr;
    if (!lazy_v_) {
      v = r + v_;
      vs = r + vs_;
    } else {
      std::uint32_t vref = Load32(r + vref_);
      if (vref == 0 && std::any_of(v_in, v_in + k_, [](float x) { return x != 0.0f; })) {
        vref = AddV(r) + 1;
      }
      if (vref == 0) return;  // an unembedded key stays unembedded
      v = VRow(vref - 1);
      vs = v + k_;
    }
    std::copy(v_in, v_in + k_, v);
    optimizer_->InitState(v, vs, k_, options_.l2_v);
  }

  bool Restore(const KeyRecord& rec) {
    const Key key = rec.key;
    const bool bias = key == kBiasKey;
    const bool has_v = rec.v != nullptr && !bias;
    const std::uint64_t h = Hash(key);
    std::uint32_t idx = FindSlow(key, h, false);
    const bool created = idx == kNoRow;
    if (!created && lazy_v_ && !has_v && !bias && Load32(WRow(idx) + vref_) != 0) {
      throw std::invalid_argument("ParamStore::Restore: the key has a v but the record has none");
    }
    if (created) idx = FindSlow(key, h, true, /*init=*/false);
    float* r = WRow(idx);
    const std::size_t v_state_bytes = static_cast<std::size_t>(state_) * k_ * sizeof(float);
    r[kW] = rec.w;
    if (state_ > 0)
      std::memcpy(r + ws_, rec.w_state, static_cast<std::size_t>(state_) * sizeof(float));
    if (steps_) {
      Store32(r + step_, rec.step_w);
      Store32(r + step_ + 1, rec.step_v);
    }
    if (bias) return created;  // its v (present when !lazy_v_) stays 0
    if (!lazy_v_) {
      if (has_v) {
        std::memcpy(r + v_, rec.v, static_cast<std::size_t>(k_) * sizeof(float));
        if (state_ > 0) std::memcpy(r + vs_, rec.v_state, v_state_bytes);
      } else {  // saved under min_count > 1 before it was embedded: as at creation
        InitialEmbedding(options_.seed, key, k_, options_.init_std, r + v_);
        optimizer_->InitState(r + v_, r + vs_, k_, options_.l2_v);
      }
      return created;
    }
    Store32(r + count_, rec.count);
    if (!has_v) return created;
    std::uint32_t vref = Load32(r + vref_);
    if (vref == 0) {
      vref = vrows_.Add() + 1;  // r stays valid: another arena
      Store32(r + vref_, vref);
    }
    float* v = VRow(vref - 1);
    std::memcpy(v, rec.v, static_cast<std::size_t>(k_) * sizeof(float));
    if (state_ > 0) std::memcpy(v + k_, rec.v_state, v_state_bytes);
    return created;
  }

  // Fills d (whose buffer, if any, may be reused).
  void FillSnapshot(StoreSnapshot::Data* d) const {
    const std::size_t w_bytes = RoundUp(std::size_t{rows_.rows()} * rows_.stride(), kLineBytes);
    const std::size_t v_bytes = lazy_v_ ? std::size_t{vrows_.rows()} * vrows_.stride() : 0;
    const std::size_t need = w_bytes + v_bytes;
    if (need > d->buf_bytes) {
      Unmap(d->buf, d->buf_bytes);  // first: lowers the peak
      d->buf = nullptr;
      d->buf_bytes = 0;
      // 1/8 slack, so that a recycled snapshot usually fits the next one of a growing store.
      const std::size_t bytes = RoundUp(need + need / 8, kPageBytes);
      d->buf = MapZeroed(bytes);
      d->buf_bytes = bytes;
    }
    d->wbuf = d->buf;
    d->vbuf = d->buf + w_bytes;
    rows_.CopyTo(d->buf);
    if (lazy_v_) vrows_.CopyTo(d->buf + w_bytes);
    d->format = format_;
    d->lazy_v = lazy_v_;
    d->v = v_;
    d->ws = ws_;
    d->vs = vs_;
    d->step = step_;
    d->count = count_;
    d->vref = vref_;
    d->stride = rows_.stride();
    d->vstride = vrows_.stride();
    d->rows = rows_.rows();
    d->embedded = embedded();
  }

  const StoreFormat& format() const { return format_; }

  std::size_t size() const { return rows_.rows(); }

  std::size_t embedded() const {
    return lazy_v_ ? vrows_.rows() : rows_.rows() - (has_bias_ ? 1 : 0);
  }

  std::size_t MemoryBytes() const {
    return sizeof(*this) + slot_bytes_ + rows_.bytes() + (lazy_v_ ? vrows_.bytes() : 0);
  }

  void ForEach(const std::function<void(Key, const float*)>& fn) const {
    std::vector<float> buf(1 + static_cast<std::size_t>(k_));
    for (std::uint32_t i = 0; i < rows_.rows(); ++i) {
      const float* r = WRow(i);
      buf[0] = r[kW];
      const float* v = nullptr;
      if (!lazy_v_) {
        v = r + v_;
      } else if (const std::uint32_t vref = Load32(r + vref_); vref != 0) {
        v = VRow(vref - 1);
      }
      if (v != nullptr) {
        std::copy(v, v + k_, buf.begin() + 1);
      } else {
        std::fill(buf.begin() + 1, buf.end(), 0.0f);
      }
      fn(LoadKey(r), buf.data());
    }
  }

 private:
  // One key's optimizer update with gradient row j of grads (see Push); false (nothing
  // changed) if that row has a non-finite value.
  bool Update(std::uint32_t idx, std::size_t j, const float* grads, const std::uint32_t* counts) {
    const std::size_t width = 1 + static_cast<std::size_t>(k_);
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
      float* vs = lazy_v_ ? v + k_ : r + vs_;
      optimizer_->Update(v, vs, g + 1, k_, options_.l2_v, &steps[1]);
    }
    if (steps_) std::memcpy(r + step_, steps, sizeof(steps));
    return true;
  }

  static constexpr int kW = 2;  // word offset of w (after the 2-word key)

  static std::unique_ptr<Optimizer> CheckedOptimizer(std::unique_ptr<Optimizer> optimizer) {
    if (!optimizer) throw std::invalid_argument("ParamStore: null optimizer");
    return optimizer;
  }

  static int CheckedK(int k) {
    if (k < 1) throw std::invalid_argument("ParamStore: k must be >= 1");
    return k;
  }

  static std::size_t RowStride(const StoreOptions& o, int state, bool steps) {
    const std::size_t k = static_cast<std::size_t>(o.k);
    const std::size_t s = static_cast<std::size_t>(state);
    std::size_t words = 3 + s + (steps ? 2 : 0);
    words += o.min_count > 1 ? 2 : k * (1 + s);
    return PaddedStride(words * sizeof(float));
  }

  // Rows a little under a multiple of 64 bytes are padded to it: with line-aligned chunks
  // each row then spans the fewest cache lines (e.g. Adam/FTRL at k = 8: 124/116 -> 128
  // bytes, 2 lines per push instead of ~2.9, and 1 line per pull instead of ~1.7). Padding
  // is only done when it costs at most 1/8 of the row.
  static std::size_t PaddedStride(std::size_t bytes) {
    const std::size_t padded = RoundUp(bytes, kLineBytes);
    return bytes > kLineBytes && (padded - bytes) * 8 <= bytes ? padded : bytes;
  }

  static std::uint64_t Hash(Key key) { return Mix64(key ^ kTableSalt); }
  static std::uint32_t Fingerprint(std::uint64_t h) { return static_cast<std::uint32_t>(h >> 32); }

  std::uint64_t Home(std::uint32_t fp) const {
    return (static_cast<std::uint64_t>(fp) * capacity_) >> 32;
  }
  std::uint64_t Next(std::uint64_t pos) const { return pos + 1 == capacity_ ? 0 : pos + 1; }

  float* WRow(std::uint32_t i) const { return reinterpret_cast<float*>(rows_.Row(i)); }
  float* VRow(std::uint32_t i) const { return reinterpret_cast<float*>(vrows_.Row(i)); }

  void AllocateTable(std::uint64_t capacity) {
    slot_bytes_ = RoundUp(capacity * sizeof(std::uint64_t), kPageBytes);
    slots_ = reinterpret_cast<std::uint64_t*>(MapZeroed(slot_bytes_));
    capacity_ = capacity;
    grow_at_ = capacity * 4 / 5;
  }

  // Grows the table by 1.5x (keeps the load factor in (0.53, 0.8]).
  void GrowTable() {
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
  std::uint32_t FindSlow(Key key, std::uint64_t h, bool create, bool init = true) {
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

  std::uint32_t CreateRow(Key key, bool init) {
    const std::uint32_t idx = rows_.Add();
    float* r = WRow(idx);
    std::memcpy(r, &key, sizeof(key));
    if (key == kBiasKey) has_bias_ = true;
    if (!init) return idx;
    optimizer_->InitState(r + kW, r + ws_, 1, options_.l2_w);
    if (key != kBiasKey && !lazy_v_) {
      InitialEmbedding(options_.seed, key, k_, options_.init_std, r + v_);
      optimizer_->InitState(r + v_, r + vs_, k_, options_.l2_v);
    }
    return idx;
  }

  // Gives the (w-)row r its v, initialised; returns the v row's index.
  std::uint32_t AddV(float* r) {
    const std::uint32_t vi = vrows_.Add();
    Store32(r + vref_, vi + 1);
    float* v = VRow(vi);
    InitialEmbedding(options_.seed, LoadKey(r), k_, options_.init_std, v);
    optimizer_->InitState(v, v + k_, k_, options_.l2_v);
    return vi;
  }

  // Resolves keys[0..n) to row indices (kNoRow when missing and !kCreate) and calls
  // fn(j, index) in order; see kBatch. Rows created here are complete before fn runs.
  template <bool kCreate, bool kWrite, class Fn>
  void ForKeys(const Key* keys, std::size_t n, Fn&& fn) {
    std::uint64_t hashes[kBatch];
    std::uint64_t homes[kBatch];
    std::uint32_t idx[kBatch];
    const std::size_t prefetch_bytes = kWrite ? row_bytes_ : pull_bytes_;
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
        if (c != kNoRow) PrefetchRange<kWrite>(rows_.Row(c), prefetch_bytes);
      }
      // Rows created below may move the first arena chunk: pointers are derived afresh.
      if (!lazy_v_) {
        for (std::size_t j = 0; j < m; ++j)
          fn(base + j, Resolve<kCreate>(batch_keys[j], hashes[j], idx[j]));
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
              kWrite ? vrow_bytes_ : static_cast<std::size_t>(k_) * sizeof(float));
        }
      }
      for (std::size_t j = 0; j < m; ++j) fn(base + j, idx[j]);
    }
  }

  // The row of key given the candidate found by ProbeFingerprint.
  template <bool kCreate>
  std::uint32_t Resolve(Key key, std::uint64_t h, std::uint32_t candidate) {
    if (candidate != kNoRow && LoadKey(WRow(candidate)) == key) return candidate;
    return FindSlow(key, h, kCreate);
  }

  StoreOptions options_;
  std::unique_ptr<Optimizer> optimizer_;
  StoreFormat format_;
  int k_;
  int state_;
  bool lazy_v_;
  bool steps_;
  // w and v update as one group of 1 + k (an elementwise optimizer, one l2, the layout
  // key w v[k] w_state v_state[k] with at most one state float: both arrays contiguous).
  bool fused_;
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

ParamStore::ParamStore(const StoreOptions& options, std::unique_ptr<Optimizer> optimizer)
    : impl_(std::make_unique<Impl>(options, std::move(optimizer))) {}

ParamStore::~ParamStore() = default;

int ParamStore::k() const { return impl_->k(); }

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
