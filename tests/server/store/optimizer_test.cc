#include "server/store/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace fmps {
namespace {

// ---------------------------------------------------------------------------------------
// One or two steps worked out by hand.

TEST(SgdTest, OneStepByHand) {
  auto opt = MakeSgd({.lr = 0.1f});
  EXPECT_EQ(opt->state_floats(), 0);
  EXPECT_FALSE(opt->uses_step());
  float p[2] = {0.5f, -1.0f};
  const float g[2] = {0.2f, 0.0f};
  std::uint32_t step = 0;
  // l2 = 0: p0 = 0.5 - 0.1 * 0.2 = 0.48; p1 has no gradient: unchanged.
  opt->Update(p, nullptr, g, 2, 0.0f, &step);
  EXPECT_NEAR(p[0], 0.48f, 1e-7);
  EXPECT_EQ(p[1], -1.0f);
  // l2 = 0.1: g0 = 0.2 + 0.1 * 0.48 = 0.248, p0 = 0.48 - 0.0248 = 0.4552;
  // g1 = 0.1 * -1 = -0.1, p1 = -1 + 0.01 = -0.99.
  opt->Update(p, nullptr, g, 2, 0.1f, &step);
  EXPECT_NEAR(p[0], 0.4552f, 1e-7);
  EXPECT_NEAR(p[1], -0.99f, 1e-7);
}

TEST(AdagradTest, TwoStepsByHand) {
  auto opt = MakeAdagrad({.lr = 0.1f, .eps = 1e-8f, .initial_accumulator = 0.0f});
  EXPECT_EQ(opt->state_floats(), 1);
  float p = 0.5f;
  float h = 123.0f;
  opt->InitState(&p, &h, 1, 0.0f);
  EXPECT_EQ(h, 0.0f);
  std::uint32_t step = 0;
  // Step 1, g = 0.2: h = 0.04, p = 0.5 - 0.1 * 0.2 / sqrt(0.04) = 0.5 - 0.1 = 0.4.
  float g = 0.2f;
  opt->Update(&p, &h, &g, 1, 0.0f, &step);
  EXPECT_NEAR(h, 0.04f, 1e-8);
  EXPECT_NEAR(p, 0.4f, 1e-6);
  // Step 2, g = 0.1: h = 0.05, p = 0.4 - 0.01 / 0.2236068 = 0.4 - 0.0447214 = 0.3552786.
  g = 0.1f;
  opt->Update(&p, &h, &g, 1, 0.0f, &step);
  EXPECT_NEAR(h, 0.05f, 1e-8);
  EXPECT_NEAR(p, 0.3552786f, 1e-6);
}

// With an initial accumulator h0 the first step is lr * g / sqrt(h0 + g^2), not lr.
TEST(AdagradTest, InitialAccumulatorByHand) {
  auto opt = MakeAdagrad({.lr = 0.1f, .eps = 1e-8f, .initial_accumulator = 1.0f});
  float p[2] = {0.5f, -0.5f};
  float h[2] = {123.0f, 123.0f};
  opt->InitState(p, h, 2, 0.0f);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], 1.0f);
  std::uint32_t step = 0;
  // g = 0.2: h = 1.04, p = 0.5 - 0.1 * 0.2 / sqrt(1.04) = 0.5 - 0.0196116 = 0.4803884.
  // g = 3:   h = 10,   p = -0.5 - 0.1 * 3 / sqrt(10) = -0.5 - 0.0948683 = -0.5948683.
  const float g[2] = {0.2f, 3.0f};
  opt->Update(p, h, g, 2, 0.0f, &step);
  EXPECT_NEAR(h[0], 1.04f, 1e-6);
  EXPECT_NEAR(h[1], 10.0f, 1e-6);
  EXPECT_NEAR(p[0], 0.4803884f, 1e-6);
  EXPECT_NEAR(p[1], -0.5948683f, 1e-6);
}

