// Checkpoints (worker/job/checkpoint.h): what a cut records in its MANIFEST, pruning to
// checkpoint.keep, removal of incomplete checkpoints, and the choice of a resume point.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/comm/control.h"
#include "common/comm/kv.h"
#include "common/comm/transport.h"
#include "common/config/config.h"
#include "common/data/synth.h"
#include "server/server.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"
#include "tests/util/test_util.h"
#include "worker/job/checkpoint.h"
#include "worker/job/local_trainer.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

constexpr std::uint64_t kRows = 80000;

class CheckpointerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = kRows;
    o.test_rows = 1000;
    o.fields = 8;
    o.vocab = 500;
    o.k = 4;
    o.seed = 12;
    synth_ = new SynthResult(Synthesize(o));
  }
  static void TearDownTestSuite() {
    delete synth_;
    delete dir_;
  }
  static Config MakeConfig(const std::string& out, const std::string& ckpt, int keep) {
    return ParseConfig(
        "data:\n  train: " + synth_->train_path + "\n  test: " + synth_->test_path +
            "\n  format: libsvm\nmodel:\n  k: 4\ntrain:\n  epochs: 2\n"
            "  batch_size: 64\n  consistency: bsp\ncheckpoint:\n  dir: \"" +
            ckpt + "\"\n  every_seconds: 0.01\n  keep: " + std::to_string(keep) +
            "\ncluster:\n  local_workers: 2\n  local_servers: 2\noutput:\n  dir: " + out + "\n",
        "ckpt.yaml", {});
  }
  // Sequence numbers of the checkpoint directories in `dir` (ckpt-<seq>), ascending.
  static std::vector<std::uint64_t> Seqs(const std::string& dir) {
    std::vector<std::uint64_t> seqs;
    for (const auto& e : fs::directory_iterator(dir)) {
      seqs.push_back(std::stoull(e.path().filename().string().substr(5)));
    }
    std::sort(seqs.begin(), seqs.end());
    return seqs;
  }
  // Trains into `ckpt` until a run wrote at least 3 checkpoints (2 at the epochs' ends, so
  // one at least mid-epoch): the coordinator looks for due checkpoints every 50 ms, and a
  // busy machine may leave a short run none. Returns the sequence numbers left.
  static std::vector<std::uint64_t> TrainWithCheckpoints(const std::string& out,
                                                         const std::string& ckpt, int keep) {
    for (int attempt = 0;; ++attempt) {
      fs::remove_all(ckpt);
      fs::create_directories(ckpt);
      TrainLocal(MakeConfig(out, ckpt, keep));
      const std::vector<std::uint64_t> seqs = Seqs(ckpt);
      if (attempt == 3 || (!seqs.empty() && seqs.back() >= 3)) return seqs;
    }
  }
  // Rows a reader on `ranges` of the training file yields.
  static std::uint64_t RowsIn(const std::vector<ByteRange>& ranges) {
    if (ranges.empty()) return 0;
    FeatureSpec spec;
    spec.data.format = DataFormat::kLibsvm;
    ShardReader reader(spec, {synth_->train_path}, ranges);
    RowBlock block;
    std::uint64_t rows = 0;
    while (std::size_t n = reader.Read(4096, &block)) {
      rows += n;
      block = RowBlock();
    }
    return rows;
  }
  static TempDir* dir_;
  static SynthResult* synth_;
};
TempDir* CheckpointerTest::dir_ = nullptr;
SynthResult* CheckpointerTest::synth_ = nullptr;

