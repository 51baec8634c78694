// The message <-> bytes codec of the MPI transport (data and control frames): round trips,
// chunking, and rejection of malformed input (which must throw TransportError naming the
// sender, never crash or yield a message).
#include "common/comm/wire.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "fmps.pb.h"

namespace fmps {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr MsgKind kAllKinds[] = {MsgKind::kPull, MsgKind::kPullReply, MsgKind::kPush,
                                 MsgKind::kPushReply, MsgKind::kDumpChunk};
// One past the last kind: never valid.
constexpr std::uint32_t kFirstUnknownKind = kMaxMsgKind + 1;

Message MakeMessage(MsgKind kind, std::size_t keys, std::size_t vals, std::size_t counts,
                    std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  Message m;
  m.kind = kind;
  m.request_id = rng();
  m.bsp_step = static_cast<std::int64_t>(rng());
  m.flags = DataFlags::FromBits(static_cast<std::uint32_t>(rng()) & AllowedFlags(kind).bits());
  m.ref = rng();
  m.keys.resize(keys);
  for (auto& k : m.keys) k = rng();
  m.vals.resize(vals);
  std::normal_distribution<float> normal;
  for (auto& v : m.vals) v = normal(rng);
  m.counts.resize(counts);
  for (auto& c : m.counts) c = static_cast<std::uint32_t>(rng());
  return m;
}

// Field-by-field equality; floats compared bit for bit (NaN payloads, -0.0 included).
void ExpectSame(const Message& got, const Message& want, int sender) {
  EXPECT_EQ(got.kind, want.kind);
  EXPECT_EQ(got.sender, sender);
  EXPECT_EQ(got.request_id, want.request_id);
  EXPECT_EQ(got.bsp_step, want.bsp_step);
  EXPECT_EQ(got.flags, want.flags);
  EXPECT_EQ(got.ref, want.ref);
  EXPECT_EQ(got.keys, want.keys);
  ASSERT_EQ(got.vals.size(), want.vals.size());
  // (memcmp must not see the null data() of an empty vector, even with size 0: that is UB.)
  if (!want.vals.empty()) {
    EXPECT_EQ(0, std::memcmp(got.vals.data(), want.vals.data(), want.vals.size() * sizeof(float)));
  }
  EXPECT_EQ(got.counts, want.counts);
}

std::vector<Bytes> EncodeChunks(const Message& m, std::size_t chunk_bytes) {
  WireEncoder encoder(m, chunk_bytes);
  std::vector<Bytes> chunks;
  for (std::size_t i = 0; i < encoder.num_chunks(); ++i) {
    chunks.emplace_back(encoder.ChunkSize(i));
    encoder.WriteChunk(i, chunks.back().data());
  }
  return chunks;
}

// Feeds chunks; returns the message from the last one. Fails if one comes early or late.
Message Reassemble(WireDecoder* decoder, const std::vector<Bytes>& chunks) {
  for (std::size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_FALSE(decoder->Add(chunks[i]).has_value()) << "chunk " << i;
    EXPECT_TRUE(decoder->in_progress());
  }
  std::optional<Received> m = decoder->Add(chunks.back());
  EXPECT_TRUE(m.has_value() && std::holds_alternative<Message>(*m));
  EXPECT_FALSE(decoder->in_progress());
  return m ? std::get<Message>(std::move(*m)) : Message();
}

TEST(WireTest, RoundTripsEveryKind) {
  std::uint64_t seed = 1;
  for (MsgKind kind : kAllKinds) {
    const Message m = MakeMessage(kind, 17, 17 * 9, 17, seed++);
    ExpectSame(DecodeMessage(EncodeMessage(m), 3), m, 3);
  }
}

TEST(WireTest, RoundTripsEmptyAndExtremeFields) {
  Message empty;
  empty.kind = MsgKind::kPushReply;
  const Bytes bytes = EncodeMessage(empty);
  EXPECT_LT(bytes.size(), 64u);
  ExpectSame(DecodeMessage(bytes, 0), empty, 0);

  Message m;
  m.kind = MsgKind::kPushReply;
  m.request_id = std::numeric_limits<std::uint64_t>::max();
  m.bsp_step = std::numeric_limits<std::int64_t>::min();
  m.flags = AllowedFlags(MsgKind::kPushReply);
  m.keys = {0, kBiasKey};
  m.vals = {-0.0f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
            std::numeric_limits<float>::denorm_min()};
  m.counts = {0, ~0u};
  ExpectSame(DecodeMessage(EncodeMessage(m), 1), m, 1);

  // Only some arrays present.
  Message pull = MakeMessage(MsgKind::kPull, 5, 0, 0, 9);
  ExpectSame(DecodeMessage(EncodeMessage(pull), 2), pull, 2);
  Message reply = MakeMessage(MsgKind::kPullReply, 0, 45, 0, 10);
  ExpectSame(DecodeMessage(EncodeMessage(reply), 2), reply, 2);
  Message counts_only = MakeMessage(MsgKind::kPush, 0, 0, 3, 11);
  ExpectSame(DecodeMessage(EncodeMessage(counts_only), 2), counts_only, 2);
}

TEST(WireTest, RoundTripsLargeMessages) {
  const Message m = MakeMessage(MsgKind::kPush, 1 << 20, 9 << 20, 1 << 20, 42);
  const Bytes bytes = EncodeMessage(m);
  EXPECT_EQ(bytes.size(),
            (1u << 20) * (8 + 36 + 4) + 4 + 8 + static_cast<std::size_t>(bytes[0] | bytes[1] << 8));
  ExpectSame(DecodeMessage(bytes, 5), m, 5);
  // The same in 1 MiB chunks.
  WireDecoder decoder(5);
  const auto chunks = EncodeChunks(m, 1 << 20);
  EXPECT_EQ(chunks.size(), (bytes.size() + (1 << 20) - 1) >> 20);
  ExpectSame(Reassemble(&decoder, chunks), m, 5);
}

TEST(WireTest, ChunksConcatenateToTheWholeStream) {
  const Message m = MakeMessage(MsgKind::kDumpChunk, 300, 2700, 0, 7);
  const Bytes whole = EncodeMessage(m);
  for (std::size_t chunk : {std::size_t{256}, std::size_t{257}, std::size_t{1000}, whole.size() - 1,
                            whole.size(), whole.size() + 1}) {
    SCOPED_TRACE(std::string("chunk_bytes ") + std::to_string(chunk));
    const auto chunks = EncodeChunks(m, chunk);
    EXPECT_EQ(chunks.size(), (whole.size() + chunk - 1) / chunk);
    Bytes joined;
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      if (i + 1 < chunks.size()) {
        EXPECT_EQ(chunks[i].size(), chunk);
      }
      joined.insert(joined.end(), chunks[i].begin(), chunks[i].end());
    }
    // Identical bytes apart from the header's chunk_bytes field: compare lengths and arrays.
    ASSERT_EQ(joined.size(), whole.size());
    const std::size_t head = 4 + (whole[0] | whole[1] << 8);
    EXPECT_EQ(0, std::memcmp(joined.data() + head, whole.data() + head, whole.size() - head - 8));
    WireDecoder decoder(4);
    ExpectSame(Reassemble(&decoder, chunks), m, 4);
  }
}