// Row-wise AdaGrad, k = 4 (one vector), l2 = 0.5, initial_accumulator 0.5: one accumulator
// for the vector, fed the mean of its g_i^2 (g_i = grad_i + l2 p_i).
TEST(RowwiseAdagradTest, TwoStepsByHand) {
  auto opt = MakeAdagrad({.lr = 0.1f, .eps = 1e-8f, .initial_accumulator = 0.5f, .rowwise = true});
  EXPECT_TRUE(opt->rowwise());
  EXPECT_EQ(opt->GroupStateFloats(4, 4), 1);
  EXPECT_EQ(opt->GroupStateFloats(39 * 8, 8), 39);  // FFM at 39 fields, k 8
  EXPECT_EQ(opt->GroupStateFloats(1, 1), 1);
  float p[4] = {1.0f, -1.0f, 0.5f, 0.0f};
  float h[2] = {123.0f, 99.0f};  // h[1]: past the state, must stay
  opt->InitVectors(p, h, 4, 4, 0.5f);
  EXPECT_EQ(h[0], 0.5f);
  std::uint32_t step = 0;
  // Step 1: grad (0.5, 0.5, -0.25, 1) + 0.5 p = g (1, 0, 0, 1); mean g^2 = 0.5, h = 1;
  // p -= 0.1 g / 1: (0.9, -1, 0.5, -0.1).
  const float g1[4] = {0.5f, 0.5f, -0.25f, 1.0f};
  opt->UpdateVectors(p, h, g1, 4, 4, 0.5f, &step);
  EXPECT_NEAR(h[0], 1.0f, 1e-7);
  const float want1[4] = {0.9f, -1.0f, 0.5f, -0.1f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], want1[i], 1e-6) << i;
  // Step 2: grad (-0.45, 1.5, 0.75, 0.05) + 0.5 p = g (0, 1, 1, 0); mean 0.5, h = 1.5;
  // p -= 0.1 g / sqrt(1.5) = 0.0816497 g: (0.9, -1.0816497, 0.4183503, -0.1).
  const float g2[4] = {-0.45f, 1.5f, 0.75f, 0.05f};
  opt->UpdateVectors(p, h, g2, 4, 4, 0.5f, &step);
  EXPECT_NEAR(h[0], 1.5f, 1e-7);
  const float want2[4] = {0.9f, -1.0816497f, 0.4183503f, -0.1f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(p[i], want2[i], 1e-6) << i;
  EXPECT_EQ(h[1], 99.0f);
  // Update (no vec) takes the group as one vector: the same step.
  float q[4] = {1.0f, -1.0f, 0.5f, 0.0f};
  float hq = 0.5f;
  opt->Update(q, &hq, g1, 4, 0.5f, &step);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(q[i], want1[i], 1e-6) << i;
  EXPECT_NEAR(hq, 1.0f, 1e-7);
}

