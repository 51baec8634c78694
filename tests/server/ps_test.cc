// KV client and server loop working together over the in-process transport.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/comm/control.h"
#include "common/comm/kv.h"
#include "common/comm/transport.h"
#include "server/server.h"
#include "server/store/param_store.h"
#include "worker/job/job.h"

namespace fmps {
namespace {

TEST(ServerOfKeyTest, BalancedOnZipfKeys) {
  // Zipf-distributed ids (rank r drawn with weight 1/r): distinct keys split across 4 servers.
  std::vector<std::uint64_t> counts(4, 0);
  std::uint64_t distinct = 0;
  unsigned long long x = 42;
  std::vector<bool> seen(2000000, false);
  for (int i = 0; i < 3000000; ++i) {
    x = Mix64(x + i);
    const double u = (x >> 11) * 0x1.0p-53;
    const std::uint64_t id = static_cast<std::uint64_t>(std::pow(2000000.0, u)) - 1;
    if (seen[id]) continue;
    seen[id] = true;
    ++distinct;
    ++counts[ServerOfKey(id, 4)];
  }
  const double mean = static_cast<double>(distinct) / 4;
  const double max = static_cast<double>(*std::max_element(counts.begin(), counts.end()));
  EXPECT_GT(distinct, 100000u);
  EXPECT_LE(max / mean, 1.05);
}

// Servers + a client over the in-process transport.
class PsFixture {
 public:
  PsFixture(int servers, int workers, Consistency consistency, int k = 2, float clip = 0.0f)
      : hub_(servers + workers + 1), servers_(servers), workers_(workers) {
    StoreOptions so;
    so.shape = FmShape(k);
    so.init_std = 0.1f;
    ServerOptions opts;
    opts.num_workers = workers;
    opts.first_worker_endpoint = servers;
    opts.consistency = consistency;
    opts.clip_gradient = clip;
    SgdParams sgd;
    sgd.lr = 1.0f;
    for (int s = 0; s < servers; ++s) {
      stores_.push_back(std::make_unique<ParamStore>(so, MakeSgd(sgd)));
      transports_.push_back(hub_.Connect(s));
    }
    for (int s = 0; s < servers; ++s) {
      threads_.emplace_back([this, s, opts]() mutable {
        opts.index = s;
        Server server(stores_[s].get(), transports_[s].get(), opts);
        try {
          server.Run();
        } catch (const TransportError&) {
        }
      });
    }
    KVClientOptions ko;
    ko.num_servers = servers;
    ko.shape = FmShape(k);
    ko.reply_timeout = std::chrono::seconds(20);
    for (int e = servers; e < servers + workers; ++e) {
      client_transports_.push_back(hub_.Connect(e));
      clients_.push_back(std::make_unique<KVClient>(client_transports_.back().get(), ko));
    }
    coordinator_ = hub_.Connect(servers + workers);
    control_.emplace(coordinator_.get(), std::chrono::seconds(20));
  }
  ~PsFixture() {
    ShutdownServers(&*control_, servers_);
    for (auto& t : threads_) t.join();
  }
  KVClient& worker(int w) { return *clients_[w]; }
  // The coordinator's control channel (endpoint servers + workers).
  ControlChannel& control() { return *control_; }
  ParamStore& store(int s) { return *stores_[s]; }

