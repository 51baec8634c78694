#include "worker/job/early_stop.h"

#include <cmath>
#include <utility>

namespace fmps {

EarlyStopMetric ResolvedMetric(const Config& config) {
  const EarlyStopMetric m = config.train.early_stop.metric;
  if (m != EarlyStopMetric::kNone && m != EarlyStopMetric::kAuto) return m;
  return config.model.loss == Loss::kLogistic ? EarlyStopMetric::kAuc : EarlyStopMetric::kRmse;
}

const char* MetricName(EarlyStopMetric metric) { return ToString(metric); }

double MetricValue(EarlyStopMetric metric, const EvalResult& eval) {
  switch (metric) {
    case EarlyStopMetric::kAuc:
      return eval.auc;
    case EarlyStopMetric::kLogloss:
      return eval.logloss;
    default:
      return eval.rmse;
  }
}

EarlyStopper::EarlyStopper(const Config& config, ValidationRecord record)
    : enabled_(config.train.early_stop.metric != EarlyStopMetric::kNone),
      metric_(ResolvedMetric(config)),
      patience_(config.train.early_stop.patience),
      min_delta_(config.train.early_stop.min_delta),
      record_(std::move(record)) {}

bool EarlyStopper::Record(int epoch, double value) {
  record_.history.resize(static_cast<std::size_t>(epoch), std::nan(""));
  record_.history[static_cast<std::size_t>(epoch - 1)] = value;
  if (std::isnan(value)) return false;
  const double best = record_.best_value;
  const bool higher_better = metric_ == EarlyStopMetric::kAuc;
  const bool better = record_.best_epoch == 0 || std::isnan(best) ||
                      (higher_better ? value > best + min_delta_ : value < best - min_delta_);
  if (!better) return false;
  record_.best_epoch = epoch;
  record_.best_value = value;
  return true;
}

void EarlyStopper::RecordTest(int epoch, const EvalResult& test) {
  if (epoch != record_.best_epoch) return;
  record_.best_test_rows = test.rows;
  record_.best_test_logloss = test.logloss;
  record_.best_test_auc = test.auc;
  record_.best_test_rmse = test.rmse;
}

std::optional<EvalResult> EarlyStopper::BestTest() const {
  if (record_.best_epoch == 0 || record_.best_test_rows == 0) return std::nullopt;
  return EvalResult{.rows = record_.best_test_rows,
                    .logloss = record_.best_test_logloss,
                    .auc = record_.best_test_auc,
                    .rmse = record_.best_test_rmse};
}

bool EarlyStopper::ShouldStop(int epoch) const {
  return enabled_ && record_.best_epoch > 0 && epoch - record_.best_epoch >= patience_;
}

}  // namespace fmps
