// The codec's buffer reuse: decoding values into vectors lent by a ValueBufferPool (as the
// MPI transport does with the value arrays of the messages it has sent), and the encoder's
// checksum computed while it copies, chunk by chunk in order.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "common/base/error.h"
#include "common/comm/wire.h"

namespace fmps {
namespace {

using Bytes = std::vector<std::uint8_t>;

Message Reply(std::size_t keys, std::size_t width, float base) {
  Message m;
  m.kind = MsgKind::kPullReply;
  m.request_id = keys;
  m.vals.resize(keys * width);
  for (std::size_t i = 0; i < m.vals.size(); ++i) m.vals[i] = base + static_cast<float>(i);
  return m;
}

// A vector of n floats that no message sends (NaN with a payload), to spot stale values.
std::vector<float> Garbage(std::size_t n) {
  std::vector<float> v(n);
  const std::uint32_t bits = 0x7fc0dead;
  for (float& f : v) std::memcpy(&f, &bits, sizeof(f));
  return v;
}

void ExpectBitwiseEqual(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  if (!want.empty()) {
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
  }
}

Message Decode(WireDecoder* decoder, const Bytes& bytes) {
  std::optional<Received> r = decoder->Add(bytes);
  EXPECT_TRUE(r.has_value() && std::holds_alternative<Message>(*r));
  return r ? std::get<Message>(std::move(*r)) : Message();
}

TEST(ValueBufferPoolTest, LendsTheSmallestFittingBufferAndBoundsWhatItKeeps) {
  ValueBufferPool pool(/*max_buffers=*/2, /*max_buffer_floats=*/1000);
  pool.Put(Garbage(100));
  pool.Put(Garbage(500));
  pool.Put(Garbage(5000));  // over max_buffer_floats: not kept
  pool.Put(Garbage(50));    // smaller than both kept ones: dropped
  EXPECT_EQ(pool.size(), 2u);
  std::vector<float> v = pool.Take(80, ValueBufferPool::IfNoneFits::kEmpty);
  EXPECT_EQ(v.size(), 80u);
  EXPECT_EQ(v.capacity(), 100u);  // the smallest that fits
  EXPECT_TRUE(pool.Take(600, ValueBufferPool::IfNoneFits::kEmpty).empty());
  std::vector<float> fresh = pool.Take(600, ValueBufferPool::IfNoneFits::kAllocate);
  EXPECT_TRUE(fresh.empty());
  EXPECT_GE(fresh.capacity(), 600u);
  EXPECT_EQ(pool.size(), 1u);
  EXPECT_TRUE(pool.Take(0, ValueBufferPool::IfNoneFits::kAllocate).empty());
}

TEST(WirePoolTest, ReplyDecodedIntoALentBufferEqualsTheCopiedOne) {
  const Message m = Reply(300, 313, 0.5f);
  const Bytes bytes = EncodeMessage(m);
  ValueBufferPool pool(2, 1 << 20);
  std::vector<float> lent = Garbage(300 * 313 + 77);  // bigger: the decoded size is exact
  const float* lent_data = lent.data();
  pool.Put(std::move(lent));
  WireDecoder pooled(3, &pool);
  const Message got = Decode(&pooled, bytes);
  EXPECT_EQ(got.vals.data(), lent_data);  // decoded in place, not into a fresh array
  EXPECT_EQ(pool.size(), 0u);
  const Message copied = DecodeMessage(bytes, 3);
  ExpectBitwiseEqual(got.vals, copied.vals);
  ExpectBitwiseEqual(got.vals, m.vals);
  EXPECT_EQ(got.request_id, m.request_id);
  EXPECT_EQ(got.sender, 3);
}

TEST(WirePoolTest, AReusedBufferAfterASmallerMessageCarriesNoStaleValues) {
  ValueBufferPool pool(2, 1 << 20);
  WireDecoder decoder(1, &pool);
  // Big, smaller, tiny, bigger again (in several chunks), then empty: each decoded into the
  // buffer the previous message came in, handed back as the transport hands back sent arrays.
  const std::size_t sizes[] = {4000, 1500, 3, 3900, 4100, 0};
  float base = 1.0f;
  for (std::size_t keys : sizes) {
    SCOPED_TRACE(keys);
    const Message m = Reply(keys, 9, base);
    base += 100000.0f;
    WireEncoder encoder(m, 1000);
    std::optional<Received> r;
    for (std::size_t i = 0; i < encoder.num_chunks(); ++i) {
      Bytes chunk(encoder.ChunkSize(i));
      encoder.WriteChunk(i, chunk.data());
      r = decoder.Add(chunk);
    }
    ASSERT_TRUE(r.has_value());
    Message got = std::get<Message>(std::move(*r));
    ExpectBitwiseEqual(got.vals, m.vals);
    pool.Put(std::move(got.vals));
  }
}

TEST(WirePoolTest, ACorruptedFrameIsStillDetectedWithALentBuffer) {
  const Message m = Reply(200, 17, -3.0f);
  const Bytes good = EncodeMessage(m);
  ValueBufferPool pool(2, 1 << 20);
  WireDecoder decoder(7, &pool);
  for (std::size_t at : {good.size() / 2, good.size() - 9, good.size() - 1}) {
    SCOPED_TRACE(at);
    pool.Put(std::vector<float>(m.vals));  // a lent buffer that already holds the right values
    Bytes bad = good;
    bad[at] ^= 0x10;
    try {
      decoder.Add(bad);
      ADD_FAILURE() << "corruption not detected";
    } catch (const TransportError& e) {
      EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("endpoint 7"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(decoder.in_progress());
  }
  // The decoder recovers for the next, intact frame.
  ExpectBitwiseEqual(Decode(&decoder, good).vals, m.vals);
}

TEST(WirePoolTest, TheEncoderChecksumsWhileCopyingChunksInOrder) {
  Message m = Reply(5000, 9, 2.0f);  // ~180 kB: blocks of the copy and several chunks
  m.kind = MsgKind::kPush;
  m.keys.resize(5000);
  for (std::size_t i = 0; i < m.keys.size(); ++i) m.keys[i] = i * 7919;
  m.counts.assign(5000, 3);
  const Bytes whole = EncodeMessage(m);
  std::uint64_t trailer;
  std::memcpy(&trailer, whole.data() + whole.size() - 8, 8);
  EXPECT_EQ(trailer, XXH3_64bits(whole.data(), whole.size() - 8));
  for (std::size_t chunk : {std::size_t{256}, std::size_t{300000}, whole.size() - 4}) {
    SCOPED_TRACE(chunk);
    WireEncoder encoder(m, chunk);
    WireDecoder decoder(2);
    Bytes joined;
    std::optional<Received> r;
    for (std::size_t i = 0; i < encoder.num_chunks(); ++i) {
      Bytes c(encoder.ChunkSize(i));
      encoder.WriteChunk(i, c.data());
      joined.insert(joined.end(), c.begin(), c.end());
      r = decoder.Add(c);
    }
    ASSERT_TRUE(r.has_value());
    ExpectBitwiseEqual(std::get<Message>(*r).vals, m.vals);
    std::memcpy(&trailer, joined.data() + joined.size() - 8, 8);
    EXPECT_EQ(trailer, XXH3_64bits(joined.data(), joined.size() - 8));
  }
}

TEST(WirePoolTest, ChunksWrittenOutOfOrderAreRefused) {
  const Message m = Reply(100, 9, 0.0f);
  WireEncoder encoder(m, 256);
  ASSERT_GT(encoder.num_chunks(), 2u);
  Bytes c(256);
  EXPECT_THROW(encoder.WriteChunk(1, c.data()), std::logic_error);
  encoder.WriteChunk(0, c.data());
  EXPECT_THROW(encoder.WriteChunk(0, c.data()), std::logic_error);  // twice
  EXPECT_THROW(encoder.WriteChunk(2, c.data()), std::logic_error);  // skipped one
  encoder.WriteChunk(1, c.data());
}

}  // namespace
}  // namespace fmps
