// Checkpoints and resume in single-node mode: a resumed bsp job equals the uninterrupted
// one, damaged checkpoints fall back to the previous one, re-sharding keeps the model; the
// cut's control messages (worker reports, the worker-side handshake, a Checkpointer driving
// a real server).
#include "worker/job/checkpoint.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/comm/control.h"
#include "common/comm/transport.h"
#include "common/comm/wire.h"
#include "common/config/config.h"
#include "common/data/synth.h"
#include "common/model/model_file.h"
#include "server/server.h"
#include "tests/util/test_util.h"
#include "worker/job/job.h"
#include "worker/job/local_trainer.h"

namespace fmps {
namespace {

namespace fs = std::filesystem;
using testing::JsonNumber;
using testing::MaxAbsDiff;
using testing::ReadFile;
using testing::RunCommand;
using testing::TempDir;

class CheckpointTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    SynthOptions o;
    o.out_dir = dir_->File("synth");
    o.rows = 200000;
    o.test_rows = 5000;
    o.fields = 10;
    o.vocab = 2000;
    o.k = 4;
    o.seed = 8;
    synth_ = new SynthResult(Synthesize(o));
  }
  static void TearDownTestSuite() {
    delete synth_;
    delete dir_;
  }
  static std::string Yaml(const std::string& out, const std::string& ckpt) {
    return "data:\n  train: " + synth_->train_path + "\n  test: " + synth_->test_path +
           "\n  format: libsvm\nmodel:\n  k: 4\noptimizer:\n  name: adam\n  lr: 0.005\n"
           "train:\n  epochs: 2\n  batch_size: 128\n  consistency: bsp\n" +
           (ckpt.empty()
                ? std::string()
                : "checkpoint:\n  dir: \"" + ckpt + "\"\n  every_seconds: 0.05\n  keep: 1000\n") +
           "output:\n  dir: " + out + "\n";
  }
  static Config MakeConfig(const std::string& out, const std::string& ckpt,
                           const std::vector<std::string>& sets = {}) {
    return ParseConfig(Yaml(out, ckpt), "ckpt.yaml", sets);
  }
  static TempDir* dir_;
  static SynthResult* synth_;
};
TempDir* CheckpointTest::dir_ = nullptr;
SynthResult* CheckpointTest::synth_ = nullptr;

