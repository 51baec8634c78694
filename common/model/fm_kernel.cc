#include "common/model/fm_kernel.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/model/grad_rows.h"
#include "common/model/kernel_vec.h"
#include "common/model/loss.h"

namespace fmps {
namespace {

// ForwardBackward scores kBlock rows, then takes their losses, then scatters their
// gradients, so that the rows' dependency chains (sum over non-zeros -> loss -> scatter) can
// overlap; the blocked loss loop is the place to vectorise the loss.
constexpr std::size_t kBlock = 8;

// With a parameter table larger than this the parameter (and gradient) rows are prefetched
// kPrefetchDistance non-zeros ahead: they are cache misses that would otherwise serialise.
// Below it out-of-order execution hides the cache latency and prefetching only costs time
// (tests/bench/README.md, "FM kernel").
constexpr std::size_t kPrefetchTableBytes = std::size_t{2} << 20;
constexpr std::size_t kPrefetchDistance = 32;

// Prefetches every cache line of the `width` floats at p (for writing if kWrite): one
// address every 16 floats, and the last float.
// always_inline: GCC 12 otherwise finds the function free of side effects and drops calls.
template <bool kWrite>
[[gnu::always_inline]] inline void PrefetchRow(const float* p, std::size_t width) {
  for (std::size_t off = 0; off + 1 < width; off += 16) {
    __builtin_prefetch(p + off, kWrite ? 1 : 0);
  }
  __builtin_prefetch(p + width - 1, kWrite ? 1 : 0);
}

// Whether the batch's parameter rows span more than kPrefetchTableBytes, given its highest
// local id (model_internal::TopId).
inline bool TableIsLarge(std::uint32_t top, std::size_t width) {
  return (top + std::size_t{1}) * width * sizeof(float) > kPrefetchTableBytes;
}

// Whether every value in [begin, end) is 1 (the usual case for categorical data).
// Branch-free so that it vectorises. A 32-bit count can only err towards false (the slower,
// general path) for a range of 2^32 non-zeros or more.
inline bool AllOnes(const float* __restrict values, std::size_t begin, std::size_t end) {
  std::uint32_t ones = 0;
  for (std::size_t j = begin; j < end; ++j) ones += values[j] == 1.0f;
  return ones == end - begin;
}

// What the scoring loop prefetches kPrefetchDistance non-zeros ahead.
enum class Prefetch { kNone, kParams, kParamsAndGrads };

// The batch's arrays as __restrict locals, with k and the shape's row width.
struct Args {
  const float* __restrict params;
  const std::size_t* __restrict offsets;
  const std::uint32_t* __restrict local;
  const float* __restrict values;
  int k;
  std::size_t width;
};

inline Args MakeArgs(const ModelBatch& b, const float* params, int k, std::size_t width) {
  return {params, b.offsets, b.local, b.values, k, width};
}

// Prefetches the rows of non-zero j (kPf says which).
template <Prefetch kPf>
[[gnu::always_inline]] inline void PrefetchNnz(const Args& a, std::size_t j, const float* grads) {
  if constexpr (kPf != Prefetch::kNone) {
    const std::size_t u = a.local[j] * a.width;
    PrefetchRow<false>(a.params + u, a.width);
    if constexpr (kPf == Prefetch::kParamsAndGrads) PrefetchRow<true>(grads + u, a.width);
  }
}

// GCC vector extensions (kernel_vec.h).
using kernel_vec::Float4;
using kernel_vec::Float8;
using kernel_vec::kMaxLanes;

// The per-row math for an embedding size K fixed at compile time (4, 8, 16 or 32): the
// factors are kCount vectors of kLanes floats (GCC vector extensions: AVX registers with
// -mavx, SSE registers without), the accumulators stay in registers.
//
// Score: the score of row r; writes sum_i v_i x_i to sum[K]. The squares are reduced once per
// row. With kPf the rows of the non-zeros kPrefetchDistance ahead are prefetched (the caller
// guarantees they exist). kOnes: every value of the row is 1, so the multiplications by x are
// skipped (the same results: x * 1 = x exactly).
// Scatter: adds row r's gradient into grads given g = d loss / d score and the row's sum:
// d/dw_i = g x_i, d/dv_i = g x_i (sum - v_i x_i).
template <int K>
struct FixedMath {
  static constexpr int kFixedK = K;
  static constexpr int kLanes = K < kMaxLanes ? K : kMaxLanes;
  static constexpr int kCount = K / kLanes;
  using V = std::conditional_t<kLanes == 8, Float8, Float4>;
  static_assert(K % kLanes == 0);

  static std::size_t ScratchFloats(int) { return 0; }

