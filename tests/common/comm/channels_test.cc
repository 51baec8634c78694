// The in-process transport's two channels and ControlChannel.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "common/base/error.h"
#include "common/comm/control.h"
#include "common/comm/transport.h"

namespace fmps {
namespace {

TEST(InProcTest, DeliversInOrderAndAbortWakesReceivers) {
  InProcHub hub(2);
  auto a = hub.Connect(0);
  auto b = hub.Connect(1);
  for (int i = 0; i < 5; ++i) {
    Message m;
    m.request_id = i;
    a->Send(1, std::move(m));
  }
  for (int i = 0; i < 5; ++i) {
    auto m = b->Recv(std::chrono::milliseconds(100));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->request_id, static_cast<std::uint64_t>(i));
    EXPECT_EQ(m->sender, 0);
  }
  EXPECT_FALSE(b->Recv(std::chrono::milliseconds(10)).has_value());
  std::thread waiter([&] { EXPECT_THROW(b->Recv(std::chrono::minutes(5)), TransportError); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  hub.Abort("worker 3 failed");
  waiter.join();
  try {
    a->Send(1, Message());
    FAIL() << "send after abort must throw";
  } catch (const TransportError& e) {
    EXPECT_STREQ(e.what(), "worker 3 failed");
  }
}

// Data and control share each link's order: a receive on one channel leaves the other's
// messages queued, a receive on both returns them in send order.
TEST(InProcTest, ChannelsAreSeparateButKeepOneSendersOrder) {
  InProcHub hub(2);
  auto a = hub.Connect(0);
  auto b = hub.Connect(1);
  for (std::uint64_t i = 0; i < 6; ++i) {
    if (i % 2 == 0) {
      Message m;
      m.request_id = i;
      a->Send(1, std::move(m));
    } else {
      pb::Control c;
      c.mutable_snapshot()->set_seq(i);
      a->SendControl(1, std::move(c));
    }
  }
  std::optional<ControlMessage> c = b->RecvControl(std::chrono::milliseconds(100));
  ASSERT_TRUE(c.has_value());  // skips the data message in front of it
  EXPECT_EQ(c->body.snapshot().seq(), 1u);
  EXPECT_EQ(c->sender, 0);
  std::optional<Message> m = b->Recv(std::chrono::milliseconds(100));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->request_id, 0u);
  for (std::uint64_t i = 2; i < 6; ++i) {
    std::optional<Received> r = b->Receive(std::chrono::milliseconds(100), Channels::kBoth);
    ASSERT_TRUE(r.has_value());
    ASSERT_EQ(std::holds_alternative<ControlMessage>(*r), i % 2 == 1) << i;
    if (i % 2 == 1) {
      EXPECT_EQ(std::get<ControlMessage>(*r).body.snapshot().seq(), i);
    } else {
      EXPECT_EQ(std::get<Message>(*r).request_id, i);
    }
  }
  EXPECT_FALSE(b->Receive(std::chrono::milliseconds(0), Channels::kBoth).has_value());
  EXPECT_THROW(a->SendControl(1, pb::Control()), TransportError);  // no body
}

// ControlChannel takes messages by type (and match), keeping the others in arrival order.
TEST(ControlChannelTest, TakesByTypeAndKeepsTheRest) {
  InProcHub hub(2);
  auto a = hub.Connect(0);
  auto b = hub.Connect(1);
  ControlChannel control(b.get(), std::chrono::milliseconds(200));
  for (std::uint64_t seq : {1, 2, 3}) {
    pb::Control ack;
    ack.mutable_snapshot_ack()->set_seq(seq);
    a->SendControl(1, std::move(ack));
  }
  pb::Control resume;
  resume.mutable_cut_resume()->set_seq(9);
  a->SendControl(1, std::move(resume));
  Message data;
  data.request_id = 77;
  a->Send(1, std::move(data));
  EXPECT_EQ(control.TryTake(pb::Control::kCutResume)->body.cut_resume().seq(), 9u);
  EXPECT_FALSE(control.TryTake(pb::Control::kCutResume).has_value());
  const auto seq2 = [](const ControlMessage& m) { return m.body.snapshot_ack().seq() == 2; };
  EXPECT_EQ(control.WaitFor(pb::Control::kSnapshotAck, "ack", seq2).body.snapshot_ack().seq(), 2u);
  EXPECT_EQ(control.TryTake(pb::Control::kSnapshotAck)->body.snapshot_ack().seq(), 1u);
  EXPECT_EQ(control.TryTake(pb::Control::kSnapshotAck)->body.snapshot_ack().seq(), 3u);
  try {
    control.WaitFor(pb::Control::kStats, "server statistics");
    FAIL() << "WaitFor must time out";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("no server statistics"), std::string::npos) << e.what();
  }
  // The data message was never taken by the control channel.
  std::optional<Message> m = b->Recv(std::chrono::milliseconds(0));
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->request_id, 77u);
}

}  // namespace
}  // namespace fmps