// Checkpoint directories of `dir`, oldest first.
std::vector<std::string> Checkpoints(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST_F(CheckpointTest, ResumeFromAMidEpochCheckpointGivesTheSameModel) {
  TempDir plain, run, resumed, ckpt;
  TrainLocal(MakeConfig(plain.path(), ""));
  TrainLocal(MakeConfig(run.path(), ckpt.path()));
  // Keep the checkpoints up to the first one taken in the middle of epoch 1.
  const auto all = Checkpoints(ckpt.path());
  ASSERT_GE(all.size(), 3u) << "the job was too fast for a mid-epoch checkpoint";
  std::size_t chosen = all.size();
  for (std::size_t i = 0; i < all.size(); ++i) {
    const std::string m = ReadFile(all[i] + "/MANIFEST");
    if (m.find("epoch: 1\n") != std::string::npos &&
        m.find("epoch_done: false") != std::string::npos && m.find("[[") != std::string::npos) {
      chosen = i;
      break;
    }
  }
  ASSERT_LT(chosen, all.size()) << "no mid-epoch checkpoint with data left";
  for (std::size_t i = chosen + 1; i < all.size(); ++i) fs::remove_all(all[i]);
  const TrainSummary s = TrainLocal(MakeConfig(resumed.path(), ckpt.path()), /*resume=*/true);
  EXPECT_EQ(s.rows_trained, 2u * 200000u);  // no row twice, none skipped
  EXPECT_LE(
      MaxAbsDiff(Model::Load(plain.File("model.fmps")), Model::Load(resumed.File("model.fmps"))),
      1e-6);
}

TEST_F(CheckpointTest, ResumeWithMoreWorkersTrainsEveryRowOnce) {
  TempDir run, resumed, ckpt;
  TrainLocal(MakeConfig(run.path(), ckpt.path()));
  const auto all = Checkpoints(ckpt.path());
  ASSERT_GE(all.size(), 3u);
  for (std::size_t i = 1; i < all.size(); ++i) fs::remove_all(all[i]);  // keep the first
  const TrainSummary s = TrainLocal(
      MakeConfig(resumed.path(), ckpt.path(), {"cluster.local_workers=3"}), /*resume=*/true);
  EXPECT_EQ(s.rows_trained, 2u * 200000u);
  EXPECT_LT(s.test_logloss, 0.6);
}

// Async with three worker threads: worker 0 coordinates the cuts while training (the others
// quiesce and wait for it); a mid-epoch checkpoint records every worker's position, and the
// resumed job trains each remaining row exactly once.
TEST_F(CheckpointTest, AsyncCutsCoordinatedByWorkerZeroResumeEveryRowOnce) {
  TempDir run, resumed, ckpt;
  const std::vector<std::string> async = {"train.consistency=async", "cluster.local_workers=3",
                                          "checkpoint.every_seconds=0.02"};
  TrainLocal(MakeConfig(run.path(), ckpt.path(), async));
  const auto all = Checkpoints(ckpt.path());
  std::size_t chosen = all.size();
  for (std::size_t i = 0; i < all.size() && chosen == all.size(); ++i) {
    const std::string m = ReadFile(all[i] + "/MANIFEST");
    if (m.find("epoch: 1\n") != std::string::npos &&
        m.find("epoch_done: false") != std::string::npos && m.find("[[") != std::string::npos) {
      chosen = i;
    }
  }
  ASSERT_LT(chosen, all.size()) << "no mid-epoch checkpoint with data left";
  EXPECT_NE(ReadFile(all[chosen] + "/MANIFEST").find("rows: "), std::string::npos);
  for (std::size_t i = chosen + 1; i < all.size(); ++i) fs::remove_all(all[i]);
  const TrainSummary s =
      TrainLocal(MakeConfig(resumed.path(), ckpt.path(), async), /*resume=*/true);
  EXPECT_EQ(s.rows_trained, 2u * 200000u);  // no row twice, none skipped
  EXPECT_EQ(JsonNumber(ReadFile(resumed.File("summary.json")), "rows_trained"), 2 * 200000);
  EXPECT_LT(s.test_logloss, 0.6);
}

TEST_F(CheckpointTest, DamagedNewestCheckpointFallsBackToThePreviousOne) {
  TempDir plain, ckpt;
  TrainLocal(MakeConfig(plain.path(), ""));
  const Model reference = Model::Load(plain.File("model.fmps"));
  // Only the two epoch-end checkpoints.
  TempDir run;
  TrainLocal(MakeConfig(run.path(), ckpt.path(), {"checkpoint.every_seconds=100000"}));
  auto all = Checkpoints(ckpt.path());
  ASSERT_EQ(all.size(), 2u);
  const std::string shard = all[1] + "/shard-0.bin";
  const std::string cfg_path = dir_->Write("resume.yaml", Yaml(run.path() + "/r", ckpt.path()));
  for (const char* damage : {"truncate", "flip"}) {
    std::string bytes = ReadFile(shard);
    std::string damaged = bytes;
    if (std::string(damage) == "truncate") {
      damaged.resize(bytes.size() / 2);
    } else {
      damaged[bytes.size() / 2] ^= 0x20;
    }
    { std::ofstream(shard, std::ios::binary | std::ios::trunc) << damaged; }
    std::string log;
    ASSERT_EQ(RunCommand(testing::FmpsBinary() + " train " + cfg_path + " --resume", &log), 0)
        << log;
    EXPECT_NE(log.find("warning: checkpoint " + all[1]), std::string::npos) << log;
    EXPECT_NE(log.find("shard-0.bin"), std::string::npos) << log;
    EXPECT_NE(log.find("resuming from " + all[0]), std::string::npos) << log;
    // Epoch 2 trained again from the epoch-1 checkpoint gives the uninterrupted model.
    EXPECT_LE(MaxAbsDiff(reference, Model::Load(run.path() + "/r/model.fmps")), 1e-6) << damage;
    { std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes; }
    // The resumed run wrote a new checkpoint; remove it so the damaged one is newest again.
    for (const auto& d : Checkpoints(ckpt.path())) {
      if (d != all[0] && d != all[1]) fs::remove_all(d);
    }
  }
}

TEST_F(CheckpointTest, ResumingTwoServerCheckpointOnOneOrThreeServersKeepsTheModel) {
  TempDir run, ckpt;
  TrainLocal(
      MakeConfig(run.path(), ckpt.path(),
                 {"train.epochs=1", "cluster.local_servers=2", "checkpoint.every_seconds=100000"}));
  const Model before = Model::Load(run.File("model.fmps"));
  for (const char* servers : {"1", "3"}) {
    TempDir out;
    // Epoch 1 is complete: nothing left to train; the model is just re-sharded and saved.
    TrainLocal(MakeConfig(out.path(), ckpt.path(),
                          {"train.epochs=1", std::string("cluster.local_servers=") + servers}),
               /*resume=*/true);
    EXPECT_EQ(MaxAbsDiff(before, Model::Load(out.File("model.fmps"))), 0.0) << servers;
  }
}

TEST_F(CheckpointTest, ResumeRefusesADifferentConfig) {
  TempDir run, ckpt, out;
  TrainLocal(MakeConfig(run.path(), ckpt.path(), {"train.epochs=1"}));
  EXPECT_THROW(TrainLocal(MakeConfig(out.path(), ckpt.path(), {"model.k=6"}), true), ConfigError);
  EXPECT_THROW(TrainLocal(MakeConfig(out.path(), ""), true), ConfigError);  // no checkpoint.dir
}

// ---- the cut's control messages ----

WorkerReport SampleReport() {
  WorkerReport r;
  r.done = false;
  r.remaining = {{0, 10}, {100, 250}, {std::uint64_t{1} << 40, (std::uint64_t{1} << 40) + 7}};
  r.rows = 0.1 + 0.2;  // not representable exactly: must travel bit for bit
  r.loss = -std::numeric_limits<double>::denorm_min();
  return r;
}

void ExpectSameReport(const WorkerReport& got, const WorkerReport& want) {
  EXPECT_EQ(got.done, want.done);
  ASSERT_EQ(got.remaining.size(), want.remaining.size());
  for (std::size_t i = 0; i < want.remaining.size(); ++i) {
    EXPECT_EQ(got.remaining[i].begin, want.remaining[i].begin) << i;
    EXPECT_EQ(got.remaining[i].end, want.remaining[i].end) << i;
  }
  EXPECT_EQ(std::bit_cast<std::uint64_t>(got.rows), std::bit_cast<std::uint64_t>(want.rows));
  EXPECT_EQ(std::bit_cast<std::uint64_t>(got.loss), std::bit_cast<std::uint64_t>(want.loss));
}

TEST(CheckpointMessagesTest, WorkerReportRoundTripsExactlyOverTheWire) {
  const WorkerReport r = SampleReport();
  pb::Control m;
  *m.mutable_cut_ready()->mutable_report() = ToProto(r);
  const ControlMessage got = DecodeControl(EncodeControl(m), 5);
  ExpectSameReport(FromProto(got.body.cut_ready().report(), got.sender), r);
  WorkerReport done;
  done.done = true;
  ExpectSameReport(FromProto(ToProto(done), 5), done);
}

TEST(CheckpointMessagesTest, ReversedByteRangeIsRejectedNamingTheSender) {
  pb::WorkerReport p = ToProto(SampleReport());
  p.mutable_remaining(1)->set_begin(300);  // [300, 250)
  try {
    FromProto(p, 6);
    FAIL() << "a reversed range must be refused";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("endpoint 6"), std::string::npos) << e.what();
  }
}

