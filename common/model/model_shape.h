// ModelShape: what a model's parameter rows look like. The one place that knows how many
// floats a key's row holds; every other part (model file, ParamStore, checkpoint shards,
// KVClient, Worker, kernels) takes row_width() / v_width() from a ModelShape it was given.
//
// A key's row is (w, v[v_width()]): row_width() = 1 + v_width() floats, in that order, in
// pulls, pushes, the model file and ParamStore::ForEach.
//
// Adding a model kind (e.g. FFM): a ModelKind value here (with its v_width() and its checks
// in Validate() and ToString()), and a ModelKernel class plugged into MakeKernel
// (common/model/model_kernel.h). Files and shards carry the kind already.
//
// A plain value: copyable, thread-safe to read.
#pragma once

#include <string>

#include "common/config/config.h"

namespace fmps {

// Stored in model files and checkpoint shards as its number: never renumber.
enum class ModelKind : int {
  kFm = 0,  // factorization machine: one v of k floats per key
};

constexpr int kMaxK = 1024;  // largest embedding size

struct ModelShape {
  ModelKind kind = ModelKind::kFm;
  int k = 8;       // embedding size
  int fields = 0;  // number of fields (field-aware kinds); 0 for FM

  // Floats of one key's embedding v.
  constexpr int v_width() const { return k; }
  // Floats of one key's row: w, then v.
  constexpr int row_width() const { return 1 + v_width(); }

  // Throws ModelError naming `what` (e.g. a file) unless the shape is valid: a known kind,
  // 1 <= k <= kMaxK, fields == 0 for FM.
  void Validate(const std::string& what) const;

  // "fm k=8" (and the fields of field-aware kinds): for messages.
  std::string ToString() const;

  friend bool operator==(const ModelShape&, const ModelShape&) = default;
};

// An FM shape of embedding size k (not validated).
constexpr ModelShape FmShape(int k) { return {ModelKind::kFm, k, 0}; }

// The shape a config trains: kind fm, model.k. Validated (throws ModelError naming
// "model.k" when out of range).
ModelShape ShapeFromConfig(const ModelConfig& model);

// Kind from its stored number; throws ModelError naming `what` when unknown.
ModelKind ModelKindFromNumber(unsigned number, const std::string& what);

}  // namespace fmps
