#include "common/comm/mpi/peer_probe.h"

#include <exception>
#include <thread>

namespace fmps {

std::vector<std::string> GatherHostNames(MPI_Comm comm) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  char mine[MPI_MAX_PROCESSOR_NAME] = {0};
  int len = 0;
  MPI_Get_processor_name(mine, &len);
  std::vector<char> all(static_cast<std::size_t>(size) * MPI_MAX_PROCESSOR_NAME);
  MPI_Allgather(mine, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME,
                MPI_CHAR, comm);
  std::vector<std::string> names;
  for (int r = 0; r < size; ++r) {
    const char* p = all.data() + static_cast<std::size_t>(r) * MPI_MAX_PROCESSOR_NAME;
    names.emplace_back(p, strnlen(p, MPI_MAX_PROCESSOR_NAME));
  }
  return names;
}

PeerProbe::PeerProbe(MPI_Comm comm) {
  MPI_Comm_dup(comm, &comm_);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  receives_.assign(size_, MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r != rank_) MPI_Irecv(sink_, 0, MPI_BYTE, r, kTag, comm_, &receives_[r]);
  }
}

PeerProbe::~PeerProbe() {
  if (std::uncaught_exceptions() != 0) return;
  for (MPI_Request& r : receives_) {
    if (r == MPI_REQUEST_NULL) continue;
    MPI_Cancel(&r);
    MPI_Wait(&r, MPI_STATUS_IGNORE);  // local for a cancelled receive
  }
  MPI_Comm_free(&comm_);
}

std::vector<int> PeerProbe::Unanswered(std::chrono::milliseconds window) {
  std::vector<MPI_Request> sends(size_, MPI_REQUEST_NULL);
  for (int r = 0; r < size_; ++r) {
    if (r != rank_) MPI_Issend(sink_, 0, MPI_BYTE, r, kTag, comm_, &sends[r]);
  }
  const auto deadline = std::chrono::steady_clock::now() + window;
  std::vector<int> pending;
  while (true) {
    pending.clear();
    for (int r = 0; r < size_; ++r) {
      int done = 1;
      if (sends[r] != MPI_REQUEST_NULL) MPI_Test(&sends[r], &done, MPI_STATUS_IGNORE);
      if (!done) pending.push_back(r);
    }
    if (pending.empty() || std::chrono::steady_clock::now() >= deadline) return pending;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace fmps
