#include "common/model/model_file.h"

#include <algorithm>
#include <cstring>

#include "common/base/error.h"
#include "common/base/log.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto

namespace fmps {
namespace {

constexpr RecordFileKind kModelFile{"FMPSMDL1", "model file"};
constexpr std::uint32_t kVersion = 2;  // 1: written before the checksum
constexpr std::size_t kChunkKeys = 1 << 16;

Loss LossFromName(const std::string& name, const std::string& path) {
  if (name == "logistic") return Loss::kLogistic;
  if (name == "squared") return Loss::kSquared;
  throw ModelError(path + ": unknown loss '" + name + "' in model header");
}

const ModelMeta& Validated(const ModelMeta& meta, const std::string& name) {
  meta.shape.Validate("model " + name);
  return meta;
}

}  // namespace

ModelWriter::ModelWriter(const std::string& path, const ModelMeta& meta)
    : name_(path), meta_(Validated(meta, path)), out_(path, kModelFile) {
  WriteHeader();
}

ModelWriter::ModelWriter(std::string* sink, const std::string& name, const ModelMeta& meta)
    : name_(name), meta_(Validated(meta, name)), out_(sink, kModelFile) {
  WriteHeader();
}

void ModelWriter::WriteHeader() {
  const ModelMeta& meta = meta_;
  pb::ModelHeader h;
  h.set_version(kVersion);
  SetShapeOf(meta.shape, &h);
  h.set_loss(ToString(meta.loss));
  h.set_bias(meta.bias);
  h.set_num_keys(meta.num_keys);
  h.set_data_yaml(DataSectionToYaml(meta.features.data));
  for (const std::string& f : meta.features.sides.user) h.add_user_side(f);
  for (const std::string& f : meta.features.sides.item) h.add_item_side(f);
  for (const NumericStat& s : meta.features.numeric_stats) {
    pb::NumericStat* p = h.add_numeric_stats();
    p->set_column(s.column);
    p->set_mean(s.mean);
    p->set_std(s.std);
  }
  h.set_config_yaml(meta.config_yaml);
  out_.Write(h);
}

ModelWriter::~ModelWriter() = default;

void ModelWriter::WriteChunk() {
  pb::ModelChunk c;
  c.set_keys(pending_keys_.data(), pending_keys_.size() * sizeof(Key));
  c.set_params(pending_params_.data(), pending_params_.size() * sizeof(float));
  out_.Write(c);
  written_keys_ += pending_keys_.size();
  pending_keys_.clear();
  pending_params_.clear();
}

void ModelWriter::Append(std::span<const Key> keys, std::span<const float> params) {
  const std::size_t width = static_cast<std::size_t>(meta_.shape.row_width());
  if (params.size() != keys.size() * width) {
    throw ModelError("model chunk for " + name_ + " has mismatched sizes");
  }
  CheckAscending(keys);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    pending_keys_.push_back(keys[i]);
    pending_params_.insert(pending_params_.end(), params.begin() + i * width,
                           params.begin() + (i + 1) * width);
    if (pending_keys_.size() == kChunkKeys) WriteChunk();
  }
}

void ModelWriter::CheckAscending(std::span<const Key> keys) {
  bool any = written_keys_ + pending_keys_.size() > 0;
  for (const Key k : keys) {
    if (any && k <= last_key_) {
      throw ModelError("model keys for " + name_ + " are not strictly ascending");
    }
    last_key_ = k;
    any = true;
  }
}

namespace {

// Protobuf's encoding of a length-delimited field's tag and length (wire type 2).
std::size_t PutBytesField(int field, std::uint64_t length, char* out) {
  std::size_t n = 0;
  out[n++] = static_cast<char>((field << 3) | 2);
  do {
    const auto low = static_cast<unsigned char>(length & 0x7f);
    length >>= 7;
    out[n++] = static_cast<char>(length != 0 ? (low | 0x80) : low);
  } while (length != 0);
  return n;
}

}  // namespace

