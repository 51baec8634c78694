// KVClient over a transport that decodes messages (as MPI does): the pull buffers it no
// longer needs are lent to the transport (Transport::Lend) for later replies, instead of
// piling up as spares that only pushes would take (evaluation pulls make no pushes).
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <vector>

#include "common/comm/kv.h"
#include "common/comm/transport.h"

namespace fmps {
namespace {

// An in-process endpoint that claims not to move buffers and records what it is lent.
class DecodingTransport : public Transport {
 public:
  explicit DecodingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
  int endpoint() const override { return inner_->endpoint(); }
  void Send(int dest, Message msg) override { inner_->Send(dest, std::move(msg)); }
  void SendControl(int dest, pb::Control msg) override { inner_->SendControl(dest, msg); }
  std::optional<Received> Receive(std::chrono::milliseconds timeout, Channels from) override {
    return inner_->Receive(timeout, from);
  }
  bool moves_buffers() const override { return false; }
  void Lend(std::vector<float>&& buffer) override { lent.push_back(std::move(buffer)); }

  std::vector<std::vector<float>> lent;

 private:
  std::unique_ptr<Transport> inner_;
};

TEST(KVClientLendTest, PullBuffersNoLongerNeededAreLentToADecodingTransport) {
  InProcHub hub(2);
  std::unique_ptr<Transport> server = hub.Connect(0);
  DecodingTransport client_transport(hub.Connect(1));
  const ModelShape shape = FmShape(3);
  KVClient client(&client_transport, {.num_servers = 1, .shape = shape});
  const std::vector<Key> keys = {5, 9, 2, 7};
  const std::size_t n = keys.size() * shape.row_width();
  std::vector<float> vals;
  for (int round = 0; round < 4; ++round) {
    const Timestamp ts = client.Pull({.keys = keys, .create = false}, &vals);
    std::optional<Message> req = server->Recv(std::chrono::seconds(5));
    ASSERT_TRUE(req.has_value());
    EXPECT_TRUE(req->vals.empty());  // nothing lent with the request over this transport
    Message reply;
    reply.kind = MsgKind::kPullReply;
    reply.request_id = req->request_id;
    reply.vals.assign(n, static_cast<float>(round));
    server->Send(req->sender, std::move(reply));
    client.Wait(ts);
    ASSERT_EQ(vals, std::vector<float>(n, static_cast<float>(round)));
  }
  // Each reply's array was swapped in; the caller's old one kept as the one spare a push
  // would take (first round), then lent (later rounds).
  ASSERT_EQ(client_transport.lent.size(), 3u);
  for (const auto& b : client_transport.lent) EXPECT_GE(b.capacity(), n);
}

}  // namespace
}  // namespace fmps
