#include "worker/cli/score_commands.h"

#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "common/base/error.h"
#include "common/base/json.h"
#include "common/data/reader.h"
#include "common/model/loss.h"
#include "common/model/metrics.h"
#include "common/model/model_file.h"
#include "worker/cli/cli_args.h"
#include "worker/predict/scoring.h"

namespace fmps::cli {
namespace {

std::string Errno() { return std::strerror(errno); }

// The --data of predict/eval as a regular file the reader can range over. A regular file
// (also /dev/stdin redirected from one) is read in place; "-" (standard input) or any other
// non-regular file (a pipe, a FIFO) is first copied into a temporary file under $TMPDIR
// (default /tmp), removed on destruction: the reader needs the total size up front. Errors
// thrown by the reader name the copy; Shown() puts the user's name back.
class InputFile {
 public:
  InputFile(const std::string& command, const std::string& path)
      : shown_(path == "-" ? std::string("standard input") : path) {
    std::error_code ec;
    if (path != "-" && !std::filesystem::exists(path, ec)) {
      throw IoError(command + ": cannot open " + path + ": no such file");
    }
    if (path != "-" && std::filesystem::is_regular_file(path, ec)) {
      path_ = path;
      return;
    }
    Spool(command, path);
  }
  ~InputFile() {
    if (!spooled_.empty()) std::remove(spooled_.c_str());
  }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  // How the user named the input.
  const std::string& shown() const { return shown_; }
  // `message` with the temporary file's path replaced by shown().
  std::string Shown(std::string message) const {
    if (spooled_.empty()) return message;
    for (std::size_t at = message.find(spooled_); at != std::string::npos;
         at = message.find(spooled_, at + shown_.size())) {
      message.replace(at, spooled_.size(), shown_);
    }
    return message;
  }

 private:
  void Spool(const std::string& command, const std::string& path) {
    const char* dir = std::getenv("TMPDIR");
    // Named after the input: the reader's "(row skipped)" warnings name this copy.
    std::string name = std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") +
                       (path == "-" ? "/fmps-stdin-XXXXXX" : "/fmps-input-XXXXXX");
    const int fd = mkstemp(name.data());
    if (fd < 0)
      throw IoError(command + ": cannot create a temporary file " + name + ": " + Errno());
    spooled_ = name;
    path_ = name;
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> out(fdopen(fd, "wb"), &std::fclose);
    std::FILE* in = path == "-" ? stdin : std::fopen(path.c_str(), "rb");
    if (out == nullptr || in == nullptr) {
      if (out == nullptr) close(fd);
      throw IoError(command + ": cannot read " + shown_ + ": " + Errno());
    }
    std::vector<char> buf(1 << 20);
    std::size_t n;
    bool ok = true;
    while ((n = std::fread(buf.data(), 1, buf.size(), in)) > 0) {
      ok = ok && std::fwrite(buf.data(), 1, n, out.get()) == n;
    }
    const bool read_error = std::ferror(in) != 0;
    if (in != stdin) std::fclose(in);
    if (read_error) throw IoError(command + ": cannot read " + shown_);
    if (!ok || std::fflush(out.get()) != 0) {
      throw IoError(command + ": cannot write the temporary copy " + name + ": " + Errno());
    }
  }

