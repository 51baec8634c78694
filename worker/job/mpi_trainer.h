// MPI mode: `mpirun -np N fmps train exp.yaml`. Ranks 0..cluster.servers-1 run the Server
// loop over their shard of the keys (MakeJobServer); the other ranks run the training loop
// (RunWorkerJob over MpiCollectives of the worker ranks) on their byte range of the training
// files. The first worker rank coordinates, as worker thread 0 does in single-node mode, and
// prints the final line (FinalLine).
//
// Failure handling: problems found while setting up (bad config, a world too small for
// cluster.servers, missing or unreadable files) are agreed on by all ranks and reported once,
// by the lowest failing rank, before any work; every rank then returns the same non-zero
// status. Any error after that prints one line naming the rank and role and aborts the
// whole job (MPI_Abort), so no rank is left waiting.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "worker/job/training_job.h"

namespace fmps {

// Runs this rank's part of the job. MPI must be initialised (MpiSession) by the calling
// thread. Returns the process exit status (0 on success); the caller then finalises MPI.
// With `resume`, starts from the newest complete checkpoint in checkpoint.dir (if any).
int TrainMpi(const std::string& config_path, const std::vector<std::string>& overrides,
             bool resume);
// The same for any JobRequest (a resume, a cross-validation fold); the root worker rank also
// gets the job's summary in *summary (when not null; other ranks leave it unset) and prints
// no final line.
int TrainMpi(const std::string& config_path, const std::vector<std::string>& overrides,
             const JobRequest& request, std::optional<TrainSummary>* summary);

}  // namespace fmps
