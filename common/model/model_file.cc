#include "common/model/model_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/base/error.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto

namespace fmps {
namespace {

constexpr char kMagic[8] = {'F', 'M', 'P', 'S', 'M', 'D', 'L', '1'};
constexpr std::size_t kChunkKeys = 1 << 16;
constexpr std::uint32_t kMaxRecordBytes = 1u << 30;

std::string Errno() { return std::strerror(errno); }

Loss LossFromName(const std::string& name, const std::string& path) {
  if (name == "logistic") return Loss::kLogistic;
  if (name == "squared") return Loss::kSquared;
  throw ModelError(path + ": unknown loss '" + name + "' in model header");
}

}  // namespace

ModelWriter::ModelWriter(const std::string& path, const ModelMeta& meta)
    : path_(path), tmp_path_(path + ".tmp." + std::to_string(getpid())), meta_(meta) {
  meta.shape.Validate("model " + path);
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  if (std::fwrite(kMagic, 1, sizeof(kMagic), file_) != sizeof(kMagic)) {
    throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  }
  pb::ModelHeader h;
  h.set_version(1);
  h.set_k(static_cast<std::uint32_t>(meta.shape.k));
  h.set_kind(static_cast<std::uint32_t>(meta.shape.kind));
  h.set_fields(static_cast<std::uint32_t>(meta.shape.fields));
  h.set_loss(ToString(meta.loss));
  h.set_bias(meta.bias);
  h.set_num_keys(meta.num_keys);
  h.set_data_yaml(DataSectionToYaml(meta.features.data));
  for (const NumericStat& s : meta.features.numeric_stats) {
    pb::NumericStat* p = h.add_numeric_stats();
    p->set_column(s.column);
    p->set_mean(s.mean);
    p->set_std(s.std);
  }
  h.set_config_yaml(meta.config_yaml);
  WriteRecord(h.SerializeAsString());
}

ModelWriter::~ModelWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

void ModelWriter::WriteRecord(const std::string& bytes) {
  const std::uint32_t n = static_cast<std::uint32_t>(bytes.size());
  unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                          static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24)};
  if (std::fwrite(len, 1, 4, file_) != 4 ||
      std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size()) {
    throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  }
}

void ModelWriter::Append(std::span<const Key> keys, std::span<const float> params) {
  const std::size_t width = static_cast<std::size_t>(meta_.shape.row_width());
  if (params.size() != keys.size() * width) {
    throw ModelError("model chunk for " + path_ + " has mismatched sizes");
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (written_keys_ + pending_keys_.size() > 0 && keys[i] <= last_key_) {
      throw ModelError("model keys for " + path_ + " are not strictly ascending");
    }
    last_key_ = keys[i];
    pending_keys_.push_back(keys[i]);
    pending_params_.insert(pending_params_.end(), params.begin() + i * width,
                           params.begin() + (i + 1) * width);
    if (pending_keys_.size() == kChunkKeys) {
      pb::ModelChunk c;
      c.set_keys(pending_keys_.data(), pending_keys_.size() * sizeof(Key));
      c.set_params(pending_params_.data(), pending_params_.size() * sizeof(float));
      WriteRecord(c.SerializeAsString());
      written_keys_ += pending_keys_.size();
      pending_keys_.clear();
      pending_params_.clear();
    }
  }
}

void ModelWriter::Finish() {
  pb::ModelChunk c;
  c.set_keys(pending_keys_.data(), pending_keys_.size() * sizeof(Key));
  c.set_params(pending_params_.data(), pending_params_.size() * sizeof(float));
  c.set_last(true);
  written_keys_ += pending_keys_.size();
  if (written_keys_ != meta_.num_keys) {
    throw ModelError("model " + path_ + ": header announces " + std::to_string(meta_.num_keys) +
                     " keys but " + std::to_string(written_keys_) + " were written");
  }
  WriteRecord(c.SerializeAsString());
  if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
    throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  }
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::string err = Errno();
    std::remove(tmp_path_.c_str());
    throw IoError("cannot rename " + tmp_path_ + " to " + path_ + ": " + err);
  }
}