  std::string shown_;
  std::string path_;     // what the reader opens
  std::string spooled_;  // the temporary copy, or ""
};

// Feature settings for reading `--data` with a model: the model's, with an optional
// --format override.
FeatureSpec SpecFor(const Model& model, const Args& a, const std::string& command,
                    OnError on_error) {
  FeatureSpec spec = model.meta().features;
  if (std::string f = a.Get("format"); !f.empty()) spec.data.format = ParseFormat(command, f);
  spec.data.on_error = on_error;
  if (model.shape().kind == ModelKind::kFfm &&
      spec.data.format != model.meta().features.data.format) {
    throw ConfigError(command + ": --format " + ToString(spec.data.format) + ": " +
                      model.shape().ToString() + " model reads only its training format, " +
                      ToString(model.meta().features.data.format) + " (its field ids)");
  }
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

// Where predict writes: stdout ("" or "-"), or --out. A regular file (new or existing) is
// written as a temp file next to it and renamed into place by Commit(), so a failed predict
// leaves no partial output; an existing non-regular target (/dev/null, a FIFO) is written
// directly.
class PredictOutput {
 public:
  explicit PredictOutput(const std::string& path) : path_(path == "-" ? "" : path) {
    if (path_.empty()) {
      out_ = stdout;
      return;
    }
    namespace fs = std::filesystem;
    std::error_code ec;
    const fs::file_status st = fs::status(path_, ec);
    std::string target = path_;
    if (fs::exists(st) && !fs::is_regular_file(st)) {
      direct_ = true;
    } else if (fs::is_symlink(fs::symlink_status(path_, ec))) {
      target = fs::canonical(path_, ec).string();  // replace the link's file, not the link
      if (ec) target = path_;
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

  // What happens to the output when predict stops early.
  std::string Fate() const {
    if (path_.empty()) return "standard output may hold lines for rows before it";
    return direct_ ? final_path_ + " may hold lines for rows before it"
                   : final_path_ + " not written";
  }

 private:
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

// Appends one prediction per score, as printf's %.7g (several times faster).
void FormatPredictions(Loss loss, std::span<const float> scores, std::string* text) {
  char tmp[32];
  for (float s : scores) {
    const std::to_chars_result r = std::to_chars(tmp, tmp + sizeof(tmp) - 1, Prediction(loss, s),
                                                 std::chars_format::general, 7);
    *r.ptr = '\n';
    text->append(tmp, static_cast<std::size_t>(r.ptr + 1 - tmp));
  }
}

// The one-line error of eval when no row was scored.
std::string NoRowScored(const InputFile& in, const ScoringStats& stats) {
  std::string msg = "eval: no row scored in " + in.shown() + ": ";
  if (stats.bad_rows.count == 0) return msg + "it has no data rows";
  msg += "every one of its " + std::to_string(stats.bad_rows.count) +
         " rows is malformed (eval needs labeled rows in the model's format, or --format's)";
  if (!stats.bad_rows.first.empty()) msg += "; first: " + in.Shown(stats.bad_rows.first[0]);
  return msg;
}

}  // namespace

int Predict(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "predict", {"model", "data", "format", "out", "threads"}, {});
  const int threads = ThreadsOption("predict", a);
  Model model = Model::Load(a.Require("predict", "model"));
  // Fail on bad rows: skipping one would misalign the output with the input lines. Rows
  // may come without labels (serving data): see LabelPolicy.
  FeatureSpec spec = SpecFor(model, a, "predict", OnError::kFail);
  spec.labels = LabelPolicy::kOptional;
  const InputFile data("predict", a.Require("predict", "data"));
  PredictOutput out(a.Get("out"));
  ScoringOptions options;
  options.threads = threads;
  const Loss loss = model.meta().loss;
  options.format = [loss](std::span<const float> scores, std::string* text) {
    FormatPredictions(loss, scores, text);
  };
  try {
    ScoreFile(model, spec, data.path(), options,
              [&](const ScoredRows& rows) { out.Write(rows.text); });
  } catch (const DataError& e) {
    throw DataError("predict stopped at the malformed row " + data.Shown(e.what()) + " (" +
                    out.Fate() + "; predict never skips a row, so that output line i is row i)");
  }
  out.Commit();
  return 0;
}

int Eval(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "eval", {"model", "data", "format", "threads"}, {});
  const int threads = ThreadsOption("eval", a);
  Model model = Model::Load(a.Require("eval", "model"));
  FeatureSpec spec = SpecFor(model, a, "eval", model.meta().features.data.on_error);
  const InputFile data("eval", a.Require("eval", "data"));
  // Exact AUC needs every score: only (score, label) pairs are kept, not the rows.
  std::vector<float> scores, labels;
  ScoringStats stats;
  try {
    stats = ScoreFile(model, spec, data.path(), threads,
                      [&](std::span<const float> s, std::span<const float> y) {
                        scores.insert(scores.end(), s.begin(), s.end());
                        labels.insert(labels.end(), y.begin(), y.end());
                      });
  } catch (const DataError& e) {
    throw DataError("eval stopped at the malformed row " + data.Shown(e.what()) +
                    " (the model's data.on_error is fail)");
  }
  if (stats.rows == 0) throw DataError(NoRowScored(data, stats));
  EvalResult r = Evaluate(model.meta().loss, scores, labels);
  JsonObject j;
  j.Add("rows", r.rows);
  if (model.meta().loss == Loss::kLogistic) {
    j.Add("logloss", r.logloss).Add("auc", r.auc);
  } else {
    j.Add("mse", r.rmse * r.rmse).Add("rmse", r.rmse);
  }
  j.Add("bad_rows", stats.bad_rows.count);
  std::cout << j.str() << "\n";
  return 0;
}

int Export(int argc, char** argv) {
  Args a = ParseArgs(argc, argv, 2, "export", {"model", "out"}, {});
  Model model = Model::Load(a.Require("export", "model"));
  const std::string out_path = a.Require("export", "out");
  const bool to_stdout = out_path == "-";
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(
      to_stdout ? stdout : std::fopen(out_path.c_str(), "wb"),
      to_stdout ? +[](std::FILE*) { return 0; } : &std::fclose);
  const std::string shown = to_stdout ? std::string("standard output") : out_path;
  if (!f) throw IoError("export: cannot write " + shown + ": " + Errno());
  const int k = model.shape().k;
  const int width = model.shape().row_width();
  // FFM: V holds the fields' vectors one after another (v_{key,f} = V[f*k+1 .. f*k+k]).
  const std::string kind = model.shape().kind == ModelKind::kFfm
                               ? " kind=ffm fields=" + std::to_string(model.shape().fields)
                               : std::string();
  std::fprintf(
      f.get(), "# fmps model: k=%d%s loss=%s keys=%zu; lines: bias W0, then KEY W V1..V%d\n", k,
      kind.c_str(), ToString(model.meta().loss), model.num_keys(), model.shape().v_width());
  std::fprintf(f.get(), "bias %.9g\n", model.meta().bias);
  for (std::size_t i = 0; i < model.num_keys(); ++i) {
    const float* row = model.row(i);
    std::fprintf(f.get(), "%llu", static_cast<unsigned long long>(model.keys()[i]));
    for (int j = 0; j < width; ++j) std::fprintf(f.get(), " %.9g", row[j]);
    std::fputc('\n', f.get());
  }
  if (std::fflush(f.get()) != 0 || std::ferror(f.get()) != 0) {
    throw IoError("export: cannot write " + shown + ": " + Errno());
  }
  return 0;
}

}  // namespace fmps::cli