TEST(WireTest, ReassemblesInterleavedSendersAndReusesDecoders) {
  WireDecoder a(1);
  WireDecoder b(2);
  for (int round = 0; round < 5; ++round) {
    const Message ma = MakeMessage(MsgKind::kPush, 100 + round, 900, 100 + round, round);
    const Message mb = MakeMessage(MsgKind::kPullReply, 0, 2000 + round, 0, 100 + round);
    const auto ca = EncodeChunks(ma, 300);
    const auto cb = EncodeChunks(mb, 1000);
    std::optional<Received> ga;
    std::optional<Received> gb;
    for (std::size_t i = 0; i < std::max(ca.size(), cb.size()); ++i) {
      if (i < ca.size()) {
        auto m = a.Add(ca[i]);
        EXPECT_EQ(m.has_value(), i + 1 == ca.size());
        if (m) ga = std::move(m);
      }
      if (i < cb.size()) {
        auto m = b.Add(cb[i]);
        EXPECT_EQ(m.has_value(), i + 1 == cb.size());
        if (m) gb = std::move(m);
      }
    }
    ASSERT_TRUE(ga && gb);
    ExpectSame(std::get<Message>(*ga), ma, 1);
    ExpectSame(std::get<Message>(*gb), mb, 2);
  }
}

