// Worker (worker/worker.h) against real Servers over the in-process transport, on tiny
// hand-made libsvm files: the parameters after training equal plain FM gradient steps
// computed here by the textbook formula, and Score returns the textbook FM score.
#include "worker/worker.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/base/types.h"
#include "common/comm/control.h"
#include "common/comm/kv.h"
#include "common/comm/transport.h"
#include "common/model/loss.h"
#include "server/server.h"
#include "server/store/optimizer.h"
#include "server/store/param_store.h"
#include "tests/util/test_util.h"

namespace fmps {
namespace {

using testing::TempDir;

constexpr int kK = 3;
constexpr int kWidth = FmShape(kK).row_width();  // w, v[kK]
constexpr float kInitStd = 0.3f;
constexpr float kLr = 0.1f;

// One parsed row of the test data: label and (id, value) pairs.
struct Row {
  float label = 0;
  std::vector<std::pair<Key, float>> x;
};

std::vector<Row> ParseRows(const std::string& text) {
  std::vector<Row> rows;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    Row r;
    std::string tok;
    ls >> r.label;
    while (ls >> tok) {
      const auto colon = tok.find(':');
      r.x.emplace_back(std::stoull(tok.substr(0, colon)), std::stof(tok.substr(colon + 1)));
    }
    rows.push_back(r);
  }
  return rows;
}

// The textbook FM, in double, over a map of rows (w, v[k]); missing keys are initial.
class NaiveFm {
 public:
  std::vector<double>& Param(Key key) {
    auto it = p_.find(key);
    if (it != p_.end()) return it->second;
    std::vector<double> row(kWidth, 0.0);
    if (key != kBiasKey) {
      float v[kK];
      InitialEmbedding(0, key, kK, kInitStd, v);
      for (int f = 0; f < kK; ++f) row[1 + f] = v[f];
    }
    return p_.emplace(key, row).first->second;
  }
  // y = w0 + sum_i w_i x_i + sum_{i<j} <v_i, v_j> x_i x_j
  double Score(const Row& r) {
    double y = Param(kBiasKey)[0];
    for (std::size_t i = 0; i < r.x.size(); ++i) {
      y += Param(r.x[i].first)[0] * r.x[i].second;
      for (std::size_t j = i + 1; j < r.x.size(); ++j) {
        double dot = 0;
        for (int f = 1; f <= kK; ++f) dot += Param(r.x[i].first)[f] * Param(r.x[j].first)[f];
        y += dot * r.x[i].second * r.x[j].second;
      }
    }
    return y;
  }
  // One sgd step on the summed logistic-loss gradient of `rows` (all against the same
  // parameters, as one bsp step or one batch).
  void Step(const std::vector<Row>& rows) {
    std::map<Key, std::vector<double>> grad;
    for (const Row& r : rows) {
      const double g = Sigmoid(Score(r)) - r.label;
      grad[kBiasKey].resize(kWidth);
      grad[kBiasKey][0] += g;
      for (const auto& [key, xi] : r.x) {
        auto& gk = grad[key];
        gk.resize(kWidth);
        gk[0] += g * xi;
        for (int f = 1; f <= kK; ++f) {
          double sum = 0;
          for (const auto& [other, xj] : r.x) sum += Param(other)[f] * xj;
          gk[f] += g * (xi * sum - Param(key)[f] * xi * xi);
        }
      }
    }
    for (const auto& [key, gk] : grad) {
      auto& p = Param(key);
      for (int j = 0; j <= (key == kBiasKey ? 0 : kK); ++j) p[j] -= kLr * gk[j];
    }
  }
  const std::map<Key, std::vector<double>>& params() const { return p_; }

