#include "server/store/optimizer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <experimental/simd>
#include <limits>
#include <memory>
#include <stdexcept>

namespace fmps {
namespace {

// The update kernels are written once over std::experimental::simd vectors of W floats and
// run on blocks of 8, then 4, then single parameters (k = 8 is one AVX vector). Plain loops
// would stay scalar: std::sqrt may set errno, which keeps GCC from vectorising them.
namespace stdx = std::experimental;

// W floats in the target's native registers where it has them (masks stay vector masks).
template <int W>
using Vec = stdx::simd<float, stdx::simd_abi::deduce_t<float, W>>;

template <int W>
Vec<W> Load(const float* p) {
  return Vec<W>(p, stdx::element_aligned);
}

template <int W>
void Store(const Vec<W>& v, float* p) {
  v.copy_to(p, stdx::element_aligned);
}

// mask ? a : b, lane-wise.
template <int W>
Vec<W> Select(const typename Vec<W>::mask_type& mask, const Vec<W>& a, Vec<W> b) {
  stdx::where(mask, b) = a;
  return b;
}

// Calls kernel.operator()<W>(i) on consecutive blocks covering [0, n).
template <class Kernel>
inline void ForBlocks(int n, const Kernel& kernel) {
  int i = 0;
  for (; i + 8 <= n; i += 8) kernel.template operator()<8>(i);
  if (i + 4 <= n) {
    kernel.template operator()<4>(i);
    i += 4;
  }
  for (; i < n; ++i) kernel.template operator()<1>(i);
}

// param -= step * (grad + l2 * param) over n floats: SGD's update, and row-wise AdaGrad's
// once a vector's step lr / (sqrt(h) + eps) is known.
inline void GradientStep(float* param, const float* grad, int n, float l2, float step) {
  ForBlocks(
      n, [&]<int W>(int i) __attribute__((always_inline)) {
        const Vec<W> p = Load<W>(param + i);
        const Vec<W> g = Load<W>(grad + i) + l2 * p;
        Store<W>(p - step * g, param + i);
      });
}

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const SgdParams& p) : lr_(p.lr) {}

  const char* name() const override { return "sgd"; }
  int state_floats() const override { return SgdParams::kStateFloats; }

  void InitState(const float* /*param*/, float* /*state*/, int /*n*/, float /*l2*/) const override {
  }

  void Update(float* param, float* /*state*/, const float* grad, int n, float l2,
              std::uint32_t* /*step*/) const override {
    GradientStep(param, grad, n, l2, lr_);
  }

 private:
  float lr_;
};

// The element-wise AdaGrad step of n parameters, shared by both AdaGrad classes (row-wise
// AdaGrad over vectors of one float runs it, so that the two give the same bits whatever
// the compiler contracts into FMAs).
inline void AdagradStep(float* param, float* state, const float* grad, int n, float l2, float lr,
                        float eps) {
  ForBlocks(
      n, [&]<int W>(int i) __attribute__((always_inline)) {
        const Vec<W> p = Load<W>(param + i);
        const Vec<W> g = Load<W>(grad + i) + l2 * p;
        const Vec<W> h = Load<W>(state + i) + g * g;
        Store<W>(h, state + i);
        Store<W>(p - lr * g / (stdx::sqrt(h) + eps), param + i);
      });
}

class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(const AdagradParams& p)
      : lr_(p.lr), eps_(p.eps), initial_accumulator_(p.initial_accumulator) {}

  const char* name() const override { return "adagrad"; }
  int state_floats() const override { return AdagradParams::kStateFloats; }

  void InitState(const float* /*param*/, float* state, int n, float /*l2*/) const override {
    std::fill(state, state + n, initial_accumulator_);
  }

  void Update(float* param, float* state, const float* grad, int n, float l2,
              std::uint32_t* /*step*/) const override {
    AdagradStep(param, state, grad, n, l2, lr_, eps_);
  }

 private:
  float lr_;
  float eps_;
  float initial_accumulator_;
};

// AdaGrad with one accumulator per vector (AdagradParams::rowwise). Vectors of one float
// (w, or k = 1) take the element-wise kernel itself; wider ones add the mean of g_i^2 to h
// once and step each float by the element-wise formula with h shared by the vector.
class RowwiseAdagrad final : public Optimizer {
 public:
  explicit RowwiseAdagrad(const AdagradParams& p)
      : lr_(p.lr), eps_(p.eps), initial_accumulator_(p.initial_accumulator) {}

  const char* name() const override { return "adagrad"; }
  int state_floats() const override { return AdagradParams::kStateFloats; }
  bool rowwise() const override { return true; }

