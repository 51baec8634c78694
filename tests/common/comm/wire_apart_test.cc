// Values sent apart (WireEncodeOptions::values_apart): the stream leaves the values out, the
// value chunks are the message's own array, and the decoder receives them straight into the
// array the message will carry, checking each chunk's size and the values' checksum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/base/error.h"
#include "common/comm/wire.h"
#include "fmps.pb.h"

namespace fmps {
namespace {

// A push of `keys` keys (with counts) and width floats per key, all distinct.
Message Push(std::size_t keys, std::size_t width, float base) {
  Message m;
  m.kind = MsgKind::kPush;
  m.request_id = 99;
  m.flags = DataFlag::kHasData;
  m.keys.resize(keys);
  m.counts.resize(keys);
  m.vals.resize(keys * width);
  for (std::size_t i = 0; i < keys; ++i) {
    m.keys[i] = i * 7919 + 1;
    m.counts[i] = static_cast<std::uint32_t>(i % 5 + 1);
  }
  for (std::size_t i = 0; i < m.vals.size(); ++i) m.vals[i] = base + 0.25f * static_cast<float>(i);
  return m;
}

using Bytes = std::vector<std::uint8_t>;

// The stream's chunks of `encoder`.
std::vector<Bytes> StreamChunks(WireEncoder* encoder) {
  std::vector<Bytes> out;
  for (std::size_t i = 0; i < encoder->num_chunks(); ++i) {
    out.emplace_back(encoder->ChunkSize(i));
    encoder->WriteChunk(i, out.back().data());
  }
  return out;
}

// Feeds the stream's chunks; none of them completes the message.
void FeedStream(WireDecoder* decoder, const std::vector<Bytes>& chunks) {
  for (const Bytes& c : chunks) ASSERT_FALSE(decoder->Add(c).has_value());
}

// Every field equal, values bit for bit: both encode to the same (inline) stream.
void ExpectSame(const Message& got, const Message& want) {
  EXPECT_EQ(got.vals.size(), want.vals.size());
  EXPECT_TRUE(EncodeMessage(got) == EncodeMessage(want));
}

void ExpectRejected(WireDecoder* decoder, const Bytes& chunk, const std::string& what) {
  try {
    decoder->Add(chunk);
    ADD_FAILURE() << "not rejected: " << what;
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
  }
  EXPECT_FALSE(decoder->in_progress());
}

TEST(WireApartTest, ValueChunksAreTheMessagesOwnArrayAndLandInThePooledArray) {
  const Message m = Push(3000, 17, -5.0f);  // 204 kB of values
  for (std::size_t chunk : {std::size_t{256}, std::size_t{50000}, std::size_t{1} << 20}) {
    SCOPED_TRACE(chunk);
    WireEncoder encoder(m, {.chunk_bytes = chunk, .values_apart = true});
    const std::size_t value_bytes = m.vals.size() * sizeof(float);
    ASSERT_EQ(encoder.num_value_chunks(), (value_bytes + chunk - 1) / chunk);
    // The stream holds no values: header, keys, counts, checksum only.
    EXPECT_LT(encoder.total_bytes(), m.keys.size() * 12 + 200);
    ValueBufferPool pool(2, 1 << 20);
    std::vector<float> lent(m.vals.size() + 100, 1e30f);
    const float* lent_data = lent.data();
    pool.Put(std::move(lent));
    WireDecoder decoder(4, &pool);
    FeedStream(&decoder, StreamChunks(&encoder));
    std::optional<Received> r;
    const auto* sent = reinterpret_cast<const std::uint8_t*>(m.vals.data());
    for (std::size_t i = 0; i < encoder.num_value_chunks(); ++i) {
      const std::span<const std::uint8_t> from = encoder.ValueChunk(i);
      EXPECT_EQ(from.data(), sent + i * chunk);  // no copy on the way out
      ASSERT_FALSE(r.has_value());
      const std::span<std::uint8_t> into = decoder.NextValueChunk();
      ASSERT_EQ(into.size(), from.size());
      EXPECT_EQ(into.data(), reinterpret_cast<const std::uint8_t*>(lent_data) + i * chunk);
      std::memcpy(into.data(), from.data(), from.size());  // what MPI does
      r = decoder.ValueChunkWritten();
    }
    ASSERT_TRUE(r.has_value());
    const Message& got = std::get<Message>(*r);
    EXPECT_EQ(got.vals.data(), lent_data);  // the values arrived in place
    EXPECT_EQ(got.sender, 4);
    ExpectSame(got, m);
    EXPECT_FALSE(decoder.in_progress());
    EXPECT_TRUE(decoder.NextValueChunk().empty());
  }
}

TEST(WireApartTest, ValueChunksFedThroughAddAndSeveralMessagesInARow) {
  WireDecoder decoder(1);  // no pool: the array is allocated as chunks arrive
  for (std::size_t keys : {std::size_t{1}, std::size_t{4000}, std::size_t{70}, std::size_t{4001}}) {
    SCOPED_TRACE(keys);
    const Message m = Push(keys, 9, static_cast<float>(keys));
    // Value chunks smaller than the stream's (which is one chunk here).
    WireEncoder encoder(m,
                        {.chunk_bytes = 1 << 20, .values_apart = true, .value_chunk_bytes = 4096});
    EXPECT_EQ(encoder.num_chunks(), 1u);
    EXPECT_EQ(encoder.num_value_chunks(), (m.vals.size() * 4 + 4095) / 4096);
    FeedStream(&decoder, StreamChunks(&encoder));
    std::optional<Received> r;
    for (std::size_t i = 0; i < encoder.num_value_chunks(); ++i) {
      ASSERT_FALSE(r.has_value());
      const std::span<const std::uint8_t> c = encoder.ValueChunk(i);
      r = decoder.Add(Bytes(c.begin(), c.end()));
    }
    ASSERT_TRUE(r.has_value());
    ExpectSame(std::get<Message>(*r), m);
  }
}

// Every corrupted value byte, a short or long value chunk, and a corrupted stream are
// detected; the decoder then takes the next message intact.
TEST(WireApartTest, CorruptedOrMissizedValueChunksAreDetected) {
  const Message m = Push(500, 9, 1.0f);  // 18000 value bytes in chunks of 4096
  WireEncoder encoder(m, {.chunk_bytes = 4096, .values_apart = true});
  const std::vector<Bytes> stream = StreamChunks(&encoder);
  std::vector<Bytes> values;
  for (std::size_t i = 0; i < encoder.num_value_chunks(); ++i) {
    const std::span<const std::uint8_t> c = encoder.ValueChunk(i);
    values.emplace_back(c.begin(), c.end());
  }
  ASSERT_EQ(values.size(), 5u);
  WireDecoder decoder(6);
  for (std::size_t at :
       {std::size_t{0}, std::size_t{4095}, std::size_t{9000}, std::size_t{17999}}) {
    SCOPED_TRACE(at);
    FeedStream(&decoder, stream);
    for (std::size_t i = 0; i + 1 < values.size(); ++i) {
      Bytes c = values[i];
      if (at / 4096 == i) c[at % 4096] ^= 0x01;
      ASSERT_FALSE(decoder.Add(c).has_value());
    }
    Bytes last = values.back();
    if (at / 4096 == values.size() - 1) last[at % 4096] ^= 0x01;
    ExpectRejected(&decoder, last, "value checksum mismatch");
  }
  FeedStream(&decoder, stream);
  ExpectRejected(&decoder, Bytes(values[0].begin(), values[0].end() - 1), "value chunk at byte 0");
  FeedStream(&decoder, stream);
  ASSERT_FALSE(decoder.Add(values[0]).has_value());
  Bytes longer = values[1];
  longer.push_back(0);
  ExpectRejected(&decoder, longer, "value chunk at byte 4096");
  std::vector<Bytes> bad_stream = stream;
  bad_stream.back()[bad_stream.back().size() / 2] ^= 0x40;
  for (std::size_t i = 0; i + 1 < bad_stream.size(); ++i) decoder.Add(bad_stream[i]);
  ExpectRejected(&decoder, bad_stream.back(), "checksum mismatch");
  // Intact again.
  FeedStream(&decoder, stream);
  std::optional<Received> r;
  for (const Bytes& c : values) r = decoder.Add(c);
  ASSERT_TRUE(r.has_value());
  ExpectSame(std::get<Message>(*r), m);
}

// Headers whose values-apart fields do not fit the frame are refused before any value.
TEST(WireApartTest, InconsistentValuesApartHeadersAreRejected) {
  const Message m = Push(10, 4, 0.0f);
  WireEncoder encoder(m, {.chunk_bytes = 1 << 20, .values_apart = true});
  ASSERT_EQ(encoder.num_chunks(), 1u);
  const Bytes good = StreamChunks(&encoder)[0];
  std::uint32_t header_len;
  std::memcpy(&header_len, good.data(), 4);
  pb::WireHeader h;
  ASSERT_TRUE(h.ParseFromArray(good.data() + 4, static_cast<int>(header_len)));
  ASSERT_TRUE(h.vals_apart());
  const auto forged = [&](const pb::WireHeader& f) {
    Bytes b(4);
    const std::string body = f.SerializeAsString();
    const auto len = static_cast<std::uint32_t>(body.size());
    std::memcpy(b.data(), &len, 4);
    b.insert(b.end(), body.begin(), body.end());
    b.resize(f.total_bytes() - header_len + body.size());
    return b;
  };
  WireDecoder decoder(3);
  pb::WireHeader f = h;
  f.set_vals_chunk_bytes(100);
  ExpectRejected(&decoder, forged(f), "invalid value chunk size 100");
  f = h;
  f.set_num_vals(0);
  f.set_total_bytes(h.total_bytes());
  ExpectRejected(&decoder, forged(f), "values apart without values");
  f = h;
  f.set_vals_apart(false);
  f.set_total_bytes(h.total_bytes() + 160);
  ExpectRejected(&decoder, forged(f), "value fields without values apart");
  // Without values there is nothing to send apart.
  Message empty = m;
  empty.vals.clear();
  WireEncoder none(empty, {.chunk_bytes = 4096, .values_apart = true});
  EXPECT_EQ(none.num_value_chunks(), 0u);
  EXPECT_THROW(none.ValueChunk(0), std::logic_error);
  EXPECT_THROW(
      WireEncoder(m, {.chunk_bytes = 4096, .values_apart = true, .value_chunk_bytes = 8192}),
      TransportError);
  EXPECT_THROW(
      WireEncoder(m, {.chunk_bytes = 4096, .values_apart = true, .value_chunk_bytes = 100}),
      TransportError);
  EXPECT_THROW(decoder.ValueChunkWritten(), std::logic_error);
}

}  // namespace
}  // namespace fmps