  [[gnu::always_inline]] static V Load(const float* p) {
    V v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  [[gnu::always_inline]] static void Store(float* p, V v) { std::memcpy(p, &v, sizeof(v)); }

  // Interleaved accumulator sets (shorter dependency chains) while they fit in the 16
  // vector registers with the temporaries.
  static constexpr int kSets = kCount <= 2 ? 2 : 1;

  // Adds non-zero j to one accumulator set.
  template <bool kOnes, Prefetch kPf>
  [[gnu::always_inline]] static void Add(const Args& a, std::size_t j, const float* grads,
                                         float* lin, V* s, V* q) {
    PrefetchNnz<kPf>(a, j + kPrefetchDistance, grads);
    const float* p = a.params + a.local[j] * a.width;
    const float x = kOnes ? 1.0f : a.values[j];
    *lin += kOnes ? p[0] : p[0] * x;
    for (int c = 0; c < kCount; ++c) {
      V v = Load(p + 1 + c * kLanes);
      if constexpr (!kOnes) v *= x;
      s[c] += v;
      q[c] += v * v;
    }
  }

  template <bool kOnes, Prefetch kPf>
  static float Score(const Args& a, std::size_t r, float* __restrict sum, float*,
                     const float* grads) {
    float lin[kSets] = {};
    V s[kSets][kCount] = {}, q[kSets][kCount] = {};
    lin[0] = a.params[0];
    std::size_t j = a.offsets[r];
    const std::size_t end = a.offsets[r + 1];
    for (; j + kSets <= end; j += kSets) {
      for (int t = 0; t < kSets; ++t) Add<kOnes, kPf>(a, j + t, grads, &lin[t], s[t], q[t]);
    }
    for (; j < end; ++j) Add<kOnes, kPf>(a, j, grads, &lin[0], s[0], q[0]);
    V pairs = {};
    for (int c = 0; c < kCount; ++c) {
      V sc = s[0][c], qc = q[0][c];
      for (int t = 1; t < kSets; ++t) {
        sc += s[t][c];
        qc += q[t][c];
      }
      Store(sum + c * kLanes, sc);
      pairs += sc * sc - qc;
    }
    float linear = lin[0];
    for (int t = 1; t < kSets; ++t) linear += lin[t];
    float pair_sum = 0.0f;
    for (int l = 0; l < kLanes; ++l) pair_sum += pairs[l];
    return linear + 0.5f * pair_sum;
  }

  template <bool kOnes>
  static void Scatter(const Args& a, std::size_t r, float g, const float* __restrict sum,
                      float* __restrict grads) {
    V s[kCount];
    for (int c = 0; c < kCount; ++c) s[c] = Load(sum + c * kLanes);
#pragma GCC unroll 2
    for (std::size_t j = a.offsets[r]; j < a.offsets[r + 1]; ++j) {
      const std::size_t u = a.local[j] * a.width;
      const float* v = a.params + u + 1;
      float* gv = grads + u + 1;
      if constexpr (kOnes) {
        grads[u] += g;
        for (int c = 0; c < kCount; ++c) {
          Store(gv + c * kLanes, Load(gv + c * kLanes) + g * (s[c] - Load(v + c * kLanes)));
        }
      } else {
        const float x = a.values[j];
        const float gx = g * x;
        grads[u] += gx;
        for (int c = 0; c < kCount; ++c) {
          Store(gv + c * kLanes, Load(gv + c * kLanes) + gx * (s[c] - Load(v + c * kLanes) * x));
        }
      }
    }
  }
};

// The same for any other k, with runtime loops over the factors; the accumulators live in
// `scratch` (ScratchFloats(k) floats).
struct DynamicMath {
  static constexpr int kFixedK = 0;  // k known only at run time
  static std::size_t ScratchFloats(int k) { return 4 * static_cast<std::size_t>(k); }

