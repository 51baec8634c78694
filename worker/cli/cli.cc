#include "worker/cli/cli.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/config/config.h"
#include "common/base/error.h"
#include "common/base/json.h"
#include "common/model/loss.h"
#include "common/model/metrics.h"
#include "common/model/model_file.h"
#include "common/comm/mpi/mpi_transport.h"
#include "common/data/reader.h"
#include "common/data/synth.h"
#include "worker/job/interrupt.h"
#include "worker/job/local_trainer.h"
#include "worker/job/mpi_trainer.h"
#include "worker/predict/scoring.h"

#ifndef FMPS_VERSION
#define FMPS_VERSION "0.0.0"
#endif

namespace fmps {
namespace {

constexpr const char* kUsage = R"(fmps — distributed Factorization Machines on sparse data

usage:
  fmps train   CONFIG.yaml [--set KEY=VALUE]... [--resume]
  fmps check   CONFIG.yaml [--set KEY=VALUE]...   validate; print the effective config
  fmps check   --explain                           list every config key: type, default,
                                                   allowed values, when it applies, meaning
  fmps synth   --out DIR [--rows N] [--test-rows N] [--fields F] [--vocab V]
               [--k K] [--seed S] [--format libsvm|libffm|criteo|csv]
  fmps predict --model PATH --data FILE [--format F] [--out FILE] [--threads N]
  fmps eval    --model PATH --data FILE [--format F] [--threads N]
                                                       prints JSON: rows, logloss, auc
  fmps export  --model PATH --out FILE.txt             readable text dump
  fmps --help | --version

KEY in --set is a dotted config path, e.g. --set optimizer.lr=0.05.
Without mpirun, `fmps train` runs single-node mode: cluster.local_servers server threads
and cluster.local_workers worker threads in one process.
predict and eval stream FILE and score it on N threads (default: all cores); predict
writes one prediction per input row, in input order, and --out appears only when complete.
)";

// Options of the form --name value (or --name=value); positional arguments kept in order.
struct Args {
  std::vector<std::string> positional;
  std::multimap<std::string, std::string> options;
  std::vector<std::string> flags;

  std::string Get(const std::string& name, const std::string& fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  std::string Require(const std::string& command, const std::string& name) const {
    auto it = options.find(name);
    if (it == options.end()) throw ConfigError(command + ": --" + name + " is required");
    return it->second;
  }
  bool Has(const std::string& flag) const {
    for (const auto& f : flags) {
      if (f == flag) return true;
    }
    return false;
  }
};

Args ParseArgs(int argc, char** argv, int first, const std::string& command,
               const std::vector<std::string>& value_options,
               const std::vector<std::string>& flag_options) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      a.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    bool is_value = false, is_flag = false;
    for (const auto& o : value_options) is_value |= (o == name);
    for (const auto& f : flag_options) is_flag |= (f == name);
    if (is_flag && !has_value) {
      a.flags.push_back(name);
    } else if (is_value) {
      if (!has_value) {
        if (i + 1 >= argc) throw ConfigError(command + ": --" + name + " needs a value");
        value = argv[++i];
      }
      a.options.emplace(name, value);
    } else {
      throw ConfigError(command + ": unknown option --" + name + " (see fmps --help)");
    }
  }
  return a;
}

std::uint64_t ParseUint(const std::string& command, const std::string& name,
                        const std::string& text) {
  std::uint64_t v = 0;
  auto r = std::from_chars(text.data(), text.data() + text.size(), v);
  if (r.ec != std::errc() || r.ptr != text.data() + text.size()) {
    throw ConfigError(command + ": --" + name + " must be a non-negative integer, got '" + text +
                      "'");
  }
  return v;
}

DataFormat ParseFormat(const std::string& command, const std::string& text) {
  for (DataFormat f :
       {DataFormat::kLibsvm, DataFormat::kLibffm, DataFormat::kCriteo, DataFormat::kCsv}) {
    if (text == ToString(f)) return f;
  }
  throw ConfigError(command + ": --format must be libsvm, libffm, criteo or csv, got '" + text +
                    "'");
}

std::vector<std::string> Overrides(const Args& a) {
  std::vector<std::string> sets;
  for (auto [it, end] = a.options.equal_range("set"); it != end; ++it) sets.push_back(it->second);
  return sets;
}

Config LoadFromArgs(const std::string& command, const Args& a) {
  if (a.positional.size() != 1) {
    throw ConfigError(command + ": expected exactly one CONFIG.yaml argument");
  }
  return LoadConfig(a.positional[0], Overrides(a));
}

bool UnderMpiWithPeers() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"}) {
    const char* v = std::getenv(var);
    if (v != nullptr && std::atoi(v) > 1) return true;
  }
  return false;
}

