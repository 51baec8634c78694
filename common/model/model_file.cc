#include "common/model/model_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <google/protobuf/stubs/logging.h>
#include <xxhash.h>

#include "common/base/error.h"
#include "common/base/log.h"
#include "fmps.pb.h"  // generated from common/proto/fmps.proto

namespace fmps {
namespace {

constexpr char kMagic[8] = {'F', 'M', 'P', 'S', 'M', 'D', 'L', '1'};
constexpr std::uint32_t kVersion = 2;  // 1: written before the checksum
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
    : path_(path),
      tmp_path_(path + ".tmp." + std::to_string(getpid())),
      meta_(meta),
      hash_(XXH3_createState(), &FreeHashState) {
  meta.shape.Validate("model " + path);
  if (!hash_) throw std::bad_alloc();
  XXH3_64bits_reset(hash_.get());
  file_ = std::fopen(tmp_path_.c_str(), "wb");
  if (file_ == nullptr) throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  WriteHeader();
}

ModelWriter::ModelWriter(std::string* sink, const std::string& name, const ModelMeta& meta)
    : path_(name), sink_(sink), meta_(meta), hash_(XXH3_createState(), &FreeHashState) {
  meta.shape.Validate("model " + name);
  if (!hash_) throw std::bad_alloc();
  XXH3_64bits_reset(hash_.get());
  sink_->clear();
  WriteHeader();
}

void ModelWriter::WriteHeader() {
  const ModelMeta& meta = meta_;
  Write(kMagic, sizeof(kMagic));
  pb::ModelHeader h;
  h.set_version(kVersion);
  h.set_k(static_cast<std::uint32_t>(meta.shape.k));
  h.set_kind(static_cast<std::uint32_t>(meta.shape.kind));
  h.set_fields(static_cast<std::uint32_t>(meta.shape.fields));
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
  WriteRecord(h.SerializeAsString());
}

ModelWriter::~ModelWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(tmp_path_.c_str());
  }
}

void ModelWriter::FreeHashState(XXH3_state_s* state) { XXH3_freeState(state); }

void ModelWriter::Write(const void* data, std::size_t n) {
  XXH3_64bits_update(hash_.get(), data, n);
  if (sink_ != nullptr) {
    sink_->append(static_cast<const char*>(data), n);
    return;
  }
  if (std::fwrite(data, 1, n, file_) != n) {
    throw IoError("cannot write " + tmp_path_ + ": " + Errno());
  }
}

