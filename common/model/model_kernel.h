// ModelKernel: the model math on a minibatch, behind one interface chosen once per job
// (MakeKernel) from the ModelShape and the loss. One virtual call per batch; the per-row and
// per-non-zero loops are specialised inside each implementation.
//
// A batch refers to parameters through local indices into a table of rows pulled from the
// servers: row u is params[u * shape.row_width() ...] = (w_u, v_u[0..v_width)). Row 0 is the
// bias: its w is w0 (its v is unused). Gradients use the same layout.
//
// FM (ModelKind::kFm), O(k * nnz):
//   y(x) = w0 + sum_i w_i x_i + 1/2 sum_f [ (sum_i v_if x_i)^2 - sum_i v_if^2 x_i^2 ].
// FFM (ModelKind::kFfm, ffm_kernel.h), O(k * nnz^2) per row, field f_i of non-zero i:
//   y(x) = w0 + sum_i w_i x_i + sum_{i<j} <v_{i,f_j}, v_{j,f_i}> x_i x_j,
//   v_{i,f} = v_i[f * k .. f * k + k).
//
// Adding a kind: a class implementing ModelKernel (its own file) and one case in MakeKernel
// (model_kernel.cc), besides the ModelKind value (model_shape.h).
//
// Thread safety: a kernel is immutable; its methods may run concurrently on distinct
// outputs. Each call allocates only O(v_width) scratch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/config/config.h"
#include "common/model/model_shape.h"

namespace fmps {

// Optional per-key scaling of a batch's gradient rows (optimizer.gradient key_mean and
// key_sqrt), which ForwardBackward applies to a key's row right after its last contribution,
// while the row is in cache: the row's floats are each multiplied by factors[u] (the same
// float multiplies as scaling the finished table afterwards, so the same bits). The bias row
// is scaled after the last row.
struct RowScaling {
  const float* factors = nullptr;  // per local id (0: the bias); null: no scaling
  // The local ids (never 0) whose last non-zero lies in row r are
  // ids[offsets[r] .. offsets[r + 1]); each id of the batch in exactly one row's list.
  // Needed only where FoldsGradRows (below) holds; null: every row is scaled after the last.
  const std::uint32_t* offsets = nullptr;  // rows + 1
  const std::uint32_t* ids = nullptr;
};

struct ModelBatch {
  std::size_t rows = 0;
  const float* labels = nullptr;         // rows
  const std::size_t* offsets = nullptr;  // rows + 1
  const std::uint32_t* local = nullptr;  // nnz local row indices (never 0: that is the bias)
  const float* values = nullptr;         // nnz
  // nnz field ids (RowBlock::fields): field-aware kinds read them and need every id below
  // shape.fields (the readers reject other rows: FeatureSpec::field_limit); FM ignores them
  // (may be null).
  const std::uint32_t* fields = nullptr;
  // Used by ForwardBackward only. PreparedBatch::PlanScaling (worker) computes it.
  RowScaling scaling = {};
};

class ModelKernel {
 public:
  virtual ~ModelKernel() = default;

  virtual const ModelShape& shape() const = 0;
  virtual Loss loss() const = 0;

  // Writes the raw score of each row into scores[rows].
  virtual void Scores(const ModelBatch& batch, const float* params, float* scores) const = 0;

  // Scores every row, writes d(sum of losses)/d(param) into grads (same layout as params; the
  // bias gradient goes to grads[0]; it must not overlap params), scaled per key as
  // batch.scaling says, and returns the sum of the rows' losses. If `scores` is non-null the
  // raw scores are written there too.
  // grads need not be zeroed: the rows 0 .. U-1, U = 1 + the highest local id of the batch,
  // are written whole (every float, rows no non-zero uses included: zeros), rows from U on
  // are not touched. Where FoldsGradRows(U, row width), a row is zeroed just before the
  // first row of the batch that uses it or a higher id, so with local ids numbered in
  // first-occurrence order (the bias 0, then each new key the next id:
  // PreparedBatch::Deduplicate) every row is zeroed where it is first used, in cache; any
  // other numbering gives the same gradients (it may zero rows sooner). The adds into a row
  // are those of adding into a zeroed table: same bits.
  virtual double ForwardBackward(const ModelBatch& batch, const float* params, float* grads,
                                 float* scores) const = 0;

  // Per-row embedding sums: sums[r * v_width + f] = sum over row r's non-zeros i of
  // v_if x_i (rows * shape().v_width() floats; the bias row takes no part). For FFM the sum
  // of v_i x_i over the row, per field block (v_width = F * k floats); FM's recall is the
  // only user and it is FM-only.
  virtual void EmbeddingSums(const ModelBatch& batch, const float* params, float* sums) const = 0;
};

// Gradient tables of at least this many bytes are zeroed and scaled row by row at each row's
// first and last use (ForwardBackward); smaller ones, which stay in cache, in one pass each
// before and after the rows (per-row work measured slower there: tests/bench/README.md).
inline constexpr std::size_t kFoldGradTableBytes = std::size_t{1} << 20;

// Whether ForwardBackward zeroes and scales a table of `rows` rows of `width` floats row by
// row, and so uses RowScaling's ids (a caller may leave them null when this is false).
constexpr bool FoldsGradRows(std::size_t rows, std::size_t width) {
  return rows * width * sizeof(float) >= kFoldGradTableBytes;
}

// The kernel for `shape` (validated: throws ModelError for an invalid shape) and `loss`.
std::unique_ptr<ModelKernel> MakeKernel(const ModelShape& shape, Loss loss);

}  // namespace fmps