TEST(WireTest, EncoderRejectsBadArguments) {
  const Message m = MakeMessage(MsgKind::kPull, 3, 0, 0, 1);
  EXPECT_THROW(WireEncoder(m, kWireMinChunkBytes - 1), TransportError);
  Message bad = m;
  bad.kind = static_cast<MsgKind>(0);
  EXPECT_THROW(EncodeMessage(bad), TransportError);
  bad.kind = static_cast<MsgKind>(kFirstUnknownKind);
  EXPECT_THROW(EncodeMessage(bad), TransportError);
  bad = m;
  bad.flags = DataFlag::kCut;  // a push reply's flag on a pull
  EXPECT_THROW(EncodeMessage(bad), TransportError);
  EXPECT_THROW(EncodeControl(pb::Control()), TransportError);  // no body
}

// Expects DecodeFrame to throw a TransportError naming the sender (and `reason`).
void ExpectRejected(const Bytes& bytes, const std::string& context,
                    const std::string& reason = "") {
  try {
    const Received r = DecodeFrame(bytes, 7);
    ADD_FAILURE() << context << ": decoded a message on channel " << r.index();
  } catch (const TransportError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("endpoint 7"), std::string::npos) << what;
    EXPECT_NE(what.find(reason), std::string::npos) << context << ": " << what;
  }
}

TEST(WireTest, RejectsTruncatedAndExtendedStreams) {
  const Bytes bytes = EncodeMessage(MakeMessage(MsgKind::kPush, 10, 90, 10, 3));
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    ExpectRejected(Bytes(bytes.begin(), bytes.begin() + n),
                   std::string("prefix of ") + std::to_string(n));
  }
  Bytes longer = bytes;
  longer.push_back(0);
  ExpectRejected(longer, "one extra byte");
}

TEST(WireTest, RejectsEverySingleBitFlip) {
  const Bytes bytes = EncodeMessage(MakeMessage(MsgKind::kPush, 4, 36, 4, 5));
  for (std::size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    Bytes flipped = bytes;
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    ExpectRejected(flipped, std::string("bit ") + std::to_string(bit));
  }
}

// Builds a stream with a hand-made header and `payload` bytes after it.
Bytes Forge(const pb::WireHeader& h, std::size_t payload) {
  const std::string head = h.SerializeAsString();
  Bytes out(4 + head.size() + payload, 0);
  const auto len = static_cast<std::uint32_t>(head.size());
  std::memcpy(out.data(), &len, 4);
  std::memcpy(out.data() + 4, head.data(), head.size());
  return out;
}

pb::WireHeader ValidHeader(std::uint64_t keys) {
  pb::WireHeader h;
  h.set_version(2);
  h.set_kind(static_cast<std::uint32_t>(MsgKind::kPull));
  h.set_num_keys(keys);
  h.set_total_bytes(1);
  h.set_chunk_bytes(1);
  const std::uint64_t total = 4 + h.ByteSizeLong() + 8 * keys + 8;
  h.set_total_bytes(total);
  h.set_chunk_bytes(total);
  return h;
}

TEST(WireTest, RejectsInconsistentHeaders) {
  {
    // Sanity: the forged valid header passes every check but the checksum.
    pb::WireHeader h = ValidHeader(2);
    ExpectRejected(Forge(h, 24), "zero checksum", "checksum");
  }
  {
    pb::WireHeader h = ValidHeader(2);
    h.set_num_keys(std::uint64_t{1} << 62);  // 8 * 2^62 overflows 64 bits
    ExpectRejected(Forge(h, 24), "overflowing key count", "too large");
    h.set_num_keys(3);
    h.set_num_vals(~std::uint64_t{0});
    ExpectRejected(Forge(h, 24), "overflowing value count", "too large");
  }
  {
    pb::WireHeader h = ValidHeader(2);
    h.set_num_counts(1);  // sizes no longer add up to total_bytes
    ExpectRejected(Forge(h, 24), "counts not in total", "arrays need");
  }
  {
    pb::WireHeader h = ValidHeader(1000000000);  // consistent header, 8 GB claimed
    ExpectRejected(Forge(h, 24), "claims more bytes than it has", "first chunk has");
  }
  {
    pb::WireHeader h = ValidHeader(2);
    h.set_version(1);
    ExpectRejected(Forge(h, 24), "old version", "version");
    h.set_version(3);
    ExpectRejected(Forge(h, 24), "version", "version");
  }
  for (std::uint32_t kind : {0u, kFirstUnknownKind, 255u, 0xffffffffu}) {
    pb::WireHeader h = ValidHeader(2);
    h.set_kind(kind);
    ExpectRejected(Forge(h, 24), std::string("kind ") + std::to_string(kind),
                   "unknown message kind");
  }
  {
    pb::WireHeader h = ValidHeader(2);
    h.set_chunk_bytes(0);  // proto3 omits a zero field: the sizes no longer add up either
    ExpectRejected(Forge(h, 24), "chunk 0");
    h.set_chunk_bytes(h.total_bytes() + 1);
    ExpectRejected(Forge(h, 24), "chunk beyond total", "invalid chunk size");
    h = ValidHeader(100);
    h.set_chunk_bytes(100);  // multi-chunk with chunks below the minimum
    ExpectRejected(Forge(h, 808), "tiny chunks", "invalid chunk size");
  }
  {
    Bytes b = EncodeMessage(MakeMessage(MsgKind::kPull, 1, 0, 0, 1));
    const std::uint32_t huge = 1u << 30;
    std::memcpy(b.data(), &huge, 4);
    ExpectRejected(b, "header length 2^30", "exceeds");
    const std::uint32_t too_long = kWireMaxHeaderBytes + 1;
    std::memcpy(b.data(), &too_long, 4);
    ExpectRejected(b, "header length above maximum", "exceeds");
  }
}