void ModelWriter::WriteRecord(const std::string& bytes) {
  const std::uint32_t n = static_cast<std::uint32_t>(bytes.size());
  unsigned char len[4] = {static_cast<unsigned char>(n), static_cast<unsigned char>(n >> 8),
                          static_cast<unsigned char>(n >> 16), static_cast<unsigned char>(n >> 24)};
  Write(len, 4);
  Write(bytes.data(), bytes.size());
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
  if (written_keys_ + pending_keys_.size() != meta_.num_keys) {
    throw ModelError("model " + path_ + ": header announces " + std::to_string(meta_.num_keys) +
                     " keys but " + std::to_string(written_keys_ + pending_keys_.size()) +
                     " were written");
  }
  pb::ModelChunk c;
  if (!pending_keys_.empty()) {
    c.set_keys(pending_keys_.data(), pending_keys_.size() * sizeof(Key));
    c.set_params(pending_params_.data(), pending_params_.size() * sizeof(float));
    WriteRecord(c.SerializeAsString());
    written_keys_ += pending_keys_.size();
    c.Clear();
  }
  c.set_last(true);  // the final record: no keys, the checksum of every byte before it
  c.set_checksum(XXH3_64bits_digest(hash_.get()));
  WriteRecord(c.SerializeAsString());
  if (sink_ != nullptr) return;  // in memory: nothing to sync or rename
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

// Reads a model file once, front to back, hashing every byte (XXH3-64) as it goes. Every
// record length is checked against the bytes left in the file before anything is allocated.
class ModelReader {
 public:
  explicit ModelReader(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "rb");
    if (file_ == nullptr) throw IoError("cannot open model " + path + ": " + Errno());
    struct stat st;
    if (::fstat(fileno(file_), &st) != 0) {
      const std::string err = Errno();
      std::fclose(file_);
      throw IoError("cannot stat model " + path + ": " + err);
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
    XXH3_64bits_reset(&hash_);
  }
  // Reads the model file held in `bytes` (borrowed), named `name` in messages.
  ModelReader(std::string_view bytes, const std::string& name) : path_(name), size_(bytes.size()) {
    // fmemopen does not accept a zero size: an empty buffer reads as a one-byte stream of
    // which nothing is read (size_ stays 0, so the magic check fails first).
    static char empty = 0;
    void* data = bytes.empty() ? &empty : const_cast<char*>(bytes.data());
    file_ = ::fmemopen(data, bytes.empty() ? 1 : bytes.size(), "rb");
    if (file_ == nullptr) throw IoError("cannot read model " + name + ": " + Errno());
    XXH3_64bits_reset(&hash_);
  }
  ~ModelReader() { std::fclose(file_); }
  ModelReader(const ModelReader&) = delete;
  ModelReader& operator=(const ModelReader&) = delete;

  [[noreturn]] void Fail(const std::string& what) const { throw ModelError(path_ + ": " + what); }
  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }
  std::uint64_t remaining() const { return size_ - offset_; }
  // XXH3-64 of every byte read so far.
  std::uint64_t digest() const { return XXH3_64bits_digest(&hash_); }

  // False on a clean end of file before any byte; Fail on a partial read.
  bool ReadExact(void* out, std::size_t n) {
    const std::size_t got = std::fread(out, 1, n, file_);
    if (std::ferror(file_)) throw IoError("cannot read model " + path_ + ": " + Errno());
    if (got == 0 && n > 0) return false;
    if (got != n) Fail("truncated model file (at byte " + std::to_string(offset_ + got) + ")");
    XXH3_64bits_update(&hash_, out, n);
    offset_ += n;
    return true;
  }

  // Reads one length-prefixed record; false at a clean end of file.
  bool ReadRecord(std::string* out) {
    unsigned char len[4];
    if (!ReadExact(len, 4)) return false;
    const std::uint32_t n =
        len[0] | (len[1] << 8) | (len[2] << 16) | (static_cast<std::uint32_t>(len[3]) << 24);
    if (n > kMaxRecordBytes || n > remaining()) {
      Fail("damaged model file (record of " + std::to_string(n) + " bytes at byte " +
           std::to_string(offset_ - 4) + " passes the end of the file)");
    }
    out->resize(n);
    if (n > 0 && !ReadExact(out->data(), n)) Fail("truncated model file (record body)");
    return true;
  }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t offset_ = 0;
  XXH3_state_t hash_;
};