// Two vectors of one group keep their own accumulators: the second, with no gradient (and
// l2 = 0), neither moves nor changes its h.
TEST(RowwiseAdagradTest, EachVectorHasItsOwnAccumulator) {
  auto opt = MakeAdagrad({.lr = 0.1f, .eps = 1e-8f, .initial_accumulator = 0.0f, .rowwise = true});
  float p[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float h[2] = {0.0f, 0.0f};
  const float g[8] = {2, 0, 0, 0, 0, 0, 0, 0};
  std::uint32_t step = 0;
  opt->UpdateVectors(p, h, g, 8, 4, 0.0f, &step);
  EXPECT_FLOAT_EQ(h[0], 1.0f);  // 4 / 4
  EXPECT_EQ(h[1], 0.0f);
  EXPECT_FLOAT_EQ(p[0], 1.0f - 0.1f * 2.0f);
  for (int i = 1; i < 8; ++i) EXPECT_EQ(p[i], static_cast<float>(i + 1)) << i;
}

TEST(AdamTest, TwoStepsByHand) {
  auto opt = MakeAdam({.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f});
  EXPECT_EQ(opt->state_floats(), 2);
  EXPECT_TRUE(opt->uses_step());
  float p = 1.0f;
  float state[2] = {7.0f, 7.0f};  // m, s
  opt->InitState(&p, state, 1, 0.0f);
  EXPECT_EQ(state[0], 0.0f);
  EXPECT_EQ(state[1], 0.0f);
  std::uint32_t step = 0;
  // t = 1, g = 0.5: m = 0.05, s = 0.00025, m^ = 0.05 / 0.1 = 0.5, s^ = 0.00025 / 0.001 = 0.25,
  // p = 1 - 0.01 * 0.5 / 0.5 = 0.99. (The float betas make 1 - beta2 = 0.000999987: the
  // moments carry that 1.3e-5 relative error; the bias correction uses the same betas.)
  float g = 0.5f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_EQ(step, 1u);
  EXPECT_NEAR(state[0], 0.05f, 2e-8);
  EXPECT_NEAR(state[1], 0.00025f, 0.00025f * 2e-5f);
  EXPECT_NEAR(p, 0.99f, 1e-6);
  // t = 2, g = -0.25: m = 0.045 - 0.025 = 0.02, s = 0.00024975 + 0.0000625 = 0.00031225,
  // m^ = 0.02 / (1 - 0.81) = 0.1052632, s^ = 0.00031225 / (1 - 0.998001) = 0.1562031,
  // sqrt(s^) = 0.3952254, p = 0.99 - 0.01 * 0.1052632 / 0.3952254 = 0.99 - 0.0026634
  // = 0.9873366.
  g = -0.25f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_EQ(step, 2u);
  EXPECT_NEAR(state[0], 0.02f, 2e-8);
  EXPECT_NEAR(state[1], 0.00031225f, 0.00031225f * 2e-5f);
  EXPECT_NEAR(p, 0.9873366f, 1e-6);
}

TEST(AdamTest, BiasCorrectionUsesTheGroupsStepCount) {
  auto opt = MakeAdam({.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f});
  // Two groups with fresh (zero) moments but different step counters, same gradient 0.5.
  float pa = 1.0f;
  float pb = 1.0f;
  float sa[2] = {0, 0};
  float sb[2] = {0, 0};
  std::uint32_t step_a = 0;
  std::uint32_t step_b = 9;
  const float g = 0.5f;
  opt->Update(&pa, sa, &g, 1, 0.0f, &step_a);
  opt->Update(&pb, sb, &g, 1, 0.0f, &step_b);
  EXPECT_EQ(step_a, 1u);
  EXPECT_EQ(step_b, 10u);
  // Group a, t = 1: p = 1 - 0.01 (see TwoStepsByHand).
  EXPECT_NEAR(pa, 0.99f, 1e-6);
  // Group b, t = 10: m = 0.05, s = 0.00025, 1 - 0.9^10 = 0.6513216, 1 - 0.999^10 = 0.0099551,
  // m^ = 0.0767670, s^ = 0.0251127, sqrt(s^) = 0.1584699,
  // p = 1 - 0.01 * 0.0767670 / 0.1584699 = 1 - 0.0048443 = 0.9951557.
  EXPECT_NEAR(pb, 0.9951557f, 1e-6);
  // Moments are the same; only the correction differs.
  EXPECT_EQ(sa[0], sb[0]);
  EXPECT_EQ(sa[1], sb[1]);
}

TEST(AdamTest, StepCounterSaturates) {
  auto opt = MakeAdam({.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f});
  float p = 1.0f;
  float s[2] = {0, 0};
  std::uint32_t step = 0xffffffffu;
  const float g = 0.5f;
  opt->Update(&p, s, &g, 1, 0.0f, &step);
  EXPECT_EQ(step, 0xffffffffu);
  // beta^t == 0: no correction, p = 1 - 0.01 * 0.05 / sqrt(0.00025) = 1 - 0.0316228.
  EXPECT_NEAR(p, 1.0f - 0.0316228f, 1e-6);
}

TEST(FtrlTest, TwoStepsByHand) {
  auto opt = MakeFtrl({.alpha = 0.1f, .beta = 1.0f, .l1 = 0.0f});
  EXPECT_EQ(opt->state_floats(), 2);
  EXPECT_FALSE(opt->uses_step());
  float p = 0.0f;
  float state[2] = {5.0f, 5.0f};  // z, n
  opt->InitState(&p, state, 1, 0.0f);
  EXPECT_EQ(state[0], 0.0f);
  EXPECT_EQ(state[1], 0.0f);
  std::uint32_t step = 0;
  // g = 0.5: sigma = (0.5 - 0) / 0.1 = 5, z = 0.5 - 5 * 0 = 0.5, n = 0.25,
  // p = -0.5 / ((1 + 0.5) / 0.1) = -0.5 / 15 = -0.0333333.
  float g = 0.5f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_NEAR(state[0], 0.5f, 1e-7);
  EXPECT_NEAR(state[1], 0.25f, 1e-7);
  EXPECT_NEAR(p, -0.0333333f, 1e-7);
  // g = -0.3: sqrt(0.34) = 0.5830952, sigma = 0.0830952 / 0.1 = 0.8309519,
  // z = 0.5 - 0.3 + 0.8309519 * 0.0333333 = 0.2276984, n = 0.34,
  // p = -0.2276984 / ((1 + 0.5830952) / 0.1) = -0.2276984 / 15.830952 = -0.0143831.
  g = -0.3f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_NEAR(state[0], 0.2276984f, 1e-6);
  EXPECT_NEAR(state[1], 0.34f, 1e-7);
  EXPECT_NEAR(p, -0.0143831f, 1e-6);
  EXPECT_EQ(step, 0u);  // FTRL ignores the step counter
}

TEST(FtrlTest, L1AndL2ByHand) {
  // l1 = 0.2: p = -(0.5 - 0.2) / 15 = -0.02.
  auto opt = MakeFtrl({.alpha = 0.1f, .beta = 1.0f, .l1 = 0.2f});
  float p = 0.0f;
  float state[2] = {0, 0};
  std::uint32_t step = 0;
  float g = 0.5f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_NEAR(p, -0.02f, 1e-7);
  // l1 = 0, l2 = 1: p = -0.5 / (15 + 1) = -0.03125.
  auto opt2 = MakeFtrl({.alpha = 0.1f, .beta = 1.0f, .l1 = 0.0f});
  float p2 = 0.0f;
  float state2[2] = {0, 0};
  opt2->Update(&p2, state2, &g, 1, 1.0f, &step);
  EXPECT_NEAR(p2, -0.03125f, 1e-7);
}

TEST(FtrlTest, L1KeepsSmallGradientsAtZero) {
  auto opt = MakeFtrl({.alpha = 0.1f, .beta = 1.0f, .l1 = 1.0f});
  float p[3] = {0, 0, 0};
  float state[6] = {0, 0, 0, 0, 0, 0};
  opt->InitState(p, state, 3, 0.0f);
  std::uint32_t step = 0;
  // z accumulates 0.1 per step (sigma * p = 0 while p = 0): |z| = 0.9 <= l1 after 9 steps.
  const float small[3] = {0.1f, -0.1f, 0.05f};
  for (int t = 0; t < 9; ++t) {
    opt->Update(p, state, small, 3, 0.0f, &step);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(p[i], 0.0f) << "step " << t << " param " << i;
  }
  // A large gradient pushes |z| past l1: z = 0.9 + 2 = 2.9, n = 0.09 + 4 = 4.09,
  // p = -(2.9 - 1) / ((1 + sqrt(4.09)) / 0.1) = -1.9 / 30.2237 = -0.0628646.
  const float big[3] = {2.0f, 0.0f, 0.0f};
  opt->Update(p, state, big, 3, 0.0f, &step);
  EXPECT_NEAR(p[0], -0.0628646f, 1e-6);
  EXPECT_EQ(p[1], 0.0f);
  EXPECT_EQ(p[2], 0.0f);
}

TEST(FtrlTest, InitStateRoundTrips) {
  struct Case {
    float l1;
    float l2;
    float beta;
  };
  const Case cases[] = {{0.0f, 0.0f, 1.0f},
                        {0.5f, 0.0f, 1.0f},
                        {0.5f, 0.2f, 1.0f},
                        {2.0f, 1.0f, 0.5f},
                        {0.0f, 0.0f, 0.0f}};
  const float init[6] = {0.3f, -0.01f, 0.0f, 1e-4f, -2.5f, 0.05f};
  for (const Case& c : cases) {
    SCOPED_TRACE("l1=" + std::to_string(c.l1) + " l2=" + std::to_string(c.l2) +
                 " beta=" + std::to_string(c.beta));
    auto opt = MakeFtrl({.alpha = 0.1f, .beta = c.beta, .l1 = c.l1});
    float p[6];
    std::copy(init, init + 6, p);
    float state[12];
    opt->InitState(p, state, 6, c.l2);
    const float d = c.beta / 0.1f + c.l2;
    for (int i = 0; i < 6; ++i) {
      EXPECT_EQ(state[6 + i], 0.0f);
      if (init[i] != 0.0f && d > 0.0f) {
        EXPECT_GT(std::fabs(state[i]), c.l1);
      }
      if (init[i] != 0.0f) {
        EXPECT_EQ(std::signbit(state[i]), !std::signbit(init[i]));
      }
    }
    // A zero gradient leaves n at 0 and p at the closed form of the derived z: the initial p
    // (up to the float rounding of z = -(p d + sign(p) l1), i.e. ulp(|z|) / d).
    const float zero[6] = {0, 0, 0, 0, 0, 0};
    std::uint32_t step = 0;
    opt->Update(p, state, zero, 6, c.l2, &step);
    for (int i = 0; i < 6; ++i) {
      const float z_rounding = d > 0.0f ? 2.5e-7f * c.l1 / d : 0.0f;
      EXPECT_NEAR(p[i], init[i], 1e-6f * std::fabs(init[i]) + z_rounding + 1e-9f) << "param " << i;
    }
  }
}

TEST(FtrlTest, ZeroBetaKeepsInitialValueInFirstStep) {
  // beta = l2 = 0: the first non-zero gradient moves p by alpha * sign(g) from its start:
  // sigma = |g| / alpha, z = g - |g| p0 / alpha, p = -z alpha / |g| = p0 - alpha sign(g).
  auto opt = MakeFtrl({.alpha = 0.1f, .beta = 0.0f, .l1 = 0.0f});
  float p = 0.3f;
  float state[2];
  opt->InitState(&p, state, 1, 0.0f);
  std::uint32_t step = 0;
  float g = 0.0f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_EQ(p, 0.3f);
  g = 2.0f;
  opt->Update(&p, state, &g, 1, 0.0f, &step);
  EXPECT_NEAR(p, 0.2f, 1e-6);
}

TEST(L2Test, ShrinksParametersWithoutGradient) {
  const float zero = 0.0f;
  std::uint32_t step = 0;
  {
    // SGD: g = 0.5 * 1, p = 1 - 0.1 * 0.5 = 0.95.
    auto opt = MakeSgd({.lr = 0.1f});
    float p = 1.0f;
    opt->Update(&p, nullptr, &zero, 1, 0.5f, &step);
    EXPECT_NEAR(p, 0.95f, 1e-7);
  }
  {
    // AdaGrad: g = 0.5, h = 0.25, p = 1 - 0.1 * 0.5 / 0.5 = 0.9.
    auto opt = MakeAdagrad({.lr = 0.1f, .eps = 1e-8f, .initial_accumulator = 0.0f});
    float p = 1.0f;
    float h = 0.0f;
    opt->Update(&p, &h, &zero, 1, 0.5f, &step);
    EXPECT_NEAR(p, 0.9f, 1e-6);
  }
  {
    // Adam, t = 1: the corrected step is lr * g / |g| = 0.01 towards 0.
    auto opt = MakeAdam({.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f});
    float p = -1.0f;
    float s[2] = {0, 0};
    step = 0;
    opt->Update(&p, s, &zero, 1, 0.5f, &step);
    EXPECT_NEAR(p, -0.99f, 1e-6);
  }
  {
    // FTRL: lambda2 enters the denominator (see L1AndL2ByHand); with no gradient and p = 0
    // nothing moves.
    auto opt = MakeFtrl({.alpha = 0.1f, .beta = 1.0f, .l1 = 0.0f});
    float p = 0.0f;
    float s[2] = {0, 0};
    opt->Update(&p, s, &zero, 1, 0.5f, &step);
    EXPECT_EQ(p, 0.0f);
  }
}

// ---------------------------------------------------------------------------------------
// 100 random steps against straightforward double-precision references.

struct Ref {
  virtual ~Ref() = default;
  virtual void Step(std::vector<double>& p, const std::vector<double>& g, double l2) = 0;
};

struct SgdRef : Ref {
  double lr;
  explicit SgdRef(double lr_in) : lr(lr_in) {}
  void Step(std::vector<double>& p, const std::vector<double>& g, double l2) override {
    for (std::size_t i = 0; i < p.size(); ++i) p[i] -= lr * (g[i] + l2 * p[i]);
  }
};

struct AdagradRef : Ref {
  double lr, eps;
  std::vector<double> h;
  AdagradRef(double lr_in, double eps_in, std::size_t n) : lr(lr_in), eps(eps_in), h(n, 0.0) {}
  void Step(std::vector<double>& p, const std::vector<double>& g, double l2) override {
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double gi = g[i] + l2 * p[i];
      h[i] += gi * gi;
      p[i] -= lr * gi / (std::sqrt(h[i]) + eps);
    }
  }
};

