// FM math: the O(k*nnz) score against the naive pairwise sum, analytic gradients against
// finite differences, and numerically safe losses.
#include "common/fm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "common/loss.h"

namespace fmps {
namespace {

struct RandomBatch {
  std::vector<float> labels;
  std::vector<std::size_t> offsets{0};
  std::vector<std::uint32_t> local;
  std::vector<float> values;
  std::vector<float> params;
  FmBatch view() const {
    FmBatch b;
    b.rows = labels.size();
    b.labels = labels.data();
    b.offsets = offsets.data();
    b.local = local.data();
    b.values = values.data();
    return b;
  }
};

RandomBatch MakeBatch(int k, int rows, int table_rows, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::uniform_int_distribution<int> nnz(0, 7);
  std::uniform_int_distribution<std::uint32_t> pick(1, table_rows - 1);
  RandomBatch b;
  b.params.resize(static_cast<std::size_t>(table_rows) * (1 + k));
  for (float& p : b.params) p = normal(rng);
  for (int r = 0; r < rows; ++r) {
    const int n = nnz(rng);
    for (int j = 0; j < n; ++j) {
      b.local.push_back(pick(rng));  // repeats within a row are allowed and must work
      b.values.push_back(normal(rng) * 2.0f);
    }
    b.offsets.push_back(b.local.size());
    b.labels.push_back(static_cast<float>(rng() % 2));
  }
  return b;
}

// y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j, in double.
double NaiveScore(const RandomBatch& b, std::size_t r, int k) {
  const int width = 1 + k;
  double s = b.params[0];
  for (std::size_t i = b.offsets[r]; i < b.offsets[r + 1]; ++i) {
    const float* pi = &b.params[b.local[i] * width];
    s += pi[0] * b.values[i];
    for (std::size_t j = i + 1; j < b.offsets[r + 1]; ++j) {
      const float* pj = &b.params[b.local[j] * width];
      double dot = 0.0;
      for (int f = 0; f < k; ++f) dot += static_cast<double>(pi[1 + f]) * pj[1 + f];
      s += dot * b.values[i] * b.values[j];
    }
  }
  return s;
}

class FmKTest : public ::testing::TestWithParam<int> {};

TEST_P(FmKTest, ScoreEqualsNaivePairwiseSum) {
  const int k = GetParam();
  RandomBatch b = MakeBatch(k, 200, 30, 7 + k);
  std::vector<float> scores(b.labels.size());
  FmScores(b.view(), b.params.data(), k, scores.data());
  for (std::size_t r = 0; r < scores.size(); ++r) {
    const double naive = NaiveScore(b, r, k);
    EXPECT_NEAR(scores[r], naive, 1e-4 * (1.0 + std::abs(naive))) << "row " << r;
  }
}

TEST_P(FmKTest, GradientsMatchFiniteDifferences) {
  const int k = GetParam();
  for (Loss loss : {Loss::kLogistic, Loss::kSquared}) {
    RandomBatch b = MakeBatch(k, 20, 12, 99 + k);
    std::vector<float> grads(b.params.size(), 0.0f);
    std::vector<float> scores(b.labels.size());
    const double total =
        FmForwardBackward(b.view(), b.params.data(), k, loss, grads.data(), scores.data());
    // The loss returned is the sum over rows of the loss of the (naive) score.
    double expected_total = 0.0;
    for (std::size_t r = 0; r < b.labels.size(); ++r) {
      expected_total += LossValue(loss, NaiveScore(b, r, k), b.labels[r]);
    }
    EXPECT_NEAR(total, expected_total, 1e-3 * (1.0 + std::abs(expected_total)));
    auto loss_at = [&]() {
      double sum = 0.0;
      for (std::size_t r = 0; r < b.labels.size(); ++r) {
        sum += LossValue(loss, NaiveScore(b, r, k), b.labels[r]);
      }
      return sum;
    };
    const double h = 1e-3;
    for (std::size_t p = 0; p < b.params.size(); ++p) {
      const float saved = b.params[p];
      b.params[p] = saved + static_cast<float>(h);
      const double up = loss_at();
      b.params[p] = saved - static_cast<float>(h);
      const double down = loss_at();
      b.params[p] = saved;
      const double numeric = (up - down) / (2 * h);
      // The bias row's v is not a parameter of the model: its gradient must stay zero.
      if (p >= 1 && p < static_cast<std::size_t>(1 + k)) {
        EXPECT_EQ(grads[p], 0.0f) << "bias v gradient at " << p;
        continue;
      }
      EXPECT_NEAR(grads[p], numeric, 2e-2 * (1.0 + std::abs(numeric)))
          << "param " << p << " loss " << ToString(loss);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, FmKTest, ::testing::Values(1, 4, 5, 8, 16, 32));

TEST(LossTest, FiniteForExtremeScores) {
  for (double s : {-1e4, -700.0, -50.0, 0.0, 50.0, 700.0, 1e4}) {
    for (double y : {0.0, 1.0}) {
      const double l = LossValue(Loss::kLogistic, s, y);
      const double g = LossGradient(Loss::kLogistic, s, y);
      EXPECT_TRUE(std::isfinite(l)) << s;
      EXPECT_TRUE(std::isfinite(g)) << s;
      EXPECT_GE(l, 0.0);
    }
  }
  // log(1 + e^1e4) - 0 = 1e4 exactly in double; wrong label at the other extreme too.
  EXPECT_NEAR(LossValue(Loss::kLogistic, 1e4, 0.0), 1e4, 1e-6);
  EXPECT_NEAR(LossValue(Loss::kLogistic, -1e4, 1.0), 1e4, 1e-6);
  EXPECT_NEAR(LossValue(Loss::kLogistic, 1e4, 1.0), 0.0, 1e-12);
  EXPECT_NEAR(LossValue(Loss::kLogistic, 0.0, 1.0), std::log(2.0), 1e-12);
  EXPECT_NEAR(LossGradient(Loss::kLogistic, 1e4, 0.0), 1.0, 1e-12);
  EXPECT_NEAR(LossGradient(Loss::kLogistic, -1e4, 1.0), -1.0, 1e-12);
  EXPECT_DOUBLE_EQ(LossValue(Loss::kSquared, 3.0, 1.0), 2.0);
  EXPECT_DOUBLE_EQ(LossGradient(Loss::kSquared, 3.0, 1.0), 2.0);
}

// The kernel's single-precision loss and gradient agree with the double-precision ones to
// float accuracy, from tiny to overflowing scores, for both losses and both labels.
TEST(LossTest, SinglePrecisionPairMatchesDouble) {
  for (Loss loss : {Loss::kLogistic, Loss::kSquared}) {
    for (float y : {0.0f, 1.0f}) {
      for (float s : {-1e30f, -1e4f, -88.0f, -20.0f, -3.5f, -1e-3f, 0.0f, 1e-6f, 0.7f, 15.0f, 90.0f,
                      1e4f, 1e30f}) {
        const LossAndGradient l = LossValueAndGradient(loss, s, y);
        const double v = LossValue(loss, s, y), g = LossGradient(loss, s, y);
        ASSERT_TRUE(std::isfinite(l.value) || !std::isfinite(static_cast<float>(v))) << s;
        EXPECT_NEAR(l.value, v, 1e-6 * std::max(1.0, std::fabs(v))) << "s " << s << " y " << y;
        EXPECT_NEAR(l.gradient, g, 1e-6 * std::max(1.0, std::fabs(g))) << "s " << s << " y " << y;
      }
    }
  }
}

TEST(LossTest, FmBatchLossFiniteForHugeScores) {
  // One feature with a huge weight drives the score to +-1e4.
  const int k = 4;
  std::vector<float> params(2 * (1 + k), 0.0f);
  params[1 + k] = 1e4f;
  std::vector<float> labels = {0.0f, 1.0f};
  std::vector<std::size_t> offsets = {0, 1, 2};
  std::vector<std::uint32_t> local = {1, 1};
  std::vector<float> values = {1.0f, -1.0f};
  FmBatch b{2, labels.data(), offsets.data(), local.data(), values.data()};
  std::vector<float> grads(params.size(), 0.0f);
  const double total =
      FmForwardBackward(b, params.data(), k, Loss::kLogistic, grads.data(), nullptr);
  EXPECT_TRUE(std::isfinite(total));
  EXPECT_NEAR(total, 2e4, 1.0);
  for (float g : grads) EXPECT_TRUE(std::isfinite(g));
}

}  // namespace
}  // namespace fmps
