// The divergence rule (worker/divergence.h) on hand-made loss sequences.
#include "worker/divergence.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common/base/error.h"

namespace fmps {
namespace {

TEST(DivergenceGuardTest, FiresOnExplodingOrNonFiniteLossOnly) {
  const std::vector<float> labels(2000, 1.0f);
  const double log2 = std::log(2.0);
  {  // Logistic: from log 2 down to 0.1 and noisy spikes up to 6x log 2: never fires.
    DivergenceGuard g(Loss::kLogistic);
    for (int i = 0; i < 50; ++i)
      g.Add(100, 100 * (i % 7 == 6 ? 6 * log2 : log2 / (1 + i)), labels.data());
  }
  {  // Logistic: a window (1000 rows) of mean 7 > 10 log 2 fires at its end, not before.
    DivergenceGuard g(Loss::kLogistic);
    g.Add(1000, 1000 * log2, labels.data());
    for (int i = 0; i < 9; ++i) g.Add(100, 700.0, labels.data());
    EXPECT_THROW(g.Add(100, 700.0, labels.data()), NumericError);
  }
  {  // Squared loss, labels 3: Z = 4.5, limit 45.
    DivergenceGuard g(Loss::kSquared);
    const std::vector<float> threes(1000, 3.0f);
    g.Add(1000, 1000 * 4.5, threes.data());
    g.Add(1000, 1000 * 44.0, threes.data());
    EXPECT_THROW(g.Add(1000, 1000 * 46.0, threes.data()), NumericError);
  }
  {  // Squared loss, zero labels after labels 10: Z1 = 50 keeps the limit at 500.
    DivergenceGuard g(Loss::kSquared);
    const std::vector<float> zeros(1000, 0.0f);
    const std::vector<float> tens(1000, 10.0f);
    g.Add(1000, 1000 * 50.0, tens.data());
    g.Add(1000, 1000 * 499.0, zeros.data());
    EXPECT_THROW(g.Add(1000, 1000 * 501.0, zeros.data()), NumericError);
  }
  {  // Squared loss on all-zero labels: the floor kMinScale (limit 0.01).
    DivergenceGuard g(Loss::kSquared);
    const std::vector<float> zeros(1000, 0.0f);
    g.Add(1000, 1000 * 1e-8, zeros.data());
    g.Add(1000, 1000 * 0.009, zeros.data());
    EXPECT_THROW(g.Add(1000, 1000 * 0.011, zeros.data()), NumericError);
  }
  {  // A non-finite batch loss fires at once.
    DivergenceGuard g(Loss::kLogistic);
    EXPECT_THROW(g.Add(10, std::nan(""), labels.data()), NumericError);
    DivergenceGuard h(Loss::kSquared);
    EXPECT_THROW(h.Add(10, INFINITY, labels.data()), NumericError);
  }
  try {  // The message says what happened and what to do.
    DivergenceGuard g(Loss::kLogistic);
    g.Add(2000, 2000 * 100.0, labels.data());
    FAIL();
  } catch (const NumericError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("training diverged"), std::string::npos) << what;
    EXPECT_NE(what.find("try a smaller optimizer.lr"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace fmps