 private:
  InProcHub hub_;
  int servers_, workers_;
  std::vector<std::unique_ptr<ParamStore>> stores_;
  std::vector<std::unique_ptr<Transport>> transports_;
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<Transport>> client_transports_;
  std::vector<std::unique_ptr<KVClient>> clients_;
  std::unique_ptr<Transport> coordinator_;
  std::optional<ControlChannel> control_;
};

// KVClient::Push with a copy of `grads` (Push takes the vector's storage).
Timestamp PushCopy(KVClient& client, const PushRequest& request, std::vector<float> grads) {
  return client.Push(request, &grads);
}

TEST(KVTest, PullPushAcrossServersMatchesStores) {
  const int k = 2, width = 3;
  PsFixture ps(3, 1, Consistency::kAsync, k);
  std::vector<Key> keys;
  for (Key key = 100; key < 160; ++key) keys.push_back(key * 7919);
  std::vector<float> vals(keys.size() * width);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys, .create = true}, &vals));
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::vector<float> expected(k);
    InitialEmbedding(0, keys[i], k, 0.1f, expected.data());
    EXPECT_EQ(vals[i * width], 0.0f);
    EXPECT_EQ(vals[i * width + 1], expected[0]);
    EXPECT_EQ(vals[i * width + 2], expected[1]);
  }
  // SGD with lr 1: params -= grads.
  std::vector<float> grads(vals.size());
  for (std::size_t i = 0; i < grads.size(); ++i) grads[i] = 0.01f * static_cast<float>(i);
  ps.worker(0).Wait(PushCopy(ps.worker(0), {.keys = keys}, grads));
  std::vector<float> after(vals.size());
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys}, &after));
  for (std::size_t i = 0; i < after.size(); ++i) EXPECT_FLOAT_EQ(after[i], vals[i] - grads[i]);
  // Every key lives on exactly the server ServerOfKey names.
  std::size_t total = 0;
  for (int s = 0; s < 3; ++s) total += ps.store(s).size();
  EXPECT_EQ(total, keys.size());
  // Dump: every key once, each server's chunk ascending.
  std::vector<Key> dumped;
  DumpServers(&ps.control(), 3, width,
              [&](int s, std::span<const Key> ks, std::vector<float>&& vs) {
                EXPECT_TRUE(std::is_sorted(ks.begin(), ks.end()));
                for (std::size_t i = 0; i < ks.size(); ++i) {
                  EXPECT_EQ(ServerOfKey(ks[i], 3), s);
                  auto it = std::find(keys.begin(), keys.end(), ks[i]);
                  ASSERT_NE(it, keys.end());
                  const std::size_t pos = it - keys.begin();
                  EXPECT_EQ(vs[i * width + 1], after[pos * width + 1]);
                }
                dumped.insert(dumped.end(), ks.begin(), ks.end());
              });
  EXPECT_EQ(dumped.size(), keys.size());
}

// A push that refers to its keep_rows pull (no keys sent, no server lookups) updates the
// same rows a keyed push would, across servers, with two kept pulls interleaved.
TEST(KVTest, PushOfKeptRowsMatchesKeyedPush) {
  const int width = 3;
  PsFixture kept(3, 1, Consistency::kAsync);
  PsFixture keyed(3, 1, Consistency::kAsync);
  std::vector<Key> a, b;
  for (Key key = 1; key < 90; ++key) (key % 3 == 0 ? a : b).push_back(key * 104729);
  std::vector<float> va(a.size() * width), vb(b.size() * width), ga(va.size()), gb(vb.size());
  for (std::size_t i = 0; i < ga.size(); ++i) ga[i] = 0.01f * static_cast<float>(i);
  for (std::size_t i = 0; i < gb.size(); ++i) gb[i] = -0.02f * static_cast<float>(i);
  KVClient& c = kept.worker(0);
  const Timestamp pa = c.Pull({.keys = a, .create = true, .keep_rows = true}, &va);
  const Timestamp pb = c.Pull({.keys = b, .create = true, .keep_rows = true}, &vb);
  c.Wait(pa);
  c.Wait(pb);
  // Pushed in the other order than pulled.
  c.Wait(PushCopy(c, {.keys = b, .kept_pull = pb}, gb));
  c.Wait(PushCopy(c, {.keys = a, .kept_pull = pa}, ga));
  EXPECT_THROW(PushCopy(c, {.keys = a, .kept_pull = pa}, ga), std::logic_error);  // already pushed
  KVClient& d = keyed.worker(0);
  d.Wait(d.Pull({.keys = a, .create = true}, &va));
  d.Wait(d.Pull({.keys = b, .create = true}, &vb));
  d.Wait(PushCopy(d, {.keys = b}, gb));
  d.Wait(PushCopy(d, {.keys = a}, ga));
  std::vector<Key> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::vector<float> x(all.size() * width), y(all.size() * width);
  c.Wait(c.Pull({.keys = all}, &x));
  d.Wait(d.Pull({.keys = all}, &y));
  EXPECT_EQ(x, y);
  EXPECT_NE(x[width], va[width]);  // the pushes did change something
}

