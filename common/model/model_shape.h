// ModelShape: what a model's parameter rows look like. The one place that knows how many
// floats a key's row holds; every other part (model file, ParamStore, checkpoint shards,
// KVClient, Worker, kernels) takes row_width() / v_width() from a ModelShape it was given.
//
// A key's row is (w, v[v_width()]): row_width() = 1 + v_width() floats, in that order, in
// pulls, pushes, the model file and ParamStore::ForEach.
//
// Kinds: FM (v = k floats) and FFM (v = F vectors of k floats, one per field: v_{i,f} at
// f * k, F = fields). Adding a model kind: a ModelKind value (common/config/config.h, with
// its v_width() here and its checks in Validate() and ToString()), and a ModelKernel class
// plugged into MakeKernel (common/model/model_kernel.h). Files and shards carry the kind.
//
// A plain value: copyable, thread-safe to read.
#pragma once

#include <string>

#include "common/config/config.h"
#include "common/data/row_block.h"

namespace fmps {

// ModelKind (stored by number in model files and checkpoint shards) is config.h's.

constexpr int kMaxK = 1024;       // largest embedding size
constexpr int kMaxFields = 4096;  // most fields of a field-aware kind (as model.fields allows)

struct ModelShape {
  ModelKind kind = ModelKind::kFm;
  int k = 8;       // embedding size
  int fields = 0;  // number of fields (field-aware kinds); 0 for FM

  // Floats of one key's embedding v: k for FM, fields * k for FFM.
  constexpr int v_width() const { return kind == ModelKind::kFfm ? fields * k : k; }
  // Floats of one key's row: w, then v.
  constexpr int row_width() const { return 1 + v_width(); }

  // Throws ModelError naming `what` (e.g. a file) unless the shape is valid: a known kind,
  // 1 <= k <= kMaxK, fields == 0 for FM, 1 <= fields <= kMaxFields for FFM.
  void Validate(const std::string& what) const;

  // "fm k=8", "ffm k=8 fields=39": for messages.
  std::string ToString() const;

  friend bool operator==(const ModelShape&, const ModelShape&) = default;
};

// An FM shape of embedding size k (not validated).
constexpr ModelShape FmShape(int k) { return {ModelKind::kFm, k, 0}; }
// An FFM shape of embedding size k over `fields` fields (not validated).
constexpr ModelShape FfmShape(int k, int fields) { return {ModelKind::kFfm, k, fields}; }

// The shape a config trains: model.kind, model.k, model.fields. Validated (throws
// ModelError naming "model" when out of range).
ModelShape ShapeFromConfig(const ModelConfig& model);

// Kind from its stored number; throws ModelError naming `what` when unknown.
ModelKind ModelKindFromNumber(unsigned number, const std::string& what);

// Records `shape` in a model file or checkpoint shard header (pb::ModelHeader,
// pb::ShardHeader): the kind by number, k and fields.
template <typename Header>
void SetShapeOf(const ModelShape& shape, Header* header) {
  header->set_kind(static_cast<std::uint32_t>(shape.kind));
  header->set_k(static_cast<std::uint32_t>(shape.k));
  header->set_fields(static_cast<std::uint32_t>(shape.fields));
}

// The bound on field ids a shape's data must respect (FeatureSpec::field_limit): `fields`
// for FFM, kFieldLimit (any field) for FM.
constexpr std::uint32_t FieldLimitOf(const ModelShape& shape) {
  return shape.kind == ModelKind::kFfm ? static_cast<std::uint32_t>(shape.fields) : kFieldLimit;
}

}  // namespace fmps
