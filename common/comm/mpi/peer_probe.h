// Finding which ranks still answer, to name an unreachable peer after a timeout, and the
// host each rank runs on.
//
// Threading: MPI_THREAD_FUNNELED, like the rest of common/comm/mpi: the thread that
// initialised MPI only.
#pragma once

#include <mpi.h>

#include <chrono>
#include <string>
#include <vector>

namespace fmps {

// Every rank's processor name (its host name), indexed by rank in `comm`. Collective.
std::vector<std::string> GatherHostNames(MPI_Comm comm);

// A one-shot liveness probe over a private duplicate of `comm`.
//
// Construction is collective and must happen while every rank is reachable: each rank posts
// one zero-byte receive per other rank. Unanswered() sends a synchronous zero-byte message
// (MPI_Issend) to every other rank; such a send completes only once the peer's MPI library
// has matched it against the posted receive, which it does whenever that rank makes any MPI
// call (an fmps rank polls or waits in MPI at least once per batch). A rank whose link or
// host is gone never completes it. Cost: one tiny message per peer, only when probing.
// Each rank can be probed once by each other rank (the job ends after a failed probe).
class PeerProbe {
 public:
  explicit PeerProbe(MPI_Comm comm);
  // Cancels the posted receives and frees the communicator; does nothing while an
  // exception unwinds (the job is about to be aborted). Never throws.
  ~PeerProbe();
  PeerProbe(const PeerProbe&) = delete;
  PeerProbe& operator=(const PeerProbe&) = delete;

  // The ranks (other than this one) that did not answer within `window`, ascending.
  // Sends still pending are left to the MPI library (the caller aborts the job next).
  std::vector<int> Unanswered(std::chrono::milliseconds window);

 private:
  static constexpr int kTag = 0x51;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  std::vector<MPI_Request> receives_;
  char sink_[1] = {0};
};

}  // namespace fmps
