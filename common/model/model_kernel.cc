#include "common/model/model_kernel.h"

#include "common/base/error.h"
#include "common/model/ffm_kernel.h"
#include "common/model/fm_kernel.h"

namespace fmps {

std::unique_ptr<ModelKernel> MakeKernel(const ModelShape& shape, Loss loss) {
  shape.Validate("model shape");
  switch (shape.kind) {
    case ModelKind::kFm:
      return MakeFmKernel(shape, loss);
    case ModelKind::kFfm:
      return MakeFfmKernel(shape, loss);
  }
  throw ModelError("model shape: unknown model kind");
}

}  // namespace fmps
