// The server's pull reply over a transport that checksums values: filled block by block and
// hashed as it goes (Server::PullInto), it carries the same values as one store Pull and the
// same checksum as one hash of all of them; over a transport that does not checksum, none.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/error.h"
#include "common/comm/transport.h"
#include "common/comm/wire.h"
#include "server/server.h"
#include "server/store/param_store.h"

namespace fmps {
namespace {

constexpr std::chrono::seconds kWait{20};

// An in-process endpoint that says it checksums values (as MPI does for big arrays).
class ChecksummingTransport : public Transport {
 public:
  explicit ChecksummingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  int endpoint() const override { return inner_->endpoint(); }
  void Send(int dest, Message msg) override { inner_->Send(dest, std::move(msg)); }
  void SendControl(int dest, pb::Control msg) override { inner_->SendControl(dest, msg); }
  std::optional<Received> Receive(std::chrono::milliseconds timeout, Channels from) override {
    return inner_->Receive(timeout, from);
  }
  bool moves_buffers() const override { return true; }
  bool ChecksumsValues(std::size_t) const override { return true; }

 private:
  std::unique_ptr<Transport> inner_;
};

StoreOptions WideStore() {
  StoreOptions so;
  so.shape = FmShape(300);  // 301 floats a key: 217 keys per 256 KB block
  so.init_std = 0.1f;
  return so;
}

std::unique_ptr<ParamStore> MakeStore() {
  SgdParams sgd;
  sgd.lr = 0.5f;
  return std::make_unique<ParamStore>(WideStore(), MakeSgd(sgd));
}

std::vector<Key> Keys(std::size_t n, Key base) {
  std::vector<Key> keys(n);
  for (std::size_t i = 0; i < n; ++i) keys[i] = base + i * 7919;
  return keys;
}

// One server on endpoint 0 (checksumming or not), a client on endpoint 1.
class PullChecksumTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    std::unique_ptr<Transport> st = hub_.Connect(0);
    if (GetParam()) st = std::make_unique<ChecksummingTransport>(std::move(st));
    server_transport_ = std::move(st);
    client_ = hub_.Connect(1);
    thread_ = std::thread([this] {
      ServerOptions opts;
      Server server(store_.get(), server_transport_.get(), opts);
      try {
        server.Run();
      } catch (const TransportError&) {
      }
    });
  }
  void TearDown() override { Stop(); }
  // Ends the server (its store is the test's again).
  void Stop() {
    hub_.Abort("test over");
    if (thread_.joinable()) thread_.join();
  }
  Message Roundtrip(Message m) {
    client_->Send(0, std::move(m));
    std::optional<Message> r = client_->Recv(kWait);
    if (!r) throw std::runtime_error("no reply");
    return std::move(*r);
  }
  Message Pull(const std::vector<Key>& keys, DataFlags flags, std::uint64_t id) {
    Message m;
    m.kind = MsgKind::kPull;
    m.request_id = id;
    m.flags = flags;
    m.keys = keys;
    return Roundtrip(std::move(m));
  }

  InProcHub hub_{2};
  std::unique_ptr<ParamStore> store_ = MakeStore();
  std::unique_ptr<Transport> server_transport_;
  std::unique_ptr<Transport> client_;
  std::thread thread_;
};

std::uint64_t HashOf(const std::vector<float>& vals) {
  StreamChecksum c;
  c.Update(vals);
  return c.Digest();
}

// Blocked fills (a ragged last block, kept rows, new and old keys, reads without create)
// give the one-shot Pull's values; the checksum is the one-shot hash, set only when the
// transport checksums.
TEST_P(PullChecksumTest, BlockedPullGivesOneShotValuesAndChecksum) {
  std::unique_ptr<ParamStore> reference = MakeStore();
  const std::size_t width = static_cast<std::size_t>(store_->row_width());
  std::uint64_t id = 0;
  for (std::size_t n : {std::size_t{1}, std::size_t{217}, std::size_t{1000}, std::size_t{2003}}) {
    SCOPED_TRACE(n);
    const std::vector<Key> keys = Keys(n, n * 3);
    for (const DataFlags flags :
         {DataFlags(DataFlag::kCreate), DataFlag::kCreate | DataFlag::kKeepRows, DataFlags()}) {
      const Message reply = Pull(keys, flags, ++id);
      std::vector<float> want(n * width);
      reference->Pull(keys.data(), n, flags.has(DataFlag::kCreate), want.data());
      ASSERT_EQ(reply.vals, want);
      if (GetParam()) {
        ASSERT_TRUE(reply.vals_checksum.has_value());
        EXPECT_EQ(*reply.vals_checksum, HashOf(want));
      } else {
        EXPECT_FALSE(reply.vals_checksum.has_value());
      }
      if (!flags.has(DataFlag::kKeepRows)) continue;
      // The kept handles of every block: a push of the kept rows updates exactly these keys.
      Message push;
      push.kind = MsgKind::kPush;
      push.request_id = ++id;
      push.flags = DataFlag::kKeysOfPull;
      push.ref = reply.request_id;
      push.vals.assign(n * width, 0.25f);
      ASSERT_EQ(Roundtrip(std::move(push)).kind, MsgKind::kPushReply);
      const std::vector<float> grads(n * width, 0.25f);
      reference->Push(keys.data(), n, grads.data(), nullptr);
    }
  }
  Stop();
  EXPECT_EQ(store_->size(), reference->size());
  const std::vector<Key> all = Keys(2003, 2003 * 3);
  std::vector<float> got(all.size() * width), want(all.size() * width);
  store_->Pull(all.data(), all.size(), false, got.data());
  reference->Pull(all.data(), all.size(), false, want.data());
  EXPECT_EQ(got, want);
}

INSTANTIATE_TEST_SUITE_P(Transports, PullChecksumTest, ::testing::Bool());

}  // namespace
}  // namespace fmps
