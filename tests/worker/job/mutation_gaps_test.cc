// Cases that plausible one-line bugs slipped through before: occurrence counts split across
// several servers under min_count, resuming a mid-epoch checkpoint with fewer workers than
// wrote it, and bsp with three or more workers (where the order of the per-step sum shows).
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/config/config.h"
#include "common/data/synth.h"
#include "common/model/model_file.h"
#include "server/store/param_store.h"
#include "tests/util/test_util.h"
#include "worker/job/checkpoint.h"
#include "worker/job/local_trainer.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::MaxAbsDiff;
using testing::TempDir;

Config Make(const std::string& train, const std::string& test, const std::string& out,
            const std::string& body, const std::vector<std::string>& sets) {
  return ParseConfig("data:\n  train: " + train + "\n  test: " + test + "\n  format: libsvm\n" +
                         body + "output:\n  dir: " + out + "\n",
                     "gaps.yaml", sets);
}

// --- min_count with the counts of one push split across 2 and 3 servers ---------------

constexpr int kBatch = 16;

// 320 rows (20 batches) over ids 1..40 whose frequencies differ, so that one batch's counts
// differ from key to key, and ids 201..220 that reach a small min_count in every possible
// batch. Returns the rows' ids.
std::vector<std::vector<Key>> CountRows(std::string* text) {
  std::vector<std::vector<Key>> rows;
  unsigned x = 7;
  auto next = [&] { return x = x * 1103515245u + 12345u, (x >> 16) & 0x7fff; };
  for (int i = 0; i < 320; ++i) {
    std::vector<Key> ids;
    for (Key id = 1; id <= 40; ++id) {
      if (next() % 40 < 41 - id) ids.push_back(id);  // id 1: always; id 40: 1 in 40
    }
    // Key 200 + n (n = 1..20) occurs once in each of the batches 0 .. n-1.
    for (int n = 1; n <= 20; ++n) {
      if (i % kBatch == 0 && i / kBatch < n) ids.push_back(200 + n);
    }
    *text += next() % 2 ? '1' : '0';
    for (Key id : ids) {
      *text += ' ';
      *text += std::to_string(id);
      *text += ":1";
    }
    *text += '\n';
    rows.push_back(ids);
  }
  return rows;
}

// A key gets v exactly when its count reaches min_count: never before (v = 0 while it has
// none), and at the batch that reaches it v is created at its initial value, with that
// batch's v gradient dropped. So after one epoch with one worker: below min_count, v = 0;
// reached in the key's last batch, v is exactly the initial embedding; reached earlier, v
// has trained away from it.
TEST(MinCountAcrossServersTest, EveryKeyIsEmbeddedExactlyWhenItsCountReachesMinCount) {
  TempDir dir;
  std::string text;
  const std::vector<std::vector<Key>> rows = CountRows(&text);
  const std::string path = dir.Write("counts.libsvm", text);
  for (int min_count : {3, 7}) {
    // Per key: the batch in which its cumulative count reaches min_count (-1: never), and
    // the last batch containing it.
    std::map<Key, int> reached, last;
    std::map<Key, int> count;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      const int batch = static_cast<int>(r / kBatch);
      for (Key id : rows[r]) {
        if (++count[id] == min_count) reached[id] = batch;
        last[id] = batch;
      }
    }
    for (const char* servers : {"2", "3"}) {
      SCOPED_TRACE(std::string("min_count ") + std::to_string(min_count) + ", servers " + servers);
      TempDir out;
      TrainLocal(
          Make(path, path, out.path(),
               "model:\n  k: 3\n  init_std: 0.1\n  min_count: " + std::to_string(min_count) +
                   "\noptimizer:\n  name: sgd\n  lr: 0.002\ntrain:\n  batch_size: " +
                   std::to_string(kBatch) + "\n  consistency: bsp\n  seed: 3\n",
               {std::string("cluster.local_servers=") + servers, "cluster.local_workers=1"}));
      const Model m = Model::Load(out.File("model.fmps"));
      ASSERT_EQ(m.num_keys(), count.size());
      int never = 0, at_last = 0, earlier = 0;
      for (std::size_t i = 0; i < m.num_keys(); ++i) {
        const Key key = m.keys()[i];
        float init[3];
        InitialEmbedding(3, key, 3, 0.1f, init);
        const std::vector<float> v(m.row(i) + 1, m.row(i) + 4);
        if (!reached.count(key)) {
          EXPECT_EQ(v, std::vector<float>(3, 0.0f)) << "key " << key << " seen " << count[key];
          ++never;
        } else if (reached[key] == last[key]) {
          EXPECT_EQ(v, std::vector<float>(init, init + 3)) << "key " << key;
          ++at_last;
        } else {
          EXPECT_NE(v, std::vector<float>(init, init + 3)) << "key " << key;
          EXPECT_NE(v, std::vector<float>(3, 0.0f)) << "key " << key;
          ++earlier;
        }
      }
      EXPECT_GT(never, 0);  // every case occurs
      EXPECT_GT(earlier, 0);
      EXPECT_GT(at_last, 0);
    }
  }
}