namespace {

// Checks the magic and reads the header record into *meta; returns the header's version.
std::uint32_t ReadHeader(ModelReader* r, const std::string& path, ModelMeta* meta) {
  char magic[8];
  if (!r->ReadExact(magic, 8) || std::memcmp(magic, kMagic, 8) != 0) {
    r->Fail("not an fmps model file (bad magic)");
  }
  std::string rec;
  if (!r->ReadRecord(&rec)) r->Fail("model file has no header");
  pb::ModelHeader h;
  {
    google::protobuf::LogSilencer quiet;  // a damaged string field: our one-line error only
    if (!h.ParseFromString(rec)) r->Fail("damaged model file (corrupt header)");
  }
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

// The final record of a file: verifies its checksum (mandatory from version 2; version-1
// files carry none and are loaded with a warning) and that nothing follows it.
void CheckFinalRecord(ModelReader* r, std::uint32_t version, const pb::ModelChunk& c,
                      const std::string& rec, std::uint64_t before) {
  if (version == 1 && c.checksum() == 0) {
    Warn(r->path() +
         ": model file written before model files carried a checksum (version 1): "
         "loaded without verification");
    return;
  }
  if (!c.keys().empty()) r->Fail("damaged model file (final record holds keys)");
  if (c.checksum() != before) r->Fail("damaged model file (checksum mismatch)");
  // The checksum does not cover this record: its bytes must be the canonical encoding.
  if (c.SerializeAsString() != rec) r->Fail("damaged model file (corrupt final record)");
  char extra;
  if (r->ReadExact(&extra, 1)) r->Fail("damaged model file (bytes after the final record)");
}

}  // namespace

ModelMeta Model::ReadMeta(const std::string& path) {
  ModelMeta meta;
  ModelReader r(path);
  ReadHeader(&r, path, &meta);
  return meta;
}

// Appends the keys and rows of chunk `c` (already parsed) to the model.
void Model::AppendChunk(const pb::ModelChunk& c, const std::string& path, std::uint64_t index) {
  const std::size_t width = static_cast<std::size_t>(meta_.shape.row_width());
  const std::size_t n = c.keys().size() / sizeof(Key);
  if (c.keys().size() % sizeof(Key) != 0 || c.params().size() != n * width * sizeof(float)) {
    throw ModelError(path + ": damaged model file (chunk " + std::to_string(index) + " holds " +
                     std::to_string(c.keys().size()) + " key bytes and " +
                     std::to_string(c.params().size()) + " parameter bytes; " +
                     meta_.shape.ToString() + " needs " + std::to_string(width * sizeof(float)) +
                     " parameter bytes per 8-byte key)");
  }
  if (keys_.size() + n > meta_.num_keys) {
    throw ModelError(path + ": damaged model file (more keys than the header's " +
                     std::to_string(meta_.num_keys) + ")");
  }
  const std::size_t base = keys_.size();
  keys_.resize(base + n);
  std::memcpy(keys_.data() + base, c.keys().data(), c.keys().size());
  for (std::size_t i = (base == 0 ? 1 : base); i < base + n; ++i) {
    if (keys_[i] <= keys_[i - 1]) {
      throw ModelError(path + ": damaged model file (keys not strictly ascending)");
    }
  }
  const std::size_t tbase = table_.size();
  table_.resize(tbase + n * width);
  std::memcpy(table_.data() + tbase, c.params().data(), c.params().size());
}

Model Model::Load(const std::string& path) {
  ModelReader r(path);
  return Read(&r, path);
}

Model Model::FromBytes(std::string_view bytes, const std::string& name) {
  ModelReader r(bytes, name);
  return Read(&r, name);
}

Model Model::Read(ModelReader* reader, const std::string& path) {
  Model m;
  ModelReader& r = *reader;
  const std::uint32_t version = ReadHeader(&r, path, &m.meta_);
  const std::size_t width = static_cast<std::size_t>(m.meta_.shape.row_width());
  // Every key takes at least 8 + 4 * width bytes of the file: a header announcing more keys
  // than the file can hold is refused before anything is allocated for them.
  const std::uint64_t key_bytes = sizeof(Key) + width * sizeof(float);
  if (m.meta_.num_keys > r.remaining() / key_bytes) {
    r.Fail("damaged model file (header announces " + std::to_string(m.meta_.num_keys) +
           " keys, more than its " + std::to_string(r.size()) + " bytes can hold)");
  }
  m.kernel_ = MakeKernel(m.meta_.shape, m.meta_.loss);
  m.keys_.reserve(m.meta_.num_keys);
  m.table_.assign(2 * width, 0.0f);
  m.table_.reserve((m.meta_.num_keys + 2) * width);
  m.table_[0] = m.meta_.bias;
  std::string rec;
  pb::ModelChunk c;
  for (std::uint64_t index = 0;; ++index) {
    const std::uint64_t before = r.digest();
    if (!r.ReadRecord(&rec)) r.Fail("truncated model file (no final record)");
    if (!c.ParseFromString(rec)) {
      r.Fail("damaged model file (corrupt chunk " + std::to_string(index) + ")");
    }
    if (c.last()) {
      if (version == 1) m.AppendChunk(c, path, index);
      CheckFinalRecord(&r, version, c, rec, before);
      break;
    }
    m.AppendChunk(c, path, index);
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
