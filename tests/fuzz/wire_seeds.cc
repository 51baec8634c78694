// Writes a seed corpus for the wire target (see FuzzWire in fuzz_targets.h) into the
// directory given as the only argument: real encoded messages of every data kind and control
// type, as single-chunk streams (mode byte 0) and as length-prefixed chunks of a multi-chunk
// stream (mode byte 1).
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

// Writes `encoder`'s stream as length-prefixed chunks (mode byte 1).
void WriteChunked(const std::string& path, fmps::WireEncoder&& encoder) {
  std::vector<std::uint8_t> chunked = {1};
  for (std::size_t i = 0; i < encoder.num_chunks(); ++i) {
    const std::size_t n = encoder.ChunkSize(i);
    chunked.push_back(static_cast<std::uint8_t>(n & 0xFF));
    chunked.push_back(static_cast<std::uint8_t>(n >> 8));
    const std::size_t at = chunked.size();
    chunked.resize(at + n);
    encoder.WriteChunk(i, chunked.data() + at);
  }
  WriteSeed(path, chunked);
}

void WriteSingle(const std::string& path, const std::vector<std::uint8_t>& stream) {
  std::vector<std::uint8_t> single = {0};
  single.insert(single.end(), stream.begin(), stream.end());
  WriteSeed(path, single);
}

// One control message of every type (body case i), with some content.
fmps::pb::Control ControlOfType(int i) {
  fmps::pb::Control c;
  const auto* field = fmps::pb::Control::descriptor()->FindFieldByNumber(i);
  if (field == nullptr) return c;
  c.GetReflection()->MutableMessage(&c, field);
  if (c.has_shard_done()) {
    fmps::pb::WorkerReport* r = c.mutable_shard_done()->mutable_report();
    r->set_rows(1234);
    for (int b = 0; b < 30; ++b) {
      fmps::pb::ByteRange* range = r->add_remaining();
      range->set_begin(b * 1000);
      range->set_end(b * 1000 + 999);
    }
  }
  if (c.has_shard_written()) c.mutable_shard_written()->set_checksum(0x9E3779B97F4A7C15ull);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: wire_seeds OUT_DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  for (std::uint32_t kind = 0; kind < 8; ++kind) {
    fmps::Message m;
    m.kind = static_cast<fmps::MsgKind>(kind);
    m.request_id = 1000 + kind;
    m.bsp_step = kind;
    if (kind == static_cast<std::uint32_t>(fmps::MsgKind::kPull)) m.flags = fmps::DataFlag::kCreate;
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
    WriteSingle(dir + "/single_" + std::to_string(kind), stream);
    // The same message with more values, cut into chunks of the minimum size.
    m.vals.resize(200, 1.5f);
    WriteChunked(dir + "/chunked_" + std::to_string(kind),
                 fmps::WireEncoder(m, fmps::kWireMinChunkBytes));
  }
  for (int type = 1; type < 32; ++type) {
    const fmps::pb::Control c = ControlOfType(type);
    if (c.body_case() == fmps::pb::Control::BODY_NOT_SET) continue;
    WriteSingle(dir + "/control_" + std::to_string(type), fmps::EncodeControl(c));
    WriteChunked(dir + "/control_chunked_" + std::to_string(type),
                 fmps::WireEncoder(c, fmps::kWireMinChunkBytes));
  }
  return 0;
}
