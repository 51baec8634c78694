// Early stopping and the best model: the per-epoch validation metric, the best epoch so far
// and when to stop (train.early_stop), as the root worker keeps them. The servers keep the
// best epoch's parameters themselves (a store snapshot, server/server.h "KeepBest"); this
// class only decides. Its state (ValidationRecord, checkpoint.h) travels in checkpoint
// manifests so that a resumed job keeps the best epoch found before the crash.
//
// Thread safety: none (the root worker's thread). Cost: O(1) per epoch.
#pragma once

#include <optional>

#include "common/config/config.h"
#include "common/model/metrics.h"
#include "worker/job/checkpoint.h"

namespace fmps {

// The metric train.early_stop judges (kAuto resolved: auc for logistic, rmse for squared);
// without early stopping, the one validation reports (the same as auto).
EarlyStopMetric ResolvedMetric(const Config& config);
const char* MetricName(EarlyStopMetric metric);  // "auc", "logloss", "rmse"
double MetricValue(EarlyStopMetric metric, const EvalResult& eval);

class EarlyStopper {
 public:
  // `record`: the state before this run (a resumed job's manifest), or empty.
  EarlyStopper(const Config& config, ValidationRecord record);

  // Records the validation metric of `epoch` (epochs arrive in order). Returns true when it
  // is the best so far: better than the best by more than min_delta (higher for auc, lower
  // for logloss and rmse), or the first finite value. A NaN is never the best.
  bool Record(int epoch, double value);
  // Early stopping is on and `epoch` is patience epochs past the best one.
  bool ShouldStop(int epoch) const;
  // The test metrics of `epoch`: kept when it is the best epoch.
  void RecordTest(int epoch, const EvalResult& test);
  // The best epoch's test metrics, if measured (in this run or before a resume).
  std::optional<EvalResult> BestTest() const;

  bool enabled() const { return enabled_; }
  EarlyStopMetric metric() const { return metric_; }
  const ValidationRecord& record() const { return record_; }

 private:
  bool enabled_;
  EarlyStopMetric metric_;
  int patience_;
  double min_delta_;
  ValidationRecord record_;
};

}  // namespace fmps
