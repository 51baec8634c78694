// Writes a seed corpus for the wire target (see FuzzWire in fuzz_targets.h) into the
// directory given as the only argument: real encoded messages of every kind, as single-chunk
// streams (mode byte 0) and as length-prefixed chunks of a multi-chunk stream (mode byte 1).
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/error.h"
#include "common/comm/wire.h"

namespace {

void WriteSeed(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: wire_seeds OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (std::uint32_t kind = 0; kind < 32; ++kind) {
    fmps::Message m;
    m.kind = static_cast<fmps::MsgKind>(kind);
    m.request_id = 1000 + kind;
    m.step = kind;
    m.flags = kind & 1;
    for (std::uint32_t i = 0; i < kind % 5 * 3; ++i) {
      m.keys.push_back(std::uint64_t{i} * 0x9E3779B97F4A7C15ull);
      m.vals.push_back(0.25f * static_cast<float>(i));
    }
    if (kind % 3 == 0) m.counts = {1, 2, 3};
    std::vector<std::uint8_t> stream;
    try {
      stream = fmps::EncodeMessage(m);
    } catch (const fmps::TransportError&) {
      continue;  // not a message kind
    }
    std::vector<std::uint8_t> single = {0};
    single.insert(single.end(), stream.begin(), stream.end());
    WriteSeed(dir + "/single_" + std::to_string(kind), single);

    // The same message with more values, cut into chunks of the minimum size.
    m.vals.resize(200, 1.5f);
    fmps::WireEncoder encoder(m, fmps::kWireMinChunkBytes);
    std::vector<std::uint8_t> chunked = {1};
    for (std::size_t i = 0; i < encoder.num_chunks(); ++i) {
      const std::size_t n = encoder.ChunkSize(i);
      chunked.push_back(static_cast<std::uint8_t>(n & 0xFF));
      chunked.push_back(static_cast<std::uint8_t>(n >> 8));
      const std::size_t at = chunked.size();
      chunked.resize(at + n);
      encoder.WriteChunk(i, chunked.data() + at);
    }
    WriteSeed(dir + "/chunked_" + std::to_string(kind), chunked);
  }
  return 0;
}
