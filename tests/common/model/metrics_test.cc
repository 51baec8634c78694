#include "common/model/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace fmps {
namespace {

TEST(AucTest, PerfectAndReversed) {
  std::vector<float> s = {0.1f, 0.2f, 0.8f, 0.9f};
  std::vector<float> y = {0, 0, 1, 1};
  EXPECT_DOUBLE_EQ(Auc(s, y), 1.0);
  std::vector<float> y2 = {1, 1, 0, 0};
  EXPECT_DOUBLE_EQ(Auc(s, y2), 0.0);
}

TEST(AucTest, TiesCountHalf) {
  // Pairs (pos, neg): scores pos {0.5, 0.9}, neg {0.5, 0.1}.
  // (0.5,0.5) tie = 0.5; (0.5,0.1) = 1; (0.9,0.5) = 1; (0.9,0.1) = 1 -> 3.5 / 4.
  std::vector<float> s = {0.5f, 0.9f, 0.5f, 0.1f};
  std::vector<float> y = {1, 1, 0, 0};
  EXPECT_DOUBLE_EQ(Auc(s, y), 3.5 / 4.0);
  // All scores equal: 0.5.
  std::vector<float> same = {0.3f, 0.3f, 0.3f, 0.3f, 0.3f};
  std::vector<float> y3 = {1, 0, 1, 0, 0};
  EXPECT_DOUBLE_EQ(Auc(same, y3), 0.5);
}

TEST(AucTest, MatchesPairCountOnRandomData) {
  std::vector<float> s, y;
  unsigned x = 12345;
  for (int i = 0; i < 300; ++i) {
    x = x * 1103515245u + 12345u;
    s.push_back(static_cast<float>((x >> 8) % 50));  // many ties
    y.push_back(static_cast<float>((x >> 20) % 3 == 0));
  }
  double good = 0, pairs = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    for (std::size_t j = 0; j < s.size(); ++j) {
      if (y[i] == 1 && y[j] == 0) {
        pairs += 1;
        good += s[i] > s[j] ? 1.0 : (s[i] == s[j] ? 0.5 : 0.0);
      }
    }
  }
  EXPECT_NEAR(Auc(s, y), good / pairs, 1e-12);
}

TEST(AucTest, NanScoresRankLowestAndDoNotBreakSorting) {
  std::vector<float> s(2000), y(2000);
  for (int i = 0; i < 2000; ++i) {
    s[i] = i % 3 == 0 ? NAN : static_cast<float>(i % 17);
    y[i] = static_cast<float>(i % 2);
  }
  const double auc = Auc(s, y);
  EXPECT_GE(auc, 0.0);
  EXPECT_LE(auc, 1.0);
  // All-NaN scores are one big tie.
  std::vector<float> nan(4, NAN);
  std::vector<float> y2 = {1, 0, 1, 0};
  EXPECT_DOUBLE_EQ(Auc(nan, y2), 0.5);
}

TEST(AucTest, OneClassIsNan) {
  std::vector<float> s = {0.1f, 0.2f};
  std::vector<float> y = {1, 1};
  EXPECT_TRUE(std::isnan(Auc(s, y)));
}

TEST(EvaluateTest, LoglossAndRmse) {
  std::vector<float> s = {0.0f, 0.0f};
  std::vector<float> y = {0, 1};
  EvalResult r = Evaluate(Loss::kLogistic, s, y);
  EXPECT_EQ(r.rows, 2u);
  EXPECT_NEAR(r.logloss, std::log(2.0), 1e-12);
  EXPECT_DOUBLE_EQ(r.auc, 0.5);
  std::vector<float> p = {1.0f, 4.0f};
  std::vector<float> t = {2.0f, 2.0f};
  EvalResult q = Evaluate(Loss::kSquared, p, t);
  EXPECT_NEAR(q.rmse, std::sqrt((1.0 + 4.0) / 2.0), 1e-12);
  EXPECT_NEAR(q.logloss, (0.5 + 2.0) / 2.0, 1e-12);
}

}  // namespace
}  // namespace fmps