TEST(WireTest, MultiChunkClaimsAreCheckedChunkByChunk) {
  // A consistent header announcing 1 GiB in 256-byte chunks: the first chunk is accepted
  // (nothing is touched yet), and a chunk of the wrong size then throws and resets.
  pb::WireHeader h = ValidHeader(std::uint64_t{1} << 27);
  h.set_chunk_bytes(256);
  Bytes first = Forge(h, 256 - 4 - h.ByteSizeLong());
  ASSERT_EQ(first.size(), 256u);
  WireDecoder decoder(9);
  EXPECT_FALSE(decoder.Add(first).has_value());
  EXPECT_TRUE(decoder.in_progress());
  EXPECT_THROW(decoder.Add(Bytes(100)), TransportError);
  EXPECT_FALSE(decoder.in_progress());
  // The decoder works again afterwards.
  const Message m = MakeMessage(MsgKind::kPush, 50, 450, 50, 2);
  ExpectSame(Reassemble(&decoder, EncodeChunks(m, 256)), m, 9);
  // A total beyond the 1 TiB limit is refused before anything is allocated.
  h = ValidHeader(std::uint64_t{1} << 38);
  h.set_chunk_bytes(256);
  EXPECT_THROW(decoder.Add(Forge(h, 256 - 4 - h.ByteSizeLong())), TransportError);
}

TEST(WireTest, RejectsGarbage) {
  std::mt19937_64 rng(123);
  for (int i = 0; i < 20000; ++i) {
    Bytes b(rng() % 300);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    if (i % 2 == 0 && b.size() >= 4) {
      // A plausible header length, so the protobuf parser gets to see the garbage.
      const std::uint32_t len =
          static_cast<std::uint32_t>(rng() % std::min<std::size_t>(b.size() - 3, 129));
      std::memcpy(b.data(), &len, 4);
    }
    ExpectRejected(b, std::string("garbage ") + std::to_string(i));
  }
}

TEST(WireTest, RejectsRandomCorruptions) {
  std::mt19937_64 rng(77);
  for (int i = 0; i < 20000; ++i) {
    const Message m =
        MakeMessage(kAllKinds[i % std::size(kAllKinds)], rng() % 20, rng() % 60, rng() % 20, i);
    Bytes b = EncodeMessage(m);
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const std::size_t pos = rng() % b.size();
      const auto old = b[pos];
      do {
        b[pos] = static_cast<std::uint8_t>(rng());
      } while (b[pos] == old);
    }
    if (rng() % 4 == 0) b.resize(rng() % (b.size() + 1));  // and maybe truncate
    ExpectRejected(b, std::string("corruption ") + std::to_string(i));
  }
}

