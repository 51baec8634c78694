// GradRows: the first and last touches of a batch's gradient rows inside
// ModelKernel::ForwardBackward (private to common/model; the contract is model_kernel.h's):
// rows are zeroed just before the batch's row that first uses them and scaled (RowScaling)
// just after the row that last uses them, so that no pass over the whole table is needed
// before or after the kernel.
//
// Use, per batch row r in order: Open(r), then every add of row r into the table, then
// Close(r); Finish() after the last row. The bias row is zeroed on construction.
// Cost: one pass over the batch's local ids (a max); for a table of at least
// kFoldGradTableBytes, Open reads row r's local ids once more and zeroes each table row once
// and Close multiplies each scaled row once; below it the table is zeroed and scaled in one
// pass each, as callers did before. No allocation.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "common/model/model_kernel.h"

namespace fmps::model_internal {

// The batch's highest local id (0 for no non-zeros).
inline std::uint32_t TopId(const ModelBatch& b) {
  std::uint32_t top = 0;
  for (std::size_t j = b.offsets[0]; j < b.offsets[b.rows]; ++j) top = std::max(top, b.local[j]);
  return top;
}

class GradRows {
 public:
  // `width`: the shape's row width (a compile-time constant where the caller inlines it);
  // `top`: the batch's highest local id (TopId). A table below kFoldGradTableBytes
  // (model_kernel.h) is zeroed here whole and scaled in Finish (it stays in cache between
  // the two, and per-row work would cost more).
  [[gnu::always_inline]] GradRows(const ModelBatch& b, float* grads, std::size_t width,
                                  std::uint32_t top)
      : offsets_(b.offsets), local_(b.local), scaling_(b.scaling), grads_(grads), width_(width) {
    fresh_ = top + 1;
    fold_ = FoldsGradRows(fresh_, width);
    std::fill(grads, grads + (fold_ ? 1 : fresh_) * width, 0.0f);
    if (fold_) fresh_ = 1;
    if (!fold_ || scaling_.offsets == nullptr) scaling_.ids = nullptr;  // scaled in Finish
  }

  // Zeroes the rows first needed by row r: those above every id of the earlier rows, up to
  // row r's highest id.
  [[gnu::always_inline]] void Open(std::size_t r) {
    if (!fold_) return;
    std::uint32_t top = 0;
    for (std::size_t j = offsets_[r]; j < offsets_[r + 1]; ++j) top = std::max(top, local_[j]);
    if (top < fresh_) return;
    std::fill(grads_ + fresh_ * width_, grads_ + (std::size_t{top} + 1) * width_, 0.0f);
    fresh_ = top + 1;
  }

  // Scales the rows whose last use was row r (when the batch asks for scaling).
  [[gnu::always_inline]] void Close(std::size_t r) {
    if (scaling_.factors == nullptr || scaling_.ids == nullptr) return;
    for (std::uint32_t i = scaling_.offsets[r]; i < scaling_.offsets[r + 1]; ++i) {
      Scale(scaling_.ids[i]);
    }
  }

  // Scales the bias row (after the last row), or every row when they were not scaled at
  // their last use.
  void Finish() {
    if (scaling_.factors == nullptr) return;
    const std::uint32_t end = scaling_.ids == nullptr ? fresh_ : 1;
    for (std::uint32_t u = 0; u < end; ++u) Scale(u);
  }

 private:
  [[gnu::always_inline]] void Scale(std::uint32_t u) {
    const float f = scaling_.factors[u];
    float* __restrict row = grads_ + std::size_t{u} * width_;
    for (std::size_t j = 0; j < width_; ++j) row[j] *= f;
  }

  const std::size_t* __restrict offsets_;
  const std::uint32_t* __restrict local_;
  RowScaling scaling_;
  float* grads_;
  std::size_t width_;
  std::uint32_t fresh_;  // rows below are zeroed
  bool fold_;            // zero and scale rows at their first and last use
};

}  // namespace fmps::model_internal
