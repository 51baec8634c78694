#include "tests/fuzz/fuzz_targets.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/base/error.h"
#include "common/base/types.h"
#include "common/comm/wire.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"
#include "tests/fuzz/fuzz_util.h"

namespace fmps::fuzz {
namespace {

// Reads fixed-size values off the front of the input; past the end it yields zeros.
class Cursor {
 public:
  Cursor(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint64_t U64(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= std::uint64_t{Byte()} << (8 * i);
    return v;
  }
  std::size_t remaining() const { return size_ - pos_; }
  const std::uint8_t* here() const { return data_ + pos_; }
  void Skip(std::size_t n) { pos_ += std::min(n, remaining()); }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------
// Data-format parsers

// The csv header cells of `text` (first line, BOM and '\r' stripped, RFC 4180 quotes), or
// nullopt if it is not a well-formed header. Only used to give the reader roles matching
// the file; the reader parses the header itself.
std::optional<std::vector<std::string>> HeaderCells(std::string_view text, char delim) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);
  text = text.substr(0, text.find('\n'));
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  std::vector<std::string> cells(1);
  bool quoted = false;
  bool cell_start = true;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c != '"') {
        cells.back() += c;
      } else if (i + 1 < text.size() && text[i + 1] == '"') {
        cells.back() += '"';
        ++i;
      } else {
        quoted = false;
      }
    } else if (c == '"' && cell_start) {
      quoted = true;
      cell_start = false;
    } else if (c == delim) {
      cells.emplace_back();
      cell_start = true;
    } else {
      cells.back() += c;
      cell_start = false;
    }
  }
  if (quoted) return std::nullopt;
  return cells;
}

// Column roles for a csv header: "label", "click" or "rating" (any case) or else the first
// column is the label;
// I<digits> numeric, C<digits> categorical, anything else by position.
void AssignCsvRoles(const std::vector<std::string>& header, CsvSpec* csv) {
  std::size_t label = 0;
  for (std::size_t i = 0; i < header.size(); ++i) {
    std::string lower;
    for (char c : header[i])
      lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "label" || lower == "click" || lower == "rating") {
      label = i;
      break;
    }
  }
  for (std::size_t i = 0; i < header.size(); ++i) {
    const std::string& name = header[i];
    if (i == label) {
      csv->label = name;
      continue;
    }
    const bool digits = name.size() > 1 && std::isdigit(static_cast<unsigned char>(name[1]));
    if (digits && name[0] == 'I') {
      csv->numeric.push_back(name);
    } else if (digits && name[0] == 'C') {
      csv->categorical.push_back(name);
    } else if (i % 3 == 0) {
      csv->numeric.push_back(name);
    } else if (i % 3 == 1) {
      csv->categorical.push_back(name);
    } else {
      csv->ignore.push_back(name);
    }
  }
}

// Everything a reader returned.
struct ReadResult {
  RowBlock rows;
  std::uint64_t bad = 0;
};

// Reads all rows of `reader` in batches of `batch`, appending to *out.
void Drain(ShardReader* reader, std::size_t batch, ReadResult* out) {
  while (reader->Read(batch, &out->rows) > 0) {
  }
  out->bad += reader->bad_rows().count;
}

bool SameRows(const RowBlock& a, const RowBlock& b) {
  return a.labels == b.labels && a.offsets == b.offsets && a.keys == b.keys &&
         a.fields == b.fields && a.values.size() == b.values.size() &&
         (a.values.empty() ||
          std::memcmp(a.values.data(), b.values.data(), a.values.size() * sizeof(float)) == 0);
}

// Fields per format (row_block.h): libsvm 0, criteo a column index 0..38, csv an index
// among the configured numeric and categorical columns, libffm below kFieldLimit.
void CheckFields(const RowBlock& b, const FeatureSpec& spec) {
  std::uint64_t limit = kFieldLimit;
  switch (spec.data.format) {
    case DataFormat::kLibsvm:
      limit = 1;
      break;
    case DataFormat::kCriteo:
      limit = 39;
      break;
    case DataFormat::kCsv:
      limit = spec.data.csv.numeric.size() + spec.data.csv.categorical.size();
      break;
    case DataFormat::kLibffm:
      break;
  }
  for (std::uint32_t f : b.fields) FUZZ_CHECK(f < limit);
}