// The record Write(pb::ModelChunk with keys and params set) gives: keys = 1, params = 2, each
// a tag and a varint length before the bytes (fields in number order; last and checksum at
// their defaults are not written).
void ModelWriter::WriteRowsChunk(std::span<const Key> keys, std::span<const float* const> rows) {
  const std::size_t row_bytes = static_cast<std::size_t>(meta_.shape.row_width()) * sizeof(float);
  const std::uint64_t key_bytes = keys.size() * sizeof(Key);
  const std::uint64_t param_bytes = keys.size() * row_bytes;
  char head[4 + 2 * 11];
  char* fields = head + 4;
  const std::size_t key_head = PutBytesField(1, key_bytes, fields);
  char param_head[11];
  const std::size_t param_head_bytes = PutBytesField(2, param_bytes, param_head);
  const std::uint64_t length = key_head + key_bytes + param_head_bytes + param_bytes;
  for (int i = 0; i < 4; ++i) head[i] = static_cast<char>((length >> (8 * i)) & 0xff);
  out_.WriteBytes(head, 4 + key_head);
  out_.WriteBytes(keys.data(), key_bytes);
  out_.WriteBytes(param_head, param_head_bytes);
  for (const float* row : rows) out_.WriteBytes(row, row_bytes);
  written_keys_ += keys.size();
}

void ModelWriter::AppendRows(std::span<const Key> keys, std::span<const float* const> rows) {
  if (rows.size() != keys.size()) {
    throw ModelError("model chunk for " + name_ + " has mismatched sizes");
  }
  CheckAscending(keys);
  if (!pending_keys_.empty()) WriteChunk();
  const std::size_t row_bytes = static_cast<std::size_t>(meta_.shape.row_width()) * sizeof(float);
  // At most kChunkKeys per record, and records within kMaxRecordBytes.
  const std::size_t per_chunk =
      std::max<std::size_t>(1, std::min(kChunkKeys, (kMaxRecordBytes - 32) / (8 + row_bytes)));
  for (std::size_t begin = 0; begin < keys.size(); begin += per_chunk) {
    const std::size_t n = std::min(per_chunk, keys.size() - begin);
    WriteRowsChunk(keys.subspan(begin, n), rows.subspan(begin, n));
  }
}

void ModelWriter::Finish() {
  Seal();
  Publish();
}

void ModelWriter::Publish() { out_.Commit(); }

void ModelWriter::Seal() {
  if (written_keys_ + pending_keys_.size() != meta_.num_keys) {
    throw ModelError("model " + name_ + ": header announces " + std::to_string(meta_.num_keys) +
                     " keys but " + std::to_string(written_keys_ + pending_keys_.size()) +
                     " were written");
  }
  if (!pending_keys_.empty()) WriteChunk();
  out_.Seal<pb::ModelChunk>();
}

namespace {

// Checks the magic and reads the header record into *meta; returns the header's version.
std::uint32_t ReadHeader(RecordReader* r, ModelMeta* meta) {
  const std::string& path = r->name();
  r->Start();
  pb::ModelHeader h;
  r->ReadHeader(&h);
  if (h.version() != kVersion && h.version() != 1) {
    r->Fail("unsupported model version " + std::to_string(h.version()) +
            " (this fmps reads 1 and " + std::to_string(kVersion) + ")");
  }
  meta->shape.kind = ModelKindFromNumber(h.kind(), path);
  meta->shape.k = static_cast<int>(h.k());
  meta->shape.fields = static_cast<int>(h.fields());
  meta->shape.Validate(path);
  meta->loss = LossFromName(h.loss(), path);
  meta->bias = h.bias();
  meta->num_keys = h.num_keys();
  try {
    meta->features.data = ParseDataSection(h.data_yaml());
  } catch (const ConfigError& e) {
    r->Fail(std::string("bad feature settings in model header: ") + e.what());
  }
  meta->features.loss = meta->loss;
  meta->features.field_limit = FieldLimitOf(meta->shape);
  meta->features.sides.user.assign(h.user_side().begin(), h.user_side().end());
  meta->features.sides.item.assign(h.item_side().begin(), h.item_side().end());
  for (const auto& s : h.numeric_stats()) {
    meta->features.numeric_stats.push_back({s.column(), s.mean(), s.std()});
  }
  meta->config_yaml = h.config_yaml();
  return h.version();
}

}  // namespace

ModelMeta Model::ReadMeta(const std::string& path) {
  ModelMeta meta;
  RecordReader r(path, kModelFile);
  ReadHeader(&r, &meta);
  return meta;
}