int Train(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "train", {"set"}, {"resume"});
  const bool resume = a.Has("resume");
  if (UnderMpiWithPeers()) {
    // MPI mode: the config is loaded inside, so that a bad one is reported once.
    if (a.positional.size() != 1) {
      throw ConfigError("train: expected exactly one CONFIG.yaml argument");
    }
    MpiSession session(&argc, &argv);
    const int code = TrainMpi(a.positional[0], Overrides(a), resume);
    session.Finalize();
    return code;
  }
  Config config = LoadFromArgs("train", a);
  InstallStopSignals();  // single-node mode: SIGINT/SIGTERM stop the job cleanly
  TrainSummary s = TrainLocal(config, resume);
  std::printf("%s\n", FinalLine(config.model.loss, s).c_str());
  return 0;
}

int Check(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "check", {"set"}, {"explain"});
  if (a.Has("explain")) {
    if (!a.positional.empty() || a.options.count("set") != 0) {
      throw ConfigError("check: --explain takes no CONFIG.yaml or --set");
    }
    std::cout << ExplainConfig();
    return 0;
  }
  Config config = LoadFromArgs("check", a);
  std::cout << ConfigToYaml(config);
  return 0;
}

int Synth(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "synth",
                     {"out", "rows", "test-rows", "fields", "vocab", "k", "seed", "format"}, {});
  if (!a.positional.empty()) throw ConfigError("synth: unexpected argument " + a.positional[0]);
  SynthOptions o;
  o.out_dir = a.Require("synth", "out");
  auto uint_opt = [&](const char* name, std::uint64_t fallback) {
    std::string v = a.Get(name);
    return v.empty() ? fallback : ParseUint("synth", name, v);
  };
  o.rows = uint_opt("rows", o.rows);
  o.test_rows = uint_opt("test-rows", o.test_rows);
  o.fields = static_cast<int>(std::min<std::uint64_t>(uint_opt("fields", o.fields), 1u << 20));
  o.vocab = uint_opt("vocab", o.vocab);
  o.k = static_cast<int>(std::min<std::uint64_t>(uint_opt("k", o.k), 1u << 20));
  o.seed = uint_opt("seed", o.seed);
  if (std::string f = a.Get("format"); !f.empty()) o.format = ParseFormat("synth", f);
  SynthResult r = Synthesize(o);
  std::printf(
      "wrote %s and %s (%llu + %llu rows); positive rate %.4f; Bayes test logloss %.5f, "
      "auc %.5f\n",
      r.train_path.c_str(), r.test_path.c_str(), static_cast<unsigned long long>(o.rows),
      static_cast<unsigned long long>(o.test_rows), r.positive_rate, r.bayes_logloss_test,
      r.bayes_auc_test);
  return 0;
}

// Feature settings for reading `--data` with a model: the model's, with an optional
// --format override.
FeatureSpec SpecFor(const Model& model, const Args& a, const std::string& command,
                    OnError on_error) {
  FeatureSpec spec = model.meta().features;
  if (std::string f = a.Get("format"); !f.empty()) spec.data.format = ParseFormat(command, f);
  spec.data.on_error = on_error;
  return spec;
}

// --threads N of predict/eval: scorer threads, default all cores.
int ThreadsOption(const std::string& command, const Args& a) {
  const std::string text = a.Get("threads");
  if (text.empty()) return DefaultScoringThreads();
  const std::uint64_t n = ParseUint(command, "threads", text);
  if (n < 1 || n > 4096) {
    throw ConfigError(command + ": --threads must be between 1 and 4096, got '" + text + "'");
  }
  return static_cast<int>(n);
}

// Where predict writes: stdout, or --out. A regular file (new or existing) is written as a
// temp file next to it and renamed into place by Commit(), so a failed predict leaves no
// partial output; an existing non-regular target (/dev/null, a FIFO) is written directly.
class PredictOutput {
 public:
  explicit PredictOutput(const std::string& path) : path_(path) {
    if (path.empty()) {
      out_ = stdout;
      return;
    }
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    std::string target = path;
    if (fs::exists(st) && !fs::is_regular_file(st)) {
      direct_ = true;
    } else if (fs::is_symlink(fs::symlink_status(path, ec))) {
      target = fs::canonical(path, ec).string();  // replace the link's file, not the link
      if (ec) target = path;
    }
    final_path_ = target;
    open_path_ = direct_ ? target : target + ".tmp." + std::to_string(getpid());
    file_ = std::fopen(open_path_.c_str(), "wb");
    if (file_ == nullptr) throw IoError("predict: cannot write " + open_path_ + ": " + Errno());
    out_ = file_;
  }
  ~PredictOutput() {
    if (file_ != nullptr) {
      std::fclose(file_);
      if (!direct_) std::remove(open_path_.c_str());
    }
  }
  PredictOutput(const PredictOutput&) = delete;
  PredictOutput& operator=(const PredictOutput&) = delete;