struct AdamRef : Ref {
  double lr, b1, b2, eps;
  int t = 0;
  std::vector<double> m, s;
  AdamRef(double lr_in, double b1_in, double b2_in, double eps_in, std::size_t n)
      : lr(lr_in), b1(b1_in), b2(b2_in), eps(eps_in), m(n, 0.0), s(n, 0.0) {}
  void Step(std::vector<double>& p, const std::vector<double>& g, double l2) override {
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double gi = g[i] + l2 * p[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      s[i] = b2 * s[i] + (1 - b2) * gi * gi;
      const double mh = m[i] / (1 - std::pow(b1, t));
      const double sh = s[i] / (1 - std::pow(b2, t));
      p[i] -= lr * mh / (std::sqrt(sh) + eps);
    }
  }
};

struct FtrlRef : Ref {
  double alpha, beta, l1;
  std::vector<double> z, n;
  FtrlRef(double a, double b, double l, const std::vector<double>& p0, double l2)
      : alpha(a), beta(b), l1(l), z(p0.size(), 0.0), n(p0.size(), 0.0) {
    // Solve the closed form at n = 0 for z.
    for (std::size_t i = 0; i < p0.size(); ++i) {
      if (p0[i] != 0) z[i] = -p0[i] * (beta / alpha + l2) - (p0[i] > 0 ? l1 : -l1);
    }
  }
  void Step(std::vector<double>& p, const std::vector<double>& g, double l2) override {
    for (std::size_t i = 0; i < p.size(); ++i) {
      const double sigma = (std::sqrt(n[i] + g[i] * g[i]) - std::sqrt(n[i])) / alpha;
      z[i] += g[i] - sigma * p[i];
      n[i] += g[i] * g[i];
      if (std::fabs(z[i]) <= l1) {
        p[i] = 0;
      } else {
        const double sign = z[i] > 0 ? 1.0 : -1.0;
        p[i] = -(z[i] - sign * l1) / ((beta + std::sqrt(n[i])) / alpha + l2);
      }
    }
  }
};

