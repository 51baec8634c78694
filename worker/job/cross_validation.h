// `fmps cv`: K-fold cross-validation over the training rows. Fold f of K holds out the rows
// whose row hash (RowHashUnit, common/data/reader.h) lies in [f/K, (f+1)/K): every row is in
// exactly one validation fold, whatever the files' sharding or the number of workers. Each
// fold is one ordinary training job (single-node or under mpirun, one after another in the
// same process/job) with the fold's held-out rows as its validation rows and early stopping
// (train.early_stop as configured; metric auto when it is none), its outputs in
// <output.dir>/fold-<f> (checkpoints in <checkpoint.dir>/fold-<f>). The fold's metric is its
// best epoch's validation metric.
#pragma once

#include <string>
#include <vector>

#include "common/config/config.h"
#include "worker/job/training_job.h"

namespace fmps {

// Throws ConfigError naming --folds unless 2 <= folds <= 1000. (The config itself is read
// with LoadConfigForFolds: no data.valid or data.valid_fraction of its own.)
void CheckFolds(int folds);

// The --set overrides (after the user's) that make fold `fold` from `base` (the config as
// given, read with LoadConfigForFolds): its output and checkpoint directories, and
// train.early_stop.metric auto when it is none.
std::vector<std::string> FoldOverrides(const Config& base, int fold);

// The folds' results: each fold's best validation metric and epoch; mean and sample
// standard deviation (n - 1) of the metrics.
struct CvResult {
  std::string metric;  // "auc", "logloss" or "rmse"
  std::vector<double> values;
  std::vector<int> best_epochs;
  double mean = 0.0;
  double std = 0.0;
};
CvResult SummarizeFolds(const std::vector<TrainSummary>& folds);

// The stdout line of one fold ("fold 2/5: auc 0.901234 (best epoch 4)") and of the result
// ("cv auc 0.901000 +- 0.001230 over 5 folds"); cv.json's object.
std::string FoldLine(const TrainSummary& fold, int index, int folds);
std::string CvLine(const CvResult& result);
std::string CvJson(const CvResult& result);

}  // namespace fmps
