// BatchPrefetcher (worker/batch_prefetcher.h): delivery order and progress under the
// consumer pattern of the async worker.
#include "worker/batch_prefetcher.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/data/reader.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

// BatchPrefetcher at depths 1..3, consumed as TrainAsync does (the next batch taken before
// the current one is released): every row arrives once, in order, and nothing hangs. Next()
// must wake a producer that waits for a free ready slot; without that, a depth-1 consumer
// holding two batches waited forever. Repeated, since the hang needs the producer to be
// waiting at the moment Next() takes a batch.
TEST(BatchPrefetcherTest, DeliversEveryRowWhileTheConsumerHoldsTwoBatches) {
  TempDir dir;
  const int rows = 50;
  std::string text;
  std::vector<float> want;
  for (int i = 0; i < rows; ++i) {
    text += std::to_string(i % 3 == 0 ? 1 : 0) + " " + std::to_string(i + 1) + ":1\n";
    want.push_back(i % 3 == 0 ? 1.0f : 0.0f);
  }
  const std::string path = dir.Write("rows.libsvm", text);
  FeatureSpec spec;
  spec.data.format = DataFormat::kLibsvm;
  for (int depth = 1; depth <= 3; ++depth) {
    for (int rep = 0; rep < 20; ++rep) {
      SCOPED_TRACE("depth " + std::to_string(depth) + ", repetition " + std::to_string(rep));
      auto reader = std::make_unique<ShardReader>(spec, std::vector<std::string>{path}, 0, 1);
      auto prefetcher = std::make_unique<BatchPrefetcher>(
          reader.get(), PrefetchOptions{.batch_size = 3, .depth = depth, .count = true});
      std::vector<float> labels;
      std::promise<void> finished;
      std::future<void> done = finished.get_future();
      std::thread consumer([&] {
        PreparedBatch* cur = prefetcher->Next();
        while (cur != nullptr) {
          PreparedBatch* next = prefetcher->Next();
          labels.insert(labels.end(), cur->block.labels.begin(), cur->block.labels.end());
          prefetcher->Release(cur);
          cur = next;
        }
        finished.set_value();
      });
      if (done.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
        consumer.detach();  // blocked in Next() for good: leave it and what it uses
        (void)prefetcher.release();
        (void)reader.release();
        FAIL() << "the consumer is stuck in Next()";
      }
      consumer.join();
      EXPECT_EQ(labels, want);
    }
  }
}

}  // namespace
}  // namespace fmps