void RunAgainstReference(const Optimizer& opt, Ref& ref, const std::vector<float>& init, float l2,
                         float grad_scale, std::uint64_t seed) {
  const int n = static_cast<int>(init.size());
  std::vector<float> p = init;
  std::vector<float> state(static_cast<std::size_t>(opt.state_floats()) * n, 99.0f);
  opt.InitState(p.data(), state.data(), n, l2);
  std::vector<double> pr(init.begin(), init.end());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, grad_scale);
  std::uint32_t step = 0;
  std::vector<float> g(n);
  std::vector<double> gd(n);
  for (int t = 0; t < 100; ++t) {
    for (int i = 0; i < n; ++i) {
      g[i] = normal(rng);
      gd[i] = g[i];
    }
    opt.Update(p.data(), state.data(), g.data(), n, l2, &step);
    ref.Step(pr, gd, l2);
    for (int i = 0; i < n; ++i) {
      ASSERT_NEAR(p[i], pr[i], 1e-5 * std::fabs(pr[i]) + 1e-7)
          << "step " << t << " param " << i << " of " << n;
    }
  }
}

std::vector<float> RandomInit(int n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> p(n);
  for (float& x : p) x = normal(rng);
  return p;
}

// Group sizes: w (1), v at k = 8 (one full vector) and 13 (vector + remainder).
constexpr int kSizes[] = {1, 8, 13};

