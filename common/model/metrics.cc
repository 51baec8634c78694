#include "common/model/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "common/model/loss.h"

namespace fmps {

double Auc(std::span<const float> scores, std::span<const float> labels) {
  const std::size_t n = scores.size();
  std::vector<std::uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  // A strict weak order even with NaN scores (they sort first, as the lowest scores).
  auto less = [](float a, float b) { return std::isnan(a) ? !std::isnan(b) : a < b; };
  std::sort(order.begin(), order.end(),
            [&](std::uint32_t a, std::uint32_t b) { return less(scores[a], scores[b]); });
  auto same = [](float a, float b) { return a == b || (std::isnan(a) && std::isnan(b)); };
  double positives = 0.0;
  double rank_sum = 0.0;  // sum of (1-based, tie-averaged) ranks of the positives
  std::size_t i = 0;
  while (i < n) {
    std::size_t j = i;
    double group_pos = 0.0;
    while (j < n && same(scores[order[j]], scores[order[i]])) {
      group_pos += labels[order[j]] > 0.5f ? 1.0 : 0.0;
      ++j;
    }
    const double mid_rank = 0.5 * static_cast<double>(i + 1 + j);  // mean of ranks i+1..j
    rank_sum += group_pos * mid_rank;
    positives += group_pos;
    i = j;
  }
  const double negatives = static_cast<double>(n) - positives;
  if (positives == 0.0 || negatives == 0.0) return std::numeric_limits<double>::quiet_NaN();
  return (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives);
}

EvalResult Evaluate(Loss loss, std::span<const float> scores, std::span<const float> labels) {
  EvalResult r;
  r.rows = scores.size();
  if (r.rows == 0) {
    r.logloss = r.auc = r.rmse = std::numeric_limits<double>::quiet_NaN();
    return r;
  }
  double total = 0.0;
  double squared = 0.0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    total += LossValue(loss, scores[i], labels[i]);
    const double d = static_cast<double>(scores[i]) - labels[i];
    squared += d * d;
  }
  r.logloss = total / static_cast<double>(r.rows);
  if (loss == Loss::kLogistic) {
    r.auc = Auc(scores, labels);
    r.rmse = std::numeric_limits<double>::quiet_NaN();
  } else {
    r.rmse = std::sqrt(squared / static_cast<double>(r.rows));
    r.auc = std::numeric_limits<double>::quiet_NaN();
  }
  return r;
}

}  // namespace fmps
