// MpiTransport between real MPI ranks. Run by ctest under mpiexec with 3 ranks
// (oversubscribed on a small machine); every rank runs every test, each on its own
// duplicate of MPI_COMM_WORLD, and the exit status is the same on all ranks.
#include <gtest/gtest.h>
#include <mpi.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/base/error.h"
#include "common/comm/mpi/mpi_transport.h"
#include "common/comm/mpi/peer_probe.h"

namespace fmps {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr milliseconds kWait{20000};  // bound on every wait for a peer

double ProcessCpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A message whose contents follow from (from, to, seq), to check what arrives.
Message Numbered(int from, int to, std::uint64_t seq, std::size_t keys) {
  Message m;
  m.kind = MsgKind::kPush;
  m.request_id = seq;
  m.bsp_step = from * 1000 + to;
  m.flags = DataFlag::kHasData;
  m.keys.resize(keys);
  m.vals.resize(keys * 3);
  m.counts.resize(keys);
  for (std::size_t i = 0; i < keys; ++i) {
    m.keys[i] = seq * 1000003 + i;
    m.vals[3 * i] = static_cast<float>(i);
    m.vals[3 * i + 1] = static_cast<float>(seq);
    m.vals[3 * i + 2] = static_cast<float>(from - to);
    m.counts[i] = static_cast<std::uint32_t>(i + seq);
  }
  return m;
}

void ExpectNumbered(const Message& got, int to, std::uint64_t seq, std::size_t keys) {
  const Message want = Numbered(got.sender, to, seq, keys);
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.request_id, seq);
  EXPECT_EQ(got.bsp_step, want.bsp_step);
  EXPECT_EQ(got.flags, want.flags);
  EXPECT_EQ(got.keys, want.keys);
  EXPECT_EQ(got.vals, want.vals);
  EXPECT_EQ(got.counts, want.counts);
}

class MpiTransportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    options_.send_timeout = kWait;
  }
  // Runs after the test body has destroyed its transport.
  void TearDown() override {
    MPI_Barrier(comm_);
    MPI_Comm_free(&comm_);
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 0;
  MpiTransportOptions options_;
};

TEST_F(MpiTransportTest, PingPong) {
  ASSERT_EQ(size_, 3) << "run with mpiexec -n 3";
  MpiTransport t(comm_, options_);
  EXPECT_EQ(t.endpoint(), rank_);
  EXPECT_EQ(t.size(), 3);
  constexpr int kRounds = 2000;
  constexpr int kIdleRounds = 100;
  auto report = [](const char* what, std::vector<double>* us) {
    std::sort(us->begin(), us->end());
    double sum = 0;
    for (double v : *us) sum += v;
    const std::size_t n = us->size();
    std::printf(
        "[rank 0] ping-pong (%s), 3 ranks on %u cores: round trip median %.1f us, "
        "mean %.1f us, p90 %.1f us, p99 %.1f us\n",
        what, std::thread::hardware_concurrency(), (*us)[n / 2], sum / n, (*us)[n * 9 / 10],
        (*us)[n * 99 / 100]);
  };
  if (rank_ == 0) {
    std::vector<double> round_trip_us;
    for (int i = 0; i < kRounds; ++i) {
      Message ping;
      ping.kind = MsgKind::kPull;
      ping.request_id = i;
      ping.keys = {static_cast<Key>(i)};
      const auto t0 = Clock::now();
      t.Send(1, std::move(ping));
      std::optional<Message> pong = t.Recv(kWait);
      round_trip_us.push_back(1e6 * Since(t0));
      ASSERT_TRUE(pong.has_value()) << "round " << i;
      EXPECT_EQ(pong->kind, MsgKind::kPullReply);
      EXPECT_EQ(pong->sender, 1);
      EXPECT_EQ(pong->request_id, static_cast<std::uint64_t>(i));
      ASSERT_EQ(pong->vals.size(), 9u);
      EXPECT_EQ(pong->vals[0], static_cast<float>(i));
    }
    report("busy", &round_trip_us);
    // Pings after a pause: rank 1 has backed off to its longest sleeps.
    round_trip_us.clear();
    for (int i = 0; i < kIdleRounds; ++i) {
      std::this_thread::sleep_for(milliseconds(5));
      Message ping;
      ping.kind = MsgKind::kPull;
      ping.request_id = kRounds + i;
      ping.keys = {static_cast<Key>(i)};
      const auto t0 = Clock::now();
      t.Send(1, std::move(ping));
      std::optional<Message> pong = t.Recv(kWait);
      round_trip_us.push_back(1e6 * Since(t0));
      ASSERT_TRUE(pong.has_value()) << "idle round " << i;
      EXPECT_EQ(pong->request_id, static_cast<std::uint64_t>(kRounds + i));
    }
    report("after 5 ms idle", &round_trip_us);
    pb::Control done;
    done.mutable_shutdown();
    t.SendControl(2, std::move(done));
  } else if (rank_ == 1) {
    for (int i = 0; i < kRounds + kIdleRounds; ++i) {
      std::optional<Message> ping = t.Recv(kWait);
      ASSERT_TRUE(ping.has_value()) << "round " << i;
      ASSERT_EQ(ping->keys.size(), 1u);
      Message pong;
      pong.kind = MsgKind::kPullReply;
      pong.request_id = ping->request_id;
      pong.vals.assign(9, static_cast<float>(ping->keys[0]));
      t.Send(ping->sender, std::move(pong));
    }
  } else {
    // Idle (sleeping in Recv, not spinning in a barrier) while the others measure.
    std::optional<ControlMessage> done = t.RecvControl(kWait);
    ASSERT_TRUE(done.has_value());
    EXPECT_EQ(done->body.body_case(), pb::Control::kShutdown);
    EXPECT_EQ(done->sender, 0);
  }
  t.Flush(kWait);
}

