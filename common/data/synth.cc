#include "common/data/synth.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/json.h"
#include "common/data/reader.h"
#include "common/model/loss.h"
#include "common/model/metrics.h"

namespace fmps {
namespace {

// splitmix64 stream: fast, deterministic, good enough for sampling.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t Next() { return Mix64(state_ += 0x9e3779b97f4a7c15ULL); }
  double Uniform() { return (Next() >> 11) * 0x1.0p-53; }
  double Normal() {
    const double u1 = std::max(Uniform(), 1e-300);
    const double u2 = Uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  std::uint64_t state_;
};

constexpr int kCriteoIntFields = 13;
// Planted model scale: w ~ N(0, kWeightStd^2); v scaled so the pairwise part of the score
// has variance kPairwiseVariance.
constexpr double kWeightStd = 0.2;
constexpr double kPairwiseVariance = 0.5;

// Fields written as integer counts (read back through log-bucketing): criteo's 13, a third
// of the fields for csv, none for libsvm/libffm.
int NumericFields(const SynthOptions& o) {
  if (o.format == DataFormat::kCriteo) return kCriteoIntFields;
  if (o.format == DataFormat::kCsv) return o.fields / 3;
  return 0;
}

// Hex token of categorical value j of field f.
void AppendToken(int f, std::uint64_t j, std::string* out) {
  char hex[17];
  std::snprintf(
      hex, sizeof(hex), "%08llx",
      static_cast<unsigned long long>(Mix64((f + 1) * 0x100000000ULL + j) & 0xffffffffULL));
  out->append(hex);
}

const char* Extension(DataFormat f) {
  switch (f) {
    case DataFormat::kLibsvm:
      return "libsvm";
    case DataFormat::kLibffm:
      return "libffm";
    case DataFormat::kCriteo:
      return "txt";
    case DataFormat::kCsv:
      return "csv";
  }
  return "txt";
}

class Planted {
 public:
  explicit Planted(const SynthOptions& o)
      : o_(o), per_field_(std::max<std::uint64_t>(1, o.vocab / o.fields)) {
    // Zipf-like CDF over the values of one field.
    cdf_.resize(per_field_);
    double total = 0.0;
    for (std::uint64_t j = 0; j < per_field_; ++j) {
      total += 1.0 / std::pow(static_cast<double>(j + 1), 1.1);
      cdf_[j] = total;
    }
    for (double& c : cdf_) c /= total;
    const std::uint64_t params = per_field_ * o.fields;
    w_.resize(params);
    v_.resize(params * o.k);
    const double pairs = 0.5 * o.fields * (o.fields - 1);
    const double sigma = std::pow(kPairwiseVariance / (pairs * o.k), 0.25);
    Rng rng(Mix64(o.seed ^ 0x6a09e667f3bcc909ULL));
    for (auto& w : w_) w = static_cast<float>(kWeightStd * rng.Normal());
    for (auto& v : v_) v = static_cast<float>(sigma * rng.Normal());
    if (o.model == ModelKind::kFfm) {  // the field-pair vectors c_{a,b} (synth.h)
      c_.resize(static_cast<std::size_t>(o.fields) * o.fields * o.k);
      for (auto& c : c_) c = static_cast<float>(rng.Normal());
    }
  }

  std::uint64_t per_field() const { return per_field_; }

  std::uint64_t SampleValue(Rng* rng) const {
    const double u = rng->Uniform();
    return std::min<std::uint64_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin(),
                                   per_field_ - 1);
  }

  // Index of the planted parameters of value j in field f. In criteo format the integer
  // fields are seen through log-bucketing, so the planted model uses the bucket too.
  std::uint64_t ParamIndex(int f, std::uint64_t j) const {
    if (f < NumericFields(o_)) {
      j = static_cast<std::uint64_t>(LogBucket(static_cast<double>(j)));
    }
    return f * per_field_ + j;
  }

  double Score(const std::vector<std::uint64_t>& values, double bias) const {
    if (o_.model == ModelKind::kFfm) return FfmScore(values, bias);
    const int k = o_.k;
    std::vector<double> sum(k, 0.0);
    double s = bias, squares = 0.0;
    for (int f = 0; f < o_.fields; ++f) {
      const std::uint64_t p = ParamIndex(f, values[f]);
      s += w_[p];
      for (int q = 0; q < k; ++q) {
        const double v = v_[p * k + q];
        sum[q] += v;
        squares += v * v;
      }
    }
    double pair = 0.0;
    for (double x : sum) pair += x * x;
    return s + 0.5 * (pair - squares);
  }

