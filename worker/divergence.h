// DivergenceGuard: stops a worker whose training loss becomes non-finite or explodes, with a
// NumericError suggesting a smaller learning rate, before the diverged model can be saved as
// model.fmps (the job fails; complete checkpoints written earlier stay as they are).
//
// Rule, per worker: batches are grouped, in training order, into windows of whole batches
// holding at least kWindowRows rows (a batch of kWindowRows or more rows is a window by
// itself). For a window, Z is the mean loss a zero score would have on its rows (log 2 for
// logistic loss, mean y^2 / 2 for squared loss); Z1 is Z of the worker's first window (the
// scale of the labels). Training has diverged when
//   * a batch's loss sum is not finite (checked at once), or
//   * a window's mean training loss exceeds kFactor * max(Z, Z1, kMinScale).
// At the end of each pass over the worker's data and at each checkpoint cut, the rows since
// the last window are judged the same way if there are at least kMinPartialRows of them, so
// that neither a checkpoint nor model.fmps is written from a model that diverged within a
// window (a small data set can be shorter than a window). Windows continue across epochs.
// Training lowers the loss below Z, so the rule fires only for a model ten times worse than
// predicting nothing: for logistic loss, a window mean above 10 log 2 = 6.93. kMinScale keeps
// squared loss on all-zero labels from firing on rounding noise.
//
// Thread safety: one thread (the worker's). Cost: O(rows) per batch (squared loss: one pass
// over the labels).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/config/config.h"

namespace fmps {

class DivergenceGuard {
 public:
  static constexpr std::uint64_t kWindowRows = 1000;
  static constexpr double kFactor = 10.0;
  static constexpr double kMinScale = 1e-3;
  static constexpr std::uint64_t kMinPartialRows = 100;

  explicit DivergenceGuard(Loss loss) : loss_(loss) {}

  // Adds one batch of `rows` rows (labels[0..rows)) whose training loss sum is `loss_sum`.
  // Throws NumericError when the rule above fires.
  void Add(std::size_t rows, double loss_sum, const float* labels);

  // Judges the rows since the last window when there are at least kMinPartialRows (end of a
  // pass, checkpoint cut). Throws NumericError when the rule fires.
  void CheckPartial();

 private:
  // Judges the current window (and starts a new one when `close`).
  void Judge(bool close);

  Loss loss_;
  double first_zero_loss_ = -1.0;  // Z1; negative until the first window is complete
  std::uint64_t window_rows_ = 0;
  double window_loss_ = 0.0;
  double window_zero_loss_ = 0.0;
};

}  // namespace fmps