TEST_F(MpiTransportTest, ManyMessagesArriveInOrderFromEverySender) {
  MpiTransport t(comm_, options_);
  constexpr std::uint64_t kPerPeer = 3000;
  auto keys_of = [](std::uint64_t seq) { return static_cast<std::size_t>(seq % 37); };
  // Everyone sends everything first (including to itself), then receives: the pending-send
  // bound makes Send wait, and it must keep receiving meanwhile.
  for (std::uint64_t seq = 0; seq < kPerPeer; ++seq) {
    for (int to = 0; to < size_; ++to) t.Send(to, Numbered(rank_, to, seq, keys_of(seq)));
  }
  std::vector<std::uint64_t> next(size_, 0);
  for (std::uint64_t got = 0; got < kPerPeer * size_; ++got) {
    std::optional<Message> m = t.Recv(kWait);
    ASSERT_TRUE(m.has_value()) << "after " << got << " messages";
    ASSERT_GE(m->sender, 0);
    ASSERT_LT(m->sender, size_);
    ASSERT_EQ(m->request_id, next[m->sender]) << "from rank " << m->sender;
    ExpectNumbered(*m, rank_, next[m->sender], keys_of(next[m->sender]));
    ++next[m->sender];
  }
  EXPECT_FALSE(t.Recv(milliseconds(0)).has_value());
  t.Flush(kWait);
  EXPECT_EQ(t.pending_sends(), 0u);
  EXPECT_EQ(t.pending_bytes(), 0u);
}

TEST_F(MpiTransportTest, MessagesLargerThanTheChunkLimitAreReassembled) {
  options_.chunk_bytes = 1000;
  options_.max_pending_bytes = 8 << 10;  // forces Send to wait while peers send to it
  MpiTransport t(comm_, options_);
  // Small, multi-chunk and exactly-at-the-limit sizes, interleaved.
  const std::vector<std::size_t> sizes = {0, 1, 60000, 3, 20000, 50, 100000, 0, 7, 40000};
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    for (int to = 0; to < size_; ++to) {
      if (to != rank_) t.Send(to, Numbered(rank_, to, i, sizes[i]));
    }
  }
  std::vector<std::size_t> next(size_, 0);
  for (std::size_t got = 0; got < sizes.size() * (size_ - 1); ++got) {
    std::optional<Message> m = t.Recv(kWait);
    ASSERT_TRUE(m.has_value()) << "after " << got << " messages";
    const std::size_t i = next[m->sender]++;
    ASSERT_LT(i, sizes.size());
    ASSERT_EQ(m->request_id, i);
    ExpectNumbered(*m, rank_, i, sizes[i]);
  }
  t.Flush(kWait);
}

