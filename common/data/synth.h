// `fmps synth`: Criteo-shaped data drawn from a planted FM, with the Bayes-optimal test
// metrics as the yardstick for training.
//
// Each row has one active value per field; values follow a Zipf-like law (exponent 1.1)
// within each field; the planted model has w ~ N(0, 0.15^2), v ~ N(0, sigma^2) with sigma
// set so the pairwise part has unit variance, and a bias giving ~25% positives; labels are
// Bernoulli(sigmoid(planted score)). Deterministic for a given seed.
//
// With model = ffm the planted model is a field-aware FM: value i of field a has, for every
// field b, the latent vector v_{i,b} = u_i * c_{a,b} (elementwise; u_i ~ N(0, sigma^2 I),
// c_{a,b} ~ N(0, I) one vector per ordered field pair), and the pair (i in a, j in b) adds
// <v_{i,b}, v_{j,a}> = sum_q u_iq u_jq c_abq c_baq. An FFM of the same k represents it
// exactly; an FM cannot (the sign of each factor's weight depends on the field pair). The
// pairwise part has the same variance as the planted FM's; it needs a format with fields
// (libffm, criteo, csv).
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
  ModelKind model = ModelKind::kFm;  // the planted model: fm, or ffm (see above)
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
