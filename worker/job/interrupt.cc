#include "worker/job/interrupt.h"

#include <csignal>

namespace fmps {

namespace {
// Set by the handler, read by the coordinating worker. sig_atomic_t: async-signal safe.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void OnStopSignal(int signal) { g_stop_signal = signal; }

std::string Message(int signal, bool checkpointed) {
  std::string m = std::string("interrupted by ") + (signal == SIGINT ? "SIGINT" : "SIGTERM");
  m += checkpointed ? "; a final checkpoint was written (continue with --resume)"
                    : "; no model written";
  return m;
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

Interrupted::Interrupted(int signal, bool checkpointed)
    : Error(Message(signal, checkpointed)), signal_(signal) {}

}  // namespace fmps
