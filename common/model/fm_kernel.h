// The FM implementation of ModelKernel (model_kernel.h); use MakeKernel rather than this.
#pragma once

#include <memory>

#include "common/model/model_kernel.h"

namespace fmps {

// shape.kind must be kFm and the shape valid. The embedding size picks the specialised
// per-row code (k = 4, 8, 16, 32 fixed at compile time, other k generic) here, once.
std::unique_ptr<ModelKernel> MakeFmKernel(const ModelShape& shape, Loss loss);

}  // namespace fmps
