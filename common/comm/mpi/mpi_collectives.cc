#include "common/comm/mpi/mpi_collectives.h"

#include <algorithm>
#include <exception>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/base/error.h"

namespace fmps {

MpiCollectives::MpiCollectives(MPI_Comm comm, int progress_width, std::chrono::milliseconds timeout)
    : width_(progress_width), timeout_(timeout) {
  MPI_Comm_dup(comm, &comm_);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  received_.assign(size_, 0);
  latest_.assign(static_cast<std::size_t>(size_) * width_, 0.0);
}

MpiCollectives::~MpiCollectives() {
  // While an error unwinds, the job is about to be aborted: free nothing a dead peer could
  // make wait.
  if (std::uncaught_exceptions() != 0) return;
  if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
  MPI_Comm_free(&comm_);
}

void MpiCollectives::Wait(MPI_Request* request, const char* what) {
  const auto start = std::chrono::steady_clock::now();
  int done = 0;
  for (int polls = 0;; ++polls) {
    MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (done) return;
    if (std::chrono::steady_clock::now() - start >= timeout_) {
      throw TransportError("worker " + std::to_string(rank_) + ": " + what +
                           " of the workers not complete within " +
                           std::to_string(timeout_.count() / 1000) + " s");
    }
    if (polls >= 16) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::vector<double> MpiCollectives::Gather(std::span<const double> mine) {
  const int n = static_cast<int>(mine.size());
  std::vector<double> all(rank_ == 0 ? mine.size() * size_ : 0);
  MPI_Request req;
  MPI_Igather(mine.data(), n, MPI_DOUBLE, all.data(), n, MPI_DOUBLE, 0, comm_, &req);
  Wait(&req, "gather");
  return all;
}

MpiCollectives::Layout MpiCollectives::GatherCounts(std::size_t n) {
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error("gather of " + std::to_string(n) + " elements from one rank (> 2^31)");
  }
  const int mine = static_cast<int>(n);
  Layout l;
  l.counts.resize(size_);
  l.displs.resize(size_);
  MPI_Request req;
  MPI_Igather(&mine, 1, MPI_INT, l.counts.data(), 1, MPI_INT, 0, comm_, &req);
  Wait(&req, "gather");
  // Every rank learns whether the root can take the total, so all fail together.
  long long total = 0;
  for (int r = 0; r < size_ && rank_ == 0; ++r) {
    l.displs[r] = static_cast<int>(std::min<long long>(total, std::numeric_limits<int>::max()));
    total += l.counts[r];
  }
  MPI_Ibcast(&total, 1, MPI_LONG_LONG, 0, comm_, &req);
  Wait(&req, "broadcast");
  if (total > std::numeric_limits<int>::max()) {
    throw Error("gather of " + std::to_string(total) + " elements at the root (> 2^31)");
  }
  l.total = static_cast<int>(total);
  return l;
}

std::vector<float> MpiCollectives::GatherV(std::span<const float> mine) {
  const Layout l = GatherCounts(mine.size());
  std::vector<float> all(rank_ == 0 ? l.total : 0);
  MPI_Request req;
  MPI_Igatherv(mine.data(), static_cast<int>(mine.size()), MPI_FLOAT, all.data(), l.counts.data(),
               l.displs.data(), MPI_FLOAT, 0, comm_, &req);
  Wait(&req, "gather");
  return all;
}

std::vector<std::string> MpiCollectives::GatherBytes(const std::string& mine) {
  const Layout l = GatherCounts(mine.size());
  std::string all(rank_ == 0 ? l.total : 0, '\0');
  MPI_Request req;
  MPI_Igatherv(mine.data(), static_cast<int>(mine.size()), MPI_CHAR, all.data(), l.counts.data(),
               l.displs.data(), MPI_CHAR, 0, comm_, &req);
  Wait(&req, "gather");
  std::vector<std::string> out;
  for (int r = 0; r < size_ && rank_ == 0; ++r) out.push_back(all.substr(l.displs[r], l.counts[r]));
  return out;
}

void MpiCollectives::AllReduce(std::span<std::uint64_t> values, ReduceOp op) {
  MPI_Request req;
  MPI_Iallreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_UINT64_T,
                 op == ReduceOp::kSum ? MPI_SUM : MPI_MAX, comm_, &req);
  Wait(&req, "all-reduce");
}

void MpiCollectives::Broadcast(std::string* bytes) {
  unsigned long long n = bytes->size();
  MPI_Request req;
  MPI_Ibcast(&n, 1, MPI_UNSIGNED_LONG_LONG, 0, comm_, &req);
  Wait(&req, "broadcast");
  if (n > static_cast<unsigned long long>(std::numeric_limits<int>::max())) {
    throw Error("broadcast of " + std::to_string(n) + " bytes (> 2^31)");
  }
  bytes->resize(n);
  MPI_Ibcast(bytes->data(), static_cast<int>(n), MPI_CHAR, 0, comm_, &req);
  Wait(&req, "broadcast");
}

void MpiCollectives::Barrier() {
  MPI_Request req;
  MPI_Ibarrier(comm_, &req);
  Wait(&req, "barrier");
}

void MpiCollectives::PostProgress(std::span<const double> counters) {
  if (static_cast<int>(counters.size()) != width_) {
    throw std::logic_error("progress post of the wrong width");
  }
  if (rank_ == 0) {
    std::copy(counters.begin(), counters.end(), latest_.begin());
    return;
  }
  if (request_ != MPI_REQUEST_NULL) Wait(&request_, "progress post");
  send_buffer_.assign(counters.begin(), counters.end());
  MPI_Isend(send_buffer_.data(), width_, MPI_DOUBLE, 0, kProgressTag, comm_, &request_);
  ++sent_;
}

void MpiCollectives::ReceiveProgress(int source) {
  MPI_Request req;
  MPI_Irecv(latest_.data() + static_cast<std::size_t>(source) * width_, width_, MPI_DOUBLE, source,
            kProgressTag, comm_, &req);
  Wait(&req, "progress post");
  ++received_[source];
}

std::vector<double> MpiCollectives::LatestProgress() {
  while (rank_ == 0) {
    int flag = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kProgressTag, comm_, &flag, &status);
    if (!flag) break;
    ReceiveProgress(status.MPI_SOURCE);
  }
  return latest_;
}

void MpiCollectives::FinishProgress() {
  if (request_ != MPI_REQUEST_NULL) Wait(&request_, "progress post");
  std::vector<long long> sent(size_);
  MPI_Request req;
  MPI_Igather(&sent_, 1, MPI_LONG_LONG, sent.data(), 1, MPI_LONG_LONG, 0, comm_, &req);
  Wait(&req, "gather");
  for (int r = 1; r < size_ && rank_ == 0; ++r) {
    while (received_[r] < sent[r]) ReceiveProgress(r);
  }
}

}  // namespace fmps
