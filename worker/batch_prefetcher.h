// BatchPrefetcher: reads and prepares minibatches on its own thread, ahead of the worker.
//
// A prepared batch holds the rows (CSR), their unique keys (the bias key first), each
// non-zero's index into those keys, each key's occurrence count and, for a per-key gradient
// scaling, its plan (the factors and where each key is last used): everything the worker
// needs before it can pull, computed off the worker's thread. At most `depth` batches wait
// ready; batches are recycled through a fixed pool, so steady state allocates nothing.
//
// Thread safety: Next/Release are called by one consumer thread. The reader is used only by
// the prefetch thread between construction and destruction (or the end of the shard).
// Errors of the prefetch thread (bad rows under on_error: fail, I/O) are rethrown by Next().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/base/key_index.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"
#include "common/model/model_kernel.h"

namespace fmps {

struct PreparedBatch {
  RowBlock block;
  std::vector<Key> keys;              // unique keys in first-occurrence order; keys[0] = kBiasKey
  std::vector<std::uint32_t> local;   // per non-zero: index into keys
  std::vector<std::uint32_t> counts;  // per unique key: occurrences (bias: rows), if counted
  std::uint64_t bytes_consumed = 0;   // reader position after this batch (progress)
  // The reader's position after this batch (RowSource::Remaining()): the ranges still to
  // read once this batch's rows have been trained, for checkpoints.
  std::vector<ByteRange> remaining;

  // The per-key gradient scaling (RowScaling) when planned, else empty: factors per key
  // (ScaleFactors), and the keys (never the bias) by the row of their last occurrence: row
  // r's are last_ids[last_offsets[r] .. last_offsets[r + 1]). Planned only for a table the
  // kernel zeroes and scales row by row (FoldsGradRows); a smaller one is scaled after the
  // kernel (DivideByCounts, DivideBySqrtCounts), which costs less there.
  std::vector<float> scale_factors;
  std::vector<std::uint32_t> last_offsets;  // rows + 1
  std::vector<std::uint32_t> last_ids;      // keys.size() - 1
  std::vector<std::uint8_t> seen;           // PlanScaling's scratch, per key

  // Fills keys/local (and counts if `count`, else leaves it empty) from block. `index` is
  // scratch (cleared first): one index reused for every batch stays in the cache, where a
  // table per batch would not (~0.5 MB each). The local ids are in first-occurrence order
  // (the bias 0, then each new key the next id), which ModelKernel::ForwardBackward's cost
  // relies on (model_kernel.h).
  void Deduplicate(KeyIndex* index, bool count = true);

  // Plans `gradient`'s per-key scaling (kKeyMean, kKeySqrt; kSum and kAuto: none) from
  // local and counts (Deduplicate with count first) for a model of `row_width` floats per
  // key, where FoldsGradRows(keys, row_width) (else none). O(nnz + keys + rows), no
  // allocation in steady state.
  void PlanScaling(GradientScale gradient, int row_width);

  // The plan as the kernel takes it (no scaling when none is planned).
  RowScaling scaling() const;
};

// What a BatchPrefetcher prepares.
struct PrefetchOptions {
  int batch_size = 1024;
  int depth = 2;  // batches waiting ready at most
  // Fill each batch's occurrence counts (min_count > 1 and the per-key scalings need them).
  bool count = true;
  // The per-key scaling each batch gets planned (PlanScaling); needs count and row_width.
  GradientScale gradient = GradientScale::kSum;
  int row_width = 0;  // the model's (ModelShape::row_width)
};

class BatchPrefetcher {
 public:
  // Starts the prefetch thread on `reader` (which must outlive this object).
  BatchPrefetcher(RowSource* reader, const PrefetchOptions& options);
  // Stops and joins the thread (abandoning the rest of the shard).
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  // The next batch, or nullptr when the shard is exhausted. Blocks until one is ready.
  // The batch stays valid until passed to Release().
  PreparedBatch* Next();
  void Release(PreparedBatch* batch);

 private:
  void Run();

  RowSource* reader_;
  PrefetchOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<PreparedBatch>> pool_;
  std::deque<PreparedBatch*> free_;
  std::deque<PreparedBatch*> ready_;
  bool done_ = false;  // reader exhausted (or failed)
  bool stop_ = false;  // consumer going away
  std::exception_ptr error_;
  KeyIndex index_;  // Deduplicate's scratch; used only by the prefetch thread
  std::thread thread_;
};

}  // namespace fmps
