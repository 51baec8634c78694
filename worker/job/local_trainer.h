// Single-node mode: cluster.local_servers Server threads and cluster.local_workers worker
// threads in one process, talking through an in-process Transport and keeping in step
// through InProcCollectives. The servers and the training loop (RunWorkerJob, worker thread
// 0 coordinating) are the same as MPI mode's; only how they start differs.
//
// Any exception in any thread aborts the in-process transport and collectives (so no
// thread waits forever); the first error is rethrown from TrainLocal.
#pragma once

#include "common/config/config.h"
#include "worker/job/training_job.h"

namespace fmps {

// Runs the whole training job described by `config` and writes its outputs. With `resume`,
// starts from the newest complete checkpoint in checkpoint.dir (if any).
TrainSummary TrainLocal(const Config& config, bool resume = false);
// The same for any JobRequest (a resume, a cross-validation fold).
TrainSummary TrainLocal(const Config& config, const JobRequest& request);

}  // namespace fmps
