// model.fmps: the trained model, self-contained for predict/eval/export.
//
// Format (see common/proto/fmps.proto and README): a record file (common/base/record_file.h)
// with the magic "FMPSMDL1": one ModelHeader (model shape, loss, bias, number of keys, the
// `data:` feature settings and csv standardisation statistics, the training config), then
// ModelChunk records (raw little-endian keys ascending and shape.row_width() floats per key,
// at most 2^16 keys each, so models of any size work) until one marked last. The final record
// (version 2) holds no keys and carries the XXH3-64 of every byte before it: Load refuses a
// damaged file. Version-1 files (written before the checksum) load with a warning.
//
// Writing is atomic (RecordWriter): a crash never leaves a partial model.fmps.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/base/huge_pages.h"
#include "common/base/key_index.h"
#include "common/base/record_file.h"
#include "common/base/types.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/data/row_block.h"
#include "common/model/model_kernel.h"
#include "common/model/model_shape.h"

namespace fmps {

namespace pb {
class ModelChunk;
}

struct ModelMeta {
  ModelShape shape;
  Loss loss = Loss::kLogistic;
  float bias = 0.0f;
  std::uint64_t num_keys = 0;
  FeatureSpec features;     // how raw rows become keys
  std::string config_yaml;  // training config, for provenance
};

// Streams a model to `path`: construct with the header, Append chunks of ascending keys,
// then Finish(). If Finish() is not reached (exception), the partial temp file is removed.
// The in-memory form writes the same bytes (checksum included) to a string instead and
// touches no file.
class ModelWriter {
 public:
  ModelWriter(const std::string& path, const ModelMeta& meta);
  // Writes the model's bytes to *sink (cleared first; borrowed, must outlive the writer);
  // `name` stands for the model in messages. *sink holds a complete model only after Finish.
  ModelWriter(std::string* sink, const std::string& name, const ModelMeta& meta);
  ~ModelWriter();
  ModelWriter(const ModelWriter&) = delete;
  ModelWriter& operator=(const ModelWriter&) = delete;

  // keys ascending (also across calls), params = keys.size() * meta.shape.row_width() floats.
  void Append(std::span<const Key> keys, std::span<const float> params);
  // The same for keys whose rows lie anywhere in memory: rows[i] points at keys[i]'s
  // row_width() floats. Each row is copied once, straight into the file's write buffer (no
  // gathered copy of the chunk). The file's bytes are those Append writes, but for where the
  // chunk records split.
  void AppendRows(std::span<const Key> keys, std::span<const float* const> rows);
  // Writes the last record, fsyncs and renames into place. Throws IoError/ModelError
  // (e.g. when the number of keys appended differs from meta.num_keys).
  void Finish();
  // Finish in two steps, for a caller that decides later whether the model is published:
  // Seal() does Finish's checks, writes the last record and fsyncs the temp file (the file is
  // not at `path` yet); Publish() renames it into place. A writer destroyed after Seal but
  // before Publish removes the temp file (no model file appears). The in-memory form's sink
  // holds the complete model after Seal.
  void Seal();
  void Publish();

 private:
  void WriteHeader();
  void WriteChunk();  // the pending keys as one record
  // Checks that keys ascend after last_key_ (and updates it).
  void CheckAscending(std::span<const Key> keys);
  // Writes one ModelChunk record of keys and their rows, encoded here (no protobuf copy).
  void WriteRowsChunk(std::span<const Key> keys, std::span<const float* const> rows);
  std::string name_;  // the path, or the in-memory form's name
  ModelMeta meta_;
  RecordWriter out_;
  std::uint64_t written_keys_ = 0;
  Key last_key_ = 0;
  std::vector<Key> pending_keys_;
  std::vector<float> pending_params_;
};

// A loaded model, ready to score rows. Immutable after load; Score is thread-safe. Scores
// through the ModelKernel of its shape and loss, made once at load.
class Model {
 public:
  // Reads and validates `path` in one streaming pass: structure, key counts, strictly
  // ascending keys, the checksum of a version-2 file (a version-1 file, written before the
  // checksum, loads with a warning on stderr). Throws IoError / ModelError whose one-line
  // message starts with the file name. Allocates only for what the file's bytes back (a header
  // announcing more keys than the file can hold is refused first).
  static Model Load(const std::string& path);
  // The same from the bytes of a model file in memory (e.g. a pickled estimator), checked
  // the same way; `name` stands for the file in messages. Copies what it keeps.
  static Model FromBytes(std::string_view bytes, const std::string& name);
  // Reads and validates only the header of `path` (cheap, for checks before work; the
  // checksum is verified by Load).
  static ModelMeta ReadMeta(const std::string& path);

  const ModelMeta& meta() const { return meta_; }
  const ModelShape& shape() const { return meta_.shape; }
  std::size_t num_keys() const { return keys_.size(); }
  const std::vector<Key>& keys() const { return keys_; }
  // The i-th key's row (ascending key order): shape().row_width() floats, w then v.
  const float* row(std::size_t i) const {
    return &table_[(i + 2) * static_cast<std::size_t>(meta_.shape.row_width())];
  }

  // Raw scores of every row of `block` into scores[block.rows()]. Unknown keys contribute
  // nothing. `local` is scratch space (resized as needed).
  void Score(const RowBlock& block, std::vector<std::uint32_t>* local, float* scores) const;
  // Per-row embedding sums (ModelKernel::EmbeddingSums) of `block` into
  // sums[block.rows() * shape().v_width()]; unknown keys contribute nothing.
  void EmbeddingSums(const RowBlock& block, std::vector<std::uint32_t>* local, float* sums) const;

 private:
  ModelBatch LocalBatch(const RowBlock& block, std::vector<std::uint32_t>* local) const;
  static Model Read(RecordReader* reader);
  void AppendChunk(const pb::ModelChunk& c, const RecordReader& r, std::uint64_t index);
  ModelMeta meta_;
  std::unique_ptr<const ModelKernel> kernel_;
  std::vector<Key> keys_;
  // Row 0: bias (w0, zeros); row 1: zeros (unknown keys); row 2 + i: key i. Huge pages:
  // scoring reads its rows at random.
  std::vector<float, HugePageAllocator<float>> table_;
  KeyIndex index_;
};

}  // namespace fmps
