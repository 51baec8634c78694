#include "common/model/ffm_kernel.h"

#include <algorithm>

#include "common/base/error.h"
#include "common/model/grad_rows.h"
#include "common/model/kernel_vec.h"
#include "common/model/loss.h"

namespace fmps {
namespace {

// The batch's arrays as __restrict locals, with k and the shape's row width.
struct Args {
  const float* __restrict params;
  const std::size_t* __restrict offsets;
  const std::uint32_t* __restrict local;
  const float* __restrict values;
  const std::uint32_t* __restrict fields;
  std::size_t k;
  std::size_t width;
};

Args MakeArgs(const ModelBatch& b, const float* params, const ModelShape& shape) {
  if (b.fields == nullptr && b.rows > 0 && b.offsets[b.rows] > b.offsets[0]) {
    throw ModelError("ffm kernel: the batch carries no fields");
  }
  return {params,
          b.offsets,
          b.local,
          b.values,
          b.fields,
          static_cast<std::size_t>(shape.k),
          static_cast<std::size_t>(shape.row_width())};
}

// Whether every value of row r is 1 (categorical data): the multiplications by x are then
// skipped (the same results: x * 1 = x exactly).
bool RowAllOnes(const Args& a, std::size_t r) {
  std::uint32_t ones = 0;
  for (std::size_t j = a.offsets[r]; j < a.offsets[r + 1]; ++j) ones += a.values[j] == 1.0f;
  return ones == a.offsets[r + 1] - a.offsets[r];
}

// Vector arithmetic on k floats for K fixed at compile time (4, 8, 16, 32): kCount vectors
// of kLanes floats.
template <int K>
struct FixedVec : kernel_vec::Lanes<K> {
  using Base = kernel_vec::Lanes<K>;
  using Base::kCount;
  using Base::kLanes;
  using Base::Load;
  using Base::Store;
  using V = typename Base::V;
  struct Acc {
    V v[kCount] = {};
  };

  // *acc += (a * x) * b elementwise (x = 1 unless kOnes): x first, so that with x = 1 the
  // operations (a fused multiply-add under -march=native) are those of the kOnes path.
  template <bool kOnes>
  [[gnu::always_inline]] static void MulAdd(Acc* acc, const float* a, const float* b, float x,
                                            std::size_t) {
    for (int c = 0; c < kCount; ++c) {
      V ax = Load(a + c * kLanes);
      if constexpr (!kOnes) ax *= x;
      acc->v[c] += ax * Load(b + c * kLanes);
    }
  }
  // Sum of the elements of a0 + a1, times x.
  [[gnu::always_inline]] static float Reduce(const Acc& a0, const Acc& a1, float x) {
    V t = a0.v[0] + a1.v[0];
    for (int c = 1; c < kCount; ++c) t += a0.v[c] + a1.v[c];
    float s = 0.0f;
    for (int l = 0; l < kLanes; ++l) s += t[l];
    return s * x;
  }
  // g[0..K) += c * v[0..K).
  [[gnu::always_inline]] static void Axpy(float* g, float c, const float* v, std::size_t) {
    for (int q = 0; q < kCount; ++q) {
      Store(g + q * kLanes, Load(g + q * kLanes) + c * Load(v + q * kLanes));
    }
  }
};

// The same for k known only at run time: scalar loops over the k floats.
struct DynamicVec {
  struct Acc {
    float s = 0.0f;
  };
  template <bool kOnes>
  static void MulAdd(Acc* acc, const float* __restrict a, const float* __restrict b, float x,
                     std::size_t k) {
    float dot = 0.0f;
    for (std::size_t q = 0; q < k; ++q) dot += a[q] * b[q];
    acc->s += kOnes ? dot : dot * x;
  }
  static float Reduce(const Acc& a0, const Acc& a1, float x) { return (a0.s + a1.s) * x; }
  static void Axpy(float* g, float c, const float* v, std::size_t k) {
    for (std::size_t q = 0; q < k; ++q) g[q] += c * v[q];
  }
};

// The per-row math over a Vec (FixedVec<K> or DynamicVec with K = 0); k is K when fixed
// (the field offsets f * k are then shifts), else the Args'.
template <class Vec, int K>
struct Rows {
  static std::size_t KOf(const Args& a) { return K > 0 ? static_cast<std::size_t>(K) : a.k; }

  // Row r's score: w0 + sum_i w_i x_i + sum_{i<j} <v_{i,f_j}, v_{j,f_i}> x_i x_j. Each
  // non-zero i accumulates its pairs with the later j in two interleaved accumulators.
  template <bool kOnes>
  static float Score(const Args& a, std::size_t r) {
    const std::size_t begin = a.offsets[r], end = a.offsets[r + 1], k = KOf(a);
    float linear = a.params[0], pairs = 0.0f;
    for (std::size_t i = begin; i < end; ++i) {
      const float* pi = a.params + a.local[i] * a.width;
      const float xi = kOnes ? 1.0f : a.values[i];
      linear += kOnes ? pi[0] : pi[0] * xi;
      const float* vi = pi + 1;
      const std::size_t fi = a.fields[i] * k;
      typename Vec::Acc s0, s1;
      std::size_t j = i + 1;
      for (; j + 1 < end; j += 2) {
        Vec::template MulAdd<kOnes>(&s0, vi + a.fields[j] * k,
                                    a.params + a.local[j] * a.width + 1 + fi, a.values[j], k);
        Vec::template MulAdd<kOnes>(&s1, vi + a.fields[j + 1] * k,
                                    a.params + a.local[j + 1] * a.width + 1 + fi, a.values[j + 1],
                                    k);
      }
      if (j < end) {
        Vec::template MulAdd<kOnes>(&s0, vi + a.fields[j] * k,
                                    a.params + a.local[j] * a.width + 1 + fi, a.values[j], k);
      }
      pairs += Vec::Reduce(s0, s1, xi);
    }
    return linear + pairs;
  }

