// `fmps synth`: Criteo-shaped data drawn from a planted FM, with the Bayes-optimal test
// metrics as the yardstick for training.
//
// Each row has one active value per field; values follow a Zipf-like law (exponent 1.1)
// within each field; the planted model has w ~ N(0, 0.15^2), v ~ N(0, sigma^2) with sigma
// set so the pairwise part has unit variance, and a bias giving ~25% positives; labels are
// Bernoulli(sigmoid(planted score)). Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <string>

#include "common/config/config.h"

namespace fmps {

struct SynthOptions {
  std::string out_dir;
  std::uint64_t rows = 100000;
  std::uint64_t test_rows = 20000;
  int fields = 39;
  std::uint64_t vocab = 1000000;  // distinct values over all fields (vocab / fields each)
  int k = 8;
  std::uint64_t seed = 1;
  // libsvm | libffm | criteo (needs 39 fields) | csv (header "label,n1..,c..": the first
  // fields/3 columns are integer counts meant for log_bucket, the rest hex categoricals)
  DataFormat format = DataFormat::kLibsvm;
};

struct SynthResult {
  std::string train_path;
  std::string test_path;
  double positive_rate = 0.0;
  double bayes_logloss_test = 0.0;
  double bayes_auc_test = 0.0;
};

// Writes out_dir/train.<ext>, out_dir/test.<ext> and out_dir/meta.json. Throws ConfigError
// for bad options and IoError when files cannot be written.
SynthResult Synthesize(const SynthOptions& options);

// The csv header line (with newline) that Synthesize writes for `options`.
std::string CsvHeader(const SynthOptions& options);

}  // namespace fmps
