// RunOutput: the files of one training run in output.dir: config.yaml,
// metrics.jsonl (one JSON object per progress or evaluation event), summary.json, and the
// progress line on stderr. Owned by the one rank/thread that reports for the job. In memory
// (RunOutputOptions::memory, the Python estimators) it keeps the same events, summary and
// model bytes in a MemoryRunOutput instead and writes no file at all.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "common/base/json.h"
#include "common/comm/kv.h"
#include "common/config/config.h"
#include "common/model/metrics.h"

namespace fmps {

// One progress event: job-wide counters plus each worker's KV latencies.
struct ProgressReport {
  int epoch = 0;
  int epochs = 0;
  double fraction = 0.0;         // of the epoch's bytes
  std::uint64_t rows = 0;        // trained so far in the whole job (before a resume too)
  double rows_per_s = 0.0;       // this epoch, whole job
  double train_loss = 0.0;       // mean training loss this epoch
  std::vector<KVStats> workers;  // cumulative, one per worker
};

// Where a run starts: afresh, or resumed from a checkpoint (then metrics.jsonl keeps the
// curve before it and gets a "resume" event).
struct RunStart {
  bool resumed = false;
  int epoch = 1;           // the first epoch this run trains
  bool mid_epoch = false;  // it continues an epoch cut by the checkpoint
  std::uint64_t rows = 0;  // rows trained before this run
};

// A run's outputs kept in memory: what metrics.jsonl, summary.json and model.fmps would hold.
struct MemoryRunOutput {
  std::vector<std::string> events;  // one JSON object per event, in order (no newline)
  std::string summary_json;         // the summary.json object
  std::string model;                // the bytes of model.fmps (Model::FromBytes reads them)
};

// Where a run's outputs go.
struct RunOutputOptions {
  // Null: the files in output.dir. Else: into *memory (borrowed; must outlive the RunOutput
  // and the model save), and output.dir is neither created nor written.
  MemoryRunOutput* memory = nullptr;
};

// Where the job saves the model: the file `path`, or the bytes *bytes when not null.
struct ModelTarget {
  std::string path;
  std::string* bytes = nullptr;
};

class RunOutput {
 public:
  // Creates output.dir (and parents) and writes config.yaml. Throws IoError naming the
  // directory if it cannot be created or written, or if model.fmps there is not a file.
  // In memory (options.memory): clears *options.memory and touches no file.
  explicit RunOutput(const Config& config, const RunOutputOptions& options = {});

  // Starts metrics.jsonl: truncates it for a fresh run; appends a "resume" event (epoch,
  // mid_epoch, rows) to it for a resumed one. Call once, before any other event.
  void Begin(const RunStart& start);

  // Seconds since construction.
  double Elapsed() const;

  // A progress event: stderr line + metrics.jsonl (with mean and max per-worker pull and
  // push latency).
  void Progress(const ProgressReport& report);
  // An evaluation event (test metrics) at the end of `epoch`.
  void Evaluation(int epoch, std::uint64_t rows, double rows_per_s, double train_loss,
                  const EvalResult& test);
  // A validation event at the end of `epoch`: the metric `metric` ("auc", ...) of the
  // validation rows, the best epoch so far and whether training stops early here.
  void Validation(int epoch, const char* metric, const EvalResult& valid, double value,
                  int best_epoch, bool stop);
  // Writes summary.json (atomically) from the given object (in memory: keeps its text).
  void Summary(const JsonObject& summary);

  // dir/model.fmps; in memory "(in memory)", what summary.json's "model" then says.
  std::string ModelPath() const;
  ModelTarget ModelDestination() const;
  const std::string& dir() const { return dir_; }

 private:
  void Event(const JsonObject& event);
  std::string dir_;
  MemoryRunOutput* memory_;
  Loss loss_;
  std::ofstream metrics_;
  std::chrono::steady_clock::time_point start_;
};

// Writes `content` to `path` atomically (temp file, fsync, rename). Throws IoError.
void WriteFileAtomic(const std::string& path, const std::string& content);

}  // namespace fmps