// One async server (k = 1, SGD) on endpoint 0 of an in-process hub, run on its own thread,
// fed raw messages from endpoint 1 (Recv takes its replies); Finish() waits for it to stop
// on a protocol error.
class LoneServer {
 public:
  LoneServer()
      : hub_(2),
        server_transport_(hub_.Connect(0)),
        client_(hub_.Connect(1)),
        store_(StoreOptions{.shape = FmShape(1)}, MakeSgd(SgdParams{})),
        server_(&store_, server_transport_.get(), ServerOptions{}),
        thread_([this] {
          try {
            server_.Run();
          } catch (const TransportError& e) {
            error_ = e.what();
          }
        }) {}
  ~LoneServer() {
    if (!thread_.joinable()) return;
    hub_.Abort("test over");  // a server still serving: end its loop
    thread_.join();
  }
  void Send(Message m) { client_->Send(0, std::move(m)); }
  void SendControl(pb::Control m) { client_->SendControl(0, std::move(m)); }
  std::optional<Message> Recv() { return client_->Recv(std::chrono::seconds(10)); }
  std::optional<Received> RecvAny() {
    return client_->Receive(std::chrono::seconds(10), Channels::kBoth);
  }
  // Waits for the server loop to end; returns its error message.
  const std::string& Finish() {
    thread_.join();
    return error_;
  }
  ParamStore& store() { return store_; }

 private:
  InProcHub hub_;
  std::unique_ptr<Transport> server_transport_, client_;
  ParamStore store_;
  Server server_;
  std::string error_;
  std::thread thread_;
};

// A server refuses a push that refers to a pull it does not keep, and more kept pulls per
// sender than kMaxKeptPulls: a protocol error, never an update of arbitrary rows.
TEST(KVTest, ServerRefusesUnknownOrTooManyKeptPulls) {
  for (const bool too_many : {false, true}) {
    LoneServer server;
    const int pulls = too_many ? kMaxKeptPulls + 1 : 1;
    for (int i = 0; i < pulls; ++i) {
      Message pull;
      pull.kind = MsgKind::kPull;
      pull.request_id = 1 + i;
      pull.flags = DataFlag::kCreate | DataFlag::kKeepRows;
      pull.keys = {5};
      server.Send(std::move(pull));
    }
    if (!too_many) {
      Message push;
      push.kind = MsgKind::kPush;
      push.request_id = 9;
      push.flags = DataFlag::kKeysOfPull;
      push.ref = 2;  // not the pull's id (1)
      push.vals = {1.0f, 1.0f};
      server.Send(std::move(push));
    }
    const std::string& error = server.Finish();
    EXPECT_NE(error.find(too_many ? "too many kept pulls" : "unknown pull"), std::string::npos)
        << error;
    std::vector<float> row(2);
    const Key key = 5;
    server.store().Pull(&key, 1, false, row.data());
    EXPECT_EQ(row[0], 0.0f);
  }
}

// Async push replies may be held back while requests are queued (Server, "Replies"), but
// every reply arrives, in the order its request was served: a push's with nothing queued
// behind it, and one held for a queued pull ahead of that pull's.
TEST(KVTest, ServerAnswersEveryRequestInOrder) {
  LoneServer server;
  auto pull = [](std::uint64_t id) {
    Message m;
    m.kind = MsgKind::kPull;
    m.request_id = id;
    m.flags = DataFlag::kCreate | DataFlag::kKeepRows;
    m.keys = {5};
    return m;
  };
  auto push = [](std::uint64_t id, std::uint64_t pull_id) {
    Message m;
    m.kind = MsgKind::kPush;
    m.request_id = id;
    m.flags = DataFlag::kKeysOfPull;
    m.ref = pull_id;
    m.vals = {1.0f, 1.0f};
    return m;
  };
  server.Send(pull(1));
  server.Send(push(2, 1));  // nothing follows: its reply must still come
  std::vector<std::pair<MsgKind, std::uint64_t>> got;
  for (int i = 0; i < 2; ++i) {
    std::optional<Message> r = server.Recv();
    ASSERT_TRUE(r.has_value()) << "reply " << i << " never came";
    got.emplace_back(r->kind, r->request_id);
  }
  // A batch of requests queued at once: pull, push, pull, push, pull.
  for (std::uint64_t b = 0; b < 3; ++b) {
    server.Send(pull(10 + 2 * b));
    if (b < 2) server.Send(push(11 + 2 * b, 10 + 2 * b));
  }
  for (int i = 0; i < 5; ++i) {
    std::optional<Message> r = server.Recv();
    ASSERT_TRUE(r.has_value()) << "reply " << 2 + i << " never came";
    got.emplace_back(r->kind, r->request_id);
  }
  const std::vector<std::pair<MsgKind, std::uint64_t>> want = {
      {MsgKind::kPullReply, 1},  {MsgKind::kPushReply, 2},  {MsgKind::kPullReply, 10},
      {MsgKind::kPushReply, 11}, {MsgKind::kPullReply, 12}, {MsgKind::kPushReply, 13},
      {MsgKind::kPullReply, 14}};
  EXPECT_EQ(got, want);
  // All three pushes of key 5 (gradient 1) were applied once each: SGD gives w = -3 lr.
  std::vector<float> row(2);
  const Key key = 5;
  server.store().Pull(&key, 1, false, row.data());
  EXPECT_NEAR(row[0], -3 * SgdParams{}.lr, 1e-6f);
}