  void InitState(const float* param, float* state, int n, float l2) const override {
    InitVectors(param, state, n, n, l2);
  }
  void Update(float* param, float* state, const float* grad, int n, float l2,
              std::uint32_t* step) const override {
    UpdateVectors(param, state, grad, n, n, l2, step);
  }

  void InitVectors(const float* /*param*/, float* state, int n, int vec,
                   float /*l2*/) const override {
    std::fill(state, state + n / vec, initial_accumulator_);
  }

  void UpdateVectors(float* param, float* state, const float* grad, int n, int vec, float l2,
                     std::uint32_t* /*step*/) const override {
    if (vec == 1) {
      AdagradStep(param, state, grad, n, l2, lr_, eps_);
      return;
    }
    for (int j = 0, at = 0; at < n; ++j, at += vec) {
      float* p = param + at;
      const float* g = grad + at;
      const float h = state[j] + SquaresOf(p, g, vec, l2) / static_cast<float>(vec);
      state[j] = h;
      // lr * g_i / (sqrt(h) + eps) as one scale per vector: a division per vector, not per
      // float (within an ulp or two of dividing each float).
      const float scale = lr_ / (std::sqrt(h) + eps_);
      GradientStep(p, g, vec, l2, scale);
    }
  }

 private:
  // Sum over i < vec of (g_i + l2 * p_i)^2.
  static float SquaresOf(const float* p, const float* g, int vec, float l2) {
    float sum = 0.0f;
    ForBlocks(
        vec, [&]<int W>(int i) __attribute__((always_inline)) {
          const Vec<W> gi = Load<W>(g + i) + l2 * Load<W>(p + i);
          sum += stdx::reduce(gi * gi);
        });
    return sum;
  }

  float lr_;
  float eps_;
  float initial_accumulator_;
};

// b^t for any 32-bit t as a product of four table entries (b^(t0 + 2^8 t1 + 2^16 t2 +
// 2^24 t3)): exact to a few double ulps, and far cheaper than std::pow in the hot path.
class PowTable {
 public:
  explicit PowTable(double b) {
    for (int level = 0; level < 4; ++level) {
      const double scale = std::ldexp(1.0, 8 * level);
      for (int i = 0; i < 256; ++i) table_[level][i] = std::pow(b, i * scale);
    }
  }

  double operator()(std::uint32_t t) const {
    return table_[0][t & 255u] * table_[1][(t >> 8) & 255u] * table_[2][(t >> 16) & 255u] *
           table_[3][t >> 24];
  }

 private:
  std::array<std::array<double, 256>, 4> table_;
};

class Adam final : public Optimizer {
 public:
  explicit Adam(const AdamParams& p)
      : lr_(p.lr),
        beta1_(p.beta1),
        beta2_(p.beta2),
        eps_(p.eps),
        pow_beta1_(p.beta1),
        pow_beta2_(p.beta2) {}

  const char* name() const override { return "adam"; }
  int state_floats() const override { return AdamParams::kStateFloats; }
  bool uses_step() const override { return true; }

  void InitState(const float* /*param*/, float* state, int n, float /*l2*/) const override {
    std::fill(state, state + 2 * n, 0.0f);
  }

  void Update(float* param, float* state, const float* grad, int n, float l2,
              std::uint32_t* step) const override {
    if (*step != std::numeric_limits<std::uint32_t>::max()) ++*step;
    const std::uint32_t t = *step;
    // Bias corrections 1/(1 - beta^t), in double so that 1 - beta2^t keeps its precision.
    const float c1 = static_cast<float>(1.0 / (1.0 - pow_beta1_(t)));
    const float c2 = static_cast<float>(1.0 / (1.0 - pow_beta2_(t)));
    const float lr = lr_;
    const float b1 = beta1_;
    const float b2 = beta2_;
    const float one_minus_b1 = 1.0f - beta1_;
    const float one_minus_b2 = 1.0f - beta2_;
    const float eps = eps_;
    float* m_state = state;
    float* s_state = state + n;
    ForBlocks(
        n, [&]<int W>(int i) __attribute__((always_inline)) {
          const Vec<W> p = Load<W>(param + i);
          const Vec<W> g = Load<W>(grad + i) + l2 * p;
          const Vec<W> m = b1 * Load<W>(m_state + i) + one_minus_b1 * g;
          const Vec<W> s = b2 * Load<W>(s_state + i) + one_minus_b2 * (g * g);
          Store<W>(m, m_state + i);
          Store<W>(s, s_state + i);
          Store<W>(p - lr * (m * c1) / (stdx::sqrt(s * c2) + eps), param + i);
        });
  }