TEST(WireTest, CorruptedChunkedStreamsNeverYieldAMessage) {
  std::mt19937_64 rng(5);
  const Message m = MakeMessage(MsgKind::kPush, 200, 1800, 200, 3);
  WireDecoder decoder(6);
  for (int i = 0; i < 2000; ++i) {
    auto chunks = EncodeChunks(m, 256 + rng() % 2000);
    Bytes& victim = chunks[rng() % chunks.size()];
    const std::size_t pos = rng() % victim.size();
    victim[pos] ^= static_cast<std::uint8_t>(1 + rng() % 255);
    bool threw = false;
    for (const Bytes& c : chunks) {
      try {
        std::optional<Received> got = decoder.Add(c);
        ASSERT_FALSE(got.has_value()) << "corrupted stream decoded, iteration " << i;
      } catch (const TransportError&) {
        threw = true;
        break;
      }
    }
    EXPECT_TRUE(threw);
    // Whatever state the corruption left, the decoder must be reusable after an error.
    ExpectSame(Reassemble(&decoder, EncodeChunks(m, 1000)), m, 6);
  }
}

// ---- control frames ----

// One control message of every type, each with non-default content where it has fields.
std::vector<pb::Control> EveryControlType() {
  std::vector<pb::Control> out;
  const auto* body = pb::Control::descriptor()->FindOneofByName("body");
  for (int i = 0; i < body->field_count(); ++i) {
    pb::Control c;
    c.GetReflection()->MutableMessage(&c, body->field(i));
    out.push_back(c);
  }
  out[0].mutable_cut_request()->set_seq(7);
  out[1].mutable_snapshot()->set_seq(8);
  out[2].mutable_snapshot_ack()->set_seq(9);
  pb::ShardWritten* w = out[3].mutable_shard_written();
  w->set_seq(10);
  w->set_bytes(1ull << 40);
  w->set_checksum(~0ull);
  w->set_keys(12345);
  pb::WorkerReport* r = out[4].mutable_cut_ready()->mutable_report();
  r->set_rows(1e12);
  r->set_loss(-0.0);
  r->add_remaining()->set_end(99);
  out[5].mutable_shard_done()->set_epoch(3);
  out[5].mutable_shard_done()->mutable_report()->set_done(true);
  out[6].mutable_cut_resume()->set_seq(11);
  out[8].mutable_stats()->set_busy_ns(~0ull);
  out[8].mutable_stats()->set_server(2);
  out[10].mutable_dump_done()->set_store_bytes(4096);
  return out;
}

TEST(WireControlTest, RoundTripsEveryType) {
  const std::vector<pb::Control> all = EveryControlType();
  // a new type needs a case here (and in Server/Checkpointer); 12..14 (keep_best, best_kept,
  // dump_best_request) carry no fields
  ASSERT_EQ(all.size(), 15u);
  for (const pb::Control& c : all) {
    SCOPED_TRACE(c.ShortDebugString());
    ASSERT_NE(c.body_case(), pb::Control::BODY_NOT_SET);
    const ControlMessage got = DecodeControl(EncodeControl(c), 4);
    EXPECT_EQ(got.sender, 4);
    EXPECT_EQ(got.body.body_case(), c.body_case());
    EXPECT_EQ(got.body.SerializeAsString(), c.SerializeAsString());
    // Not a data message, whatever the decoder is asked for.
    EXPECT_THROW(DecodeMessage(EncodeControl(c), 4), TransportError);
  }
  EXPECT_THROW(DecodeControl(EncodeMessage(MakeMessage(MsgKind::kPull, 1, 0, 0, 1)), 4),
               TransportError);
}

TEST(WireControlTest, LargeReportsTravelInChunksBesideData) {
  pb::Control c;
  pb::WorkerReport* r = c.mutable_shard_done()->mutable_report();
  for (std::uint64_t i = 0; i < 1000; ++i) {
    pb::ByteRange* b = r->add_remaining();
    b->set_begin(i << 20);
    b->set_end((i << 20) + 4095);
  }
  WireEncoder encoder(c, kWireMinChunkBytes);
  ASSERT_GT(encoder.num_chunks(), 10u);
  WireDecoder decoder(2);
  for (std::size_t i = 0; i < encoder.num_chunks(); ++i) {
    Bytes chunk(encoder.ChunkSize(i));
    encoder.WriteChunk(i, chunk.data());
    std::optional<Received> got = decoder.Add(chunk);
    ASSERT_EQ(got.has_value(), i + 1 == encoder.num_chunks());
    if (!got) continue;
    ASSERT_TRUE(std::holds_alternative<ControlMessage>(*got));
    EXPECT_EQ(std::get<ControlMessage>(*got).body.SerializeAsString(), c.SerializeAsString());
  }
  // The same decoder then takes a data message.
  const Message m = MakeMessage(MsgKind::kPush, 20, 180, 20, 4);
  ExpectSame(Reassemble(&decoder, EncodeChunks(m, 256)), m, 2);
}

