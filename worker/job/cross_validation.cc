#include "worker/job/cross_validation.h"

#include <cmath>
#include <cstdio>
#include <span>

#include "common/base/error.h"
#include "common/base/json.h"

namespace fmps {

void CheckFolds(int folds) {
  if (folds < 2 || folds > 1000) {
    throw ConfigError("cv: --folds must be 2..1000, got " + std::to_string(folds));
  }
}

std::vector<std::string> FoldOverrides(const Config& base, int fold) {
  const std::string dir = "/fold-" + std::to_string(fold);
  std::vector<std::string> sets = {"output.dir=" + base.output.dir + dir};
  if (!base.checkpoint.dir.empty()) sets.push_back("checkpoint.dir=" + base.checkpoint.dir + dir);
  if (base.train.early_stop.metric == EarlyStopMetric::kNone) {
    sets.emplace_back("train.early_stop.metric=auto");
  }
  return sets;
}

CvResult SummarizeFolds(const std::vector<TrainSummary>& folds) {
  CvResult r;
  if (folds.empty()) return r;
  r.metric = folds.front().valid_metric;
  for (const TrainSummary& f : folds) {
    r.values.push_back(f.best_valid);
    r.best_epochs.push_back(f.best_epoch);
    r.mean += f.best_valid / static_cast<double>(folds.size());
  }
  double ss = 0.0;
  for (double v : r.values) ss += (v - r.mean) * (v - r.mean);
  r.std = folds.size() > 1 ? std::sqrt(ss / static_cast<double>(folds.size() - 1)) : 0.0;
  return r;
}

std::string FoldLine(const TrainSummary& fold, int index, int folds) {
  char line[160];
  std::snprintf(line, sizeof(line), "fold %d/%d: %s %.6f (best epoch %d)", index + 1, folds,
                fold.valid_metric.c_str(), fold.best_valid, fold.best_epoch);
  return line;
}

std::string CvLine(const CvResult& r) {
  char line[160];
  std::snprintf(line, sizeof(line), "cv %s %.6f +- %.6f over %zu folds", r.metric.c_str(), r.mean,
                r.std, r.values.size());
  return line;
}

std::string CvJson(const CvResult& r) {
  std::vector<double> epochs(r.best_epochs.begin(), r.best_epochs.end());
  JsonObject j;
  j.Add("folds", static_cast<std::uint64_t>(r.values.size()))
      .Add("metric", r.metric)
      .AddArray("values", r.values)
      .AddArray("best_epochs", epochs)
      .Add("mean", r.mean)
      .Add("std", r.std);
  return j.str() + "\n";
}

}  // namespace fmps
