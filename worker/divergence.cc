#include "worker/divergence.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/base/error.h"

namespace fmps {

void DivergenceGuard::Add(std::size_t rows, double loss_sum, const float* labels) {
  if (!std::isfinite(loss_sum)) {
    throw NumericError(
        "training diverged: a minibatch's loss is not finite; try a smaller optimizer.lr");
  }
  if (rows == 0) return;
  double zero = 0.0;
  if (loss_ == Loss::kLogistic) {
    zero = static_cast<double>(rows) * std::log(2.0);
  } else {
    for (std::size_t i = 0; i < rows; ++i) zero += 0.5 * double{labels[i]} * labels[i];
  }
  window_rows_ += rows;
  window_loss_ += loss_sum;
  window_zero_loss_ += zero;
  if (window_rows_ >= kWindowRows) Judge(/*close=*/true);
}

void DivergenceGuard::CheckPartial() {
  if (window_rows_ >= kMinPartialRows) Judge(/*close=*/false);
}

void DivergenceGuard::Judge(bool close) {
  const double mean = window_loss_ / window_rows_;
  const double zero_mean = window_zero_loss_ / window_rows_;
  if (close && first_zero_loss_ < 0.0) first_zero_loss_ = zero_mean;
  const double limit =
      kFactor * std::max({zero_mean, first_zero_loss_ < 0.0 ? 0.0 : first_zero_loss_, kMinScale});
  if (mean > limit) {
    char msg[320];
    std::snprintf(msg, sizeof(msg),
                  "training diverged: the mean training loss of the last %llu rows is %.4g, "
                  "more than %.0fx %.4g (the loss of a zero score); try a smaller "
                  "optimizer.lr",
                  static_cast<unsigned long long>(window_rows_), mean, kFactor, limit / kFactor);
    throw NumericError(msg);
  }
  if (!close) return;
  window_rows_ = 0;
  window_loss_ = 0.0;
  window_zero_loss_ = 0.0;
}

}  // namespace fmps