  // Adds row r's gradient into grads given g = d loss / d score: d/dw_i = g x_i,
  // d/dv_{i,f_j} = g x_i x_j v_{j,f_i} and d/dv_{j,f_i} = g x_i x_j v_{i,f_j} per pair. The
  // two updates of a pair may hit the same floats (a key twice in a row, same field): each
  // is a separate load-add-store, so both land.
  template <bool kOnes>
  static void Scatter(const Args& a, std::size_t r, float g, float* grads) {
    const std::size_t begin = a.offsets[r], end = a.offsets[r + 1], k = KOf(a);
    for (std::size_t i = begin; i < end; ++i) {
      const std::size_t ui = a.local[i] * a.width;
      const float gi = kOnes ? g : g * a.values[i];
      grads[ui] += gi;
      const float* vi = a.params + ui + 1;
      float* gvi = grads + ui + 1;
      const std::size_t fi = a.fields[i] * k;
      for (std::size_t j = i + 1; j < end; ++j) {
        const std::size_t uj = a.local[j] * a.width + 1;
        const std::size_t fj = a.fields[j] * k;
        const float c = kOnes ? gi : gi * a.values[j];
        Vec::Axpy(gvi + fj, c, a.params + uj + fi, k);
        Vec::Axpy(grads + uj + fi, c, vi + fj, k);
      }
    }
  }

  static float AnyScore(const Args& a, std::size_t r, bool* ones) {
    *ones = RowAllOnes(a, r);
    return *ones ? Score<true>(a, r) : Score<false>(a, r);
  }

  static void Scores(const Args& a, const ModelBatch& b, float* scores) {
    bool ones;
    for (std::size_t r = 0; r < b.rows; ++r) scores[r] = AnyScore(a, r, &ones);
  }

  // Per row: score, loss, scatter (the blocking described in ffm_kernel.h), the gradient
  // rows zeroed before their first row and scaled after their last (GradRows). No software
  // prefetching: a key's row is contiguous (F * k floats), which the hardware prefetcher
  // follows; prefetching the next row's keys measured no faster (tests/bench/README.md).
  static double ForwardBackward(const Args& a, const ModelBatch& b, Loss loss, float* grads,
                                float* scores) {
    model_internal::GradRows rows(b, grads, a.width, model_internal::TopId(b));
    double total = 0.0;
    for (std::size_t r = 0; r < b.rows; ++r) {
      bool ones;
      const float s = AnyScore(a, r, &ones);
      const LossAndGradient l = LossValueAndGradient(loss, s, b.labels[r]);
      total += l.value;
      grads[0] += l.gradient;
      if (scores != nullptr) scores[r] = s;
      rows.Open(r);
      if (ones) {
        Scatter<true>(a, r, l.gradient, grads);
      } else {
        Scatter<false>(a, r, l.gradient, grads);
      }
      rows.Close(r);
    }
    rows.Finish();
    return total;
  }
};

// Row r's sum of v_i x_i over its non-zeros, per field block: sums[r * F * k ...].
void FieldBlockSums(const ModelBatch& b, const float* params, const ModelShape& shape,
                    float* sums) {
  const std::size_t vw = static_cast<std::size_t>(shape.v_width());
  const std::size_t width = static_cast<std::size_t>(shape.row_width());
  for (std::size_t r = 0; r < b.rows; ++r) {
    float* __restrict out = sums + r * vw;
    std::fill(out, out + vw, 0.0f);
    for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
      const float* __restrict v = params + b.local[j] * width + 1;
      const float x = b.values[j];
      for (std::size_t f = 0; f < vw; ++f) out[f] += v[f] * x;
    }
  }
}

// The ModelKernel of one Vec: the switch on k happened when it was made.
template <class Vec, int K>
class FfmKernel final : public ModelKernel {
 public:
  FfmKernel(const ModelShape& shape, Loss loss) : shape_(shape), loss_(loss) {}

  const ModelShape& shape() const override { return shape_; }
  Loss loss() const override { return loss_; }

  void Scores(const ModelBatch& batch, const float* params, float* scores) const override {
    Rows<Vec, K>::Scores(MakeArgs(batch, params, shape_), batch, scores);
  }

  double ForwardBackward(const ModelBatch& batch, const float* params, float* grads,
                         float* scores) const override {
    return Rows<Vec, K>::ForwardBackward(MakeArgs(batch, params, shape_), batch, loss_, grads,
                                         scores);
  }

  void EmbeddingSums(const ModelBatch& batch, const float* params, float* sums) const override {
    FieldBlockSums(batch, params, shape_, sums);
  }

 private:
  ModelShape shape_;
  Loss loss_;
};

}  // namespace

std::unique_ptr<ModelKernel> MakeFfmKernel(const ModelShape& shape, Loss loss) {
  shape.Validate("model shape");
  if (shape.kind != ModelKind::kFfm) throw ModelError("ffm kernel: the shape is not ffm");
  switch (shape.k) {
    case 4:
      return std::make_unique<FfmKernel<FixedVec<4>, 4>>(shape, loss);
    case 8:
      return std::make_unique<FfmKernel<FixedVec<8>, 8>>(shape, loss);
    case 16:
      return std::make_unique<FfmKernel<FixedVec<16>, 16>>(shape, loss);
    case 32:
      return std::make_unique<FfmKernel<FixedVec<32>, 32>>(shape, loss);
    default:
      return std::make_unique<FfmKernel<DynamicVec, 0>>(shape, loss);
  }
}

}  // namespace fmps