namespace {

// Reads one length-prefixed record; false at a clean end of file.
bool ReadRecord(std::FILE* f, const std::string& path, std::string* out) {
  unsigned char len[4];
  const std::size_t got = std::fread(len, 1, 4, f);
  if (got == 0 && std::feof(f)) return false;
  if (got != 4) throw ModelError(path + ": truncated model file (record length)");
  const std::uint32_t n =
      len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<std::uint32_t>(len[3]) << 24);
  if (n > kMaxRecordBytes) throw ModelError(path + ": corrupt model file (record too large)");
  out->resize(n);
  if (std::fread(out->data(), 1, n, f) != n) {
    throw ModelError(path + ": truncated model file (record body)");
  }
  return true;
}

}  // namespace

namespace {

using FilePtr = std::unique_ptr<std::FILE, int (*)(std::FILE*)>;

// Opens `path`, checks the magic and reads the header record into *meta.
FilePtr OpenModel(const std::string& path, ModelMeta* meta) {
  FilePtr f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw IoError("cannot open model " + path + ": " + Errno());
  char magic[8];
  if (std::fread(magic, 1, 8, f.get()) != 8 || std::memcmp(magic, kMagic, 8) != 0) {
    throw ModelError(path + ": not an fmps model file (bad magic)");
  }
  std::string rec;
  if (!ReadRecord(f.get(), path, &rec)) throw ModelError(path + ": model file has no header");
  pb::ModelHeader h;
  if (!h.ParseFromString(rec)) throw ModelError(path + ": corrupt model header");
  if (h.version() != 1) {
    throw ModelError(path + ": unsupported model version " + std::to_string(h.version()));
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
    throw ModelError(path + ": bad feature settings in model header: " + e.what());
  }
  meta->features.loss = meta->loss;
  for (const auto& s : h.numeric_stats()) {
    meta->features.numeric_stats.push_back({s.column(), s.mean(), s.std()});
  }
  meta->config_yaml = h.config_yaml();
  return f;
}

}  // namespace

ModelMeta Model::ReadMeta(const std::string& path) {
  ModelMeta meta;
  OpenModel(path, &meta);
  return meta;
}

Model Model::Load(const std::string& path) {
  Model m;
  FilePtr f = OpenModel(path, &m.meta_);
  std::string rec;
  const std::size_t width = static_cast<std::size_t>(m.meta_.shape.row_width());
  m.kernel_ = MakeKernel(m.meta_.shape, m.meta_.loss);
  m.keys_.reserve(m.meta_.num_keys);
  m.table_.assign(2 * width, 0.0f);
  m.table_.reserve((m.meta_.num_keys + 2) * width);
  m.table_[0] = m.meta_.bias;
  bool last = false;
  pb::ModelChunk c;
  while (!last) {
    if (!ReadRecord(f.get(), path, &rec)) throw ModelError(path + ": truncated model file");
    if (!c.ParseFromString(rec)) throw ModelError(path + ": corrupt model chunk");
    const std::size_t n = c.keys().size() / sizeof(Key);
    if (c.keys().size() % sizeof(Key) != 0 || c.params().size() != n * width * sizeof(float)) {
      throw ModelError(path + ": model chunk sizes do not match");
    }
    const std::size_t base = m.keys_.size();
    m.keys_.resize(base + n);
    std::memcpy(m.keys_.data() + base, c.keys().data(), c.keys().size());
    const std::size_t tbase = m.table_.size();
    m.table_.resize(tbase + n * width);
    std::memcpy(m.table_.data() + tbase, c.params().data(), c.params().size());
    last = c.last();
  }
  if (m.keys_.size() != m.meta_.num_keys) {
    throw ModelError(path + ": model holds " + std::to_string(m.keys_.size()) +
                     " keys, header says " + std::to_string(m.meta_.num_keys));
  }
  m.index_ = KeyIndex(m.keys_.size());
  for (Key k : m.keys_) m.index_.Insert(k);
  if (m.index_.size() != m.keys_.size()) throw ModelError(path + ": duplicate keys in model");
  return m;
}

void Model::Score(const RowBlock& block, std::vector<std::uint32_t>* local, float* scores) const {
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
  kernel_->Scores(b, table_.data(), scores);
}

}  // namespace fmps
