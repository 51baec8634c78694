// Evaluation metrics over (raw score, label) pairs.
//
// AUC is exact: pairs are sorted by score and tied scores get the average of their ranks
// (Mann-Whitney with mid-ranks), i.e. a positive and a negative with equal scores count as
// half a correctly ordered pair. AUC is NaN when the labels are all of one class.
// Cost: O(n log n) for AUC, O(n) otherwise. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <span>

#include "common/config/config.h"

namespace fmps {

struct EvalResult {
  std::uint64_t rows = 0;
  double logloss = 0.0;  // mean loss (logistic: log loss; squared: half squared error)
  double auc = 0.0;      // logistic only
  double rmse = 0.0;     // squared only
};

// Exact AUC of scores against 0/1 labels (ties averaged; NaN if one class only).
double Auc(std::span<const float> scores, std::span<const float> labels);

// Mean loss, plus AUC (logistic) or RMSE (squared). Empty input gives rows = 0 and NaNs.
EvalResult Evaluate(Loss loss, std::span<const float> scores, std::span<const float> labels);

}  // namespace fmps