  template <bool kOnes, Prefetch kPf>
  static float Score(const Args& a, std::size_t r, float* __restrict sum, float* __restrict scratch,
                     const float* grads) {
    const int k = a.k;
    float* __restrict s0 = scratch;
    float* __restrict s1 = scratch + k;
    float* __restrict q0 = scratch + 2 * k;
    float* __restrict q1 = scratch + 3 * k;
    for (int f = 0; f < 4 * k; ++f) scratch[f] = 0.0f;
    float lin0 = a.params[0], lin1 = 0.0f;
    std::size_t j = a.offsets[r];
    const std::size_t end = a.offsets[r + 1];
    for (; j + 1 < end; j += 2) {
      PrefetchNnz<kPf>(a, j + kPrefetchDistance, grads);
      PrefetchNnz<kPf>(a, j + 1 + kPrefetchDistance, grads);
      const float* __restrict p0 = a.params + a.local[j] * a.width;
      const float* __restrict p1 = a.params + a.local[j + 1] * a.width;
      const float x0 = kOnes ? 1.0f : a.values[j], x1 = kOnes ? 1.0f : a.values[j + 1];
      lin0 += kOnes ? p0[0] : p0[0] * x0;
      lin1 += kOnes ? p1[0] : p1[0] * x1;
      for (int f = 0; f < k; ++f) {
        const float vx0 = kOnes ? p0[1 + f] : p0[1 + f] * x0;
        const float vx1 = kOnes ? p1[1 + f] : p1[1 + f] * x1;
        s0[f] += vx0;
        q0[f] += vx0 * vx0;
        s1[f] += vx1;
        q1[f] += vx1 * vx1;
      }
    }
    if (j < end) {
      PrefetchNnz<kPf>(a, j + kPrefetchDistance, grads);
      const float* __restrict p0 = a.params + a.local[j] * a.width;
      const float x0 = kOnes ? 1.0f : a.values[j];
      lin0 += kOnes ? p0[0] : p0[0] * x0;
      for (int f = 0; f < k; ++f) {
        const float vx0 = kOnes ? p0[1 + f] : p0[1 + f] * x0;
        s0[f] += vx0;
        q0[f] += vx0 * vx0;
      }
    }
    float pairs = 0.0f;
    for (int f = 0; f < k; ++f) {
      sum[f] = s0[f] + s1[f];
      pairs += sum[f] * sum[f] - (q0[f] + q1[f]);
    }
    return (lin0 + lin1) + 0.5f * pairs;
  }

  template <bool kOnes>
  static void Scatter(const Args& a, std::size_t r, float g, const float* __restrict sum,
                      float* __restrict grads) {
    const int k = a.k;
    for (std::size_t j = a.offsets[r]; j < a.offsets[r + 1]; ++j) {
      const std::size_t u = a.local[j] * a.width;
      const float* __restrict v = a.params + u + 1;
      float* __restrict gv = grads + u + 1;
      const float x = kOnes ? 1.0f : a.values[j];
      const float gx = kOnes ? g : g * x;
      grads[u] += gx;
      for (int f = 0; f < k; ++f) gv[f] += gx * (sum[f] - (kOnes ? v[f] : v[f] * x));
    }
  }
};

// The batch loops over a Math (FixedMath<K> or DynamicMath).
template <class Math>
struct Kernel {
  // Score of row r, through the all-ones path when it applies (all_ones: every value of the
  // batch is 1, else the row is checked); prefetching (as kPf says) when `prefetch` is set
  // and the non-zeros kPrefetchDistance past the row's end exist.
  template <Prefetch kPf>
  static float AnyScore(const Args& a, std::size_t r, bool all_ones, bool prefetch,
                        std::size_t nnz_end, bool* ones, float* sum, float* scratch,
                        const float* grads) {
    *ones = all_ones || AllOnes(a.values, a.offsets[r], a.offsets[r + 1]);
    if (prefetch && a.offsets[r + 1] + kPrefetchDistance <= nnz_end) {
      return *ones ? Math::template Score<true, kPf>(a, r, sum, scratch, grads)
                   : Math::template Score<false, kPf>(a, r, sum, scratch, grads);
    }
    return *ones ? Math::template Score<true, Prefetch::kNone>(a, r, sum, scratch, grads)
                 : Math::template Score<false, Prefetch::kNone>(a, r, sum, scratch, grads);
  }

  static void Scores(const ModelBatch& b, const float* params, int k, std::size_t width,
                     float* scores) {
    const Args a = MakeArgs(b, params, k, width);
    const std::size_t nnz_end = b.offsets[b.rows];
    const bool all_ones = AllOnes(b.values, b.offsets[0], nnz_end);
    const bool prefetch = TableIsLarge(model_internal::TopId(b), a.width);
    std::vector<float> scratch(Math::ScratchFloats(k) + k);
    bool ones;
    for (std::size_t r = 0; r < b.rows; ++r) {
      scores[r] = AnyScore<Prefetch::kParams>(a, r, all_ones, prefetch, nnz_end, &ones,
                                              scratch.data() + Math::ScratchFloats(k),
                                              scratch.data(), nullptr);
    }
  }

