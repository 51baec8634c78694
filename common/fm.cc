#include "common/fm.h"

#include <algorithm>
#include <vector>

#include "common/loss.h"

namespace fmps {
namespace {

// ForwardBackward scores kBlock rows, then takes their losses, then scatters their
// gradients: the rows' dependency chains (sum over non-zeros -> loss -> scatter) overlap
// instead of running one after the other.
constexpr std::size_t kBlock = 8;

// With a parameter table larger than this the parameter (and gradient) rows are prefetched
// kPrefetchDistance non-zeros ahead: they are cache misses that would otherwise serialise.
// A smaller table (with its gradients) stays in L2 and the prefetches would only cost
// instructions.
constexpr std::size_t kPrefetchTableBytes = std::size_t{2} << 20;
constexpr std::size_t kPrefetchDistance = 64;

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

// Whether the batch's parameter rows span more than kPrefetchTableBytes.
inline bool TableIsLarge(const FmBatch& b, std::size_t width) {
  const std::size_t begin = b.offsets[0], end = b.offsets[b.rows];
  std::uint32_t top = 0;
  for (std::size_t j = begin; j < end; ++j) top = std::max(top, b.local[j]);
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

// What Score prefetches kPrefetchDistance non-zeros ahead.
enum class Prefetch { kNone, kParams, kParamsAndGrads };

// K is the embedding size when known at compile time (the loops over factors unroll and
// vectorise to fixed-size registers), or 0 for any other k (runtime loops). kOnes: every
// value of the row is 1, so the multiplications by x are skipped (same result: x * 1 = x).
template <int K>
struct Kernel {
  static constexpr int kStatic = K > 0 ? K : 1;

  struct Args {
    const float* __restrict params;
    const std::size_t* __restrict offsets;
    const std::uint32_t* __restrict local;
    const float* __restrict values;
    int k;
    std::size_t width;
  };

  static Args MakeArgs(const FmBatch& b, const float* params, int k) {
    return {params,   b.offsets,     b.local,
            b.values, K > 0 ? K : k, 1 + static_cast<std::size_t>(K > 0 ? K : k)};
  }

  // Prefetches the rows of non-zero j (kPf says which).
  template <Prefetch kPf>
  [[gnu::always_inline]] static void PrefetchNnz(const Args& a, std::size_t j, const float* grads) {
    if constexpr (kPf != Prefetch::kNone) {
      const std::size_t u = a.local[j] * a.width;
      PrefetchRow<false>(a.params + u, a.width);
      if constexpr (kPf == Prefetch::kParamsAndGrads) PrefetchRow<true>(grads + u, a.width);
    }
  }

  // Score of row r; writes sum_i v_i x_i to sum[k]. Two interleaved accumulators halve the
  // floating-point dependency chains; the squares are reduced once per row.
  // `scratch` (4k floats) holds the accumulators when K is dynamic. With kPf the rows of
  // the non-zeros kPrefetchDistance ahead are prefetched (the caller guarantees they exist).
  template <bool kOnes, Prefetch kPf>
  static float Score(const Args& a, std::size_t r, float* __restrict sum, float* __restrict scratch,
                     const float* grads) {
    const int k = a.k;
    float fixed_acc[4 * kStatic];
    float* __restrict acc = K > 0 ? fixed_acc : scratch;
    float* __restrict s0 = acc;
    float* __restrict s1 = acc + k;
    float* __restrict q0 = acc + 2 * k;
    float* __restrict q1 = acc + 3 * k;
    for (int f = 0; f < 4 * k; ++f) acc[f] = 0.0f;
    float lin0 = a.params[0], lin1 = 0.0f;
    std::size_t j = a.offsets[r];
    const std::size_t end = a.offsets[r + 1];
    for (; j + 1 < end; j += 2) {
      PrefetchNnz<kPf>(a, j + kPrefetchDistance, grads);
      PrefetchNnz<kPf>(a, j + 1 + kPrefetchDistance, grads);
      const float* __restrict p0 = a.params + a.local[j] * a.width;
      const float* __restrict p1 = a.params + a.local[j + 1] * a.width;
      if constexpr (kOnes) {
        lin0 += p0[0];
        lin1 += p1[0];
        for (int f = 0; f < k; ++f) {
          s0[f] += p0[1 + f];
          q0[f] += p0[1 + f] * p0[1 + f];
          s1[f] += p1[1 + f];
          q1[f] += p1[1 + f] * p1[1 + f];
        }
      } else {
        const float x0 = a.values[j], x1 = a.values[j + 1];
        lin0 += p0[0] * x0;
        lin1 += p1[0] * x1;
        for (int f = 0; f < k; ++f) {
          const float vx0 = p0[1 + f] * x0, vx1 = p1[1 + f] * x1;
          s0[f] += vx0;
          q0[f] += vx0 * vx0;
          s1[f] += vx1;
          q1[f] += vx1 * vx1;
        }
      }
    }
    if (j < end) {
      PrefetchNnz<kPf>(a, j + kPrefetchDistance, grads);
      const float* __restrict p0 = a.params + a.local[j] * a.width;
      const float x0 = kOnes ? 1.0f : a.values[j];
      lin0 += p0[0] * x0;
      for (int f = 0; f < k; ++f) {
        const float vx0 = p0[1 + f] * x0;
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

  // Score of row r, through the all-ones path when it applies; prefetching (as kPf says) when
  // `prefetch` is set and the non-zeros kPrefetchDistance past the row's end exist.
  // all_ones: every value of the batch is 1 (else each row is checked).
  template <Prefetch kPf>
  static float AnyScore(const Args& a, std::size_t r, bool all_ones, bool prefetch,
                        std::size_t nnz_end, bool* ones, float* sum, float* scratch,
                        const float* grads) {
    *ones = all_ones || AllOnes(a.values, a.offsets[r], a.offsets[r + 1]);
    if (prefetch && a.offsets[r + 1] + kPrefetchDistance <= nnz_end) {
      return *ones ? Score<true, kPf>(a, r, sum, scratch, grads)
                   : Score<false, kPf>(a, r, sum, scratch, grads);
    }
    return *ones ? Score<true, Prefetch::kNone>(a, r, sum, scratch, grads)
                 : Score<false, Prefetch::kNone>(a, r, sum, scratch, grads);
  }

  // Adds row r's gradient into grads, given g = d loss / d score and sum = sum_i v_i x_i:
  // d/dw_i = g x_i, d/dv_i = g x_i (sum - v_i x_i).
  template <bool kOnes>
  static void Scatter(const Args& a, std::size_t r, float g, const float* __restrict sum,
                      float* __restrict grads) {
    const int k = a.k;
#pragma GCC unroll 2
    for (std::size_t j = a.offsets[r]; j < a.offsets[r + 1]; ++j) {
      const std::size_t u = a.local[j] * a.width;
      const float* __restrict v = a.params + u + 1;
      float* __restrict gv = grads + u + 1;
      if constexpr (kOnes) {
        grads[u] += g;
        for (int f = 0; f < k; ++f) gv[f] += g * (sum[f] - v[f]);
      } else {
        const float x = a.values[j];
        const float gx = g * x;
        grads[u] += gx;
        for (int f = 0; f < k; ++f) gv[f] += gx * (sum[f] - v[f] * x);
      }
    }
  }

  static void Scores(const FmBatch& b, const float* params, int k, float* scores) {
    const Args a = MakeArgs(b, params, k);
    const std::size_t nnz_end = b.offsets[b.rows];
    const bool all_ones = AllOnes(b.values, b.offsets[0], nnz_end);
    const bool prefetch = TableIsLarge(b, a.width);
    std::vector<float> scratch(K > 0 ? 0 : 5 * static_cast<std::size_t>(a.k));
    float fixed_sum[kStatic];
    float* sum = K > 0 ? fixed_sum : scratch.data() + 4 * a.k;
    bool ones;
    for (std::size_t r = 0; r < b.rows; ++r) {
      scores[r] = AnyScore<Prefetch::kParams>(a, r, all_ones, prefetch, nnz_end, &ones, sum,
                                              scratch.data(), nullptr);
    }
  }

  static double ForwardBackward(const FmBatch& b, const float* params, int k, Loss loss,
                                float* grads, float* scores) {
    const Args a = MakeArgs(b, params, k);
    const std::size_t nnz_end = b.offsets[b.rows];
    const bool all_ones = AllOnes(b.values, b.offsets[0], nnz_end);
    const bool prefetch = TableIsLarge(b, a.width);
    const std::size_t kk = static_cast<std::size_t>(a.k);
    std::vector<float> scratch(K > 0 ? 0 : (4 + kBlock) * kk);
    float fixed_sums[kBlock * kStatic];
    float* sums = K > 0 ? fixed_sums : scratch.data() + 4 * kk;
    float s[kBlock], g[kBlock];
    bool ones[kBlock];
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
        if (ones[i]) {
          Scatter<true>(a, r0 + i, g[i], sums + i * kk, grads);
        } else {
          Scatter<false>(a, r0 + i, g[i], sums + i * kk, grads);
        }
      }
    }
    return total;
  }
};

}  // namespace

void FmScores(const FmBatch& batch, const float* params, int k, float* scores) {
  switch (k) {
    case 4:
      return Kernel<4>::Scores(batch, params, k, scores);
    case 8:
      return Kernel<8>::Scores(batch, params, k, scores);
    case 16:
      return Kernel<16>::Scores(batch, params, k, scores);
    case 32:
      return Kernel<32>::Scores(batch, params, k, scores);
    default:
      return Kernel<0>::Scores(batch, params, k, scores);
  }
}

double FmForwardBackward(const FmBatch& batch, const float* params, int k, Loss loss, float* grads,
                         float* scores) {
  switch (k) {
    case 4:
      return Kernel<4>::ForwardBackward(batch, params, k, loss, grads, scores);
    case 8:
      return Kernel<8>::ForwardBackward(batch, params, k, loss, grads, scores);
    case 16:
      return Kernel<16>::ForwardBackward(batch, params, k, loss, grads, scores);
    case 32:
      return Kernel<32>::ForwardBackward(batch, params, k, loss, grads, scores);
    default:
      return Kernel<0>::ForwardBackward(batch, params, k, loss, grads, scores);
  }
}

}  // namespace fmps