  void Write(std::string_view bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), out_) != bytes.size()) WriteFailed();
  }

  // Flushes; for a file, syncs and renames it into place.
  void Commit() {
    if (std::fflush(out_) != 0) WriteFailed();
    if (file_ == nullptr) return;
    if (!direct_ && fsync(fileno(file_)) != 0) WriteFailed();
    std::FILE* f = file_;
    file_ = nullptr;
    if (std::fclose(f) != 0) {
      const std::string err = Errno();
      if (!direct_) std::remove(open_path_.c_str());
      throw IoError("predict: cannot write " + open_path_ + ": " + err);
    }
    if (!direct_ && std::rename(open_path_.c_str(), final_path_.c_str()) != 0) {
      const std::string err = Errno();
      std::remove(open_path_.c_str());
      throw IoError("predict: cannot rename " + open_path_ + " to " + final_path_ + ": " + err);
    }
  }

 private:
  static std::string Errno() { return std::strerror(errno); }
  [[noreturn]] void WriteFailed() const {
    throw IoError("predict: cannot write " + (path_.empty() ? std::string("stdout") : open_path_) +
                  ": " + Errno());
  }

  std::string path_;        // as given; "" = stdout
  std::string final_path_;  // where the output ends up
  std::string open_path_;   // what is being written
  bool direct_ = false;     // writing final_path_ itself
  std::FILE* file_ = nullptr;
  std::FILE* out_ = nullptr;
};

int Predict(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "predict", {"model", "data", "format", "out", "threads"}, {});
  const int threads = ThreadsOption("predict", a);
  Model model = Model::Load(a.Require("predict", "model"));
  // Fail on bad rows: skipping one would misalign the output with the input lines.
  FeatureSpec spec = SpecFor(model, a, "predict", OnError::kFail);
  const std::string data = a.Require("predict", "data");
  PredictOutput out(a.Get("out"));
  ScoringOptions options;
  options.threads = threads;
  const Loss loss = model.meta().loss;
  options.format = [loss](std::span<const float> scores, std::string* text) {
    char tmp[32];
    for (float s : scores) {  // as printf's %.7g, several times faster
      const std::to_chars_result r = std::to_chars(tmp, tmp + sizeof(tmp) - 1, Prediction(loss, s),
                                                   std::chars_format::general, 7);
      *r.ptr = '\n';
      text->append(tmp, static_cast<std::size_t>(r.ptr + 1 - tmp));
    }
  };
  ScoreFile(model, spec, data, options, [&](const ScoredRows& rows) { out.Write(rows.text); });
  out.Commit();
  return 0;
}

int Eval(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "eval", {"model", "data", "format", "threads"}, {});
  const int threads = ThreadsOption("eval", a);
  Model model = Model::Load(a.Require("eval", "model"));
  FeatureSpec spec = SpecFor(model, a, "eval", model.meta().features.data.on_error);
  // Exact AUC needs every score: only (score, label) pairs are kept, not the rows.
  std::vector<float> scores, labels;
  const ScoringStats stats = ScoreFile(model, spec, a.Require("eval", "data"), threads,
                                       [&](std::span<const float> s, std::span<const float> y) {
                                         scores.insert(scores.end(), s.begin(), s.end());
                                         labels.insert(labels.end(), y.begin(), y.end());
                                       });
  EvalResult r = Evaluate(model.meta().loss, scores, labels);
  JsonObject j;
  j.Add("rows", r.rows).Add("logloss", r.logloss);
  if (model.meta().loss == Loss::kLogistic) {
    j.Add("auc", r.auc);
  } else {
    j.Add("rmse", r.rmse);
  }
  j.Add("bad_rows", stats.bad_rows.count);
  std::cout << j.str() << "\n";
  return 0;
}

int Export(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "export", {"model", "out"}, {});
  Model model = Model::Load(a.Require("export", "model"));
  const std::string out_path = a.Require("export", "out");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(out_path.c_str(), "wb"),
                                                    &std::fclose);
  if (!f) throw IoError("export: cannot write " + out_path);
  const int k = model.shape().k;
  const int width = model.shape().row_width();
  std::fprintf(f.get(), "# fmps model: k=%d loss=%s keys=%zu; lines: bias W0, then KEY W V1..V%d\n",
               k, ToString(model.meta().loss), model.num_keys(), model.shape().v_width());
  std::fprintf(f.get(), "bias %.9g\n", model.meta().bias);
  for (std::size_t i = 0; i < model.num_keys(); ++i) {
    const float* row = model.row(i);
    std::fprintf(f.get(), "%llu", static_cast<unsigned long long>(model.keys()[i]));
    for (int j = 0; j < width; ++j) std::fprintf(f.get(), " %.9g", row[j]);
    std::fputc('\n', f.get());
  }
  if (std::fflush(f.get()) != 0) throw IoError("export: cannot write " + out_path);
  return 0;
}

}  // namespace

int RunCli(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (command == "--version") {
    std::printf("fmps %s\n", FMPS_VERSION);
    return 0;
  }
  if (command == "train") return Train(argc, argv);
  if (command == "check") return Check(argc, argv);
  if (command == "synth") return Synth(argc, argv);
  if (command == "predict") return Predict(argc, argv);
  if (command == "eval") return Eval(argc, argv);
  if (command == "export") return Export(argc, argv);
  throw ConfigError("unknown command '" + command + "' (see fmps --help)");
}

}  // namespace fmps