// The invariants of one parsed block (see fuzz_targets.h).
void CheckRows(const RowBlock& b, const FeatureSpec& spec) {
  FUZZ_CHECK(b.offsets.size() == b.labels.size() + 1);
  FUZZ_CHECK(b.offsets.front() == 0 && b.offsets.back() == b.keys.size());
  FUZZ_CHECK(b.keys.size() == b.values.size());
  FUZZ_CHECK(b.fields.size() == b.keys.size());
  CheckFields(b, spec);
  for (std::size_t r = 0; r + 1 < b.offsets.size(); ++r)
    FUZZ_CHECK(b.offsets[r] <= b.offsets[r + 1]);
  for (float y : b.labels) {
    FUZZ_CHECK(std::isfinite(y));
    if (spec.loss == Loss::kLogistic) FUZZ_CHECK(y == 0.0f || y == 1.0f);
  }
  for (float v : b.values) FUZZ_CHECK(std::isfinite(v));
  const int bits = spec.data.hash_bits;
  for (Key k : b.keys) {
    FUZZ_CHECK(k != kBiasKey);
    if (bits > 0 && bits < 64) FUZZ_CHECK(k < (Key{1} << bits));
  }
}

// on_error: fail stops exactly when skip (which gave `whole`) found a bad row, and with
// DataError; else it reads the same rows.
void CheckFailMode(FeatureSpec spec, const std::vector<std::string>& files, std::size_t batch,
                   const ReadResult& whole) {
  spec.data.on_error = OnError::kFail;
  ReadResult strict;
  bool threw = false;
  try {
    ShardReader reader(spec, files, 0, 1);
    Drain(&reader, batch, &strict);
  } catch (const DataError&) {
    threw = true;
  }
  FUZZ_CHECK(threw == (whole.bad > 0));
  if (!threw) FUZZ_CHECK(SameRows(strict.rows, whole.rows));
}

// The spec the option byte `o` chooses for reading `text` (the file) as `format`.
FeatureSpec ReaderSpec(DataFormat format, std::uint8_t o, std::string_view text,
                       const std::vector<std::string>& files) {
  FeatureSpec spec;
  spec.data.format = format;
  spec.data.train = files;
  spec.loss = (o & 1) ? Loss::kSquared : Loss::kLogistic;
  constexpr std::array<int, 4> kHashBits = {0, 1, 20, 64};
  spec.data.hash_bits = kHashBits[(o >> 1) & 3];
  if (format == DataFormat::kCsv) {
    spec.data.csv.delimiter = (o & 0x20) ? ';' : ',';
    constexpr std::array<NumericTransform, 4> kTransforms = {
        NumericTransform::kStandardize, NumericTransform::kLogBucket, NumericTransform::kNone,
        NumericTransform::kStandardize};
    spec.data.csv.transform = kTransforms[(o >> 6) & 3];
    const std::optional<std::vector<std::string>> header =
        HeaderCells(text, spec.data.csv.delimiter);
    if (header) AssignCsvRoles(*header, &spec.data.csv);
  }
  return spec;
}

int FuzzReader(DataFormat format, const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t o = data[0];
  ScratchFile file(data + 1, size - 1);
  const std::vector<std::string> files = {file.path()};
  FeatureSpec spec = ReaderSpec(
      format, o, std::string_view(reinterpret_cast<const char*>(data + 1), size - 1), files);
  const int shards = 2 + ((o >> 3) & 1);
  const std::size_t batch = (o & 0x10) ? 7 : 1;

  ReadResult whole;
  try {
    if (format == DataFormat::kCsv && spec.data.csv.transform == NumericTransform::kStandardize) {
      spec.numeric_stats = ComputeNumericStats(spec, files);
      for (const NumericStat& s : spec.numeric_stats) {
        FUZZ_CHECK(std::isfinite(s.mean) && std::isfinite(s.std) && s.std > 0);
      }
    }
    ShardReader reader(spec, files, 0, 1);
    Drain(&reader, batch, &whole);
  } catch (const ConfigError&) {
    // A csv header the derived roles do not match (or no header at all): the documented
    // outcome, nothing to check. Other formats never throw ConfigError for one shard.
    if (format != DataFormat::kCsv) throw;
    return 0;
  }
  CheckRows(whole.rows, spec);

  // Shards together: exactly the rows of the whole file, in order, and the same bad rows.
  ReadResult parts;
  for (int s = 0; s < shards; ++s) {
    ShardReader reader(spec, files, s, shards);
    Drain(&reader, batch, &parts);
  }
  FUZZ_CHECK(SameRows(parts.rows, whole.rows));
  FUZZ_CHECK(parts.bad == whole.bad);

  // Resuming from Remaining() after about half the rows gives the rest.
  {
    ReadResult resumed;
    ShardReader first(spec, files, 0, 1);
    const std::size_t half = whole.rows.rows() / 2;
    while (resumed.rows.rows() < half && first.Read(batch, &resumed.rows) > 0) {
    }
    resumed.bad += first.bad_rows().count;
    ShardReader rest(spec, files, first.Remaining());
    Drain(&rest, batch, &resumed);
    FUZZ_CHECK(SameRows(resumed.rows, whole.rows));
    FUZZ_CHECK(resumed.bad == whole.bad);
  }

  CheckFailMode(spec, files, batch, whole);
  return 0;
}

