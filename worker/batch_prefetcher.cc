#include "worker/batch_prefetcher.h"

#include <algorithm>
#include <stdexcept>

#include "common/base/types.h"
#include "worker/gradient_scale.h"

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

void PreparedBatch::PlanScaling(GradientScale gradient, int row_width) {
  scale_factors.clear();
  last_offsets.clear();
  last_ids.clear();
  if (gradient != GradientScale::kKeyMean && gradient != GradientScale::kKeySqrt) return;
  if (counts.size() != keys.size()) {
    throw std::logic_error("PreparedBatch::PlanScaling: the batch was not counted");
  }
  if (!FoldsGradRows(keys.size(), static_cast<std::size_t>(row_width))) return;
  ScaleFactors(gradient, counts, &scale_factors);
  // Backwards over the rows: a key's first sighting is its last occurrence; each row's keys
  // are written just below the later rows' (from the end of last_ids).
  const std::size_t rows = block.rows();
  seen.assign(keys.size(), 0);
  last_offsets.resize(rows + 1);
  last_ids.resize(keys.size() - 1);
  std::size_t pos = last_ids.size();
  for (std::size_t r = rows; r-- > 0;) {
    last_offsets[r + 1] = static_cast<std::uint32_t>(pos);
    for (std::size_t j = block.offsets[r + 1]; j-- > block.offsets[r];) {
      const std::uint32_t u = local[j];
      if (seen[u] == 0) last_ids[--pos] = u;
      seen[u] = 1;
    }
  }
  last_offsets[0] = static_cast<std::uint32_t>(pos);
  if (pos != 0) throw std::logic_error("PreparedBatch::PlanScaling: a key occurs in no row");
}

RowScaling PreparedBatch::scaling() const {
  if (scale_factors.empty()) return {};
  return {scale_factors.data(), last_offsets.data(), last_ids.data()};
}

BatchPrefetcher::BatchPrefetcher(RowSource* reader, const PrefetchOptions& options)
    : reader_(reader), options_(options) {
  // depth ready + one being filled + two held by the consumer (current and next).
  for (int i = 0; i < options.depth + 3; ++i) {
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
        cv_.wait(lock, [&] {
          return stop_ ||
                 (!free_.empty() && ready_.size() < static_cast<std::size_t>(options_.depth));
        });
        if (stop_) return;
        b = free_.front();
        free_.pop_front();
      }
      b->block.Clear();
      const bool any = reader_->Read(options_.batch_size, &b->block) > 0;
      if (any) {
        b->Deduplicate(&index_, options_.count);
        b->PlanScaling(options_.gradient, options_.row_width);
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
