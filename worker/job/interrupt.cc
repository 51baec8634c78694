#include "worker/job/interrupt.h"

#include <atomic>
#include <csignal>

namespace fmps {

namespace {
// Set by the handler, read by the coordinating worker thread. A lock-free atomic is safe to
// store from a signal handler and to read from another thread (a volatile sig_atomic_t is
// only the former).
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free);

extern "C" void OnStopSignal(int signal) { g_stop_signal.store(signal, std::memory_order_relaxed); }

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

int StopSignal() { return g_stop_signal.load(std::memory_order_relaxed); }

void RequestStop(int signal) { g_stop_signal.store(signal, std::memory_order_relaxed); }

void ClearStop() { g_stop_signal.store(0, std::memory_order_relaxed); }

Interrupted::Interrupted(int signal, FinalCheckpoint final_checkpoint)
    : Error(Message(signal, final_checkpoint)), signal_(signal) {}

}  // namespace fmps