namespace fmps {
namespace {

// Decodes `m` sent apart; throws what the decoder throws.
Message SendApart(const Message& m, WireDecoder* decoder) {
  WireEncoder encoder(m, {.chunk_bytes = 4096, .values_apart = true});
  FeedStream(decoder, StreamChunks(&encoder));
  std::optional<Received> r;
  for (std::size_t i = 0; i < encoder.num_value_chunks(); ++i) {
    const std::span<const std::uint8_t> c = encoder.ValueChunk(i);
    r = decoder->Add(Bytes(c.begin(), c.end()));
  }
  if (!r) throw std::logic_error("no message");
  return std::get<Message>(std::move(*r));
}

// StreamChecksum fed in blocks of any sizes is the one-shot XXH3-64 the encoder states:
// a message carrying it encodes to the very same bytes as one without.
TEST(WireApartTest, StreamedStreamChecksumIsTheOneShotOne) {
  const Message m = Push(3001, 13, 0.5f);
  WireEncoder plain(m, {.chunk_bytes = 4096, .values_apart = true});
  const std::vector<Bytes> want = StreamChunks(&plain);
  for (std::size_t block : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, m.vals.size()}) {
    SCOPED_TRACE(block);
    StreamChecksum c;
    for (std::size_t at = 0; at < m.vals.size(); at += block) {
      c.Update(std::span<const float>(m.vals).subspan(at, std::min(block, m.vals.size() - at)));
    }
    Message with = m;
    with.vals_checksum = c.Digest();
    WireEncoder encoder(with, {.chunk_bytes = 4096, .values_apart = true});
    EXPECT_TRUE(StreamChunks(&encoder) == want);
  }
}

// A precomputed checksum is stated, not trusted: one that does not match the values is
// rejected by the receiver, naming the sender; a matching one arrives intact.
TEST(WireApartTest, PrecomputedStreamChecksumIsCheckedByTheReceiver) {
  const Message m = Push(700, 9, 2.0f);
  StreamChecksum c;
  c.Update(m.vals);
  WireDecoder decoder(4);
  Message wrong = m;
  wrong.vals_checksum = c.Digest() ^ 1;
  try {
    SendApart(wrong, &decoder);
    ADD_FAILURE() << "not rejected";
  } catch (const TransportError& e) {
    EXPECT_NE(std::string(e.what()).find("value checksum mismatch"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("endpoint 4"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(decoder.in_progress());
  Message right = m;
  right.vals_checksum = c.Digest();
  const Message got = SendApart(right, &decoder);
  ExpectSame(got, m);
  EXPECT_FALSE(got.vals_checksum.has_value());
}

}  // namespace
}  // namespace fmps