// The worker side (ReportCutReady, AwaitCutResume, ReportShardDone) against a coordinator.
TEST(CheckpointMessagesTest, WorkerHandshakeReachesTheCoordinator) {
  InProcHub hub(2);
  auto coordinator_transport = hub.Connect(0);
  auto worker_transport = hub.Connect(1);
  ControlChannel coordinator(coordinator_transport.get(), std::chrono::seconds(20));
  ControlChannel worker(worker_transport.get(), std::chrono::seconds(20));
  std::thread w([&] {
    ReportCutReady(&worker, 0, SampleReport());
    AwaitCutResume(&worker);
    WorkerReport done;
    done.done = true;
    done.rows = 42;
    ReportShardDone(&worker, 0, /*epoch=*/3, done);
  });
  const ControlMessage ready = coordinator.WaitFor(pb::Control::kCutReady, "cut report");
  EXPECT_EQ(ready.sender, 1);
  ExpectSameReport(FromProto(ready.body.cut_ready().report(), ready.sender), SampleReport());
  // Nothing else comes before the worker is resumed.
  EXPECT_FALSE(coordinator.TryTake(pb::Control::kShardDone).has_value());
  pb::Control resume;
  resume.mutable_cut_resume()->set_seq(1);
  coordinator.Send(1, resume);
  const ControlMessage done = coordinator.WaitFor(pb::Control::kShardDone, "end-of-shard report");
  w.join();
  EXPECT_EQ(done.body.shard_done().epoch(), 3);
  EXPECT_TRUE(done.body.shard_done().report().done());
  EXPECT_EQ(done.body.shard_done().report().rows(), 42.0);

  ControlChannel impatient(worker_transport.get(), std::chrono::milliseconds(50));
  EXPECT_THROW(AwaitCutResume(&impatient), TransportError);
}