// Every MANIFEST of a 2-worker, 2-server job: rows trained so far plus the rows left in the
// recorded ranges make up the epoch exactly; shards are listed with their sizes.
TEST_F(CheckpointerTest, ManifestRangesAndRowsMatchTheData) {
  TempDir out, ckpt;
  const std::vector<std::uint64_t> seqs = TrainWithCheckpoints(out.path(), ckpt.path(), 1000);
  ASSERT_GE(seqs.size(), 3u);
  int mid_epoch = 0;
  for (std::uint64_t seq : seqs) {
    SCOPED_TRACE("checkpoint " + std::to_string(seq));
    const Manifest m = LoadManifest(ckpt.path(), seq);
    EXPECT_EQ(m.seq, seq);
    EXPECT_EQ(m.train_bytes, TotalBytes({synth_->train_path}));
    ASSERT_EQ(m.workers.size(), 2u);
    ASSERT_EQ(m.shards.size(), 2u);
    for (int i = 0; i < 2; ++i) {  // shard-<server>.bin of this checkpoint, at its size
      const std::string want =
          CheckpointPath(ckpt.path(), seq) + "/shard-" + std::to_string(i) + ".bin";
      EXPECT_TRUE(
          fs::equivalent(fs::path(CheckpointPath(ckpt.path(), seq)) / m.shards[i].path, want));
      EXPECT_EQ(fs::file_size(want), m.shards[i].bytes);
      EXPECT_GT(m.shards[i].keys, 0u);
    }
    const std::uint64_t left = RowsIn(m.workers[0]) + RowsIn(m.workers[1]);
    if (m.epoch_done) {
      EXPECT_EQ(left, 0u);
      EXPECT_EQ(m.rows, static_cast<double>(m.epoch * kRows));
    } else {
      EXPECT_EQ(m.rows + static_cast<double>(left), static_cast<double>(m.epoch * kRows));
      // Each worker's ranges lie within its own half of the file.
      const std::uint64_t total = TotalBytes({synth_->train_path});
      for (int w = 0; w < 2; ++w) {
        const ByteRange own = ShardRange(total, w, 2);
        for (const ByteRange& r : m.workers[w]) {
          EXPECT_GE(r.begin, own.begin);
          EXPECT_LE(r.end, own.end);
        }
      }
      mid_epoch += left > 0;
    }
  }
  EXPECT_GT(mid_epoch, 0) << "no checkpoint was taken mid-epoch";
  // The newest complete checkpoint is the resume point; one with a damaged shard is skipped.
  const std::string digest = ConfigDigest(MakeConfig(out.path(), ckpt.path(), 1000));
  const std::uint64_t bytes = TotalBytes({synth_->train_path});
  ASSERT_EQ(FindResumePoint(ckpt.path(), digest, bytes)->seq, seqs.back());
  const std::string shard = CheckpointPath(ckpt.path(), seqs.back()) + "/shard-1.bin";
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) / 2));
    f.put('\x5a');
  }
  EXPECT_EQ(FindResumePoint(ckpt.path(), digest, bytes)->seq, seqs[seqs.size() - 2]);
  fs::resize_file(CheckpointPath(ckpt.path(), seqs[seqs.size() - 2]) + "/shard-0.bin", 10);
  EXPECT_EQ(FindResumePoint(ckpt.path(), digest, bytes)->seq, seqs[seqs.size() - 3]);
  // A different digest or different training files are refused.
  EXPECT_THROW(FindResumePoint(ckpt.path(), digest + "x", bytes), ConfigError);
  EXPECT_THROW(FindResumePoint(ckpt.path(), digest, bytes + 1), ConfigError);
}

TEST_F(CheckpointerTest, PruningKeepsTheNewestCheckpointKeepOnes) {
  TempDir out, ckpt;
  const std::vector<std::uint64_t> seqs = TrainWithCheckpoints(out.path(), ckpt.path(), 2);
  ASSERT_EQ(seqs.size(), 2u);
  EXPECT_GE(seqs[0], 2u) << "nothing was pruned";  // at least 3 were written
  EXPECT_EQ(seqs[1], seqs[0] + 1);
  const Manifest last = LoadManifest(ckpt.path(), seqs[1]);
  EXPECT_TRUE(last.epoch_done);
  EXPECT_EQ(last.epoch, 2);
}

// A Checkpointer that started a cut and is destroyed before the checkpoint completed (a
// failing job) removes that directory, and only that one.
TEST_F(CheckpointerTest, IncompleteCheckpointIsRemoved) {
  TempDir out, ckpt;
  const Config config = MakeConfig(out.path(), ckpt.path(), 5);
  fs::create_directories(CheckpointPath(ckpt.path(), 3));  // an older job's leftover
  InProcHub hub(2);  // endpoint 0: the server; 1: the coordinator
  auto server_transport = hub.Connect(0), coordinator_transport = hub.Connect(1);
  StoreOptions so;
  so.shape = FmShape(4);
  ParamStore store(so, MakeSgd({}));
  const Key key = 42;
  std::vector<float> grad(5, 1.0f);
  store.Push(&key, 1, grad.data(), nullptr);
  ServerOptions options;
  options.num_workers = 0;
  options.first_worker_endpoint = 2;
  options.checkpoint_dir = ckpt.path();
  auto server = std::make_unique<Server>(&store, server_transport.get(), options);
  std::thread thread([&] { server->Run(); });
  ControlChannel control(coordinator_transport.get(), std::chrono::seconds(30));
  std::string path;
  {
    Checkpointer ckpt_writer(config, &control,
                             {.num_servers = 1, .num_workers = 0, .own_worker = -1});
    ckpt_writer.Request();
    ckpt_writer.Cut(1, /*epoch_done=*/true, std::nullopt);
    path = CheckpointPath(ckpt.path(), 4);  // numbering continues after the leftover
    EXPECT_TRUE(fs::is_directory(path));
    EXPECT_FALSE(fs::exists(path + "/MANIFEST"));
    ShutdownServers(&control, 1);  // the server finishes its shard write before it ends
    thread.join();
    server.reset();
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(fs::is_directory(CheckpointPath(ckpt.path(), 3)));
}

}  // namespace
}  // namespace fmps
