// Load and skew under MPI: 1 server and 6 workers (7 ranks, oversubscribed), async with
// train.max_delay 4, on data where a few keys are in every row. The job must finish (no
// deadlock: cluster.timeout_seconds turns a hang into a failure), keep every worker within
// max_delay requests in flight, and apply every push exactly once: the workers' and the
// server's counts must agree, and each hot key's Adam step counter (saved in the epoch-end
// checkpoint) must equal the number of pushes, since every push carries every hot key.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "common/config/config.h"
#include "common/data/synth.h"
#include "server/store/checkpoint_shard.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"
#include "tests/util/test_util.h"
#include "worker/job/job.h"

namespace fmps {
namespace {

using testing::FmpsBinary;
using testing::JsonNumber;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

constexpr int kWorkers = 6;
constexpr int kMaxDelay = 4;
constexpr std::uint64_t kRows = 400000;  // per epoch
constexpr int kEpochs = 2;
constexpr int kBatch = 32;
constexpr Key kHotKeys[] = {900000001, 900000002, 900000003, 900000004};

// Copies the libsvm file `in` to `out`, appending every hot key (value 1) to every row.
void AddHotKeys(const std::string& in, const std::string& out) {
  std::ifstream src(in);
  std::ofstream dst(out);
  std::string line;
  while (std::getline(src, line)) {
    dst << line;
    for (Key k : kHotKeys) dst << ' ' << k << ":1";
    dst << '\n';
  }
  ASSERT_TRUE(dst.good()) << out;
}

TEST(MpiLoadTest, SkewedKeysOnSixWorkersApplyEveryPushOnce) {
  TempDir dir;
  SynthOptions o;
  o.out_dir = dir.File("synth");
  o.rows = kRows;
  o.test_rows = 100;
  o.fields = 8;
  o.vocab = 4000;
  o.k = 4;
  o.seed = 5;
  const SynthResult synth = Synthesize(o);
  const std::string train = dir.File("hot.libsvm");
  AddHotKeys(synth.train_path, train);
  const std::string ckpt = dir.File("ckpt");
  std::string yaml = "data:\n  train: " + train + "\n  format: libsvm\nmodel:\n  k: 4\n";
  yaml += "optimizer:\n  name: adam\n  lr: 0.01\n";
  yaml += "train:\n  epochs: " + std::to_string(kEpochs);
  yaml += "\n  batch_size: " + std::to_string(kBatch);
  yaml += "\n  consistency: async\n  max_delay: " + std::to_string(kMaxDelay);
  // A hang fails the job within a minute instead of waiting for ctest's timeout.
  yaml += "\ncluster:\n  servers: 1\n  timeout_seconds: 60\n";
  // Checkpoints only at epoch ends (the last one is read below).
  yaml += "checkpoint:\n  dir: " + ckpt + "\n  every_seconds: 3600\n";
  yaml += "output:\n  dir: " + dir.File("run") + "\n";
  const std::string cfg = dir.Write("load.yaml", yaml);
  std::string log;
  const auto start = std::chrono::steady_clock::now();
  const int rc = RunCommand(
      "mpirun --allow-run-as-root --oversubscribe --bind-to none --mca mpi_yield_when_idle 1 "
      "-np " +
          std::to_string(1 + kWorkers) + " " + FmpsBinary() + " train " + cfg,
      &log);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(rc, 0) << log;
  const std::string summary = ReadFile(dir.File("run/summary.json"));
  EXPECT_EQ(JsonNumber(summary, "workers"), kWorkers);
  EXPECT_EQ(JsonNumber(summary, "rows_trained"), kEpochs * kRows);

  // Exactly once, by count: what the workers sent is what the server received and applied.
  const double sent = JsonNumber(summary, "pushes_sent");
  const double keys_sent = JsonNumber(summary, "push_keys_sent");
  EXPECT_GE(sent, kEpochs * kRows / kBatch);  // at least one push per batch
  EXPECT_EQ(JsonNumber(summary, "pushes_received"), sent);
  EXPECT_EQ(JsonNumber(summary, "push_rows_rejected"), 0);
  EXPECT_EQ(JsonNumber(summary, "push_keys_applied"), keys_sent);
  // The bound on requests in flight (what caps the server's queue): max_delay per worker.
  const double in_flight = JsonNumber(summary, "max_in_flight");
  EXPECT_GE(in_flight, 2);  // pulls overlapped pushes
  EXPECT_LE(in_flight, kMaxDelay);
  // Server memory: the store is tiny (4005 keys, 0.6 MB); the rest is the process itself,
  // MPI and the requests in flight (at most 6 * 4, each under 32 rows * 13 keys * 48
  // bytes = 20 KB). Measured: 20 MB. Holding every push of an epoch would take 50 MB more.
  const double rss_mb = JsonNumber(summary, "server_peak_rss_mb");
  EXPECT_GT(rss_mb, 0);
  EXPECT_LT(rss_mb, 64) << "server peak RSS";

  // Exactly once, by effect: every push carried every hot key and the bias, and each push
  // applied advances their Adam step counter by one; the epoch-end checkpoint saved them.
  const Config config = LoadConfig(cfg, {});
  ParamStore store(MakeStoreOptions(config), MakeOptimizer(config.optimizer));
  std::filesystem::path shard;  // of the newest complete checkpoint: the last epoch's end
  for (const auto& e : std::filesystem::directory_iterator(ckpt)) {
    const std::filesystem::path candidate = e.path() / ShardFileName(0);
    if (std::filesystem::exists(e.path() / "MANIFEST") && (shard.empty() || candidate > shard)) {
      shard = candidate;
    }
  }
  ASSERT_FALSE(shard.empty()) << "no complete checkpoint in " << ckpt;
  LoadShardFile(shard.string(), nullptr, &store, {});
  const StoreSnapshot snap = store.Snapshot();
  std::map<Key, std::uint32_t> steps;
  for (std::size_t i = 0; i < snap.size(); ++i) {
    const KeyRecord r = snap.record(i);
    if (r.key == kBiasKey || std::count(std::begin(kHotKeys), std::end(kHotKeys), r.key)) {
      steps[r.key] = r.step_w;
    }
  }
  ASSERT_EQ(steps.size(), std::size(kHotKeys) + 1);
  for (const auto& [key, step] : steps) EXPECT_EQ(step, sent) << "key " << key;

  const double rows_per_s = JsonNumber(summary, "rows_per_s");
  std::printf(
      "load: 1 server + %d workers, max_delay %d, batch %d: %llu rows at %.0f rows/s while "
      "training (mpirun "
      "%.1f s); %.0f pushes sent = received = hot-key Adam steps, %.0f "
      "keys applied; max %.0f requests in flight per worker; server peak RSS %.1f MB\n",
      kWorkers, kMaxDelay, kBatch, static_cast<unsigned long long>(kEpochs * kRows), rows_per_s,
      seconds, sent, keys_sent, in_flight, rss_mb);
  RecordProperty("rows_per_s", std::to_string(rows_per_s));
}

}  // namespace
}  // namespace fmps
