#include "common/model/model_shape.h"

#include "common/base/error.h"

namespace fmps {

void ModelShape::Validate(const std::string& what) const {
  ModelKindFromNumber(static_cast<unsigned>(kind), what);
  if (k < 1 || k > kMaxK) {
    throw ModelError(what + ": bad k " + std::to_string(k) + " (must be in 1.." +
                     std::to_string(kMaxK) + ")");
  }
  if (kind == ModelKind::kFm && fields != 0) {
    throw ModelError(what + ": an fm model has no fields, but fields = " + std::to_string(fields));
  }
  if (kind == ModelKind::kFfm && (fields < 1 || fields > kMaxFields)) {
    throw ModelError(what + ": bad number of fields " + std::to_string(fields) +
                     " for an ffm model (must be in 1.." + std::to_string(kMaxFields) + ")");
  }
}

std::string ModelShape::ToString() const {
  std::string s = std::string(kind == ModelKind::kFfm ? "ffm" : "fm") + " k=" + std::to_string(k);
  if (fields != 0) s += " fields=" + std::to_string(fields);
  return s;
}

ModelShape ShapeFromConfig(const ModelConfig& model) {
  const ModelShape shape{model.kind, model.k, model.kind == ModelKind::kFfm ? model.fields : 0};
  shape.Validate(model.kind == ModelKind::kFfm ? "model" : "model.k");
  return shape;
}

ModelKind ModelKindFromNumber(unsigned number, const std::string& what) {
  switch (number) {
    case static_cast<unsigned>(ModelKind::kFm):
      return ModelKind::kFm;
    case static_cast<unsigned>(ModelKind::kFfm):
      return ModelKind::kFfm;
    default:
      throw ModelError(what + ": unknown model kind " + std::to_string(number));
  }
}

}  // namespace fmps