// A keyed async push whose gradients or counts do not match its keys is a protocol error,
// never a read past the message.
TEST(KVTest, ServerRefusesMisSizedKeyedPush) {
  for (const bool bad_counts : {false, true}) {
    LoneServer server;
    Message push;
    push.kind = MsgKind::kPush;
    push.request_id = 1;
    push.keys = {5, 6};
    push.vals = bad_counts ? std::vector<float>(4, 1.0f) : std::vector<float>{1.0f};
    if (bad_counts) push.counts = {1};
    server.Send(std::move(push));
    const std::string& error = server.Finish();
    EXPECT_NE(error.find(bad_counts ? "count size mismatch" : "gradient size mismatch"),
              std::string::npos)
        << error;
    EXPECT_EQ(server.store().size(), 0u);
  }
}

TEST(KVTest, PullWithoutCreateReadsZerosAndCreatesNothing) {
  PsFixture ps(2, 1, Consistency::kAsync);
  std::vector<Key> keys = {1, 2, 3};
  std::vector<float> vals(9, 5.0f);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys}, &vals));
  for (float v : vals) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(ps.store(0).size() + ps.store(1).size(), 0u);
}

TEST(KVTest, BspSumsWorkersAndWaitsForAll) {
  PsFixture ps(2, 2, Consistency::kBsp, 1);
  std::vector<Key> keys = {10, 20};
  std::vector<float> init(4);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys, .create = true}, &init));
  std::vector<float> g0 = {1, 2, 3, 4}, g1 = {10, 20, 30, 40};
  // Worker 0 pushes step 0; it is not applied until worker 1 pushes too.
  Timestamp t0 =
      PushCopy(ps.worker(0), {.keys = keys, .bsp = BspStep{.step = 0, .has_data = true}}, g0);
  std::vector<float> mid(4);
  Timestamp tp = ps.worker(1).Pull({.keys = keys}, &mid);
  ps.worker(1).Wait(tp);
  EXPECT_EQ(mid, init);
  // Worker 1 pushes only key 20 and says it had no data... it still counts for the step.
  std::vector<Key> k1 = {20};
  std::vector<float> g1b = {30, 40};
  Timestamp t1 =
      PushCopy(ps.worker(1), {.keys = k1, .bsp = BspStep{.step = 0, .has_data = false}}, g1b);
  EXPECT_TRUE(ps.worker(0).Wait(t0).any_had_data);
  EXPECT_TRUE(ps.worker(1).Wait(t1).any_had_data);
  std::vector<float> after(4);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys}, &after));
  EXPECT_FLOAT_EQ(after[0], init[0] - 1);
  EXPECT_FLOAT_EQ(after[1], init[1] - 2);
  EXPECT_FLOAT_EQ(after[2], init[2] - 3 - 30);
  EXPECT_FLOAT_EQ(after[3], init[3] - 4 - 40);
  // Step 1: nobody has data -> both learn the epoch is over.
  Timestamp a = PushCopy(ps.worker(0), {.bsp = BspStep{.step = 1}}, {});
  Timestamp b = PushCopy(ps.worker(1), {.bsp = BspStep{.step = 1}}, {});
  EXPECT_FALSE(ps.worker(0).Wait(a).any_had_data);
  EXPECT_FALSE(ps.worker(1).Wait(b).any_had_data);
  (void)g1;
}

