#include "worker/job/interrupt.h"

#include <csignal>

namespace fmps {

namespace {
// Set by the handler, read by the coordinating worker. sig_atomic_t: async-signal safe.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void OnStopSignal(int signal) { g_stop_signal = signal; }

std::string Message(int signal, FinalCheckpoint final_checkpoint) {
  std::string m = std::string("interrupted by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM");
  switch (final_checkpoint) {
    case FinalCheckpoint::kWritten:
      return m + "; a final checkpoint was written (continue with --resume)";
    case FinalCheckpoint::kTimedOut:
      return m + "; no final checkpoint was written (the cut did not complete within " +
             std::to_string(static_cast<int>(kStopCheckpointSeconds)) +
             " s; --resume continues from the newest complete checkpoint)";
    case FinalCheckpoint::kNone:
      break;
  }
  return m + "; no model written";
}
}  // namespace

void InstallStopSignals() {
  struct sigaction action = {};
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int StopSignal() { return g_stop_signal; }

Interrupted::Interrupted(int signal, FinalCheckpoint final_checkpoint)
    : Error(Message(signal, final_checkpoint)), signal_(signal) {}

}  // namespace fmps