 private:
  // bias + sum_a w_{i_a} + sum_{a<b} sum_q u_{i_a,q} u_{i_b,q} c_{a,b,q} c_{b,a,q}.
  double FfmScore(const std::vector<std::uint64_t>& values, double bias) const {
    const int k = o_.k, fields = o_.fields;
    double s = bias;
    std::vector<const float*> u(fields);
    for (int a = 0; a < fields; ++a) {
      const std::uint64_t p = ParamIndex(a, values[a]);
      s += w_[p];
      u[a] = &v_[p * k];
    }
    for (int a = 0; a < fields; ++a) {
      for (int b = a + 1; b < fields; ++b) {
        const float* cab = &c_[(static_cast<std::size_t>(a) * fields + b) * k];
        const float* cba = &c_[(static_cast<std::size_t>(b) * fields + a) * k];
        for (int q = 0; q < k; ++q) {
          s += static_cast<double>(u[a][q]) * u[b][q] * cab[q] * cba[q];
        }
      }
    }
    return s;
  }

  SynthOptions o_;
  std::uint64_t per_field_;
  std::vector<double> cdf_;
  std::vector<float> w_;
  std::vector<float> v_;
  std::vector<float> c_;  // ffm: fields x fields x k field-pair vectors
};

void AppendUint(std::string* out, std::uint64_t x) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof(buf), x);
  out->append(buf, r.ptr);
}

void AppendRow(const SynthOptions& o, const Planted& planted, int label,
               const std::vector<std::uint64_t>& values, std::string* out) {
  out->push_back(label ? '1' : '0');
  for (int f = 0; f < o.fields; ++f) {
    const std::uint64_t j = values[f];
    switch (o.format) {
      case DataFormat::kLibsvm:
        out->push_back(' ');
        AppendUint(out, f * planted.per_field() + j + 1);
        out->append(":1");
        break;
      case DataFormat::kLibffm:
        out->push_back(' ');
        AppendUint(out, f);
        out->push_back(':');
        AppendUint(out, f * planted.per_field() + j + 1);
        out->append(":1");
        break;
      default:  // criteo / csv: integer columns, then hex categoricals
        out->push_back(o.format == DataFormat::kCriteo ? '\t' : ',');
        if (f < NumericFields(o)) {
          AppendUint(out, j);
        } else {
          AppendToken(f, j, out);
        }
    }
  }
  out->push_back('\n');
}

void CheckOptions(const SynthOptions& o) {
  if (o.out_dir.empty()) throw ConfigError("synth: --out is required");
  if (o.rows < 1) throw ConfigError("synth: --rows must be >= 1");
  if (o.fields < 2 || o.fields > 1000) throw ConfigError("synth: --fields must be in 2..1000");
  if (o.k < 1 || o.k > 1024) throw ConfigError("synth: --k must be in 1..1024");
  if (o.vocab < static_cast<std::uint64_t>(o.fields)) {
    throw ConfigError("synth: --vocab must be >= --fields");
  }
  if (o.model == ModelKind::kFfm && o.format == DataFormat::kLibsvm) {
    throw ConfigError("synth: --model ffm needs a format with fields (libffm, criteo or csv)");
  }
  if (o.format == DataFormat::kCriteo && o.fields != 39) {
    throw ConfigError("synth: --format criteo needs --fields 39 (13 integer + 26 categorical)");
  }
}

// The bias that centres the score distribution so that ~25% of rows are positive.
double CalibrateBias(const SynthOptions& o, const Planted& planted) {
  Rng calib(Mix64(o.seed ^ 0xbb67ae8584caa73bULL));
  std::vector<std::uint64_t> values(o.fields);
  std::vector<double> sample_scores(2000);
  for (double& s : sample_scores) {
    for (int f = 0; f < o.fields; ++f) values[f] = planted.SampleValue(&calib);
    s = planted.Score(values, 0.0);
  }
  double lo = -50.0, hi = 50.0;  // bisection: mean sigmoid is increasing in the bias
  for (int it = 0; it < 60; ++it) {
    const double mid = 0.5 * (lo + hi);
    double mean = 0.0;
    for (double s : sample_scores) mean += Sigmoid(s + mid);
    (mean / sample_scores.size() > 0.25 ? hi : lo) = mid;
  }
  return 0.5 * (lo + hi);
}

