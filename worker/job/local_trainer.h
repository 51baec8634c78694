// Single-node mode: cluster.local_servers Server threads and cluster.local_workers worker
// threads in one process, talking through an in-process Transport and keeping in step
// through InProcCollectives. The servers and the training loop (RunWorkerJob, worker thread
// 0 coordinating) are the same as MPI mode's; only how they start differs.
//
// Any exception in any thread aborts the in-process transport and collectives (so no
// thread waits forever); the first error is rethrown from TrainLocal.
#pragma once

#include <vector>

#include "common/config/config.h"
#include "common/data/row_source.h"
#include "worker/job/run_output.h"
#include "worker/job/training_job.h"

namespace fmps {

// Runs the whole training job described by `config` and writes its outputs. With `resume`,
// starts from the newest complete checkpoint in checkpoint.dir (if any).
TrainSummary TrainLocal(const Config& config, bool resume = false);
// The same for any JobRequest (a resume, a cross-validation fold).
TrainSummary TrainLocal(const Config& config, const JobRequest& request);

// Rows already in memory (the Python package's arrays): one training source per worker
// (cluster.local_workers of them), optionally one test source per worker (evaluated after
// every epoch like data.test), read with `spec`. data.train / data.test are not opened.
// The sources are borrowed for the call.
struct MemorySources {
  std::vector<RowSource*> train;
  std::vector<RowSource*> test;
  // Validation rows (train.early_stop judges them; an eval set): one per worker, or none.
  std::vector<RowSource*> valid;
  FeatureSpec spec;
};

// The same job as TrainLocal over `sources`, writing the same outputs to output.dir, or
// with output.memory set, into *output.memory (model bytes, summary, events) and no file
// at all. No checkpoints and no resume: a checkpoint's position refers to files
// (ConfigError naming checkpoint.dir when it is set). Stops on StopSignal() like TrainLocal
// (throws Interrupted).
TrainSummary TrainLocalFromSources(const Config& config, const MemorySources& sources,
                                   const RunOutputOptions& output = {});

}  // namespace fmps
