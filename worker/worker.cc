#include "worker/worker.h"

#include <array>
#include <cmath>
#include <deque>
#include <stdexcept>
#include <utility>

#include "common/base/error.h"
#include "common/base/huge_pages.h"
#include "common/base/types.h"

namespace fmps {

namespace {

void AtomicAdd(std::atomic<double>* a, double d) {
  double cur = a->load(std::memory_order_relaxed);
  while (!a->compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

ModelBatch View(const PreparedBatch& b) {
  ModelBatch v;
  v.rows = b.block.rows();
  v.labels = b.block.labels.data();
  v.offsets = b.block.offsets.data();
  v.local = b.local.data();
  v.values = b.block.values.data();
  v.fields = b.block.fields.data();
  v.scaling = b.scaling();
  return v;
}

// Batches the prefetcher reads ahead of the worker.
constexpr int kPrefetchDepth = 2;

}  // namespace

Worker::Worker(const WorkerOptions& options, KVClient* client)
    : options_(options),
      client_(client),
      kernel_(MakeKernel(options.shape, options.loss)),
      divergence_(options.loss) {
  if (client->row_width() != options.shape.row_width()) {
    throw std::invalid_argument("Worker: the KVClient's model shape differs from the worker's");
  }
}

void Worker::Publish(std::size_t rows, double loss, std::uint64_t bytes, Progress* progress) const {
  progress->rows.fetch_add(rows, std::memory_order_relaxed);
  progress->bytes.store(bytes, std::memory_order_relaxed);
  AtomicAdd(&progress->loss_sum, loss);
  const KVStats& s = client_->stats();
  progress->pulls.store(s.pulls, std::memory_order_relaxed);
  progress->pushes.store(s.pushes, std::memory_order_relaxed);
  progress->pull_seconds.store(s.pull_seconds, std::memory_order_relaxed);
  progress->push_seconds.store(s.push_seconds, std::memory_order_relaxed);
}

Timestamp Worker::PullFor(const PreparedBatch& b, bool create, std::vector<float>* params,
                          bool keep_rows) {
  return client_->Pull({.keys = b.keys, .create = create, .keep_rows = keep_rows}, params);
}

double Worker::ComputeGradients(const PreparedBatch& b, const std::vector<float>& params) {
  const std::size_t n = b.keys.size() * static_cast<std::size_t>(options_.shape.row_width());
  ReserveHugeFloats(&grads_, n);  // read and written at random by the kernel
  // Not zeroed (zero-filled only where it grows past its old size): the kernel writes every
  // row, b's local ids being 0 .. keys - 1, and scales them per key where the prefetcher
  // planned it (PreparedBatch::PlanScaling; else below, over the finished table).
  grads_.resize(n);
  const double loss = kernel_->ForwardBackward(View(b), params.data(), grads_.data(), nullptr);
  divergence_.Add(b.block.rows(), loss, b.block.labels.data());  // throws NumericError
  if (!b.scale_factors.empty()) return loss;  // the kernel scaled each row at its last use
  if (options_.gradient == GradientScale::kKeyMean) {
    DivideByCounts(b.counts, options_.shape.row_width(), grads_.data());
  } else if (options_.gradient == GradientScale::kKeySqrt) {
    DivideBySqrtCounts(b.counts, options_.shape.row_width(), grads_.data());
  }
  return loss;
}

Timestamp Worker::PushFor(const PreparedBatch& b, std::optional<BspStep> bsp,
                          std::optional<Timestamp> kept_pull) {
  const std::span<const std::uint32_t> counts = options_.send_counts
                                                    ? std::span<const std::uint32_t>(b.counts)
                                                    : std::span<const std::uint32_t>();
  return client_->Push({.keys = b.keys, .counts = counts, .bsp = bsp, .kept_pull = kept_pull},
                       &grads_);
}

void Worker::Cut(const std::vector<ByteRange>& remaining) {
  cut_pending_ = false;
  divergence_.CheckPartial();  // never checkpoint a model that has just diverged
  if (cut_handler_) cut_handler_(remaining);
}

PrefetchOptions Worker::TrainingBatches() const {
  return {.batch_size = options_.batch_size,
          .depth = kPrefetchDepth,
          .count = options_.send_counts || options_.gradient != GradientScale::kSum,
          .gradient = options_.gradient,
          .row_width = options_.shape.row_width()};
}

void Worker::TrainEpoch(RowSource* reader, Progress* progress,
                        const std::function<void()>& after_batch) {
  if (options_.consistency == Consistency::kBsp) {
    TrainBsp(reader, progress, after_batch);
  } else {
    TrainAsync(reader, progress, after_batch);
  }
  divergence_.CheckPartial();  // before the epoch's checkpoint and model
}

void Worker::TrainAsync(RowSource* reader, Progress* progress, const std::function<void()>& hook) {
  BatchPrefetcher prefetcher(reader, TrainingBatches());
  std::deque<Timestamp> pushes;  // unacknowledged, oldest first
  // Waits for the oldest pushes until at most `limit` remain in flight.
  auto settle = [&](int limit) {
    while (static_cast<int>(pushes.size()) > limit) {
      cut_pending_ |= client_->Wait(pushes.front()).cut;
      pushes.pop_front();
    }
  };
  const int max_delay = options_.max_delay;
  PreparedBatch* cur = prefetcher.Next();
  std::optional<Timestamp> cur_pull;
  int slot = 0;  // params_[slot] holds cur's parameters
  while (cur != nullptr) {
    if (!cur_pull) {
      settle(max_delay - 1);  // cur itself is the one more batch in flight
      cur_pull = PullFor(*cur, /*create=*/true, &params_[slot], /*keep_rows=*/true);
    }
    client_->Wait(*cur_pull);
    // Overlap: pull the next batch now if the bound allows (cur and next both in flight).
    PreparedBatch* next = prefetcher.Next();
    std::optional<Timestamp> next_pull;
    if (next != nullptr && max_delay >= 2) {
      settle(max_delay - 2);
      next_pull = PullFor(*next, /*create=*/true, &params_[1 - slot], /*keep_rows=*/true);
    }
    const double loss = ComputeGradients(*cur, params_[slot]);
    pushes.push_back(PushFor(*cur, /*bsp=*/std::nullopt, /*kept_pull=*/*cur_pull));
    Publish(cur->block.rows(), loss, cur->bytes_consumed, progress);
    if (cut_pending_) {  // checkpoint: quiesce after this batch
      settle(0);
      Cut(cur->remaining);
    }
    prefetcher.Release(cur);
    if (hook) hook();
    cur = next;
    cur_pull = next_pull;
    slot = 1 - slot;
  }
  settle(0);
  if (cut_pending_) Cut({});
  Publish(0, 0.0, progress->bytes.load(), progress);
}

void Worker::TrainBsp(RowSource* reader, Progress* progress, const std::function<void()>& hook) {
  BatchPrefetcher prefetcher(reader, TrainingBatches());
  PreparedBatch empty;  // what an exhausted worker pushes: no keys
  while (true) {
    PreparedBatch* b = prefetcher.Next();
    const bool has_data = b != nullptr;
    double loss = 0.0;
    if (has_data) {
      client_->Wait(PullFor(*b, /*create=*/true, &params_[0]));
      loss = ComputeGradients(*b, params_[0]);
    } else {
      grads_.clear();
    }
    const WaitResult r = client_->Wait(
        PushFor(has_data ? *b : empty, BspStep{.step = bsp_step_, .has_data = has_data}));
    ++bsp_step_;
    if (has_data) {
      Publish(b->block.rows(), loss, b->bytes_consumed, progress);
    } else {
      Publish(0, 0.0, progress->bytes.load(), progress);
    }
    if (r.cut) Cut(has_data ? b->remaining : std::vector<ByteRange>{});
    if (has_data) prefetcher.Release(b);
    if (hook) hook();
    if (!r.any_had_data) break;
  }
}

void Worker::Score(RowSource* reader, std::vector<float>* scores, std::vector<float>* labels) {
  BatchPrefetcher prefetcher(
      reader, {.batch_size = options_.batch_size, .depth = kPrefetchDepth, .count = false});
  while (PreparedBatch* b = prefetcher.Next()) {
    client_->Wait(PullFor(*b, /*create=*/false, &params_[0]));
    const std::size_t base = scores->size();
    scores->resize(base + b->block.rows());
    kernel_->Scores(View(*b), params_[0].data(), scores->data() + base);
    labels->insert(labels->end(), b->block.labels.begin(), b->block.labels.end());
    prefetcher.Release(b);
  }
}

}  // namespace fmps