  // Row r's sum_i v_i x_i into sums[r * k ...]. A plain loop of its own: sharing Score's
  // code would change how GCC inlines Score into the training loop.
  static void EmbeddingSums(const ModelBatch& b, const float* params, int k, std::size_t width,
                            float* sums) {
    const Args a = MakeArgs(b, params, k, width);
    const std::size_t kk = static_cast<std::size_t>(k);
    for (std::size_t r = 0; r < b.rows; ++r) {
      float* __restrict out = sums + r * kk;
      std::fill(out, out + kk, 0.0f);
      for (std::size_t j = a.offsets[r]; j < a.offsets[r + 1]; ++j) {
        const float* __restrict v = a.params + a.local[j] * a.width + 1;
        const float x = a.values[j];
        for (std::size_t f = 0; f < kk; ++f) out[f] += v[f] * x;
      }
    }
  }

  static double ForwardBackward(const ModelBatch& b, const float* params, int k, std::size_t width,
                                Loss loss, float* grads, float* scores) {
    const Args a = MakeArgs(b, params, k, width);
    const std::size_t nnz_end = b.offsets[b.rows];
    const bool all_ones = AllOnes(b.values, b.offsets[0], nnz_end);
    const std::uint32_t top = model_internal::TopId(b);
    const bool prefetch = TableIsLarge(top, a.width);
    const std::size_t kk = static_cast<std::size_t>(k);
    std::vector<float> scratch(Math::ScratchFloats(k) + kBlock * kk);
    float* sums = scratch.data() + Math::ScratchFloats(k);
    float s[kBlock], g[kBlock];
    bool ones[kBlock];
    model_internal::GradRows rows(b, grads, a.width, top);  // zeroes row 0 before the adds below
    double total = 0.0;
    for (std::size_t r0 = 0; r0 < b.rows; r0 += kBlock) {
      const std::size_t n = std::min(kBlock, b.rows - r0);
      for (std::size_t i = 0; i < n; ++i) {
        s[i] = AnyScore<Prefetch::kParamsAndGrads>(a, r0 + i, all_ones, prefetch, nnz_end, &ones[i],
                                                   sums + i * kk, scratch.data(), grads);
      }
      for (std::size_t i = 0; i < n; ++i) {
        const LossAndGradient l = LossValueAndGradient(loss, s[i], b.labels[r0 + i]);
        total += l.value;
        g[i] = l.gradient;
        grads[0] += l.gradient;
        if (scores != nullptr) scores[r0 + i] = s[i];
      }
      for (std::size_t i = 0; i < n; ++i) {
        rows.Open(r0 + i);
        if (ones[i]) {
          Math::template Scatter<true>(a, r0 + i, g[i], sums + i * kk, grads);
        } else {
          Math::template Scatter<false>(a, r0 + i, g[i], sums + i * kk, grads);
        }
        rows.Close(r0 + i);
      }
    }
    rows.Finish();
    return total;
  }
};

// The ModelKernel of one Math: the switch on k happened when it was made.
template <class Math>
class FmKernel final : public ModelKernel {
 public:
  FmKernel(const ModelShape& shape, Loss loss) : shape_(shape), loss_(loss) {}

  const ModelShape& shape() const override { return shape_; }
  Loss loss() const override { return loss_; }

  void Scores(const ModelBatch& batch, const float* params, float* scores) const override {
    Kernel<Math>::Scores(batch, params, k(), width(), scores);
  }

  double ForwardBackward(const ModelBatch& batch, const float* params, float* grads,
                         float* scores) const override {
    return Kernel<Math>::ForwardBackward(batch, params, k(), width(), loss_, grads, scores);
  }

  void EmbeddingSums(const ModelBatch& batch, const float* params, float* sums) const override {
    Kernel<Math>::EmbeddingSums(batch, params, k(), width(), sums);
  }

 private:
  // k and the row width: compile-time constants for a FixedMath (the loops then index rows
  // by a constant stride), else the shape's.
  int k() const { return Math::kFixedK > 0 ? Math::kFixedK : shape_.k; }
  std::size_t width() const {
    constexpr ModelShape kFixed = FmShape(Math::kFixedK);
    return static_cast<std::size_t>(Math::kFixedK > 0 ? kFixed.row_width() : shape_.row_width());
  }

  ModelShape shape_;
  Loss loss_;
};

}  // namespace

std::unique_ptr<ModelKernel> MakeFmKernel(const ModelShape& shape, Loss loss) {
  switch (shape.k) {
    case 4:
      return std::make_unique<FmKernel<FixedMath<4>>>(shape, loss);
    case 8:
      return std::make_unique<FmKernel<FixedMath<8>>>(shape, loss);
    case 16:
      return std::make_unique<FmKernel<FixedMath<16>>>(shape, loss);
    case 32:
      return std::make_unique<FmKernel<FixedMath<32>>>(shape, loss);
    default:
      return std::make_unique<FmKernel<DynamicMath>>(shape, loss);
  }
}

}  // namespace fmps