 private:
  std::map<Key, std::vector<double>> p_;
};

// `servers` Server threads (endpoints 0..servers-1) over ParamStores with sgd, and one
// KVClient per worker (endpoints servers..), all on one in-process hub.
class Cluster {
 public:
  Cluster(int servers, int workers, Consistency consistency, float lr = kLr)
      : hub_(servers + workers) {
    StoreOptions so;
    so.shape = FmShape(kK);
    so.init_std = kInitStd;
    ServerOptions opts;
    opts.num_workers = workers;
    opts.first_worker_endpoint = servers;
    opts.consistency = consistency;
    for (int s = 0; s < servers; ++s) {
      stores_.push_back(std::make_unique<ParamStore>(so, MakeSgd({.lr = lr})));
      transports_.push_back(hub_.Connect(s));
      opts.index = s;
      servers_.push_back(std::make_unique<Server>(stores_[s].get(), transports_[s].get(), opts));
    }
    for (int s = 0; s < servers; ++s) threads_.emplace_back([this, s] { servers_[s]->Run(); });
    KVClientOptions ko;
    ko.num_servers = servers;
    ko.shape = FmShape(kK);
    ko.reply_timeout = std::chrono::seconds(30);
    for (int w = 0; w < workers; ++w) {
      transports_.push_back(hub_.Connect(servers + w));
      clients_.push_back(std::make_unique<KVClient>(transports_.back().get(), ko));
    }
  }
  ~Cluster() { Stop(); }
  // Shuts the servers down and joins them; the stores may then be read.
  void Stop() {
    if (threads_.empty()) return;
    const int servers = static_cast<int>(servers_.size());
    ControlChannel control(transports_[servers].get(), std::chrono::seconds(30));
    ShutdownServers(&control, servers);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  KVClient* client(int w) { return clients_[w].get(); }
  // Parameters of `key` (zeros if absent); valid after Stop().
  std::vector<float> Row(Key key) {
    std::vector<float> got(kWidth, 0.0f), one(kWidth);
    for (auto& store : stores_) {  // a key is on one store; the others read zeros
      store->Pull(&key, 1, /*create=*/false, one.data());
      for (int j = 0; j <= kK; ++j) got[j] += one[j];
    }
    return got;
  }
  // Valid after Stop().
  const Server& server(int s) const { return *servers_[s]; }
  // Every stored row equals the naive model's (relative tolerance for float arithmetic).
  void ExpectParams(const NaiveFm& naive) {
    Stop();
    for (const auto& [key, want] : naive.params()) {
      const std::vector<float> got = Row(key);
      for (int j = 0; j <= kK; ++j) {
        EXPECT_NEAR(got[j], want[j], 1e-5 * (1 + std::abs(want[j]))) << "key " << key << " " << j;
      }
    }
  }

 private:
  InProcHub hub_;
  std::vector<std::unique_ptr<ParamStore>> stores_;
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::unique_ptr<Server>> servers_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<KVClient>> clients_;
};

WorkerOptions Options(Consistency c, int batch_size) {
  WorkerOptions o;
  o.shape = FmShape(kK);
  o.batch_size = batch_size;
  o.consistency = c;
  o.max_delay = 1;  // async: each batch pulled after the previous one is applied
  return o;
}

ShardReader Reader(const std::string& path) {
  FeatureSpec spec;
  spec.data.format = DataFormat::kLibsvm;
  spec.data.normalize = Normalize::kNone;  // steps worked by hand from the raw values
  return ShardReader(spec, {path}, 0, 1);
}

const char* const kRows =
    "1 1:0.5 2:1 7:2\n"
    "0 2:1 3:-1.5\n"
    "1 1:1 3:0.25 9:1\n"
    "0 7:1 9:-1 2:0.5\n"
    "1 4:2\n";

TEST(WorkerTest, OneBatchIsOneFmGradientStepAsyncAndBsp) {
  TempDir dir;
  const std::string path = dir.Write("rows.libsvm", kRows);
  const std::vector<Row> rows = ParseRows(kRows);
  for (Consistency c : {Consistency::kAsync, Consistency::kBsp}) {
    for (int servers : {1, 2}) {
      SCOPED_TRACE(std::string(c == Consistency::kBsp ? "bsp" : "async") + ", servers " +
                   std::to_string(servers));
      Cluster cluster(servers, 1, c);
      Worker worker(Options(c, 100), cluster.client(0));
      ShardReader reader = Reader(path);
      Progress progress;
      int batches = 0;
      worker.TrainEpoch(&reader, &progress, [&] { ++batches; });
      EXPECT_EQ(progress.rows.load(), rows.size());
      EXPECT_EQ(batches, c == Consistency::kBsp ? 2 : 1);  // bsp: + the final empty step
      NaiveFm naive;
      double loss = 0;
      for (const Row& r : rows) loss += LossValue(Loss::kLogistic, naive.Score(r), r.label);
      EXPECT_NEAR(progress.loss_sum.load(), loss, 1e-5 * loss);
      naive.Step(rows);
      cluster.ExpectParams(naive);
    }
  }
}

TEST(WorkerTest, AsyncBatchesAreSequentialStepsAndScoreIsTheFmScore) {
  TempDir dir;
  const std::string path = dir.Write("rows.libsvm", kRows);
  const std::vector<Row> rows = ParseRows(kRows);
  Cluster cluster(2, 1, Consistency::kAsync);
  Worker worker(Options(Consistency::kAsync, 2), cluster.client(0));
  ShardReader reader = Reader(path);
  Progress progress;
  worker.TrainEpoch(&reader, &progress);
  NaiveFm naive;
  for (std::size_t b = 0; b < rows.size(); b += 2) {
    naive.Step(std::vector<Row>(rows.begin() + b, rows.begin() + std::min(b + 2, rows.size())));
  }
  // Score with the trained model, plus a row with an unseen id (reads as zero, not created).
  const std::string scored = dir.Write("score.libsvm", std::string(kRows) + "0 1:1 12345:3\n");
  ShardReader score_reader = Reader(scored);
  std::vector<float> scores, labels;
  worker.Score(&score_reader, &scores, &labels);
  std::vector<Row> score_rows = ParseRows(std::string(kRows) + "0 1:1 12345:3\n");
  ASSERT_EQ(scores.size(), score_rows.size());
  ASSERT_EQ(labels.size(), score_rows.size());
  NaiveFm zeroed = naive;  // the unseen key scores as all zeros
  zeroed.Param(12345).assign(kWidth, 0.0);
  for (std::size_t i = 0; i < score_rows.size(); ++i) {
    EXPECT_NEAR(scores[i], zeroed.Score(score_rows[i]), 1e-5) << "row " << i;
    EXPECT_EQ(labels[i], score_rows[i].label) << "row " << i;
  }
  cluster.ExpectParams(naive);  // 12345 was not created (naive has no such key)
}

// bsp, two workers with 1 and 3 batches: the exhausted worker keeps pushing empty steps, so
// the other trains all of its rows; each step applies the sum of both workers' gradients.
TEST(WorkerTest, BspWorkerThatRunsOutKeepsStepping) {
  TempDir dir;
  const std::string a = "1 1:1 2:1\n";
  const std::string b = "0 2:1 3:1\n1 3:2 4:1\n0 1:1 4:-1\n";
  const std::string path_a = dir.Write("a.libsvm", a), path_b = dir.Write("b.libsvm", b);
  Cluster cluster(2, 2, Consistency::kBsp);
  Progress pa, pb;
  std::thread other([&] {
    Worker w(Options(Consistency::kBsp, 1), cluster.client(1));
    ShardReader r = Reader(path_b);
    w.TrainEpoch(&r, &pb);
  });
  Worker w(Options(Consistency::kBsp, 1), cluster.client(0));
  ShardReader r = Reader(path_a);
  w.TrainEpoch(&r, &pa);
  other.join();
  cluster.Stop();
  EXPECT_EQ(pa.rows.load(), 1u);
  EXPECT_EQ(pb.rows.load(), 3u);
  // Steps 0..2 with data (worker 1), step 3 empty for both: 4 pushes per worker per server.
  EXPECT_EQ(cluster.server(0).stats().pushes, 8u);
  EXPECT_EQ(cluster.server(1).stats().pushes, 8u);
  const std::vector<Row> ra = ParseRows(a), rb = ParseRows(b);
  NaiveFm naive;
  naive.Step({ra[0], rb[0]});
  naive.Step({rb[1]});
  naive.Step({rb[2]});
  cluster.ExpectParams(naive);
}

// bsp with three workers sums a step's gradients in worker order, whatever order the pushes
// arrive in. Float addition is not associative: with e = 2^-24, (1 + e) + e = 1 but
// 1 + (e + e) = 1 + 2^-23, so each order of three pushes gives its own bits. (With two
// workers a + b = b + a exactly, so no two-worker run can tell the orders apart.)
TEST(WorkerTest, BspSumsThreeWorkersInWorkerOrderWhateverTheArrivalOrder) {
  const float e = 0x1p-24f;
  // Key 5 gets (1, e, e) from workers 0, 1, 2 and key 6 gets (e, 1, e): in worker order both
  // sum to exactly 1; arriving 2, 1, 0 (as pushed below) they would sum to 1 + 2^-23 and 1.
  // Key 7 gets (e, e, 1): 1 + 2^-23 in worker order, 1 in arrival order.
  const std::vector<Key> keys = {5, 6, 7};
  const float grads[3][3] = {{1, e, e}, {e, 1, e}, {e, e, 1}};  // [key][worker]
  for (int servers : {1, 3}) {
    SCOPED_TRACE("servers " + std::to_string(servers));
    Cluster cluster(servers, 3, Consistency::kBsp, /*lr=*/1.0f);
    std::vector<Timestamp> pushes(3);
    for (int w = 2; w >= 0; --w) {  // issued (so arriving) in reverse worker order
      std::vector<float> g(keys.size() * kWidth, 0.0f);
      for (std::size_t i = 0; i < keys.size(); ++i) g[i * kWidth] = grads[i][w];
      pushes[w] =
          cluster.client(w)->Push({.keys = keys, .bsp = BspStep{.step = 0, .has_data = true}}, &g);
    }
    for (int w = 0; w < 3; ++w) cluster.client(w)->Wait(pushes[w]);
    cluster.Stop();
    EXPECT_EQ(cluster.Row(5)[0], -1.0f);
    EXPECT_EQ(cluster.Row(6)[0], -1.0f);
    EXPECT_EQ(cluster.Row(7)[0], -(1.0f + 0x1p-23f));
  }
}

// optimizer.gradient: key_mean divides each key's summed gradient by its count in the batch
// (the bias: by the rows), as counted by Deduplicate.
TEST(DivideByCountsTest, MeanPerKeyByHand) {
  PreparedBatch b;
  // Rows: {5, 6}, {5}, {5, 7}: key 5 in 3 rows, 6 and 7 in one each.
  for (const auto& row : std::vector<std::vector<Key>>{{5, 6}, {5}, {5, 7}}) {
    for (const Key k : row) b.block.AddFeature(k, 1.0f);
    b.block.FinishRow(1.0f);
  }
  KeyIndex index;
  b.Deduplicate(&index);
  ASSERT_EQ(b.keys, (std::vector<Key>{kBiasKey, 5, 6, 7}));
  ASSERT_EQ(b.counts, (std::vector<std::uint32_t>{3, 3, 1, 1}));
  const int width = 2;  // w and k = 1
  std::vector<float> g = {3, 6, 9, 1.5f, 2, 4, -1, 8};
  DivideByCounts(b.counts, width, g.data());
  EXPECT_EQ(g, (std::vector<float>{1, 2, 3, 0.5f, 2, 4, -1, 8}));
}

// DivideByCounts multiplies every row (by 1 for counts 0 and 1, by a table or a division
// otherwise): the same bits as dividing only the counted rows, for counts across the
// table's end and gradients of every sign and scale; checked at every width below.
void CheckDivideByCounts(int width) {
  std::vector<std::uint32_t> counts;
  for (std::uint32_t c = 0; c < 3000; ++c) counts.push_back(c);
  counts.push_back(1u << 20);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(counts.size() * width);
  for (std::size_t i = 0; i < g.size(); ++i) g[i] = normal(rng) * std::ldexp(1.0f, i % 40 - 20);
  g[3] = -0.0f;
  std::vector<float> want = g, want_sqrt = g;
  for (std::size_t u = 0; u < counts.size(); ++u) {
    if (counts[u] <= 1) continue;
    const float inv = 1.0f / static_cast<float>(counts[u]);
    const float inv_sqrt = 1.0f / std::sqrt(static_cast<float>(counts[u]));
    for (int j = 0; j < width; ++j) want[u * width + j] *= inv;
    for (int j = 0; j < width; ++j) want_sqrt[u * width + j] *= inv_sqrt;
  }
  std::vector<float> g_sqrt = g;
  DivideByCounts(counts, width, g.data());
  ASSERT_EQ(0, std::memcmp(g.data(), want.data(), g.size() * sizeof(float)));
  DivideBySqrtCounts(counts, width, g_sqrt.data());  // key_sqrt: the same for 1 / sqrt(count)
  ASSERT_EQ(0, std::memcmp(g_sqrt.data(), want_sqrt.data(), g.size() * sizeof(float)));
}

// The FM's row widths 1 + k for k 4, 8, 16, 32 (each a loop of constant width) and others.
TEST(DivideByCountsTest, SameBitsAsScalingOnlyCountedRows) {
  for (const int width : {1, 2, 5, 9, 10, 17, 33, 313}) {
    SCOPED_TRACE("width " + std::to_string(width));
    CheckDivideByCounts(width);
  }
}

// optimizer.gradient: key_sqrt divides each key's summed gradient by the square root of its
// count: key 5 (3 rows) by sqrt(3), the others (1 row) not at all; counts past the table's
// end by the same rule.
TEST(DivideByCountsTest, SqrtPerKeyByHand) {
  const std::vector<std::uint32_t> counts = {4, 3, 1, 0, 1u << 20};
  const int width = 2;
  std::vector<float> g = {4, -8, 3, 6, 2, 4, -1, 8, 1024, 2048};
  DivideBySqrtCounts(counts, width, g.data());
  const float s3 = 1.0f / std::sqrt(3.0f);
  const std::vector<float> want = {2, -4, 3 * s3, 6 * s3, 2, 4, -1, 8, 1, 2};
  ASSERT_EQ(g.size(), want.size());
  for (std::size_t i = 0; i < g.size(); ++i) EXPECT_FLOAT_EQ(g[i], want[i]) << i;
}

// The trainer's per-key scaling (PreparedBatch::PlanScaling, applied by the kernel at each
// key's last row) on a gradient table full of garbage gives the bits of the old way: a zeroed
// table, the kernel, then DivideByCounts / DivideBySqrtCounts over the finished table. FM and
// FFM, rows with a key twice, values of one and not; every key listed once, at its last row.
TEST(PlanScalingTest, KernelScalingEqualsScalingTheFinishedTable) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<Key> key(100, 160);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  PreparedBatch b;
  for (int r = 0; r < 50; ++r) {
    const Key repeated = key(rng);
    for (std::uint32_t f = 0; f < 6; ++f)
      b.block.AddFeature(f == 5 ? repeated : key(rng), r % 2 ? 1.0f : 0.5f + f, f % 3);
    b.block.AddFeature(repeated, 1.0f, 1);
    b.block.FinishRow(static_cast<float>(r % 3 == 0));
  }
  KeyIndex index;
  b.Deduplicate(&index);
  for (const ModelShape shape : {FmShape(8), FfmShape(4, 3), FmShape(6)}) {
    for (const GradientScale g : {GradientScale::kKeyMean, GradientScale::kKeySqrt}) {
      for (const bool fold : {false, true}) {  // a row width past FoldsGradRows: lists made
        SCOPED_TRACE(shape.ToString() + " " + ToString(g) + (fold ? " lists" : ""));
        b.PlanScaling(g, fold ? 1 << 20 : shape.row_width());
        ASSERT_EQ(b.last_offsets.empty(), !fold);
        ASSERT_EQ(b.scale_factors.empty(), !fold);  // a small table: scaled after the kernel
        std::vector<int> listed(b.keys.size(), fold ? 0 : 1);
        for (std::size_t r = 0; fold && r < b.block.rows(); ++r) {
          for (std::uint32_t i = b.last_offsets[r]; i < b.last_offsets[r + 1]; ++i) {
            ++listed[b.last_ids[i]];
            bool later = false;
            for (std::size_t j = b.block.offsets[r + 1]; j < b.local.size(); ++j) {
              later |= b.local[j] == b.last_ids[i];
            }
            EXPECT_FALSE(later) << "key " << b.last_ids[i] << " listed before its last row";
          }
        }
        EXPECT_EQ(listed[0], fold ? 0 : 1);  // never the bias (without lists: all 1)
        for (std::size_t u = 1; u < listed.size(); ++u) EXPECT_EQ(listed[u], 1) << u;
        const std::size_t width = static_cast<std::size_t>(shape.row_width());
        std::vector<float> params(b.keys.size() * width);
        for (float& p : params) p = normal(rng);
        ModelBatch v{b.block.rows(), b.block.labels.data(), b.block.offsets.data(),
                     b.local.data(), b.block.values.data(), b.block.fields.data()};
        const auto kernel = MakeKernel(shape, Loss::kLogistic);
        auto scale_after = [&](std::vector<float>* grads) {  // the worker's way without a plan
          if (g == GradientScale::kKeyMean)
            DivideByCounts(b.counts, shape.row_width(), grads->data());
          if (g == GradientScale::kKeySqrt) {
            DivideBySqrtCounts(b.counts, shape.row_width(), grads->data());
          }
        };
        std::vector<float> want(params.size(), 0.0f);
        kernel->ForwardBackward(v, params.data(), want.data(), nullptr);
        scale_after(&want);
        std::vector<float> got(params.size(), std::nanf(""));
        v.scaling = b.scaling();
        kernel->ForwardBackward(v, params.data(), got.data(), nullptr);
        if (!fold) scale_after(&got);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
      }
    }
  }
  b.PlanScaling(GradientScale::kSum, 9);
  EXPECT_EQ(b.scaling().factors, nullptr);
}

}  // namespace
}  // namespace fmps
