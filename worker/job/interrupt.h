// Stopping a job on SIGINT or SIGTERM (single-node mode). The handlers set one
// process-wide flag (the one hidden global of the job layer: a signal handler can reach
// nothing else); the coordinating worker reads it after every batch (TrainingJob) and
// stops the job by throwing Interrupted, which the entry point turns into one line and the
// exit status 128 + signal. With checkpoint.dir set, SIGTERM first completes a checkpoint
// cut, so `--resume` loses nothing.
#pragma once

#include <string>

#include "common/base/error.h"

namespace fmps {

// Installs the SIGINT and SIGTERM handlers (each resets itself: a second signal of the same
// kind ends the process at once). Call once, before training starts.
void InstallStopSignals();

// The signal number that asked the job to stop, or 0. Thread safe, lock free.
int StopSignal();

// Thrown by the coordinating worker once the job stops on a signal.
class Interrupted : public Error {
 public:
  // checkpointed: a final checkpoint was written before stopping.
  Interrupted(int signal, bool checkpointed);
  int signal() const { return signal_; }
  int exit_status() const { return 128 + signal_; }

 private:
  int signal_;
};

}  // namespace fmps