// --- resume a 3-worker mid-epoch checkpoint with 2 and with 1 worker -------------------

class ResumeFewerWorkersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = 60000;
    o.test_rows = 2000;
    o.fields = 8;
    o.vocab = 1000;
    o.k = 4;
    o.seed = 31;
    synth_ = new SynthResult(Synthesize(o));
  }
  static void TearDownTestSuite() {
    delete synth_;
    delete dir_;
  }
  static Config MakeConfig(const std::string& out, const std::string& ckpt, int workers) {
    return Make(synth_->train_path, synth_->test_path, out,
                "model:\n  k: 4\noptimizer:\n  name: adagrad\n  lr: 0.05\ntrain:\n  epochs: 2\n"
                "  batch_size: 64\n  consistency: bsp\ncheckpoint:\n  dir: \"" +
                    ckpt + "\"\n  every_seconds: 0.01\n  keep: 1000\n",
                {"cluster.local_workers=" + std::to_string(workers)});
  }
  static TempDir* dir_;
  static SynthResult* synth_;
};
TempDir* ResumeFewerWorkersTest::dir_ = nullptr;
SynthResult* ResumeFewerWorkersTest::synth_ = nullptr;

// Keeps only the checkpoints of `ckpt` up to the first one in the middle of an epoch where
// every one of the 3 workers still had data; false if there is none.
bool KeepFirstMidEpochCheckpoint(const std::string& ckpt) {
  std::vector<std::uint64_t> seqs;  // directories ckpt-<seq>
  for (const auto& e : fs::directory_iterator(ckpt)) {
    seqs.push_back(std::stoull(e.path().filename().string().substr(5)));
  }
  std::sort(seqs.begin(), seqs.end());
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const Manifest m = LoadManifest(ckpt, seqs[i]);
    const bool all_busy = std::none_of(m.workers.begin(), m.workers.end(),
                                       [](const auto& ranges) { return ranges.empty(); });
    if (m.epoch_done || m.workers.size() != 3 || !all_busy) continue;
    for (const auto& e : fs::directory_iterator(ckpt)) {
      if (std::stoull(e.path().filename().string().substr(5)) > seqs[i]) fs::remove_all(e.path());
    }
    return true;
  }
  return false;
}

TEST_F(ResumeFewerWorkersTest, EveryRowIsTrainedOnceWithTwoOrOneWorkers) {
  for (int workers : {2, 1}) {
    SCOPED_TRACE("resumed with " + std::to_string(workers) + " worker(s)");
    TempDir run, resumed, ckpt;
    // The coordinator looks for due checkpoints every 50 ms: on a busy machine a run may
    // take none mid-epoch, so try a few times.
    bool found = false;
    for (int attempt = 0; attempt < 4 && !found; ++attempt) {
      fs::remove_all(ckpt.path());
      fs::create_directories(ckpt.path());
      TrainLocal(MakeConfig(run.path(), ckpt.path(), 3));
      found = KeepFirstMidEpochCheckpoint(ckpt.path());
    }
    ASSERT_TRUE(found) << "no mid-epoch checkpoint with data left on every worker";
    const TrainSummary s =
        TrainLocal(MakeConfig(resumed.path(), ckpt.path(), workers), /*resume=*/true);
    EXPECT_EQ(s.rows_trained, 2u * 60000u);  // no row twice, none skipped
    EXPECT_LT(s.test_logloss, 0.65);
  }
}

// --- bsp with three workers: the step's sum in worker order, whatever the servers ------

TEST(ThreeWorkerBspTest, OneAndThreeServersGiveTheSameModelBitForBit) {
  TempDir dir;
  SynthOptions o;
  o.out_dir = dir.File("synth");
  o.rows = 30000;
  o.test_rows = 1000;
  o.fields = 8;
  o.vocab = 300;
  o.k = 4;
  o.seed = 41;
  const SynthResult data = Synthesize(o);
  std::vector<Model> models;
  for (const char* servers : {"1", "3"}) {
    TempDir out;
    TrainLocal(Make(data.train_path, data.test_path, out.path(),
                    "model:\n  k: 4\noptimizer:\n  name: adagrad\n  lr: 0.05\ntrain:\n"
                    "  epochs: 2\n  batch_size: 32\n  consistency: bsp\n",
                    {"cluster.local_workers=3", std::string("cluster.local_servers=") + servers}));
    models.push_back(Model::Load(out.File("model.fmps")));
  }
  EXPECT_EQ(MaxAbsDiff(models[0], models[1]), 0.0);
  EXPECT_EQ(models[0].meta().bias, models[1].meta().bias);
}

}  // namespace
}  // namespace fmps