// optimizer.clip_gradient, worked by hand with SGD (lr 1: param -= clipped gradient).
TEST(KVTest, ClipGradientClampsEveryElementBeforeTheUpdate) {
  PsFixture ps(1, 1, Consistency::kAsync, /*k=*/2, /*clip=*/0.5f);
  const std::vector<Key> keys = {7, 8};
  std::vector<float> init(6);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys, .create = true}, &init));
  // Key 7: w gradient 3 -> 0.5, v gradients -0.2 (kept), -7 -> -0.5.
  // Key 8: 0.5 and -0.5 are on the bound (kept), 1e30 -> 0.5.
  const std::vector<float> grads = {3.0f, -0.2f, -7.0f, 0.5f, -0.5f, 1e30f};
  ps.worker(0).Wait(PushCopy(ps.worker(0), {.keys = keys}, grads));
  std::vector<float> after(6);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys}, &after));
  const float clipped[6] = {0.5f, -0.2f, -0.5f, 0.5f, -0.5f, 0.5f};
  for (int i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(after[i], init[i] - clipped[i]) << i;
}

// bsp clips the step's sum over workers, not each worker's push.
TEST(KVTest, ClipGradientInBspClipsTheSum) {
  PsFixture ps(1, 2, Consistency::kBsp, /*k=*/1, /*clip=*/1.0f);
  const std::vector<Key> keys = {5};
  std::vector<float> init(2);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys, .create = true}, &init));
  const std::vector<float> g = {0.75f, 0.25f};  // sums: 1.5 -> 1, 0.5 (kept)
  Timestamp a =
      PushCopy(ps.worker(0), {.keys = keys, .bsp = BspStep{.step = 0, .has_data = true}}, g);
  Timestamp b =
      PushCopy(ps.worker(1), {.keys = keys, .bsp = BspStep{.step = 0, .has_data = true}}, g);
  ps.worker(0).Wait(a);
  ps.worker(1).Wait(b);
  std::vector<float> after(2);
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys}, &after));
  EXPECT_FLOAT_EQ(after[0], init[0] - 1.0f);
  EXPECT_FLOAT_EQ(after[1], init[1] - 0.5f);
}

// A row with a non-finite gradient never reaches a parameter, with or without clipping (which
// leaves non-finite elements alone); the servers count it (kStats).
TEST(KVTest, NonFiniteGradientRowsAreRejectedAndCounted) {
  for (const Consistency c : {Consistency::kAsync, Consistency::kBsp}) {
    for (const float clip : {0.0f, 0.5f}) {
      PsFixture ps(2, 1, c, /*k=*/1, clip);
      const std::vector<Key> keys = {1, 2, 3, 4};
      std::vector<float> init(8);
      ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys, .create = true}, &init));
      const float nan = std::nanf("");
      const std::vector<float> grads = {0.25f, nan, 0.25f, 0.25f, INFINITY, 0.0f, 0.0f, -INFINITY};
      const std::optional<BspStep> bsp = c == Consistency::kBsp
                                             ? std::optional(BspStep{.step = 0, .has_data = true})
                                             : std::nullopt;
      ps.worker(0).Wait(PushCopy(ps.worker(0), {.keys = keys, .bsp = bsp}, grads));
      std::vector<float> after(8);
      ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys}, &after));
      EXPECT_EQ(after[0], init[0]);  // key 1 rejected: unchanged
      EXPECT_EQ(after[1], init[1]);
      EXPECT_FLOAT_EQ(after[2], init[2] - 0.25f);  // key 2 applied
      EXPECT_FLOAT_EQ(after[3], init[3] - 0.25f);
      for (int i = 4; i < 8; ++i) EXPECT_EQ(after[i], init[i]) << i;  // keys 3, 4 rejected
      EXPECT_EQ(CollectServerStats(&ps.control(), 2).rejected_rows, 3u);
      if (c == Consistency::kBsp) {  // end the bsp epoch so the servers shut down cleanly
        ps.worker(0).Wait(PushCopy(ps.worker(0), {.bsp = BspStep{.step = 1}}, {}));
      }
    }
  }
}

// A data message of a kind a server never receives, or with a flag its kind does not
// allow, is a protocol error: control travels only as typed control messages.
TEST(KVTest, ServerRefusesDataMessagesThatAreNotRequests) {
  for (int c = 0; c < 4; ++c) {
    LoneServer server;
    Message m;
    m.kind = c == 0 ? MsgKind::kPullReply : c == 1 ? MsgKind::kDumpChunk : MsgKind::kPull;
    if (c == 2) m.flags = DataFlag::kCut;
    if (c == 3) m.kind = static_cast<MsgKind>(7);  // a control kind of the old protocol
    m.keys = {5};
    server.Send(std::move(m));
    const std::string& error = server.Finish();
    EXPECT_NE(error.find(c == 2 ? "flags not allowed" : "unexpected data message kind"),
              std::string::npos)
        << c << ": " << error;
    EXPECT_NE(error.find("endpoint 1"), std::string::npos) << error;
    EXPECT_EQ(server.store().size(), 0u);
  }
}