TEST(ReferenceTest, Sgd) {
  for (int n : kSizes) {
    SCOPED_TRACE(n);
    auto opt = MakeSgd({.lr = 0.05f});
    SgdRef ref(0.05f);
    RunAgainstReference(*opt, ref, RandomInit(n, n), 0.01f, 1.0f, 100 + n);
  }
}

TEST(ReferenceTest, Adagrad) {
  for (int n : kSizes) {
    SCOPED_TRACE(n);
    auto opt = MakeAdagrad({.lr = 0.05f, .eps = 1e-6f, .initial_accumulator = 0.0f});
    AdagradRef ref(0.05f, 1e-6f, n);
    RunAgainstReference(*opt, ref, RandomInit(n, n), 0.01f, 1.0f, 200 + n);
  }
}

TEST(ReferenceTest, Adam) {
  for (int n : kSizes) {
    SCOPED_TRACE(n);
    auto opt = MakeAdam({.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f});
    AdamRef ref(0.01f, 0.9f, 0.999f, 1e-8f, n);
    RunAgainstReference(*opt, ref, RandomInit(n, n), 0.01f, 1.0f, 300 + n);
  }
}

TEST(ReferenceTest, Ftrl) {
  for (int n : kSizes) {
    for (float l1 : {0.0f, 0.5f}) {
      SCOPED_TRACE(std::to_string(n) + " l1=" + std::to_string(l1));
      const float l2 = 0.1f;
      auto opt = MakeFtrl({.alpha = 0.1f, .beta = 1.0f, .l1 = l1});
      const std::vector<float> init = RandomInit(n, n);
      FtrlRef ref(0.1f, 1.0f, l1, std::vector<double>(init.begin(), init.end()), l2);
      RunAgainstReference(*opt, ref, init, l2, 1.0f, 400 + n);
    }
  }
}

