#include "server/optimizer.h"

#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>

namespace fmps {
namespace {

// Loops below use __restrict locals so that the compiler vectorises them without runtime
// alias checks (params, state and gradients never overlap).

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const SgdParams& p) : lr_(p.lr) {}

  int state_floats() const override { return SgdParams::kStateFloats; }

  void InitState(const float* /*param*/, float* /*state*/, int /*n*/, float /*l2*/) const override {
  }

  void Update(float* param, float* /*state*/, const float* grad, int n, float l2,
              std::uint32_t* /*step*/) const override {
    float* __restrict p = param;
    const float* __restrict g = grad;
    const float lr = lr_;
    for (int i = 0; i < n; ++i) {
      const float gi = g[i] + l2 * p[i];
      p[i] -= lr * gi;
    }
  }

 private:
  float lr_;
};

class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(const AdagradParams& p) : lr_(p.lr), eps_(p.eps) {}

  int state_floats() const override { return AdagradParams::kStateFloats; }

  void InitState(const float* /*param*/, float* state, int n, float /*l2*/) const override {
    for (int i = 0; i < n; ++i) state[i] = 0.0f;
  }

  void Update(float* param, float* state, const float* grad, int n, float l2,
              std::uint32_t* /*step*/) const override {
    float* __restrict p = param;
    float* __restrict h = state;
    const float* __restrict g = grad;
    const float lr = lr_;
    const float eps = eps_;
    for (int i = 0; i < n; ++i) {
      const float gi = g[i] + l2 * p[i];
      h[i] += gi * gi;
      p[i] -= lr * gi / (std::sqrt(h[i]) + eps);
    }
  }

 private:
  float lr_;
  float eps_;
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

  int state_floats() const override { return AdamParams::kStateFloats; }
  bool uses_step() const override { return true; }

  void InitState(const float* /*param*/, float* state, int n, float /*l2*/) const override {
    for (int i = 0; i < 2 * n; ++i) state[i] = 0.0f;
  }

  void Update(float* param, float* state, const float* grad, int n, float l2,
              std::uint32_t* step) const override {
    if (*step != std::numeric_limits<std::uint32_t>::max()) ++*step;
    const std::uint32_t t = *step;
    // Bias corrections 1/(1 - beta^t), in double so that 1 - beta2^t keeps its precision.
    const float c1 = static_cast<float>(1.0 / (1.0 - pow_beta1_(t)));
    const float c2 = static_cast<float>(1.0 / (1.0 - pow_beta2_(t)));
    float* __restrict p = param;
    float* __restrict m = state;
    float* __restrict s = state + n;
    const float* __restrict g = grad;
    const float lr = lr_;
    const float b1 = beta1_;
    const float b2 = beta2_;
    const float one_minus_b1 = 1.0f - beta1_;
    const float one_minus_b2 = 1.0f - beta2_;
    const float eps = eps_;
    for (int i = 0; i < n; ++i) {
      const float gi = g[i] + l2 * p[i];
      m[i] = b1 * m[i] + one_minus_b1 * gi;
      s[i] = b2 * s[i] + one_minus_b2 * gi * gi;
      p[i] -= lr * (m[i] * c1) / (std::sqrt(s[i] * c2) + eps);
    }
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
  explicit Ftrl(const FtrlParams& p)
      : alpha_(p.alpha), inv_alpha_(1.0f / p.alpha), beta_(p.beta), l1_(p.l1) {}

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
    float* __restrict p = param;
    float* __restrict z = state;
    float* __restrict acc = state + n;
    const float* __restrict g = grad;
    const float inv_alpha = inv_alpha_;
    const float beta = beta_;
    const float l1 = l1_;
    for (int i = 0; i < n; ++i) {
      const float gi = g[i];
      const float g2 = gi * gi;
      const float sqrt_old = std::sqrt(acc[i]);
      const float acc_new = acc[i] + g2;
      const float sqrt_new = std::sqrt(acc_new);
      // sigma = (sqrt(n + g^2) - sqrt(n)) / alpha, written without the cancellation.
      const float denom = sqrt_old + sqrt_new;
      const float sigma = denom > 0.0f ? g2 / denom * inv_alpha : 0.0f;
      const float zi = z[i] + gi - sigma * p[i];
      z[i] = zi;
      acc[i] = acc_new;
      const float d = (beta + sqrt_new) * inv_alpha + l2;
      const float excess = std::fabs(zi) - l1;
      const float closed = excess <= 0.0f ? 0.0f : -std::copysign(excess, zi) / d;
      // d == 0 only while n == 0 with beta == l2 == 0: nothing is known yet, keep p.
      p[i] = d > 0.0f ? closed : p[i];
    }
  }

 private:
  float alpha_;
  float inv_alpha_;
  float beta_;
  float l1_;
};

}  // namespace

std::unique_ptr<Optimizer> MakeSgd(const SgdParams& p) { return std::make_unique<Sgd>(p); }

std::unique_ptr<Optimizer> MakeAdagrad(const AdagradParams& p) {
  return std::make_unique<Adagrad>(p);
}

std::unique_ptr<Optimizer> MakeAdam(const AdamParams& p) { return std::make_unique<Adam>(p); }

std::unique_ptr<Optimizer> MakeFtrl(const FtrlParams& p) { return std::make_unique<Ftrl>(p); }

std::unique_ptr<Optimizer> MakeOptimizer(const OptimizerConfig& config) {
  switch (config.name) {
    case OptimizerName::kSgd:
      return MakeSgd({.lr = config.lr});
    case OptimizerName::kAdagrad:
      return MakeAdagrad({.lr = config.lr, .eps = config.eps});
    case OptimizerName::kAdam:
      return MakeAdam(
          {.lr = config.lr, .beta1 = config.beta1, .beta2 = config.beta2, .eps = config.eps});
    case OptimizerName::kFtrl:
      return MakeFtrl({.alpha = config.lr, .beta = config.ftrl_beta, .l1 = config.l1});
  }
  throw std::invalid_argument("MakeOptimizer: unknown optimizer name");
}

}  // namespace fmps