// A server refuses control messages meant for the coordinator or a worker.
TEST(KVTest, ServerRefusesControlMessagesOfOtherRoles) {
  LoneServer server;
  pb::Control ready;
  ready.mutable_cut_ready()->mutable_report()->set_rows(3);
  server.SendControl(std::move(ready));
  const std::string& error = server.Finish();
  EXPECT_NE(error.find("unexpected control message"), std::string::npos) << error;
}

// Stats and dumps answer on the control channel; the dump's rows come as data messages, all
// before its DumpDone; a cut makes the next push reply carry kCut.
TEST(KVTest, ServerAnswersControlRequests) {
  LoneServer server;
  Message pull;
  pull.kind = MsgKind::kPull;
  pull.request_id = 1;
  pull.flags = DataFlag::kCreate;
  pull.keys = {9, 4};
  server.Send(std::move(pull));
  ASSERT_TRUE(server.Recv().has_value());
  pb::Control cut;
  cut.mutable_cut_request()->set_seq(1);
  server.SendControl(std::move(cut));
  Message push;
  push.kind = MsgKind::kPush;
  push.request_id = 2;
  push.keys = {4};
  push.vals = {0.5f, 0.5f};
  server.Send(std::move(push));
  std::optional<Message> reply = server.Recv();
  ASSERT_TRUE(reply.has_value());
  EXPECT_TRUE(reply->flags.has(DataFlag::kCut));
  pb::Control stats;
  stats.mutable_stats_request();
  server.SendControl(std::move(stats));
  std::optional<Received> r = server.RecvAny();
  ASSERT_TRUE(r && std::holds_alternative<ControlMessage>(*r));
  const pb::Stats& got = std::get<ControlMessage>(*r).body.stats();
  EXPECT_EQ(got.pulls(), 1u);
  EXPECT_EQ(got.keys_pulled(), 2u);
  EXPECT_EQ(got.pushes(), 1u);
  EXPECT_EQ(got.keys_pushed(), 1u);
  pb::Control dump;
  dump.mutable_dump_request();
  server.SendControl(std::move(dump));
  r = server.RecvAny();
  ASSERT_TRUE(r && std::holds_alternative<Message>(*r));
  const Message& chunk = std::get<Message>(*r);
  EXPECT_EQ(chunk.kind, MsgKind::kDumpChunk);
  // The store's order (the coordinator sorts the dump: SaveModelFromServers).
  std::vector<Key> dumped = chunk.keys;
  std::sort(dumped.begin(), dumped.end());
  EXPECT_EQ(dumped, (std::vector<Key>{4, 9}));
  EXPECT_EQ(chunk.vals.size(), 4u);
  r = server.RecvAny();
  ASSERT_TRUE(r && std::holds_alternative<ControlMessage>(*r));
  EXPECT_EQ(std::get<ControlMessage>(*r).body.dump_done().store_bytes(),
            server.store().MemoryBytes());
  pb::Control shutdown;
  shutdown.mutable_shutdown();
  server.SendControl(std::move(shutdown));
  EXPECT_EQ(server.Finish(), "");
}

// The KV client's data path never consumes a control message (it waits for the control
// channel), and a data message that answers none of its requests is a protocol error.
TEST(KVTest, ClientDataPathLeavesControlAloneAndRefusesStrayData) {
  PsFixture ps(1, 1, Consistency::kAsync, /*k=*/1);
  // The coordinator (endpoint 2) sends worker 0 (endpoint 1) a control message ahead of the
  // server's pull reply.
  pb::Control resume;
  resume.mutable_cut_resume()->set_seq(4);
  ps.control().Send(1, resume);
  std::vector<float> vals;
  const std::vector<Key> keys = {3};
  ps.worker(0).Wait(ps.worker(0).Pull({.keys = keys, .create = true}, &vals));
  EXPECT_EQ(vals.size(), 2u);
  // Stray data: a push reply for no request of worker 0.
  Message stray;
  stray.kind = MsgKind::kPushReply;
  stray.request_id = 12345;
  ps.control().transport()->Send(1, std::move(stray));
  const Timestamp t = ps.worker(0).Pull({.keys = keys}, &vals);
  try {
    ps.worker(0).Wait(t);
    FAIL() << "a stray data message must be refused";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("unexpected data message"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fmps