// Messages big enough for the transport's reused buffers (send buffers, the receive buffer,
// value arrays decoded into the arrays of sent messages), sizes going down and up: every one
// arrives with exactly its own values, none left over from a bigger earlier one. A peer may
// be one round ahead (it sends round i + 1 once it has received everyone's round i), so the
// order is checked per sender.
TEST_F(MpiTransportTest, ReusedBuffersCarryNoStaleValues) {
  MpiTransport t(comm_, options_);
  const std::vector<std::size_t> sizes = {40000, 30000, 5000, 39000, 100, 41000, 20000};
  std::vector<std::size_t> next(size_, 0);
  const auto round_done = [&](std::size_t i) {
    for (int from = 0; from < size_; ++from) {
      if (from != rank_ && next[from] <= i) return false;
    }
    return true;
  };
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    for (int to = 0; to < size_; ++to) {
      if (to != rank_) t.Send(to, Numbered(rank_, to, i, sizes[i]));
    }
    while (!round_done(i)) {
      std::optional<Message> m = t.Recv(kWait);
      ASSERT_TRUE(m.has_value()) << "round " << i;
      const std::size_t j = next[m->sender]++;
      ASSERT_LT(j, sizes.size()) << "from rank " << m->sender;
      ASSERT_EQ(m->request_id, j) << "from rank " << m->sender;
      ExpectNumbered(*m, rank_, j, sizes[j]);
    }
  }
  t.Flush(kWait);
}

// Big value arrays go apart from their frames: MPI reads the sent array itself and writes
// the received one in place, so the transport copies only headers, keys and counts. Several
// such messages (each in several value chunks) are in flight to every peer at once,
// interleaved with control messages and small messages, and each arrives exactly, in order.
TEST_F(MpiTransportTest, BigValueArraysTravelInPlaceSeveralInFlight) {
  options_.value_chunk_bytes = 1 << 20;  // 3.6 MB of values: 4 value chunks
  MpiTransport t(comm_, options_);
  constexpr std::size_t kKeys = 300000;  // 3 floats per key
  constexpr std::uint64_t kRounds = 3;
  for (std::uint64_t i = 0; i < kRounds; ++i) {
    for (int to = 0; to < size_; ++to) {
      if (to == rank_) continue;
      t.Send(to, Numbered(rank_, to, 2 * i, kKeys));
      pb::Control c;
      c.mutable_snapshot()->set_seq(i);
      t.SendControl(to, std::move(c));
      t.Send(to, Numbered(rank_, to, 2 * i + 1, 10));
    }
  }
  std::vector<std::uint64_t> next(size_, 0);
  std::vector<std::uint64_t> next_control(size_, 0);
  for (std::uint64_t got = 0; got < 3 * kRounds * (size_ - 1); ++got) {
    std::optional<Received> r = t.Receive(kWait, Channels::kBoth);
    ASSERT_TRUE(r.has_value()) << "after " << got << " messages";
    if (std::holds_alternative<ControlMessage>(*r)) {
      const ControlMessage& c = std::get<ControlMessage>(*r);
      EXPECT_EQ(c.body.snapshot().seq(), next_control[c.sender]++);
      EXPECT_EQ(next[c.sender], 2 * next_control[c.sender] - 1) << "control overtook data";
      continue;
    }
    const Message& m = std::get<Message>(*r);
    const std::uint64_t seq = next[m.sender]++;
    ASSERT_EQ(m.request_id, seq);
    ExpectNumbered(m, rank_, seq, seq % 2 == 0 ? kKeys : 10);
  }
  t.Flush(kWait);
  const std::uint64_t values = kKeys * 3 * sizeof(float) * kRounds * (size_ - 1);
  EXPECT_GE(t.bytes_sent(), values);
  // Headers, keys and counts are copied (both ways); the big value arrays are not.
  EXPECT_EQ(t.bytes_copied(), t.bytes_sent() + t.bytes_received() - 2 * values);
}

// Value chunks forged on the wire (raw MPI sends of the transport's tag): a corrupted one,
// received in place, fails its checksum; a short one fails its size check. Both name the
// sender, and neither yields a message.
TEST_F(MpiTransportTest, CorruptedOrShortValueChunksAreRejected) {
  MpiTransport t(comm_, options_);
  const Message m = Numbered(0, 1, 5, 30000);  // 360 kB of values: sent apart
  WireEncoder encoder(m, {.chunk_bytes = 1 << 20, .values_apart = true});
  ASSERT_EQ(encoder.num_chunks(), 1u);
  ASSERT_EQ(encoder.num_value_chunks(), 1u);
  std::vector<std::uint8_t> frame(encoder.ChunkSize(0));
  encoder.WriteChunk(0, frame.data());
  const std::span<const std::uint8_t> v = encoder.ValueChunk(0);
  std::vector<std::uint8_t> values(v.begin(), v.end());
  values[values.size() / 2] ^= 0x08;
  const auto send = [&](const std::vector<std::uint8_t>& bytes, std::size_t n) {
    MPI_Send(bytes.data(), static_cast<int>(n), MPI_BYTE, 1, options_.tag, comm_);
  };
  if (rank_ == 0) {
    send(frame, frame.size());
    send(values, values.size());
    send(frame, frame.size());
    send(values, values.size() - 4);
  } else if (rank_ == 1) {
    for (const char* fault : {"value checksum mismatch", "value chunk at byte 0"}) {
      try {
        t.Recv(kWait);
        ADD_FAILURE() << "not rejected: " << fault;
      } catch (const TransportError& e) {
        EXPECT_NE(std::string(e.what()).find(fault), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("endpoint 0"), std::string::npos) << e.what();
      }
    }
    EXPECT_FALSE(t.Recv(milliseconds(0)).has_value());
  }
}

