// Worker: trains the FM on a stream of minibatches through a KVClient. It never sees ranks
// or threads: the same class runs as a thread in single-node mode and as an MPI rank.
//
// Per minibatch: a BatchPrefetcher thread reads the rows and deduplicates their keys ahead
// of time; the worker pulls the unique keys, computes loss and gradients in O(k * nnz) and
// pushes the gradients (with occurrence counts when min_count > 1), summed over the batch's
// rows or, with key_mean, averaged per key over the rows holding it.
//  * async: at most max_delay batches are in flight (pulled but not yet acknowledged as
//    applied); with max_delay >= 2 the pull of the next batch overlaps the computation of
//    the current one (so it misses that one batch's update). Since each server applies a
//    worker's requests in order, a larger max_delay adds no staleness of the worker's own:
//    it only lets acknowledgements arrive later, so the worker never waits for them.
//  * bsp: one push per step to every server, waited for before the next pull; an exhausted
//    worker keeps pushing empty steps until no worker has data.
//
// Thread safety: one thread per Worker. `progress` counters may be read concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/comm/kv.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/model/model_kernel.h"
#include "common/model/model_shape.h"
#include "worker/batch_prefetcher.h"
#include "worker/divergence.h"
#include "worker/gradient_scale.h"  // DivideByCounts, DivideBySqrtCounts

namespace fmps {

struct WorkerOptions {
  ModelShape shape;  // picks the ModelKernel, once
  Loss loss = Loss::kLogistic;
  int batch_size = 1024;
  Consistency consistency = Consistency::kAsync;
  int max_delay = 4;
  bool send_counts = false;  // min_count > 1
  // optimizer.gradient. kKeyMean: push each key's gradient divided by its occurrence count in
  // the batch (the bias: by the number of rows), i.e. a mean per key instead of a sum;
  // kKeySqrt: divided by the count's square root.
  GradientScale gradient = GradientScale::kSum;
};

// One worker's live counters, updated after every batch, readable from other threads.
struct Progress {
  std::atomic<std::uint64_t> rows{0};
  std::atomic<double> loss_sum{0.0};    // training loss of those rows (before update)
  std::atomic<std::uint64_t> bytes{0};  // of the shard consumed this epoch
  // The worker's KVClient statistics (see KVStats).
  std::atomic<std::uint64_t> pulls{0};
  std::atomic<std::uint64_t> pushes{0};
  std::atomic<double> pull_seconds{0.0};
  std::atomic<double> push_seconds{0.0};

  KVStats kv() const {
    return {pulls.load(), pushes.load(), pull_seconds.load(), push_seconds.load()};
  }
};

class Worker {
 public:
  // Called at a batch boundary once a server asked for a checkpoint cut (DataFlag::kCut) and all
  // of this worker's pushes are applied, with the byte ranges still to read after the last
  // trained batch (empty when the shard is finished). Returns when training may go on.
  using CutHandler = std::function<void(const std::vector<ByteRange>& remaining)>;

  // client must outlive the worker; its shape must be options.shape (else
  // std::invalid_argument). Throws ModelError for an invalid shape.
  Worker(const WorkerOptions& options, KVClient* client);

  void set_cut_handler(CutHandler handler) { cut_handler_ = std::move(handler); }

  // One pass over the reader's remaining rows. Adds to *progress as it goes and calls
  // after_batch (if set) after each batch (bsp: each step). Throws NumericError when the
  // training loss diverges (DivergenceGuard, also consulted at the end and at every cut).
  void TrainEpoch(RowSource* reader, Progress* progress,
                  const std::function<void()>& after_batch = nullptr);

  // Scores every remaining row of `reader` against the servers' current model (no row is
  // created on the servers); appends raw scores and labels.
  void Score(RowSource* reader, std::vector<float>* scores, std::vector<float>* labels);

 private:
  void TrainAsync(RowSource* reader, Progress* progress, const std::function<void()>& hook);
  void TrainBsp(RowSource* reader, Progress* progress, const std::function<void()>& hook);
  // Issues the pull of batch b's unique keys into *params (keep_rows: see PullRequest).
  Timestamp PullFor(const PreparedBatch& b, bool create, std::vector<float>* params,
                    bool keep_rows = false);
  // Gradients of batch b given its pulled params (into grads_); returns the loss sum.
  // Throws NumericError when training diverges (see DivergenceGuard).
  double ComputeGradients(const PreparedBatch& b, const std::vector<float>& params);
  // Pushes grads_ for batch b's keys (bsp, kept_pull: see PushRequest).
  Timestamp PushFor(const PreparedBatch& b, std::optional<BspStep> bsp,
                    std::optional<Timestamp> kept_pull = std::nullopt);
  // Publishes a finished batch to *progress.
  void Publish(std::size_t rows, double loss, std::uint64_t bytes, Progress* progress) const;

  // What training batches need: occurrence counts (send_counts or a per-key scaling) and the
  // per-key scaling's plan.
  PrefetchOptions TrainingBatches() const;
  // Runs the cut handler (if any) and clears the pending cut.
  void Cut(const std::vector<ByteRange>& remaining);

  WorkerOptions options_;
  KVClient* client_;
  std::unique_ptr<const ModelKernel> kernel_;
  CutHandler cut_handler_;
  bool cut_pending_ = false;
  std::int64_t bsp_step_ = 0;
  std::vector<float> params_[2];  // pull destinations: current and next batch
  std::vector<float> grads_;
  DivergenceGuard divergence_;
};

}  // namespace fmps
