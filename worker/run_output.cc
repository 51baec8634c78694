#include "worker/run_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "common/log.h"

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

RunOutput::RunOutput(const Config& config)
    : dir_(config.output.dir), loss_(config.model.loss), start_(std::chrono::steady_clock::now()) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec || !std::filesystem::is_directory(dir_)) {
    throw IoError("output.dir: cannot create directory '" + dir_ + "'" +
                  (ec ? ": " + ec.message() : ""));
  }
  WriteFileAtomic(dir_ + "/config.yaml", ConfigToYaml(config));
  metrics_.open(dir_ + "/metrics.jsonl", std::ios::out | std::ios::trunc);
  if (!metrics_) throw IoError("output.dir: cannot write " + dir_ + "/metrics.jsonl");
}

double RunOutput::Elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void RunOutput::Event(const JsonObject& event) {
  metrics_ << event.str() << '\n';
  metrics_.flush();
  if (!metrics_) throw IoError("cannot write " + dir_ + "/metrics.jsonl");
}

void RunOutput::Progress(int epoch, int epochs, double fraction, std::uint64_t rows,
                         double rows_per_s, double train_loss) {
  char line[256];
  std::snprintf(line, sizeof(line), "epoch %d/%d  %5.1f%%  %llu rows  %.0f rows/s  train %s %.5f",
                epoch, epochs, 100.0 * fraction, static_cast<unsigned long long>(rows), rows_per_s,
                loss_ == Loss::kLogistic ? "logloss" : "loss", train_loss);
  Log(line);
  JsonObject e;
  e.Add("event", "progress")
      .Add("time_s", Elapsed())
      .Add("epoch", epoch)
      .Add("fraction", fraction)
      .Add("rows", rows)
      .Add("rows_per_s", rows_per_s)
      .Add("train_logloss", train_loss);
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
  WriteFileAtomic(dir_ + "/summary.json", summary.str() + "\n");
}

}  // namespace fmps