// Over MPI a message's precomputed values checksum replaces the sender's hash pass: a wrong
// one is rejected by the receiver naming the sender, a right one arrives intact. The
// transport asks for it only for arrays it sends apart.
TEST_F(MpiTransportTest, PrecomputedStreamChecksumIsCheckedByTheReceiver) {
  MpiTransport t(comm_, options_);
  EXPECT_TRUE(t.ChecksumsValues(90000));
  EXPECT_FALSE(t.ChecksumsValues(100));
  const Message m = Numbered(0, 1, 6, 30000);  // 360 kB of values: sent apart
  StreamChecksum c;
  c.Update(m.vals);
  if (rank_ == 0) {
    Message wrong = m;
    wrong.vals_checksum = c.Digest() + 1;
    t.Send(1, std::move(wrong));
    Message right = m;
    right.vals_checksum = c.Digest();
    t.Send(1, std::move(right));
  } else if (rank_ == 1) {
    try {
      t.Recv(kWait);
      ADD_FAILURE() << "not rejected";
    } catch (const TransportError& e) {
      EXPECT_NE(std::string(e.what()).find("value checksum mismatch"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("endpoint 0"), std::string::npos) << e.what();
    }
    const std::optional<Message> got = t.Recv(kWait);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(got->vals, m.vals);
    EXPECT_EQ(got->keys, m.keys);
  }
  t.Flush(kWait);
}

// bytes_sent / bytes_received count every frame once: over all ranks they agree, and each
// message costs its arrays plus a small header.
TEST_F(MpiTransportTest, CountsTheWireBytesSentAndReceived) {
  options_.chunk_bytes = 1000;  // several chunks per message
  MpiTransport t(comm_, options_);
  constexpr std::size_t kKeys = 500;  // 8 + 12 + 4 bytes per key
  for (int to = 0; to < size_; ++to) {
    if (to != rank_) t.Send(to, Numbered(rank_, to, 1, kKeys));
  }
  for (int got = 0; got < size_ - 1; ++got) ASSERT_TRUE(t.Recv(kWait).has_value());
  t.Flush(kWait);
  const std::uint64_t payload = kKeys * 24 * static_cast<std::uint64_t>(size_ - 1);
  EXPECT_GE(t.bytes_sent(), payload);
  EXPECT_LE(t.bytes_sent(), payload + 200 * static_cast<std::uint64_t>(size_ - 1) * 13);
  unsigned long long totals[2] = {t.bytes_sent(), t.bytes_received()};
  MPI_Allreduce(MPI_IN_PLACE, totals, 2, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm_);
  EXPECT_EQ(totals[0], totals[1]);
}

// Every rank of a healthy job answers a probe (and the probe's receives are cleaned up).
TEST_F(MpiTransportTest, PeerProbeFindsEveryRankAnswering) {
  PeerProbe probe(comm_);
  EXPECT_TRUE(probe.Unanswered(kWait).empty());
  // The answering ranks must keep calling MPI until every probe is matched.
  MPI_Barrier(comm_);
}

TEST_F(MpiTransportTest, RecvTimesOutWithoutBurningCpu) {
  MpiTransport t(comm_, options_);
  const auto t0 = Clock::now();
  EXPECT_FALSE(t.Recv(milliseconds(0)).has_value());
  EXPECT_LT(Since(t0), 0.05);

  const double cpu0 = ProcessCpuSeconds();
  const auto t1 = Clock::now();
  EXPECT_FALSE(t.Recv(milliseconds(500)).has_value());
  const double wall = Since(t1);
  const double cpu = ProcessCpuSeconds() - cpu0;
  std::printf("[rank %d] idle Recv(500 ms): wall %.3f s, process CPU %.4f s\n", rank_, wall, cpu);
  EXPECT_GE(wall, 0.499);
  EXPECT_LT(wall, 1.5);
  EXPECT_LT(cpu, 0.1 * wall);
}

TEST_F(MpiTransportTest, FlushWaitsForTheReceiverAndTimesOut) {
  MpiTransport t(comm_, options_);
  constexpr int kGoTag = 999;  // a plain MPI message outside the transport's tag
  int go = 1;
  if (rank_ == 0) {
    // 12 MB: far above any eager limit, so the send completes only once rank 1 receives,
    // which it does after the go below.
    t.Send(1, Numbered(0, 1, 1, 1 << 19));
    EXPECT_GT(t.pending_sends(), 0u);
    EXPECT_THROW(t.Flush(milliseconds(100)), TransportError);
    MPI_Send(&go, 1, MPI_INT, 1, kGoTag, comm_);
    t.Flush(kWait);
    EXPECT_EQ(t.pending_sends(), 0u);
  } else if (rank_ == 1) {
    MPI_Recv(&go, 1, MPI_INT, 0, kGoTag, comm_, MPI_STATUS_IGNORE);
    std::optional<Message> big = t.Recv(kWait);
    ASSERT_TRUE(big.has_value());
    ExpectNumbered(*big, 1, 1, 1 << 19);
  }
}

// Both channels share one ordered stream per sender: a control-only receive leaves the data
// queued (and the other way round), and a receive on both sees them in send order.
TEST_F(MpiTransportTest, ControlAndDataKeepOneSendersOrder) {
  MpiTransport t(comm_, options_);
  constexpr std::uint64_t kMessages = 40;
  const auto is_control = [](std::uint64_t i) { return i % 3 == 0; };
  if (rank_ == 0) {
    for (std::uint64_t round = 0; round < 2; ++round) {
      for (std::uint64_t i = 0; i < kMessages; ++i) {
        if (is_control(i)) {
          pb::Control c;
          c.mutable_snapshot()->set_seq(round * 100 + i);
          t.SendControl(1, std::move(c));
        } else {
          t.Send(1, Numbered(0, 1, round * 100 + i, 5));
        }
      }
    }
  } else if (rank_ == 1) {
    for (std::uint64_t i = 0; i < kMessages; ++i) {  // round 0: control first, then data
      if (!is_control(i)) continue;
      std::optional<ControlMessage> c = t.RecvControl(kWait);
      ASSERT_TRUE(c.has_value());
      EXPECT_EQ(c->sender, 0);
      EXPECT_EQ(c->body.snapshot().seq(), i);
    }
    for (std::uint64_t i = 0; i < kMessages; ++i) {
      if (is_control(i)) continue;
      std::optional<Message> m = t.Recv(kWait);
      ASSERT_TRUE(m.has_value());
      ExpectNumbered(*m, 1, i, 5);
    }
    for (std::uint64_t i = 0; i < kMessages; ++i) {  // round 1: both channels at once
      std::optional<Received> r = t.Receive(kWait, Channels::kBoth);
      ASSERT_TRUE(r.has_value());
      if (is_control(i)) {
        ASSERT_TRUE(std::holds_alternative<ControlMessage>(*r)) << i;
        EXPECT_EQ(std::get<ControlMessage>(*r).body.snapshot().seq(), 100 + i);
      } else {
        ASSERT_TRUE(std::holds_alternative<Message>(*r)) << i;
        ExpectNumbered(std::get<Message>(*r), 1, 100 + i, 5);
      }
    }
    EXPECT_FALSE(t.Receive(milliseconds(0), Channels::kBoth).has_value());
  }
  t.Flush(kWait);
}

TEST_F(MpiTransportTest, RejectsMisuse) {
  MpiTransportOptions bad = options_;
  bad.chunk_bytes = 10;
  EXPECT_THROW(MpiTransport(comm_, bad), TransportError);
  bad = options_;
  bad.chunk_bytes = kWireMaxChunkBytes + 1;
  EXPECT_THROW(MpiTransport(comm_, bad), TransportError);
  bad = options_;
  bad.value_chunk_bytes = 100;
  EXPECT_THROW(MpiTransport(comm_, bad), TransportError);

  MpiTransport t(comm_, options_);
  EXPECT_THROW(t.Send(-1, Message()), TransportError);
  EXPECT_THROW(t.Send(size_, Message()), TransportError);
  Message unknown;
  unknown.kind = static_cast<MsgKind>(99);
  EXPECT_THROW(t.Send(rank_, std::move(unknown)), TransportError);
  EXPECT_THROW(t.SendControl(rank_, pb::Control()), TransportError);  // no body
  std::thread other([&] {
    EXPECT_THROW(t.Send(rank_, Message()), TransportError);
    EXPECT_THROW(t.Recv(milliseconds(0)), TransportError);
  });
  other.join();
  EXPECT_EQ(t.pending_sends(), 0u);
  EXPECT_FALSE(t.Recv(milliseconds(0)).has_value());
}

}  // namespace
}  // namespace fmps
