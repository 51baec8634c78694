#include "worker/job/run_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/base/error.h"
#include "common/base/log.h"

namespace fmps {

void WriteFileAtomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw IoError("cannot write " + path + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string err = std::strerror(errno);
      close(fd);
      unlink(tmp.c_str());
      throw IoError("cannot write " + path + ": " + err);
    }
    done += static_cast<std::size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
    std::string err = std::strerror(errno);
    unlink(tmp.c_str());
    throw IoError("cannot write " + path + ": " + err);
  }
}

RunOutput::RunOutput(const Config& config, const RunOutputOptions& options)
    : dir_(config.output.dir),
      memory_(options.memory),
      loss_(config.model.loss),
      start_(std::chrono::steady_clock::now()) {
  if (memory_ != nullptr) {
    *memory_ = MemoryRunOutput();
    return;
  }
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec || !std::filesystem::is_directory(dir_)) {
    throw IoError("output.dir: cannot create directory '" + dir_ + "'" +
                  (ec ? ": " + ec.message() : ""));
  }
  // model.fmps is renamed into place at the end: a directory of that name would fail it.
  const std::string model = ModelPath();
  if (std::filesystem::exists(model, ec) && !std::filesystem::is_regular_file(model, ec)) {
    throw IoError("output.dir: cannot write '" + model + "': a non-file of that name exists");
  }
  WriteFileAtomic(dir_ + "/config.yaml", ConfigToYaml(config));
  // Opened without truncation: Begin decides whether a previous run's curve stays.
  metrics_.open(dir_ + "/metrics.jsonl", std::ios::out | std::ios::app);
  if (!metrics_) throw IoError("output.dir: cannot write " + dir_ + "/metrics.jsonl");
}

std::string RunOutput::ModelPath() const {
  return memory_ != nullptr ? "(in memory)" : dir_ + "/model.fmps";
}

ModelTarget RunOutput::ModelDestination() const {
  return memory_ != nullptr ? ModelTarget{.path = ModelPath(), .bytes = &memory_->model}
                            : ModelTarget{.path = ModelPath(), .bytes = nullptr};
}

void RunOutput::Begin(const RunStart& start) {
  if (memory_ != nullptr && !start.resumed) return;
  if (!start.resumed) {
    metrics_.close();
    metrics_.open(dir_ + "/metrics.jsonl", std::ios::out | std::ios::trunc);
    if (!metrics_) throw IoError("output.dir: cannot write " + dir_ + "/metrics.jsonl");
    return;
  }
  JsonObject e;
  e.Add("event", "resume")
      .Add("time_s", Elapsed())
      .Add("epoch", start.epoch)
      .Add("mid_epoch", start.mid_epoch ? 1 : 0)
      .Add("rows", start.rows);
  Event(e);
}

double RunOutput::Elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunOutput::Event(const JsonObject& event) {
  if (memory_ != nullptr) {
    memory_->events.push_back(event.str());
    return;
  }
  metrics_ << event.str() << '\n';
  metrics_.flush();
  if (!metrics_) throw IoError("cannot write " + dir_ + "/metrics.jsonl");
}

void RunOutput::Progress(const ProgressReport& r) {
  // Mean and max over workers of each one's mean request latency, in milliseconds.
  double pull_mean = 0, pull_max = 0, push_mean = 0, push_max = 0;
  for (const KVStats& w : r.workers) {
    const double pull = w.pulls == 0 ? 0.0 : 1e3 * w.pull_seconds / w.pulls;
    const double push = w.pushes == 0 ? 0.0 : 1e3 * w.push_seconds / w.pushes;
    pull_mean += pull / r.workers.size();
    push_mean += push / r.workers.size();
    pull_max = std::max(pull_max, pull);
    push_max = std::max(push_max, push);
  }
  char line[320];
  std::snprintf(line, sizeof(line),
                "epoch %d/%d  %5.1f%%  %llu rows  %.0f rows/s  train %s %.5f  "
                "pull %.2f ms (max %.2f)  push %.2f ms (max %.2f)",
                r.epoch, r.epochs, 100.0 * r.fraction, static_cast<unsigned long long>(r.rows),
                r.rows_per_s, loss_ == Loss::kLogistic ? "logloss" : "loss", r.train_loss,
                pull_mean, pull_max, push_mean, push_max);
  Log(line);
  JsonObject e;
  e.Add("event", "progress")
      .Add("time_s", Elapsed())
      .Add("epoch", r.epoch)
      .Add("fraction", r.fraction)
      .Add("rows", r.rows)
      .Add("rows_per_s", r.rows_per_s)
      .Add("train_logloss", r.train_loss)
      .Add("pull_ms", pull_mean)
      .Add("pull_ms_max", pull_max)
      .Add("push_ms", push_mean)
      .Add("push_ms_max", push_max);
  Event(e);
}

void RunOutput::Validation(int epoch, const char* metric, const EvalResult& valid, double value,
                           int best_epoch, bool stop) {
  char line[256];
  std::snprintf(line, sizeof(line), "epoch %d  valid rows %llu  valid %s %.5f  best epoch %d%s",
                epoch, static_cast<unsigned long long>(valid.rows), metric, value, best_epoch,
                stop ? "  (early stop)" : "");
  Log(line);
  JsonObject e;
  e.Add("event", "valid")
      .Add("time_s", Elapsed())
      .Add("epoch", epoch)
      .Add("valid_rows", valid.rows)
      .Add("metric", metric)
      .Add("value", value)
      .Add("valid_logloss", valid.logloss)
      .Add("best_epoch", best_epoch)
      .Add("stop", stop ? "yes" : "no");
  Event(e);
}

void RunOutput::Evaluation(int epoch, std::uint64_t rows, double rows_per_s, double train_loss,
                           const EvalResult& test) {
  char line[256];
  if (loss_ == Loss::kLogistic) {
    std::snprintf(line, sizeof(line), "epoch %d  test rows %llu  test logloss %.5f  test auc %.5f",
                  epoch, static_cast<unsigned long long>(test.rows), test.logloss, test.auc);
  } else {
    std::snprintf(line, sizeof(line), "epoch %d  test rows %llu  test rmse %.5f", epoch,
                  static_cast<unsigned long long>(test.rows), test.rmse);
  }
  Log(line);
  JsonObject e;
  e.Add("event", "eval")
      .Add("time_s", Elapsed())
      .Add("epoch", epoch)
      .Add("rows", rows)
      .Add("rows_per_s", rows_per_s)
      .Add("train_logloss", train_loss)
      .Add("test_rows", test.rows)
      .Add("test_logloss", test.logloss);
  if (loss_ == Loss::kLogistic) {
    e.Add("test_auc", test.auc);
  } else {
    e.Add("test_rmse", test.rmse);
  }
  Event(e);
}

void RunOutput::Summary(const JsonObject& summary) {
  if (memory_ != nullptr) {
    memory_->summary_json = summary.str();
    return;
  }
  WriteFileAtomic(dir_ + "/summary.json", summary.str() + "\n");
}

}  // namespace fmps