// What writing one file observed: the number of positives, and for the test file the
// planted scores and labels (for the Bayes metrics).
struct WrittenRows {
  std::uint64_t positives = 0;
  std::vector<float> scores, labels;
};

void FlushOrThrow(const std::string& buf, std::FILE* f, const std::string& path) {
  if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) {
    std::fclose(f);
    throw IoError("synth: cannot write " + path);
  }
}

// Writes `rows` rows drawn from random stream `stream` to `path`; keeps the scores and
// labels when `keep_scores`.
WrittenRows WriteRows(const SynthOptions& o, const Planted& planted, double bias,
                      const std::string& path, std::uint64_t rows, std::uint64_t stream,
                      bool keep_scores) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) throw IoError("synth: cannot write " + path);
  Rng rng(Mix64(o.seed * 0x9e3779b97f4a7c15ULL + stream));
  WrittenRows out;
  std::vector<std::uint64_t> values(o.fields);
  std::string buf;
  if (o.format == DataFormat::kCsv) buf = CsvHeader(o);
  for (std::uint64_t r = 0; r < rows; ++r) {
    for (int f2 = 0; f2 < o.fields; ++f2) values[f2] = planted.SampleValue(&rng);
    const double score = planted.Score(values, bias);
    const int label = rng.Uniform() < Sigmoid(score) ? 1 : 0;
    out.positives += label;
    if (keep_scores) {
      out.scores.push_back(static_cast<float>(score));
      out.labels.push_back(static_cast<float>(label));
    }
    AppendRow(o, planted, label, values, &buf);
    if (buf.size() > (1 << 20)) {
      FlushOrThrow(buf, f, path);
      buf.clear();
    }
  }
  FlushOrThrow(buf, f, path);
  if (std::fclose(f) != 0) throw IoError("synth: cannot write " + path);
  return out;
}

void WriteMeta(const SynthOptions& o, const SynthResult& result) {
  JsonObject meta;
  meta.Add("rows", o.rows)
      .Add("test_rows", o.test_rows)
      .Add("fields", o.fields)
      .Add("vocab", o.vocab)
      .Add("k", o.k)
      .Add("seed", o.seed)
      .Add("format", ToString(o.format))
      .Add("model", ToString(o.model))
      .Add("train", result.train_path)
      .Add("test", result.test_path)
      .Add("positive_rate", result.positive_rate)
      .Add("bayes_logloss_test", result.bayes_logloss_test)
      .Add("bayes_auc_test", result.bayes_auc_test);
  const std::string meta_path = o.out_dir + "/meta.json";
  std::FILE* f = std::fopen(meta_path.c_str(), "wb");
  const std::string text = meta.str() + "\n";
  if (f == nullptr || std::fwrite(text.data(), 1, text.size(), f) != text.size() ||
      std::fclose(f) != 0) {
    throw IoError("synth: cannot write " + meta_path);
  }
}

}  // namespace

std::string CsvHeader(const SynthOptions& o) {
  std::string h = "label";
  for (int f = 0; f < o.fields; ++f) {
    h += f < NumericFields(o) ? ",n" : ",c";
    h += std::to_string(f + 1);
  }
  return h + "\n";
}

SynthResult Synthesize(const SynthOptions& o) {
  CheckOptions(o);
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) throw IoError("synth: cannot create " + o.out_dir + ": " + ec.message());

  Planted planted(o);
  SynthResult result;
  const std::string ext = Extension(o.format);
  result.train_path = o.out_dir + "/train." + ext;
  result.test_path = o.out_dir + "/test." + ext;
  const double bias = CalibrateBias(o, planted);
  const WrittenRows train = WriteRows(o, planted, bias, result.train_path, o.rows, 1, false);
  const WrittenRows test = WriteRows(o, planted, bias, result.test_path, o.test_rows, 2, true);

  result.positive_rate = static_cast<double>(train.positives) / o.rows;
  const EvalResult bayes = Evaluate(Loss::kLogistic, test.scores, test.labels);
  result.bayes_logloss_test = bayes.logloss;
  result.bayes_auc_test = bayes.auc;
  WriteMeta(o, result);
  return result;
}

}  // namespace fmps