 private:
  float lr_;
  float beta1_;
  float beta2_;
  float eps_;
  PowTable pow_beta1_;
  PowTable pow_beta2_;
};

// FTRL-proximal with state z (state[i]) and n (state[n + i]); the parameter is kept
// explicitly and recomputed from z and n after each update.
class Ftrl final : public Optimizer {
 public:
  explicit Ftrl(const FtrlParams& p) : inv_alpha_(1.0f / p.alpha), beta_(p.beta), l1_(p.l1) {}

  const char* name() const override { return "ftrl"; }
  int state_floats() const override { return FtrlParams::kStateFloats; }

  // With n = 0 the closed form is p = -(z - sign(z) l1) / d, d = beta / alpha + l2, so
  // z = -(p d + sign(p) l1) reproduces p (|z| > l1 whenever p != 0 and d > 0).
  void InitState(const float* param, float* state, int n, float l2) const override {
    const float d = beta_ * inv_alpha_ + l2;
    for (int i = 0; i < n; ++i) {
      const float p = param[i];
      state[i] = p == 0.0f ? 0.0f : -(p * d + std::copysign(l1_, p));
      state[n + i] = 0.0f;
    }
  }

  void Update(float* param, float* state, const float* grad, int n, float l2,
              std::uint32_t* /*step*/) const override {
    const float inv_alpha = inv_alpha_;
    const float beta = beta_;
    const float l1 = l1_;
    float* z_state = state;
    float* n_state = state + n;
    ForBlocks(
        n, [&]<int W>(int i) __attribute__((always_inline)) {
          const Vec<W> zero = 0.0f;
          const Vec<W> p = Load<W>(param + i);
          const Vec<W> g = Load<W>(grad + i);
          const Vec<W> acc = Load<W>(n_state + i);
          const Vec<W> acc_new = acc + g * g;
          const Vec<W> sqrt_new = stdx::sqrt(acc_new);
          // The cancellation in sqrt_new - sqrt_old costs an absolute error of ~ulp(sqrt(n)),
          // i.e. ~1e-7 relative to z's scale (|z| ~ sqrt(n) |p| / alpha): harmless.
          const Vec<W> sigma = (sqrt_new - stdx::sqrt(acc)) * inv_alpha;
          const Vec<W> z = Load<W>(z_state + i) + g - sigma * p;
          Store<W>(z, z_state + i);
          Store<W>(acc_new, n_state + i);
          const Vec<W> d = (beta + sqrt_new) * inv_alpha + l2;
          const Vec<W> excess = stdx::abs(z) - l1;
          const Vec<W> closed = Select<W>(excess > zero, -stdx::copysign(excess, z) / d, zero);
          // d == 0 only while n == 0 with beta == l2 == 0: nothing is known yet, keep p.
          Store<W>(Select<W>(d > zero, closed, p), param + i);
        });
  }

 private:
  float inv_alpha_;
  float beta_;
  float l1_;
};

}  // namespace

std::unique_ptr<Optimizer> MakeSgd(const SgdParams& p) { return std::make_unique<Sgd>(p); }

std::unique_ptr<Optimizer> MakeAdagrad(const AdagradParams& p) {
  if (p.rowwise) return std::make_unique<RowwiseAdagrad>(p);
  return std::make_unique<Adagrad>(p);
}

std::unique_ptr<Optimizer> MakeAdam(const AdamParams& p) { return std::make_unique<Adam>(p); }

std::unique_ptr<Optimizer> MakeFtrl(const FtrlParams& p) { return std::make_unique<Ftrl>(p); }

std::unique_ptr<Optimizer> MakeOptimizer(const OptimizerConfig& config) {
  switch (config.name) {
    case OptimizerName::kSgd:
      return MakeSgd({.lr = config.lr});
    case OptimizerName::kAdagrad:
      return MakeAdagrad({.lr = config.lr,
                          .eps = config.eps,
                          .initial_accumulator = config.initial_accumulator,
                          .rowwise = config.rowwise});
    case OptimizerName::kAdam:
      return MakeAdam(
          {.lr = config.lr, .beta1 = config.beta1, .beta2 = config.beta2, .eps = config.eps});
    case OptimizerName::kFtrl:
      return MakeFtrl({.alpha = config.lr, .beta = config.ftrl_beta, .l1 = config.l1});
  }
  throw std::invalid_argument("MakeOptimizer: unknown optimizer name");
}

}  // namespace fmps
