#include "worker/batch_prefetcher.h"

#include <algorithm>

#include "common/base/types.h"

namespace fmps {

void PreparedBatch::Deduplicate(KeyIndex* index, bool count) {
  const std::size_t nnz = block.nnz();
  index->Clear();
  index->Insert(kBiasKey);
  local.resize(nnz);
  index->InsertMany(block.keys.data(), nnz, local.data());
  const auto unique = index->keys();
  keys.assign(unique.begin(), unique.end());
  counts.clear();
  if (!count) return;
  counts.resize(keys.size(), 0u);
  counts[0] = static_cast<std::uint32_t>(block.rows());
  for (const std::uint32_t u : local) ++counts[u];
}

BatchPrefetcher::BatchPrefetcher(RowSource* reader, int batch_size, int depth, bool count)
    : reader_(reader),
      batch_size_(batch_size),
      depth_(static_cast<std::size_t>(depth)),
      count_(count) {
  // depth ready + one being filled + two held by the consumer (current and next).
  for (int i = 0; i < depth + 3; ++i) {
    pool_.push_back(std::make_unique<PreparedBatch>());
    free_.push_back(pool_.back().get());
  }
  thread_ = std::thread([this] { Run(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void BatchPrefetcher::Run() {
  try {
    while (true) {
      PreparedBatch* b = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (!free_.empty() && ready_.size() < depth_); });
        if (stop_) return;
        b = free_.front();
        free_.pop_front();
      }
      b->block.Clear();
      const bool any = reader_->Read(batch_size_, &b->block) > 0;
      if (any) {
        b->Deduplicate(&index_, count_);
        b->bytes_consumed = reader_->bytes_consumed();
        reader_->Remaining(&b->remaining);  // reuses the pooled batch's capacity
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (any) {
          ready_.push_back(b);
        } else {
          free_.push_back(b);
          done_ = true;
        }
      }
      cv_.notify_all();
      if (!any) return;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::current_exception();
    done_ = true;
    cv_.notify_all();
  }
}

PreparedBatch* BatchPrefetcher::Next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty() || done_; });
  if (!ready_.empty()) {
    PreparedBatch* b = ready_.front();
    ready_.pop_front();
    lock.unlock();
    // A ready slot is free: a producer waiting for one may go on (without this it waited
    // for the next Release, and a consumer holding two batches at depth 1 deadlocked).
    cv_.notify_all();
    return b;
  }
  if (error_) std::rethrow_exception(error_);
  return nullptr;
}

void BatchPrefetcher::Release(PreparedBatch* batch) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(batch);
  }
  cv_.notify_all();
}

}  // namespace fmps
