#include "worker/worker.h"

#include <deque>

#include "common/fm.h"
#include "common/types.h"

namespace fmps {

namespace {
void AtomicAdd(std::atomic<double>* a, double d) {
  double cur = a->load(std::memory_order_relaxed);
  while (!a->compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}
}  // namespace

Worker::Worker(const WorkerOptions& options, KVClient* client)
    : options_(options), client_(client), index_(static_cast<std::size_t>(options.batch_size) * 8) {}

void Worker::Deduplicate(const RowBlock& block) {
  index_.Clear();
  counts_.clear();
  index_.Insert(kBiasKey);
  counts_.push_back(static_cast<std::uint32_t>(block.rows()));
  local_.resize(block.nnz());
  for (std::size_t i = 0; i < block.nnz(); ++i) {
    bool inserted;
    const std::uint32_t u = index_.Insert(block.keys[i], &inserted);
    if (inserted) counts_.push_back(0);
    ++counts_[u];
    local_[i] = u;
  }
}

double Worker::ComputeGradients(const RowBlock& block) {
  const std::size_t width = 1 + options_.k;
  const auto& keys = index_.keys();
  params_.resize(keys.size() * width);
  client_->Wait(client_->Pull(keys, params_.data(), /*create=*/true));
  grads_.assign(keys.size() * width, 0.0f);
  FmBatch b;
  b.rows = block.rows();
  b.labels = block.labels.data();
  b.offsets = block.offsets.data();
  b.local = local_.data();
  b.values = block.values.data();
  return FmForwardBackward(b, params_.data(), options_.k, options_.loss, grads_.data(), nullptr);
}

void Worker::Publish(std::size_t rows, double loss, const ShardReader& reader,
                     Progress* progress) const {
  progress->rows.fetch_add(rows, std::memory_order_relaxed);
  progress->bytes.store(reader.bytes_consumed(), std::memory_order_relaxed);
  AtomicAdd(&progress->loss_sum, loss);
  const KVStats& s = client_->stats();
  progress->pulls.store(s.pulls, std::memory_order_relaxed);
  progress->pushes.store(s.pushes, std::memory_order_relaxed);
  progress->pull_seconds.store(s.pull_seconds, std::memory_order_relaxed);
  progress->push_seconds.store(s.push_seconds, std::memory_order_relaxed);
}

void Worker::TrainEpoch(ShardReader* reader, Progress* progress,
                        const std::function<void()>& after_batch) {
  if (options_.consistency == Consistency::kBsp) {
    TrainBsp(reader, progress, after_batch);
  } else {
    TrainAsync(reader, progress, after_batch);
  }
}

void Worker::TrainAsync(ShardReader* reader, Progress* progress,
                        const std::function<void()>& hook) {
  std::deque<Timestamp> in_flight;
  const std::span<const std::uint32_t> no_counts;
  while (true) {
    block_.Clear();
    if (reader->Read(options_.batch_size, &block_) == 0) break;
    Deduplicate(block_);
    // Bound staleness: the pull for this batch waits until fewer than max_delay of this
    // worker's pushes are unapplied.
    while (static_cast<int>(in_flight.size()) >= options_.max_delay) {
      client_->Wait(in_flight.front());
      in_flight.pop_front();
    }
    const double loss = ComputeGradients(block_);
    in_flight.push_back(client_->Push(index_.keys(), grads_,
                                      options_.send_counts ? std::span<const std::uint32_t>(counts_)
                                                           : no_counts,
                                      0, true, false));
    Publish(block_.rows(), loss, *reader, progress);
    if (hook) hook();
  }
  while (!in_flight.empty()) {
    client_->Wait(in_flight.front());
    in_flight.pop_front();
  }
  Publish(0, 0.0, *reader, progress);
}

void Worker::TrainBsp(ShardReader* reader, Progress* progress,
                      const std::function<void()>& hook) {
  const std::span<const std::uint32_t> no_counts;
  while (true) {
    block_.Clear();
    const bool has_data = reader->Read(options_.batch_size, &block_) > 0;
    double loss = 0.0;
    if (has_data) {
      Deduplicate(block_);
      loss = ComputeGradients(block_);
    } else {
      index_.Clear();
      counts_.clear();
      grads_.clear();
    }
    const WaitResult r = client_->Wait(client_->Push(
        index_.keys(), grads_,
        options_.send_counts ? std::span<const std::uint32_t>(counts_) : no_counts, bsp_step_,
        has_data, /*to_all_servers=*/true));
    ++bsp_step_;
    Publish(has_data ? block_.rows() : 0, loss, *reader, progress);
    if (hook) hook();
    if (!r.any_had_data) break;
  }
}

void Worker::Score(ShardReader* reader, std::vector<float>* scores, std::vector<float>* labels) {
  const std::size_t width = 1 + options_.k;
  while (true) {
    block_.Clear();
    if (reader->Read(options_.batch_size, &block_) == 0) break;
    Deduplicate(block_);
    const auto& keys = index_.keys();
    params_.resize(keys.size() * width);
    client_->Wait(client_->Pull(keys, params_.data(), /*create=*/false));
    FmBatch b;
    b.rows = block_.rows();
    b.labels = block_.labels.data();
    b.offsets = block_.offsets.data();
    b.local = local_.data();
    b.values = block_.values.data();
    const std::size_t base = scores->size();
    scores->resize(base + b.rows);
    FmScores(b, params_.data(), options_.k, scores->data() + base);
    labels->insert(labels->end(), block_.labels.begin(), block_.labels.end());
  }
}

}  // namespace fmps