// ---------------------------------------------------------------------------------------
// Config loader

int FuzzConfigImpl(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + at, end - at);
    if (line.substr(0, 5) == "#set ") overrides.emplace_back(line.substr(5));
    at = end + 1;
  }
  Config config;
  try {
    config = ParseConfig(text, "fuzz", overrides);
  } catch (const ConfigError&) {
    return 0;
  }
  const std::string yaml = ConfigToYaml(config);
  std::string again;
  try {
    again = ConfigToYaml(ParseConfig(yaml, "fuzz", {}));
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "printed config does not parse: %s\n%s\n", e.what(), yaml.c_str());
    FUZZ_CHECK(false);
  }
  if (again != yaml) std::fprintf(stderr, "first:\n%s\nsecond:\n%s\n", yaml.c_str(), again.c_str());
  FUZZ_CHECK(again == yaml);

  const std::string section = DataSectionToYaml(config.data);
  try {
    FUZZ_CHECK(DataSectionToYaml(ParseDataSection(section)) == section);
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "printed data section does not parse: %s\n%s\n", e.what(),
                 section.c_str());
    FUZZ_CHECK(false);
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Wire decoder

bool SameMessage(const Message& a, const Message& b) {
  return a.kind == b.kind && a.request_id == b.request_id && a.bsp_step == b.bsp_step &&
         a.flags == b.flags && a.ref == b.ref && a.keys == b.keys && a.counts == b.counts &&
         a.vals.size() == b.vals.size() &&
         (a.vals.empty() ||
          std::memcmp(a.vals.data(), b.vals.data(), a.vals.size() * sizeof(float)) == 0);
}

bool SameReceived(const Received& a, const Received& b) {
  if (a.index() != b.index()) return false;
  if (const Message* m = std::get_if<Message>(&a)) return SameMessage(*m, std::get<Message>(b));
  return std::get<ControlMessage>(a).body.SerializeAsString() ==
         std::get<ControlMessage>(b).body.SerializeAsString();
}

int SenderOf(const Received& r) {
  if (const Message* m = std::get_if<Message>(&r)) return m->sender;
  return std::get<ControlMessage>(r).sender;
}

constexpr int kSender = 3;

std::vector<std::uint8_t> Encode(const Received& r) {
  if (const Message* m = std::get_if<Message>(&r)) return EncodeMessage(*m);
  return EncodeControl(std::get<ControlMessage>(r).body);
}

// A decoded message encodes and decodes back to itself.
void CheckReencodes(const Received& r) {
  FUZZ_CHECK(SenderOf(r) == kSender);
  const std::vector<std::uint8_t> bytes = Encode(r);
  FUZZ_CHECK(SameReceived(DecodeFrame(bytes, kSender), r));
}

// After an error the decoder takes the next valid stream.
void CheckRecovers(WireDecoder* decoder) {
  Message m;
  m.kind = MsgKind::kPush;
  m.request_id = 42;
  m.keys = {1, 2, 3};
  m.vals = {0.5f, -1.0f};
  m.counts = {7};
  const std::vector<std::uint8_t> bytes = EncodeMessage(m);
  std::optional<Received> got = decoder->Add(bytes);
  FUZZ_CHECK(got.has_value() && SameReceived(*got, m));
}

// Feeds `chunks` to a fresh decoder; true if some chunk yielded a message (stored in *out).
bool FeedChunks(const std::vector<std::vector<std::uint8_t>>& chunks, Received* out) {
  WireDecoder decoder(kSender);
  bool got = false;
  for (const auto& c : chunks) {
    std::optional<Received> m = decoder.Add(c);
    if (m) {
      FUZZ_CHECK(!got);
      *out = std::move(*m);
      got = true;
    }
  }
  return got;
}

// A data message, or (kind byte 0 mod 8) a control message, built from the input.
Received BuildFrame(Cursor* in) {
  const std::uint8_t kind = in->Byte();
  if (kind % 8 == 0) {
    ControlMessage c;
    pb::ShardDone* done = c.body.mutable_shard_done();
    done->set_epoch(static_cast<std::int32_t>(in->U64(4)));
    pb::WorkerReport* r = done->mutable_report();
    r->set_done((kind & 8) != 0);
    r->set_rows(std::bit_cast<double>(in->U64(8)));
    r->set_loss(std::bit_cast<double>(in->U64(8)));
    for (int i = in->Byte() % 40; i > 0; --i) {
      pb::ByteRange* b = r->add_remaining();
      b->set_begin(in->U64(8));
      b->set_end(in->U64(8));
    }
    return c;
  }
  Message m;
  m.kind = static_cast<MsgKind>(kind % 8);
  m.request_id = in->U64(8);
  m.bsp_step = static_cast<std::int64_t>(in->U64(8));
  m.flags = DataFlags::FromBits(static_cast<std::uint32_t>(in->U64(4)) &
                                (kind & 8 ? ~0u : AllowedFlags(m.kind).bits()));
  m.ref = in->U64(8);
  m.keys.resize(in->Byte() % 96);
  m.vals.resize(in->Byte() % 96);
  m.counts.resize(in->Byte() % 32);
  for (Key& k : m.keys) k = in->U64(8);
  for (float& v : m.vals) {
    const auto bits = static_cast<std::uint32_t>(in->U64(4));
    std::memcpy(&v, &bits, sizeof v);
  }
  for (std::uint32_t& c : m.counts) c = static_cast<std::uint32_t>(in->U64(4));
  return m;
}

