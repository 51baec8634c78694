// Single-node test mode (BRIEF §2): cluster.local_servers Server threads and
// cluster.local_workers Worker threads in one process, talking through an in-process
// Transport — the same Server and Worker classes that MPI mode runs as ranks. The calling
// thread coordinates: epochs, progress lines, evaluation, model assembly and outputs.
//
// Any exception in any thread aborts the in-process transport (so no thread waits
// forever) and the first error is rethrown from Run().
#pragma once

#include <cstdint>
#include <string>

#include "common/config/config.h"

namespace fmps {

struct TrainSummary {
  std::uint64_t rows_trained = 0;
  double wall_s = 0.0;
  double rows_per_s = 0.0;
  double test_logloss = 0.0;
  double test_auc = 0.0;
  double test_rmse = 0.0;
  std::uint64_t num_keys = 0;
  std::uint64_t bad_rows = 0;
  std::string model_path;
};

// Runs the whole training job described by `config` and writes its outputs. With `resume`,
// starts from the newest complete checkpoint in checkpoint.dir (if any).
TrainSummary TrainLocal(const Config& config, bool resume = false);

}  // namespace fmps
