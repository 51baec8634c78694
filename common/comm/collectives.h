// Collectives: the few group operations the training loop needs over the WORKERS of a job
// (not the servers). Two implementations: InProcCollectives (worker threads of one process,
// below) and MpiCollectives (worker ranks, common/comm/mpi/mpi_collectives.h).
//
// Contract:
//  * Ranks are 0 .. size()-1; rank 0 is the root. Every worker has its own Collectives
//    object and calls the BLOCKING operations (Gather, GatherV, GatherBytes, AllReduce,
//    Broadcast, Barrier, FinishProgress) in the same order with compatible arguments
//    (Gather: the same count on every rank). A worker that leaves the sequence early makes
//    the others wait until the job is aborted (in-process: InProcCollectiveGroup::Abort).
//  * The progress post is NOT blocking: each worker posts its cumulative counters (always
//    `progress_width` values) whenever it likes; the root reads the latest post of each
//    worker. FinishProgress (blocking, collective) settles every post in flight.
//  * Thread safety: one thread uses a Collectives object. InProcCollectiveGroup is shared
//    by the worker threads and is thread-safe.
//  * Cost: blocking operations synchronise every worker (one rendezvous; in-process, data
//    is copied once into a shared slot and once out to its readers). Meant for epoch
//    boundaries, never per batch. PostProgress/LatestProgress are O(size * width) and take
//    no lock held by another worker for longer than a copy.
//  * Errors: after an abort every operation throws TransportError naming the reason.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace fmps {

enum class ReduceOp { kSum, kMax };

class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool is_root() const { return rank() == 0; }

  // Root: every rank's `mine` (the same count on every rank) concatenated in rank order;
  // other ranks: empty.
  virtual std::vector<double> Gather(std::span<const double> mine) = 0;
  // Root: every rank's `mine` (any count, also 0) concatenated in rank order; others: empty.
  virtual std::vector<float> GatherV(std::span<const float> mine) = 0;
  // Root: each rank's bytes, one entry per rank; others: empty.
  virtual std::vector<std::string> GatherBytes(const std::string& mine) = 0;
  // Element-wise reduction of `values` (the same count on every rank) over all ranks; every
  // rank receives the result in place.
  virtual void AllReduce(std::span<std::uint64_t> values, ReduceOp op) = 0;
  // Every rank receives the root's *bytes (other ranks' input is replaced).
  virtual void Broadcast(std::string* bytes) = 0;
  virtual void Barrier() = 0;

  // Non-blocking: records this rank's latest counters (progress_width values).
  virtual void PostProgress(std::span<const double> counters) = 0;
  // Root only: the latest post of every rank (size() * progress_width values, zeros for a
  // rank that has not posted yet). Non-blocking.
  virtual std::vector<double> LatestProgress() = 0;
  // Blocking, collective: every post made before it has been received by the root.
  virtual void FinishProgress() = 0;
};

// The shared state of the in-process collectives of `size` worker threads.
class InProcCollectiveGroup {
 public:
  InProcCollectiveGroup(int size, int progress_width);
  InProcCollectiveGroup(const InProcCollectiveGroup&) = delete;
  InProcCollectiveGroup& operator=(const InProcCollectiveGroup&) = delete;

  int size() const { return size_; }
  int progress_width() const { return width_; }
  // Makes every current and future blocking operation throw TransportError(reason).
  void Abort(const std::string& reason);

  // One rendezvous: rank `rank` deposits `mine`; once every rank has, returns every rank's
  // deposit to callers with `read_all`, an empty vector to the others. Blocking.
  std::vector<std::string> Exchange(int rank, std::string mine, bool read_all);

  void Post(int rank, std::span<const double> counters);
  std::vector<double> Latest();

 private:
  const int size_;
  const int width_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> slots_;
  int arrived_ = 0;
  int leaving_ = 0;        // ranks still to read the completed exchange
  bool draining_ = false;  // a completed exchange is being read
  std::string abort_reason_;
  std::mutex progress_mu_;
  std::vector<double> latest_;
};

// One worker thread's view of an InProcCollectiveGroup (which must outlive it).
class InProcCollectives : public Collectives {
 public:
  InProcCollectives(InProcCollectiveGroup* group, int rank) : group_(group), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }
  void Barrier() override { group_->Exchange(rank_, std::string(), false); }
  std::vector<double> Gather(std::span<const double> mine) override;
  std::vector<float> GatherV(std::span<const float> mine) override;
  std::vector<std::string> GatherBytes(const std::string& mine) override;
  void AllReduce(std::span<std::uint64_t> values, ReduceOp op) override;
  void Broadcast(std::string* bytes) override;
  void PostProgress(std::span<const double> counters) override;
  std::vector<double> LatestProgress() override { return group_->Latest(); }
  // In-process posts are visible at once: only the synchronisation remains.
  void FinishProgress() override { Barrier(); }

 private:
  InProcCollectiveGroup* group_;
  int rank_;
};

}  // namespace fmps
