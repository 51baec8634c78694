// FM math through ModelKernel: the O(k*nnz) score against the naive pairwise sum, analytic
// gradients against finite differences, embedding sums against a naive sum, and
// numerically safe losses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/base/error.h"
#include "common/model/loss.h"
#include "common/model/model_kernel.h"
#include "tests/common/model/grad_table_check.h"

namespace fmps {
namespace {

struct RandomBatch {
  std::vector<float> labels;
  std::vector<std::size_t> offsets{0};
  std::vector<std::uint32_t> local;
  std::vector<float> values;
  std::vector<float> params;
  ModelBatch view() const {
    ModelBatch b;
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

// The FM kernel of embedding size k through the interface.
void Scores(int k, const RandomBatch& b, float* scores) {
  MakeKernel(FmShape(k), Loss::kLogistic)->Scores(b.view(), b.params.data(), scores);
}

double ForwardBackward(int k, Loss loss, const RandomBatch& b, float* grads, float* scores) {
  return MakeKernel(FmShape(k), loss)->ForwardBackward(b.view(), b.params.data(), grads, scores);
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
  Scores(k, b, scores.data());
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
    const double total = ForwardBackward(k, loss, b, grads.data(), scores.data());
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

// Rows whose values are all 1 take a fast path without the multiplications by x. Batch
// `ones` has random rows of ones; batch `mixed` has the same rows, each with one more
// non-zero at the end: value 0.5 on a table row whose parameters are all zero. That changes
// no score nor any other gradient, but sends every row through the general path. The
// floating-point operations are the same (x * 1 = x exactly), so the results must be too.
TEST_P(FmKTest, AllOnesFastPathEqualsGeneralPath) {
  const int k = GetParam();
  const std::size_t width = 1 + k;
  RandomBatch ones = MakeBatch(k, 300, 40, 5 + k);
  const std::uint32_t zero_row = 40;  // appended below
  ones.params.resize(ones.params.size() + width, 0.0f);
  std::fill(ones.values.begin(), ones.values.end(), 1.0f);
  RandomBatch mixed = ones;
  mixed.local.clear();
  mixed.values.clear();
  mixed.offsets = {0};
  for (std::size_t r = 0; r < ones.labels.size(); ++r) {
    for (std::size_t j = ones.offsets[r]; j < ones.offsets[r + 1]; ++j) {
      mixed.local.push_back(ones.local[j]);
      mixed.values.push_back(1.0f);
    }
    mixed.local.push_back(zero_row);
    mixed.values.push_back(0.5f);
    mixed.offsets.push_back(mixed.local.size());
  }
  for (Loss loss : {Loss::kLogistic, Loss::kSquared}) {
    std::vector<float> grads_ones(ones.params.size(), 0.0f), grads_mixed = grads_ones;
    std::vector<float> scores_ones(ones.labels.size()), scores_mixed = scores_ones;
    const double total_ones = ForwardBackward(k, loss, ones, grads_ones.data(), scores_ones.data());
    const double total_mixed =
        ForwardBackward(k, loss, mixed, grads_mixed.data(), scores_mixed.data());
    EXPECT_EQ(total_ones, total_mixed);
    EXPECT_EQ(scores_ones, scores_mixed);
    for (std::size_t p = 0; p < zero_row * width; ++p) {
      ASSERT_EQ(grads_ones[p], grads_mixed[p]) << "param " << p << " loss " << ToString(loss);
    }
    std::vector<float> predicted_ones(ones.labels.size()), predicted_mixed = predicted_ones;
    Scores(k, ones, predicted_ones.data());
    Scores(k, mixed, predicted_mixed.data());
    EXPECT_EQ(predicted_ones, scores_ones);
    EXPECT_EQ(predicted_mixed, scores_ones);
  }
}

// A parameter table of more than 2 MB makes the kernels prefetch rows ahead of use (a
// different code path for every row but the last few). The results must equal those on the
// same rows copied to a small table (no prefetching), and the scores the naive sum.
TEST_P(FmKTest, LargeTablePrefetchPathEqualsSmallTable) {
  const int k = GetParam();
  const std::size_t width = 1 + k;
  const std::uint32_t big_rows = (3u << 20) / (width * sizeof(float));  // 3 MB
  RandomBatch big = MakeBatch(k, 150, 2, 11 + k);  // labels and offsets; rows redrawn below
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::uint32_t> pick(1, big_rows - 1);
  std::uniform_int_distribution<int> nnz(0, 60);
  big.local.clear();
  big.values.clear();
  big.offsets = {0};
  for (std::size_t r = 0; r < big.labels.size(); ++r) {
    for (int j = nnz(rng); j > 0; --j) {
      big.local.push_back(pick(rng));
      big.values.push_back(r % 3 == 0 ? 0.25f * static_cast<float>(j % 5) : 1.0f);
    }
    big.offsets.push_back(big.local.size());
  }
  // The table: all rows random (cheaply), the bias row included.
  big.params.resize(static_cast<std::size_t>(big_rows) * width);
  for (std::size_t p = 0; p < big.params.size(); ++p) {
    big.params[p] = 0.001f * static_cast<float>(static_cast<int>((p * 2654435761u) % 1001) - 500);
  }
  // The same rows in a small table: local indices renumbered in order of first use.
  RandomBatch small = big;
  std::vector<std::uint32_t> to_small(big_rows, 0);
  small.params.assign(big.params.begin(), big.params.begin() + width);  // bias row
  for (std::uint32_t& u : small.local) {
    if (to_small[u] == 0) {
      to_small[u] = static_cast<std::uint32_t>(small.params.size() / width);
      small.params.insert(small.params.end(), big.params.begin() + u * width,
                          big.params.begin() + (u + 1) * width);
    }
    u = to_small[u];
  }
  ASSERT_LT(small.params.size() * sizeof(float), std::size_t{1} << 20);
  std::vector<float> grads_big(big.params.size(), 0.0f), grads_small(small.params.size(), 0.0f);
  std::vector<float> scores_big(big.labels.size()), scores_small = scores_big;
  EXPECT_EQ(ForwardBackward(k, Loss::kLogistic, big, grads_big.data(), scores_big.data()),
            ForwardBackward(k, Loss::kLogistic, small, grads_small.data(), scores_small.data()));
  EXPECT_EQ(scores_big, scores_small);
  for (std::uint32_t u = 0; u < big_rows; ++u) {
    if (u != 0 && to_small[u] == 0) continue;
    for (std::size_t f = 0; f < width; ++f) {
      ASSERT_EQ(grads_big[u * width + f], grads_small[to_small[u] * width + f]) << u;
    }
  }
  std::vector<float> predicted(big.labels.size());
  Scores(k, big, predicted.data());
  EXPECT_EQ(predicted, scores_small);
  for (std::size_t r = 0; r < predicted.size(); ++r) {
    const double naive = NaiveScore(big, r, k);
    EXPECT_NEAR(predicted[r], naive, 1e-4 * (1.0 + std::abs(naive))) << "row " << r;
  }
}

// EmbeddingSums: sums[r * k + f] = sum over row r's non-zeros of v_f x, against a double
// sum; rows of ones (fast path) and general values, empty rows (all zeros) included.
TEST_P(FmKTest, EmbeddingSumsEqualNaiveSum) {
  const int k = GetParam();
  RandomBatch b = MakeBatch(k, 120, 25, 31 + k);
  for (std::size_t r = 0; r < b.labels.size(); r += 2) {  // every other row all ones
    for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) b.values[j] = 1.0f;
  }
  const std::size_t kk = static_cast<std::size_t>(k);
  std::vector<float> sums(b.labels.size() * kk, -1.0f);
  const auto kernel = MakeKernel(FmShape(k), Loss::kLogistic);
  EXPECT_EQ(kernel->shape(), FmShape(k));
  kernel->EmbeddingSums(b.view(), b.params.data(), sums.data());
  const std::size_t width = 1 + kk;
  for (std::size_t r = 0; r < b.labels.size(); ++r) {
    for (std::size_t f = 0; f < kk; ++f) {
      double naive = 0.0;
      for (std::size_t j = b.offsets[r]; j < b.offsets[r + 1]; ++j) {
        naive += static_cast<double>(b.params[b.local[j] * width + 1 + f]) * b.values[j];
      }
      EXPECT_NEAR(sums[r * kk + f], naive, 1e-5 * (1.0 + std::abs(naive)))
          << "row " << r << " factor " << f;
    }
  }
}

// ForwardBackward writes the gradient rows it uses (no zeroed table needed) and scales them
// per key at their last use: the bits of zeroing, adding and scaling afterwards, on rows of
// general values and of ones, a key twice in a row, in random and first-occurrence numbering.
TEST_P(FmKTest, GarbageTableGivesTheBitsOfZeroThenAddThenScale) {
  const int k = GetParam();
  const auto kernel = MakeKernel(FmShape(k), Loss::kLogistic);
  for (const bool ones : {false, true}) {
    for (const bool first_occurrence : {false, true}) {
      SCOPED_TRACE(std::string(ones ? "ones" : "values") + (first_occurrence ? " ordered" : ""));
      RandomBatch b = MakeBatch(k, 60, 25, 31 + k);
      b.local.insert(b.local.end(), {7, 3, 7});  // key 7 twice in the last row
      b.values.insert(b.values.end(), {0.5f, 2.0f, -1.5f});
      b.offsets.push_back(b.local.size());
      b.labels.push_back(1.0f);
      if (ones) std::fill(b.values.begin(), b.values.end(), 1.0f);
      if (first_occurrence) b.local = testing_grads::FirstOccurrenceIds(b.local);
      testing_grads::ExpectSameBitsOnGarbageTable(*kernel, b.view(), b.params.data(), 25);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, FmKTest, ::testing::Values(1, 4, 5, 8, 16, 32));

TEST(ModelKernelTest, ReportsShapeAndLossAndRejectsBadShapes) {
  const auto kernel = MakeKernel(FmShape(6), Loss::kSquared);
  EXPECT_EQ(kernel->shape(), FmShape(6));
  EXPECT_EQ(kernel->loss(), Loss::kSquared);
  EXPECT_THROW(MakeKernel(FmShape(0), Loss::kLogistic), ModelError);
  EXPECT_THROW(MakeKernel(ModelShape{ModelKind::kFm, 8, 3}, Loss::kLogistic), ModelError);
}

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

// Log1pUnit (the kernel's log(1 + e) for e = exp(-|s|) in [0, 1]) within 2 ulp of the
// exact value, on every 257th float of [0, 1] and both ends.
TEST(LossTest, Log1pUnitWithinTwoUlp) {
  const std::uint32_t one = 0x3f800000;
  for (std::uint32_t bits = 0;; bits = std::min(bits + 257, one)) {
    float e;
    std::memcpy(&e, &bits, sizeof(e));
    const double exact = std::log1p(static_cast<double>(e));
    const float rounded = static_cast<float>(exact);
    const double ulp = std::nextafter(rounded, 2.0f) - rounded;
    ASSERT_LE(std::fabs(Log1pUnit(e) - exact), 2.0 * ulp) << "e " << e;
    if (bits == one) break;
  }
  EXPECT_EQ(Log1pUnit(0.0f), 0.0f);
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
  ModelBatch b{2, labels.data(), offsets.data(), local.data(), values.data()};
  std::vector<float> grads(params.size(), 0.0f);
  const double total = MakeKernel(FmShape(k), Loss::kLogistic)
                           ->ForwardBackward(b, params.data(), grads.data(), nullptr);
  EXPECT_TRUE(std::isfinite(total));
  EXPECT_NEAR(total, 2e4, 1.0);
  for (float g : grads) EXPECT_TRUE(std::isfinite(g));
}

}  // namespace
}  // namespace fmps
