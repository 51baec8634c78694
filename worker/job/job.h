// Pieces of a training job shared by single-node mode (local_trainer) and MPI mode
// (mpi_trainer): inputs, options derived from the config, model assembly, summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base/json.h"
#include "common/comm/control.h"
#include "common/comm/kv.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "common/model/metrics.h"
#include "common/model/model_file.h"
#include "server/server.h"
#include "server/store/param_store.h"
#include "worker/job/checkpoint.h"
#include "worker/job/run_output.h"
#include "worker/worker.h"

namespace fmps {

struct JobInputs {
  std::vector<std::string> train_files;
  std::vector<std::string> test_files;
  std::vector<std::string> valid_files;  // data.valid
  // The validation rows held out of data.train (data.valid_fraction, or a cross-validation
  // fold): its readers yield them, the training readers the other rows. nullopt: none.
  std::optional<RowSubset> held_out;
  FeatureSpec spec;  // includes csv standardisation statistics from a first pass
};

// The rows data.valid_fraction f holds out: positions [0, f) (RowHashUnit); nullopt for 0.
std::optional<RowSubset> HeldOutOf(const Config& config);
// Cross-validation fold `fold` of `folds`: positions [fold/folds, (fold+1)/folds).
RowSubset CrossValidationFold(int fold, int folds);

// Worker w of W's reader of the validation rows: its shard of data.valid, or of the rows
// inputs.held_out keeps from data.train; null when there are none.
std::unique_ptr<ShardReader> OpenValidReader(const JobInputs& inputs, int w, int num_workers);
// Makes a reader of data.train skip the held-out validation rows (no-op without any).
void SkipHeldOut(const JobInputs& inputs, ShardReader* train);

// What a job is asked to do beyond its config: resume, or train one cross-validation fold
// (`fmps cv`: fold >= 0 of `folds`; then the fold's rows, CrossValidationFold, are the
// validation rows held out of data.train instead of data.valid_fraction's).
struct JobRequest {
  bool resume = false;
  int fold = -1;
  int folds = 0;
};

// The validation rows a job holds out of data.train: the fold of a cross-validation request
// (CrossValidationFold), else data.valid_fraction's (HeldOutOf); nullopt: none.
std::optional<RowSubset> HeldOutFor(const Config& config, const JobRequest& request);

// Expands data.train/test (ConfigError if nothing matches or the files hold no byte at all)
// and runs the csv first pass.
JobInputs PrepareInputs(const Config& config, const JobRequest& request = {});

// Throws DataError when a whole epoch over data.train (not a resumed remainder) trained no
// row, i.e. every row was malformed and skipped: an empty model is never written. bad_rows:
// the job's count; local_bad: a reader's reports, the first of which the message quotes.
void CheckEpochTrainedRows(std::uint64_t epoch_rows, std::uint64_t bad_rows,
                           const BadRowStats& local_bad);

// Malformed rows of one full epoch over data.train.
struct BadRowShare {
  std::uint64_t bad = 0;   // skipped
  std::uint64_t read = 0;  // trained + skipped
  double fraction() const { return read == 0 ? 0.0 : static_cast<double>(bad) / read; }
};

// Throws DataError when share.fraction() exceeds data.max_bad_fraction, naming the key, the
// count, the share and the first bad row (`local_bad`'s first report).
void CheckBadRowShare(const Config& config, const BadRowShare& share, const BadRowStats& local_bad);

// Checks train.init_model (when set) before any work: readable, and with the k, loss and
// feature settings (format, hashing, csv roles) of `config`, so its keys mean the same.
// Throws ConfigError naming train.init_model.
void CheckInitModel(const Config& config);

// Warm start: sets every key of `model` that server `server` of `num_servers` owns (and the
// bias, on the server owning kBiasKey) in *store; optimizer state starts fresh. Keys the
// model lacks are initialised as usual when first pulled. Returns the keys set.
std::uint64_t WarmStart(const Model& model, int server, int num_servers, ParamStore* store);

StoreOptions MakeStoreOptions(const Config& config);
WorkerOptions MakeWorkerOptions(const Config& config);
KVClientOptions MakeKVOptions(const Config& config, int num_servers);
// cluster.timeout_seconds: the longest any rank waits for a peer.
std::chrono::milliseconds ReplyTimeout(const Config& config);

struct SavedModel {
  std::uint64_t num_keys = 0;      // bias excluded
  std::uint64_t stored_keys = 0;   // rows the servers hold (bias included)
  std::uint64_t server_bytes = 0;  // memory of all servers' stores
};

// The model save (dump, sort, write): worker/job/model_save.h.

// Asks servers 0 .. num_servers-1 for their ServerStats (StatsRequest) and waits for their
// Stats. Returns the sum over servers, except peak_rss_bytes: the largest. Blocking; throws
// TransportError after the channel's timeout.
ServerStats CollectServerStats(ControlChannel* control, int num_servers);

// Totals of a finished job, for summary.json.
struct JobTotals {
  std::uint64_t rows_trained = 0;   // by the whole job, before a resume too
  std::uint64_t rows_this_run = 0;  // by this run (since this process started)
  double train_seconds = 0.0;       // of this run, as wall_seconds: rates are this run's
  double wall_seconds = 0.0;
  double loss_sum = 0.0;
  // Mean training loss of the last epoch's rows (of this run's part of it after a mid-epoch
  // resume), as its progress line shows; NaN until an epoch ended.
  double last_train_loss = std::numeric_limits<double>::quiet_NaN();
  std::uint64_t bad_rows = 0;
  BadRowShare train_bad;  // malformed training rows of a full epoch
  bool tested = false;    // data.test is set: last_eval holds its metrics
  EvalResult last_eval;
  int workers = 0;
  int servers = 0;
  std::string mode;  // "single-node" | "mpi"
  std::string model_path;
  // Push accounting of this run (since this process started, so a resumed job counts only
  // its own part): every push was applied exactly once iff pushes_received == pushes_sent
  // and push_keys_applied + push_rows_rejected == push_keys_sent.
  // Validation (data.valid / data.valid_fraction): the metric's name ("" without validation
  // rows), each epoch's value and the best epoch; whether the model written is the best
  // epoch's (early stopping) and the epoch training stopped early after (0: it did not).
  std::string valid_metric;
  ValidationRecord validation;
  bool best_model = false;
  int stopped_epoch = 0;
  KVTraffic worker_traffic;  // summed over workers
  ServerStats server_stats;  // summed over servers
};

// The summary.json object (README "Outputs").
JsonObject MakeSummary(const Config& config, const JobTotals& totals, const SavedModel& model);

// Logs the end-of-job lines (server memory, rows, model path).
void LogJobEnd(const JobTotals& totals, const SavedModel& model);

}  // namespace fmps