// Appends the keys and rows of chunk `c` (already parsed) to the model.
void Model::AppendChunk(const pb::ModelChunk& c, const RecordReader& r, std::uint64_t index) {
  const std::size_t width = static_cast<std::size_t>(meta_.shape.row_width());
  const std::size_t n = c.keys().size() / sizeof(Key);
  if (c.keys().size() % sizeof(Key) != 0 || c.params().size() != n * width * sizeof(float)) {
    r.Damaged("chunk " + std::to_string(index) + " holds " + std::to_string(c.keys().size()) +
              " key bytes and " + std::to_string(c.params().size()) + " parameter bytes; " +
              meta_.shape.ToString() + " needs " + std::to_string(width * sizeof(float)) +
              " parameter bytes per 8-byte key");
  }
  if (keys_.size() + n > meta_.num_keys) {
    r.Damaged("more keys than the header's " + std::to_string(meta_.num_keys));
  }
  const std::size_t base = keys_.size();
  keys_.resize(base + n);
  std::memcpy(keys_.data() + base, c.keys().data(), c.keys().size());
  for (std::size_t i = (base == 0 ? 1 : base); i < base + n; ++i) {
    if (keys_[i] <= keys_[i - 1]) {
      r.Damaged("keys not strictly ascending");
    }
  }
  const std::size_t tbase = table_.size();
  table_.resize(tbase + n * width);
  std::memcpy(table_.data() + tbase, c.params().data(), c.params().size());
}

Model Model::Load(const std::string& path) {
  RecordReader r(path, kModelFile);
  return Read(&r);
}

Model Model::FromBytes(std::string_view bytes, const std::string& name) {
  RecordReader r(bytes, name, kModelFile);
  return Read(&r);
}

Model Model::Read(RecordReader* reader) {
  Model m;
  RecordReader& r = *reader;
  const std::uint32_t version = ReadHeader(&r, &m.meta_);
  const std::size_t width = static_cast<std::size_t>(m.meta_.shape.row_width());
  // Every key takes at least 8 + 4 * width bytes of the file: a header announcing more keys
  // than the file can hold is refused before anything is allocated for them.
  const std::uint64_t key_bytes = sizeof(Key) + width * sizeof(float);
  if (m.meta_.num_keys > r.remaining() / key_bytes) {
    r.Damaged("header announces " + std::to_string(m.meta_.num_keys) + " keys, more than its " +
              std::to_string(r.size()) + " bytes can hold");
  }
  m.kernel_ = MakeKernel(m.meta_.shape, m.meta_.loss);
  m.keys_.reserve(m.meta_.num_keys);
  m.table_.assign(2 * width, 0.0f);
  m.table_.reserve((m.meta_.num_keys + 2) * width);
  m.table_[0] = m.meta_.bias;
  pb::ModelChunk c;
  for (std::uint64_t index = 0;; ++index) {
    const std::uint64_t before = r.ReadChunk(&c, index);
    if (c.last() && version == 1 && c.checksum() == 0) {  // written before the checksum
      m.AppendChunk(c, r, index);
      Warn(r.name() +
           ": model file written before model files carried a checksum (version 1): "
           "loaded without verification");
      break;
    }
    if (c.last()) {
      r.CheckFinal(c, before);
      break;
    }
    m.AppendChunk(c, r, index);
  }
  if (m.keys_.size() != m.meta_.num_keys) {
    r.Fail("model holds " + std::to_string(m.keys_.size()) + " keys, header says " +
           std::to_string(m.meta_.num_keys));
  }
  m.index_ = KeyIndex(m.keys_.size());
  for (Key k : m.keys_) m.index_.Insert(k);
  if (m.index_.size() != m.keys_.size()) r.Fail("duplicate keys in model");
  return m;
}

// The batch of `block` with its keys looked up into *local (rows of table_).
ModelBatch Model::LocalBatch(const RowBlock& block, std::vector<std::uint32_t>* local) const {
  local->resize(block.nnz());
  std::uint32_t* out = local->data();
  index_.FindMany(block.keys.data(), block.nnz(), out);
  for (std::size_t i = 0; i < block.nnz(); ++i) {  // kNotFound + 2 wraps to 1: unknown row
    out[i] += 2;
  }
  ModelBatch b;
  b.rows = block.rows();
  b.labels = block.labels.data();
  b.offsets = block.offsets.data();
  b.local = local->data();
  b.values = block.values.data();
  b.fields = block.fields.data();
  return b;
}

void Model::Score(const RowBlock& block, std::vector<std::uint32_t>* local, float* scores) const {
  kernel_->Scores(LocalBatch(block, local), table_.data(), scores);
}

void Model::EmbeddingSums(const RowBlock& block, std::vector<std::uint32_t>* local,
                          float* sums) const {
  kernel_->EmbeddingSums(LocalBatch(block, local), table_.data(), sums);
}

}  // namespace fmps
