// The training loop of one worker, written once for both modes: single-node (a worker
// thread, InProcCollectives) and MPI (a worker rank, MpiCollectives). Worker 0 is the root:
// it coordinates checkpoint cuts (Checkpointer), reports progress and evaluation through
// RunOutput, saves the model, collects the servers' statistics, shuts the servers down and
// writes summary.json. Every worker calls RunWorkerJob; the collectives keep them in step
// at epoch boundaries only (never per batch).
//
// Per epoch: train (Worker::TrainEpoch; a progress post every train.progress_seconds, the
// root polls checkpoints after each batch), exact end-of-epoch counters gathered to the
// root, the empty-epoch check, evaluation on the test set (scores gathered to the root for
// exact AUC), and an end-of-epoch checkpoint.
//
// With validation rows (JobContext::valid), before the epoch-end checkpoint: the validation
// metric (scores gathered to the root, early_stop.h). With train.early_stop, a new best
// epoch makes every server keep a copy of its store (KeepBest), the root broadcasts whether
// to stop, and the model written at the end is the best epoch's (DumpBestRequest). The
// epoch-end checkpoint's manifest carries the validation record, and the checkpoint of the
// best epoch is never pruned, so a resumed job restores the best model too.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/comm/collectives.h"
#include "common/comm/control.h"
#include "common/comm/kv.h"
#include "common/config/config.h"
#include "common/data/reader.h"
#include "worker/job/checkpoint.h"
#include "worker/job/job.h"
#include "worker/job/run_output.h"

namespace fmps {

// What a finished job reports (the root's view).
struct TrainSummary {
  Loss loss = Loss::kLogistic;  // model.loss
  std::uint64_t rows_trained = 0;
  double wall_s = 0.0;
  double rows_per_s = 0.0;
  bool tested = false;  // data.test is set; the test_ members hold its metrics
  double test_logloss = 0.0;
  double test_auc = 0.0;
  double test_rmse = 0.0;
  std::uint64_t num_keys = 0;
  std::uint64_t bad_rows = 0;
  std::string model_path;
  // With validation rows (data.valid / data.valid_fraction): the metric's name, the best
  // epoch and its value (what `fmps cv` reports per fold); "" / 0 / NaN without.
  std::string valid_metric;
  int best_epoch = 0;
  double best_valid = 0.0;
};

// The final stdout line (without newline), the same in both modes: logistic loss
// "test_logloss L test_auc A rows N rows_per_s R model PATH", squared loss
// "test_rmse E rows N rows_per_s R model PATH". Without data.test the test metrics are left
// out: "rows N rows_per_s R model PATH".
std::string FinalLine(Loss loss, const TrainSummary& summary);

// Everything one worker needs to run its part of the job. Pointers are borrowed.
struct JobContext {
  const Config* config = nullptr;
  const JobInputs* inputs = nullptr;
  const ResumePoint* start = nullptr;
  std::uint64_t train_bytes = 0;  // of every training file (checkpoint manifests)
  int num_servers = 1;            // servers are endpoints 0 .. num_servers - 1
  const char* mode = "";          // "single-node" | "mpi" (summary.json)
  RowSource* train = nullptr;     // this worker's shard of data.train
  RowSource* test = nullptr;      // its shard of data.test, or null without one
  // Its share of the validation rows (evaluated at each epoch end; train.early_stop judges
  // them), or null without any. Every worker of a job has one, or none does: a shard of
  // data.valid, of the held-out training rows (OpenValidReader, job.h), or any source of
  // labelled rows the caller builds (an in-memory eval set) with the job's FeatureSpec.
  // `test` may be this very source (an in-memory eval set): it is then scored once per epoch.
  RowSource* valid = nullptr;
  RowSource* resumed = nullptr;  // the first epoch's remainder after a mid-epoch resume
  RunOutput* out = nullptr;      // root only: the run's output files
  // Root only: where the root's Checkpointer lives. Its destructor removes the checkpoints
  // this job left incomplete, so the caller keeps it until no server writes a shard any
  // more (single-node: until the server threads are joined).
  std::optional<Checkpointer>* checkpointer = nullptr;
};

// The progress width (values per post) of the collectives given to RunWorkerJob.
int JobProgressWidth();

// A worker's links to the servers and the other workers, both over the transport whose
// endpoint is num_servers + collectives.rank(): its data requests and its control messages
// (checkpoint handshakes; on the root also the coordination of cuts, dumps, statistics and
// shutdown). Both must outlive RunWorkerJob.
struct WorkerLinks {
  KVClient* kv = nullptr;
  ControlChannel* control = nullptr;
};

// Runs this worker's part of the whole job through `links`. Every worker of the job must
// call it. Returns the summary on the root (after summary.json is written and the servers
// are shut down), nullopt elsewhere. Throws on any error (the caller aborts the job).
std::optional<TrainSummary> RunWorkerJob(const JobContext& context, Collectives& collectives,
                                         const WorkerLinks& links);

}  // namespace fmps