// Encodes `r` in chunks of chunk_bytes; false if the encoder refuses it (not a valid kind or
// flags).
bool EncodeChunks(const Received& r, std::size_t chunk_bytes,
                  std::vector<std::vector<std::uint8_t>>* chunks) {
  try {
    std::optional<WireEncoder> encoder;
    if (const Message* m = std::get_if<Message>(&r)) {
      encoder.emplace(*m, chunk_bytes);
    } else {
      encoder.emplace(std::get<ControlMessage>(r).body, chunk_bytes);
    }
    for (std::size_t i = 0; i < encoder->num_chunks(); ++i) {
      chunks->emplace_back(encoder->ChunkSize(i));
      encoder->WriteChunk(i, chunks->back().data());
    }
  } catch (const TransportError&) {
    return false;
  }
  return true;
}

int FuzzWireImpl(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int mode = data[0] % 3;
  Cursor in(data + 1, size - 1);
  if (mode == 0) {
    try {
      CheckReencodes(
          DecodeFrame(std::span<const std::uint8_t>(in.here(), in.remaining()), kSender));
    } catch (const TransportError&) {
    }
    return 0;
  }
  if (mode == 1) {
    WireDecoder decoder(kSender);
    while (in.remaining() > 0) {
      const std::size_t len = std::min<std::size_t>(in.U64(2), in.remaining());
      const std::span<const std::uint8_t> chunk(in.here(), len);
      in.Skip(len);
      try {
        std::optional<Received> m = decoder.Add(chunk);
        if (m) CheckReencodes(*m);
      } catch (const TransportError&) {
        FUZZ_CHECK(!decoder.in_progress());
        CheckRecovers(&decoder);
      }
    }
    return 0;
  }
  // mode 2: a valid message, chunked, then one byte flipped.
  const Received original = BuildFrame(&in);
  const std::size_t chunk_bytes = kWireMinChunkBytes + in.U64(2) % 1024;
  const std::size_t flip_at = in.U64(4);
  const std::uint8_t flip_mask = in.Byte() | 1;
  std::vector<std::vector<std::uint8_t>> chunks;
  if (!EncodeChunks(original, chunk_bytes, &chunks)) return 0;
  Received got;
  FUZZ_CHECK(FeedChunks(chunks, &got));
  FUZZ_CHECK(SenderOf(got) == kSender && SameReceived(got, original));

  std::size_t total = 0;
  for (const auto& c : chunks) total += c.size();
  std::size_t pos = flip_at % total;
  for (auto& c : chunks) {
    if (pos < c.size()) {
      c[pos] ^= flip_mask;
      break;
    }
    pos -= c.size();
  }
  try {
    FUZZ_CHECK(!FeedChunks(chunks, &got));
  } catch (const TransportError&) {
  }
  return 0;
}

constexpr FuzzTarget kTargets[] = {
    {"libsvm", FuzzLibsvm},   {"libffm", FuzzLibffm},   {"criteo", FuzzCriteo},
    {"csv", FuzzCsv},         {"config", FuzzConfig},   {"wire", FuzzWire},
    {"model", FuzzModelFile}, {"shard", FuzzShardFile},
};

}  // namespace

int FuzzLibsvm(const std::uint8_t* data, std::size_t size) {
  return FuzzReader(DataFormat::kLibsvm, data, size);
}
int FuzzLibffm(const std::uint8_t* data, std::size_t size) {
  return FuzzReader(DataFormat::kLibffm, data, size);
}
int FuzzCriteo(const std::uint8_t* data, std::size_t size) {
  return FuzzReader(DataFormat::kCriteo, data, size);
}
int FuzzCsv(const std::uint8_t* data, std::size_t size) {
  return FuzzReader(DataFormat::kCsv, data, size);
}
int FuzzConfig(const std::uint8_t* data, std::size_t size) { return FuzzConfigImpl(data, size); }
int FuzzWire(const std::uint8_t* data, std::size_t size) { return FuzzWireImpl(data, size); }

std::span<const FuzzTarget> AllFuzzTargets() { return kTargets; }

}  // namespace fmps::fuzz