// With vectors of one float the row-wise update is the element-wise one, bit for bit
// (parameters and state over 100 random steps, with l2 and an initial accumulator).
TEST(RowwiseAdagradTest, VectorsOfOneFloatAreElementwiseBitForBit) {
  const AdagradParams params{.lr = 0.05f, .eps = 1e-6f, .initial_accumulator = 0.001f};
  AdagradParams rowwise_params = params;
  rowwise_params.rowwise = true;
  auto elementwise = MakeAdagrad(params);
  auto rowwise = MakeAdagrad(rowwise_params);
  const int n = 13;
  std::vector<float> pa = RandomInit(n, n), pb = pa;
  std::vector<float> ha(n), hb(n);
  elementwise->InitState(pa.data(), ha.data(), n, 0.01f);
  rowwise->InitVectors(pb.data(), hb.data(), n, 1, 0.01f);
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(n);
  std::uint32_t step = 0;
  for (int t = 0; t < 100; ++t) {
    for (float& x : g) x = normal(rng);
    elementwise->Update(pa.data(), ha.data(), g.data(), n, 0.01f, &step);
    rowwise->UpdateVectors(pb.data(), hb.data(), g.data(), n, 1, 0.01f, &step);
  }
  EXPECT_EQ(std::memcmp(pa.data(), pb.data(), n * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(ha.data(), hb.data(), n * sizeof(float)), 0);
  EXPECT_NE(pa, RandomInit(n, n));
}

// Row-wise AdaGrad against a double reference: 3 vectors of 8 and 2 of 5 (the 4 + 1 blocks).
TEST(ReferenceTest, RowwiseAdagrad) {
  for (const int vec : {8, 5}) {
    SCOPED_TRACE(vec);
    const int n = 3 * vec;
    const float lr = 0.05f, eps = 1e-6f, h0 = 0.01f, l2 = 0.01f;
    auto opt = MakeAdagrad({.lr = lr, .eps = eps, .initial_accumulator = h0, .rowwise = true});
    std::vector<float> p = RandomInit(n, n);
    std::vector<double> pr(p.begin(), p.end());
    std::vector<float> h(3);
    opt->InitVectors(p.data(), h.data(), n, vec, l2);
    std::vector<double> hr(3, h0);
    std::mt19937_64 rng(500 + vec);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> g(n);
    std::uint32_t step = 0;
    for (int t = 0; t < 100; ++t) {
      for (float& x : g) x = normal(rng);
      opt->UpdateVectors(p.data(), h.data(), g.data(), n, vec, l2, &step);
      for (int j = 0; j < 3; ++j) {
        double sq = 0;
        for (int i = j * vec; i < (j + 1) * vec; ++i) sq += std::pow(g[i] + l2 * pr[i], 2);
        hr[j] += sq / vec;
        for (int i = j * vec; i < (j + 1) * vec; ++i) {
          pr[i] -= lr * (g[i] + l2 * pr[i]) / (std::sqrt(hr[j]) + eps);
        }
      }
      for (int i = 0; i < n; ++i) {
        ASSERT_NEAR(p[i], pr[i], 1e-5 * std::fabs(pr[i]) + 1e-6) << "step " << t << " param " << i;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------

TEST(MakeOptimizerTest, UsesTheConfiguredHyperParameters) {
  OptimizerConfig c;
  c.lr = 0.1f;
  c.name = OptimizerName::kSgd;
  {
    auto opt = MakeOptimizer(c);
    EXPECT_EQ(opt->state_floats(), 0);
    float p = 0.5f;
    const float g = 0.2f;
    std::uint32_t step = 0;
    opt->Update(&p, nullptr, &g, 1, 0.0f, &step);
    EXPECT_NEAR(p, 0.48f, 1e-7);  // lr 0.1
  }
  c.name = OptimizerName::kAdagrad;
  c.eps = 0.1f;
  {
    auto opt = MakeOptimizer(c);
    EXPECT_EQ(opt->state_floats(), 1);
    float p = 0.5f;
    float h = 0.0f;
    const float g = 0.2f;
    std::uint32_t step = 0;
    // p = 0.5 - 0.1 * 0.2 / (0.2 + 0.1) = 0.4333333.
    opt->Update(&p, &h, &g, 1, 0.0f, &step);
    EXPECT_NEAR(p, 0.4333333f, 1e-6);
  }
  c.name = OptimizerName::kAdam;
  c.beta1 = 0.5f;
  c.beta2 = 0.75f;
  c.eps = 1e-8f;
  {
    auto opt = MakeOptimizer(c);
    EXPECT_EQ(opt->state_floats(), 2);
    EXPECT_TRUE(opt->uses_step());
    float p = 1.0f;
    float s[2] = {0, 0};
    const float g = 0.5f;
    std::uint32_t step = 0;
    // m = 0.25, s = 0.0625 (beta1 0.5, beta2 0.75); t = 1: p = 1 - 0.1 * 0.5 / 0.5 = 0.9.
    opt->Update(&p, s, &g, 1, 0.0f, &step);
    EXPECT_NEAR(s[0], 0.25f, 1e-7);
    EXPECT_NEAR(s[1], 0.0625f, 1e-7);
    EXPECT_NEAR(p, 0.9f, 1e-6);
  }
  c.name = OptimizerName::kFtrl;
  c.l1 = 0.2f;
  c.ftrl_beta = 2.0f;
  {
    auto opt = MakeOptimizer(c);
    EXPECT_EQ(opt->state_floats(), 2);
    EXPECT_FALSE(opt->uses_step());
    float p = 0.0f;
    float s[2] = {0, 0};
    const float g = 0.5f;
    std::uint32_t step = 0;
    // alpha = lr = 0.1, beta = 2: p = -(0.5 - 0.2) / ((2 + 0.5) / 0.1) = -0.3 / 25 = -0.012.
    opt->Update(&p, s, &g, 1, 0.0f, &step);
    EXPECT_NEAR(p, -0.012f, 1e-7);
  }
}

}  // namespace
}  // namespace fmps
