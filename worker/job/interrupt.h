// Stopping a job on SIGINT or SIGTERM (single-node and MPI mode). The handlers set one
// process-wide flag (the one hidden global of the job layer: a signal handler can reach
// nothing else); the coordinating worker reads it after every batch (TrainingJob) and
// stops the job by throwing Interrupted, which the entry point turns into one line and the
// exit status 128 + signal. With checkpoint.dir set, SIGTERM first completes a checkpoint
// cut, so `--resume` loses nothing; that cut is bounded by kStopCheckpointSeconds, past
// which the job stops without it and says so. Under MPI every rank installs the handlers
// (so no rank dies on the signal) and only the root worker acts on the flag; it then ends
// the job with MPI_Abort(128 + signal) (mpi_trainer.cc).
#pragma once

#include <string>

#include "common/base/error.h"

namespace fmps {

// Installs the SIGINT and SIGTERM handlers (each resets itself: a second signal of the same
// kind ends the process at once). Call once, before training starts.
void InstallStopSignals();

// The signal number that asked the job to stop, or 0. Thread safe, lock free.
int StopSignal();

// Sets the same flag as the handlers, from code: an embedding host that owns the signals
// (the Python module polls its own SIGINT while a job runs) asks the job to stop as the
// handler would. ClearStop() resets the flag once that job has ended, so the process can
// run another. Both are thread safe; the flag is process-wide, so every job of the process
// sees a stop request.
void RequestStop(int signal);
void ClearStop();

// How long SIGTERM waits for the final checkpoint cut before stopping without it.
inline constexpr double kStopCheckpointSeconds = 60.0;

// What the job did with its final checkpoint before stopping on a signal.
enum class FinalCheckpoint {
  kNone,      // none was asked for (SIGINT, or no checkpoint.dir)
  kWritten,   // a final checkpoint was written: `--resume` loses nothing
  kTimedOut,  // the cut did not complete within kStopCheckpointSeconds: none was written
};

// Thrown by the coordinating worker once the job stops on a signal.
class Interrupted : public Error {
 public:
  Interrupted(int signal, FinalCheckpoint final_checkpoint);
  int signal() const { return signal_; }
  int exit_status() const { return 128 + signal_; }

 private:
  int signal_;
};

}  // namespace fmps
