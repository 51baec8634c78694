// Collectives (common/comm/collectives.h) over an MPI communicator of the worker ranks.
//
// The object works on its own duplicate of the given communicator, so nothing it sends can
// be mistaken for another component's message. Blocking operations are the matching MPI
// collectives; the progress post is an MPI_Isend of the counters to the root (the previous
// post of the rank completed first), received by the root with MPI_Iprobe/MPI_Recv in
// LatestProgress; FinishProgress gathers how many posts each rank made and receives them all.
//
// Every blocking operation is the non-blocking MPI collective (or receive) completed by a
// polling wait that throws TransportError after `timeout` (a peer cut off by a dead link
// would otherwise block it forever); the wait sleeps up to 0.2 ms between polls.
//
// Threading: MPI_THREAD_FUNNELED, so only the thread that initialised MPI may use it.
// GatherV and GatherBytes are limited to 2^31 - 1 elements (bytes) in all at the root and
// throw Error beyond that.
#pragma once

#include <mpi.h>

#include <chrono>
#include <vector>

#include "common/comm/collectives.h"

namespace fmps {

class MpiCollectives : public Collectives {
 public:
  // `comm`: the worker ranks (duplicated; the caller keeps ownership of `comm`). `timeout`:
  // the longest any operation waits for the other ranks.
  MpiCollectives(MPI_Comm comm, int progress_width,
                 std::chrono::milliseconds timeout = std::chrono::minutes(10));
  ~MpiCollectives() override;
  MpiCollectives(const MpiCollectives&) = delete;
  MpiCollectives& operator=(const MpiCollectives&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<double> Gather(std::span<const double> mine) override;
  std::vector<float> GatherV(std::span<const float> mine) override;
  std::vector<std::string> GatherBytes(const std::string& mine) override;
  void AllReduce(std::span<std::uint64_t> values, ReduceOp op) override;
  void Broadcast(std::string* bytes) override;
  void Barrier() override;
  void PostProgress(std::span<const double> counters) override;
  std::vector<double> LatestProgress() override;
  void FinishProgress() override;

 private:
  static constexpr int kProgressTag = 0x50;
  // Root: counts and displacements of a variable-length gather of `n` elements per rank.
  struct Layout {
    std::vector<int> counts, displs;
    int total = 0;
  };
  Layout GatherCounts(std::size_t n);
  void ReceiveProgress(int source);
  // Completes `request`, polling; throws TransportError naming `what` after timeout_.
  void Wait(MPI_Request* request, const char* what);

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  int width_;
  std::chrono::milliseconds timeout_;
  MPI_Request request_ = MPI_REQUEST_NULL;
  std::vector<double> send_buffer_;
  long long sent_ = 0;
  std::vector<long long> received_;
  std::vector<double> latest_;
};

}  // namespace fmps
