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
  return v;
}

// Batches the prefetcher reads ahead of the worker.
constexpr int kPrefetchDepth = 2;

// 1 / c for the counts most keys have (kReciprocals[0] = [1] = 1: those rows are multiplied
// by 1, which leaves every float as it is). Computed at compile time with the same IEEE
// division the run-time fallback does, so both give the same bits.
constexpr std::uint32_t kReciprocalTable = 1024;
constexpr std::array<float, kReciprocalTable> kReciprocals = [] {
  std::array<float, kReciprocalTable> r{};
  r[0] = 1.0f;
  for (std::uint32_t c = 1; c < kReciprocalTable; ++c) r[c] = 1.0f / static_cast<float>(c);
  return r;
}();

// 1 / sqrt(c) for the same counts (key_sqrt); [0] = [1] = 1.
const std::array<float, kReciprocalTable> kReciprocalSqrts = [] {
  std::array<float, kReciprocalTable> r{};
  r[0] = 1.0f;
  for (std::uint32_t c = 1; c < kReciprocalTable; ++c)
    r[c] = 1.0f / std::sqrt(static_cast<float>(c));
  return r;
}();

// What DivideByCounts and DivideBySqrtCounts multiply a key's row by.
struct Reciprocal {
  float operator()(std::uint32_t c) const {
    return c < kReciprocalTable ? kReciprocals[c] : 1.0f / static_cast<float>(c);
  }
};
struct ReciprocalSqrt {
  float operator()(std::uint32_t c) const {
    return c < kReciprocalTable ? kReciprocalSqrts[c] : 1.0f / std::sqrt(static_cast<float>(c));
  }
};

// Multiplies key u's row by inv(counts[u]), for a row width known at compile time (kWidth >
// 0) or not (0): with a constant width the row is a fixed sequence of vector multiplies.
template <int kWidth, class Inv>
void ScaleRowsOf(std::span<const std::uint32_t> counts, int width, float* __restrict grads) {
  const std::size_t w =
      kWidth > 0 ? static_cast<std::size_t>(kWidth) : static_cast<std::size_t>(width);
  const Inv inv_of;
  for (const std::uint32_t c : counts) {
    const float inv = inv_of(c);
    for (std::size_t j = 0; j < w; ++j) grads[j] *= inv;
    grads += w;
  }
}

// Every row is scaled, by 1 where the count is 0 or 1: a branch on the count mispredicted
// about half the time and, with a division per counted key, cost more than the multiplies.
// The FM's row widths 1 + k for the common k get a loop of constant width.
template <class Inv>
void ScaleRows(std::span<const std::uint32_t> counts, int width, float* grads) {
  switch (width) {
    case 5:
      return ScaleRowsOf<5, Inv>(counts, width, grads);
    case 9:
      return ScaleRowsOf<9, Inv>(counts, width, grads);
    case 17:
      return ScaleRowsOf<17, Inv>(counts, width, grads);
    case 33:
      return ScaleRowsOf<33, Inv>(counts, width, grads);
    default:
      return ScaleRowsOf<0, Inv>(counts, width, grads);
  }
}

}  // namespace

void DivideByCounts(std::span<const std::uint32_t> counts, int width, float* grads) {
  ScaleRows<Reciprocal>(counts, width, grads);
}

void DivideBySqrtCounts(std::span<const std::uint32_t> counts, int width, float* grads) {
  ScaleRows<ReciprocalSqrt>(counts, width, grads);
}

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
  grads_.assign(n, 0.0f);
  const double loss = kernel_->ForwardBackward(View(b), params.data(), grads_.data(), nullptr);
  divergence_.Add(b.block.rows(), loss, b.block.labels.data());  // throws NumericError
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
  BatchPrefetcher prefetcher(reader, options_.batch_size, kPrefetchDepth, counted());
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
  BatchPrefetcher prefetcher(reader, options_.batch_size, kPrefetchDepth, counted());
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
  BatchPrefetcher prefetcher(reader, options_.batch_size, kPrefetchDepth, /*count=*/false);
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