// A whole single-chunk stream with header h (sizes filled in) and `control` as its control
// body, with a valid checksum: only the fields of h can make it invalid.
Bytes ControlFrame(pb::WireHeader h, const std::string& control) {
  h.set_version(2);
  h.set_channel(1);
  h.set_num_control_bytes(control.size());
  h.set_total_bytes(1);
  h.set_chunk_bytes(1);
  const std::uint64_t total = 4 + h.ByteSizeLong() + control.size() + 8 * h.num_keys() + 8;
  h.set_total_bytes(total);
  h.set_chunk_bytes(total);
  Bytes out = Forge(h, control.size() + 8 * h.num_keys() + 8);
  std::memcpy(out.data() + 4 + h.ByteSizeLong(), control.data(), control.size());
  const std::uint64_t sum = XXH3_64bits(out.data(), out.size() - 8);
  std::memcpy(out.data() + out.size() - 8, &sum, 8);
  return out;
}

TEST(WireControlTest, RejectsMalformedControlFramesNamingTheSender) {
  pb::Control valid;
  valid.mutable_snapshot()->set_seq(5);
  const std::string body = valid.SerializeAsString();
  {
    // Sanity: the forged frame decodes.
    const ControlMessage got = DecodeControl(ControlFrame(pb::WireHeader(), body), 7);
    EXPECT_EQ(got.body.snapshot().seq(), 5u);
  }
  ExpectRejected(ControlFrame(pb::WireHeader(), std::string("\xff\xff\xff", 3)), "garbage body",
                 "does not parse");
  // Field 99 (an unknown type): parses, but no known body.
  ExpectRejected(ControlFrame(pb::WireHeader(), std::string("\x98\x06\x01", 3)), "unknown type",
                 "unknown type");
  {
    pb::WireHeader h;
    h.set_kind(static_cast<std::uint32_t>(MsgKind::kPull));
    ExpectRejected(ControlFrame(h, body), "control with a kind", "control frame with data");
    h = pb::WireHeader();
    h.set_num_keys(1);
    ExpectRejected(ControlFrame(h, body), "control with keys", "control frame with data");
    h = pb::WireHeader();
    h.set_flags(1);
    ExpectRejected(ControlFrame(h, body), "control with flags", "control frame with data");
  }
  {
    Bytes b = ControlFrame(pb::WireHeader(), body);
    pb::WireHeader h;
    ASSERT_TRUE(h.ParseFromArray(b.data() + 4, static_cast<int>(b[0])));
    h.set_channel(2);
    ExpectRejected(Forge(h, b.size() - 4 - h.ByteSizeLong()), "channel 2", "unknown channel");
    h.set_channel(0);
    h.set_kind(static_cast<std::uint32_t>(MsgKind::kPull));
    ExpectRejected(Forge(h, b.size() - 4 - h.ByteSizeLong()), "data with a control body",
                   "control body");
  }
  const Bytes bytes = EncodeControl(valid);
  for (std::size_t bit = 0; bit < bytes.size() * 8; ++bit) {
    Bytes flipped = bytes;
    flipped[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    ExpectRejected(flipped, std::string("control bit ") + std::to_string(bit));
  }
}

TEST(WireTest, RejectsFlagsTheKindDoesNotAllow) {
  for (const auto& [kind, flag] :
       {std::pair{MsgKind::kPull, DataFlag::kCut}, std::pair{MsgKind::kPush, DataFlag::kCreate},
        std::pair{MsgKind::kPullReply, DataFlag::kCreate},
        std::pair{MsgKind::kPushReply, DataFlag::kHasData},
        std::pair{MsgKind::kDumpChunk, DataFlag::kAnyHadData}}) {
    pb::WireHeader h = ValidHeader(0);
    h.set_kind(static_cast<std::uint32_t>(kind));
    h.set_flags(static_cast<std::uint32_t>(flag));
    ExpectRejected(Forge(h, 8), "flag " + std::to_string(h.flags()), "not allowed");
  }
}

}  // namespace
}  // namespace fmps