// A Checkpointer cuts with a real server and a worker speaking the handshake: the server's
// snapshot and shard report and the worker's position end up in a complete checkpoint.
TEST_F(CheckpointTest, CheckpointerCompletesACutWithAServerAndAWorker) {
  TempDir out;
  const std::string dir = out.File("ckpt");
  fs::create_directories(dir);
  const Config config = MakeConfig(out.File("run"), dir);
  InProcHub hub(3);  // server 0, worker 1, coordinator 2
  auto server_transport = hub.Connect(0);
  auto worker_transport = hub.Connect(1);
  auto coordinator_transport = hub.Connect(2);
  ParamStore store(MakeStoreOptions(config), MakeOptimizer(config.optimizer));
  const Key key = 77;
  std::vector<float> row(store.row_width());
  store.Pull(&key, 1, /*create=*/true, row.data());
  ServerOptions options;
  options.first_worker_endpoint = 1;
  options.checkpoint_dir = dir;
  Server server(&store, server_transport.get(), options);
  std::thread server_thread([&] { server.Run(); });
  ControlChannel worker(worker_transport.get(), std::chrono::seconds(20));
  WorkerReport report = SampleReport();
  report.rows = 3;  // a count: the manifest stores rows as an integer
  std::thread worker_thread([&] {
    ReportCutReady(&worker, 2, report);
    AwaitCutResume(&worker);
  });
  ControlChannel control(coordinator_transport.get(), std::chrono::seconds(20));
  {
    Checkpointer ckpt(config, &control,
                      {.num_servers = 1,
                       .num_workers = 1,
                       .own_worker = -1,
                       .train_bytes = 12345,
                       .rows_base = 1.0,
                       .loss_base = 0.5});
    ckpt.Request();
    EXPECT_TRUE(ckpt.requested());
    ckpt.Cut(/*epoch=*/2, /*epoch_done=*/false, std::nullopt);
    worker_thread.join();  // resumed
    EXPECT_FALSE(ckpt.requested());
    ckpt.Drain();
  }
  ShutdownServers(&control, 1);
  server_thread.join();
  const std::optional<Manifest> m = FindResumePoint(dir, ConfigDigest(config), 12345);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->epoch, 2);
  EXPECT_FALSE(m->epoch_done);
  EXPECT_DOUBLE_EQ(m->rows, 1.0 + report.rows);
  EXPECT_DOUBLE_EQ(m->loss, 0.5 + SampleReport().loss);
  ASSERT_EQ(m->shards.size(), 1u);
  EXPECT_EQ(m->shards[0].keys, 1u);
  ASSERT_EQ(m->workers.size(), 1u);
  EXPECT_EQ(m->workers[0].size(), SampleReport().remaining.size());
  EXPECT_EQ(m->workers[0][1].end, 250u);
}

}  // namespace
}  // namespace fmps
