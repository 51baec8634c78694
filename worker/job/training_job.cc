#include "worker/job/training_job.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <limits>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "common/base/log.h"
#include "worker/job/early_stop.h"
#include "worker/job/interrupt.h"
#include "worker/job/model_save.h"
#include "worker/worker.h"

namespace fmps {

std::string FinalLine(Loss loss, const TrainSummary& s) {
  char line[1024] = "";
  if (s.tested && loss == Loss::kLogistic) {
    std::snprintf(line, sizeof(line), "test_logloss %.6f test_auc %.6f ", s.test_logloss,
                  s.test_auc);
  } else if (s.tested) {
    std::snprintf(line, sizeof(line), "test_rmse %.6f ", s.test_rmse);
  }
  std::string text = line;
  std::snprintf(line, sizeof(line), "rows %llu rows_per_s %.0f",
                static_cast<unsigned long long>(s.rows_trained), s.rows_per_s);
  return text + line + " model " + s.model_path;
}

namespace {

RunStart RunStartOf(const ResumePoint& p) {
  return {.resumed = p.manifest.has_value(),
          .epoch = p.first_epoch,
          .mid_epoch = p.mid_epoch,
          .rows = static_cast<std::uint64_t>(p.rows_base)};
}

// The worker side of the checkpoint handshake with the coordinator (endpoint
// `coordinator`, worker 0). Quiesced at a batch boundary: report the position and wait
// until training may go on.
void ReportCutReadyAndAwaitResume(ControlChannel* control, int coordinator,
                                  const WorkerReport& report) {
  ReportCutReady(control, coordinator, report);
  AwaitCutResume(control);
}

// One worker's counters as exchanged between workers (progress posts, end-of-epoch gather).
struct Counters {
  double rows = 0, loss = 0, bytes = 0, pulls = 0, pushes = 0, pull_s = 0, push_s = 0;
  double bad_rows = 0;  // malformed rows skipped by the epoch's reader (cumulative)
  static constexpr int kSize = 8;

  static Counters From(const Progress& p, const RowSource& reader) {
    const KVStats kv = p.kv();
    return {static_cast<double>(p.rows.load()),
            p.loss_sum.load(),
            static_cast<double>(p.bytes.load()),
            static_cast<double>(kv.pulls),
            static_cast<double>(kv.pushes),
            kv.pull_seconds,
            kv.push_seconds,
            static_cast<double>(reader.bad_rows().count)};
  }
  static Counters At(const std::vector<double>& all, int w) {
    Counters c;
    std::copy_n(all.begin() + static_cast<std::ptrdiff_t>(w) * kSize, kSize, c.data());
    return c;
  }
  KVStats kv() const {
    return {static_cast<std::uint64_t>(pulls), static_cast<std::uint64_t>(pushes), pull_s, push_s};
  }
  double* data() { return &rows; }
  std::span<const double> span() const { return {&rows, kSize}; }
};
static_assert(sizeof(Counters) == Counters::kSize * sizeof(double));

// One worker's run of the job. Each step of an epoch is its own short function, the place
// for per-epoch policies (early stopping, cross-validation, best-model keeping). Members
// marked root are used on worker 0 only.
class TrainingJob {
 public:
  TrainingJob(const JobContext& context, Collectives& collectives, const WorkerLinks& links);
  std::optional<TrainSummary> Run();

 private:
  using Clock = std::chrono::steady_clock;
  bool root() const { return coll_.is_root(); }
  bool checkpoints() const { return !config_.checkpoint.dir.empty(); }
  RowSource* EpochReader(int epoch) const;
  void TrainOneEpoch(int epoch);
  void AfterBatch();
  void CheckStop();
  void OnCut(const std::vector<ByteRange>& remaining);
  void SettleShardDone(int epoch);
  Counters GatherEpochCounters();
  void SettleEpochRows(const Counters& sum, const BadRowStats& sample);
  Counters ReportProgress(const std::vector<double>& all, bool end);
  void CheckpointEpochEnd(int epoch);
  EvalResult ScoreAll(RowSource* reader);
  void EvaluateEpoch(int epoch);
  bool ValidateEpoch(int epoch);
  void KeepBestOnServers();
  bool StoppedBefore(int epoch) const;
  bool SavesBestModel() const;
  void StartModelSave();
  void SettleBestModel();
  void CollectTraffic();
  TrainSummary FinishOnRoot();

  const JobContext& ctx_;
  const Config& config_;
  Collectives& coll_;
  KVClient* client_;
  ControlChannel* control_;
  Worker worker_;
  Progress progress_;
  Checkpointer* ckpt_ = nullptr;  // root only (in ctx_.checkpointer)
  const int coordinator_;         // the root's endpoint
  int epoch_ = 0;
  RowSource* reader_ = nullptr;    // this epoch's training reader
  std::uint64_t epoch_bytes_ = 0;  // of every worker's shard
  Clock::time_point next_post_;
  double t0_ = 0.0;                      // root: output clock at the epoch's start
  Counters before_;                      // root: job-wide counters at the epoch's start
  Counters after_;                       // root: ... at its end (exact)
  JobTotals totals_;                     // root
  bool stop_cut_ = false;                // root: the cut before stopping on SIGTERM was requested
  Clock::time_point stop_deadline_;      // root: past it, stop without that cut
  std::optional<EarlyStopper> stopper_;  // root, with validation rows
  EvalResult last_valid_;                // root: this epoch's validation metrics
  std::optional<ModelSave> save_;        // root: the model's save, from the last epoch's end
};

TrainingJob::TrainingJob(const JobContext& context, Collectives& collectives,
                         const WorkerLinks& links)
    : ctx_(context),
      config_(*context.config),
      coll_(collectives),
      client_(links.kv),
      control_(links.control),
      worker_(MakeWorkerOptions(config_), links.kv),
      coordinator_(context.num_servers) {
  if (root()) {
    CheckpointerOptions o;
    o.num_servers = ctx_.num_servers;
    o.num_workers = coll_.size();
    o.own_worker = 0;
    o.train_bytes = ctx_.train_bytes;
    o.rows_base = ctx_.start->rows_base;
    o.loss_base = ctx_.start->loss_base;
    if (ctx_.valid != nullptr) {
      stopper_.emplace(
          config_, ctx_.start->manifest ? ctx_.start->manifest->validation : ValidationRecord());
      o.validation = stopper_->record();
    }
    ckpt_ = &ctx_.checkpointer->emplace(config_, control_, o);
    totals_.workers = coll_.size();
    totals_.servers = ctx_.num_servers;
    totals_.mode = ctx_.mode;
    totals_.tested = ctx_.test != nullptr;
    totals_.model_path = ctx_.out->ModelPath();
    totals_.last_eval.logloss = totals_.last_eval.auc = totals_.last_eval.rmse =
        std::numeric_limits<double>::quiet_NaN();
  }
  worker_.set_cut_handler([this](const std::vector<ByteRange>& remaining) { OnCut(remaining); });
  if (root()) ctx_.out->Begin(RunStartOf(*ctx_.start));
}

std::optional<TrainSummary> TrainingJob::Run() {
  std::array<std::uint64_t, 1> bytes = {ctx_.train->bytes_in_shard()};
  coll_.AllReduce(bytes, ReduceOp::kSum);
  epoch_bytes_ = bytes[0];
  for (int epoch = ctx_.start->first_epoch; epoch <= config_.train.epochs; ++epoch) {
    if (StoppedBefore(epoch)) break;
    TrainOneEpoch(epoch);
    const bool stop = ctx_.valid != nullptr && ValidateEpoch(epoch);
    // The model is final now: its write overlaps the last test evaluation (with checkpoints,
    // after the last one, in FinishOnRoot: the dump and a snapshot never coexist in memory).
    if (root() && !checkpoints() && (stop || epoch == config_.train.epochs)) StartModelSave();
    if (ctx_.test != nullptr) EvaluateEpoch(epoch);
    if (root()) CheckpointEpochEnd(epoch);
    if (stop) break;
  }
  CollectTraffic();
  if (!root()) return std::nullopt;
  return FinishOnRoot();
}

RowSource* TrainingJob::EpochReader(int epoch) const {
  const bool resumed = ctx_.start->mid_epoch && epoch == ctx_.start->first_epoch;
  return resumed ? ctx_.resumed : ctx_.train;
}

void TrainingJob::TrainOneEpoch(int epoch) {
  epoch_ = epoch;
  before_ = after_;
  reader_ = EpochReader(epoch);
  if (root()) t0_ = ctx_.out->Elapsed();
  // The other workers post half a period before the root reports, so each report shows
  // counters at most about half a period old.
  const double first_post = config_.train.progress_seconds * (root() ? 1.0 : 0.5);
  next_post_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                  std::chrono::duration<double>(first_post));
  reader_->Rewind();
  progress_.bytes = 0;
  worker_.TrainEpoch(reader_, &progress_, [this] { AfterBatch(); });
  SettleShardDone(epoch);
  coll_.FinishProgress();
  const Counters sum = GatherEpochCounters();
  if (!root()) return;
  after_ = sum;
  totals_.train_seconds += ctx_.out->Elapsed() - t0_;
  if (epoch == 1) totals_.bad_rows += static_cast<std::uint64_t>(sum.bad_rows);
}

// After every batch (bsp: step). Per batch only the root's checkpoint polling (when
// checkpoints are on) and a clock read; a progress post every train.progress_seconds.
void TrainingJob::AfterBatch() {
  if (root() && checkpoints()) {
    ckpt_->Poll();
    if (ckpt_->Due()) ckpt_->Request();
  }
  if (root()) CheckStop();
  const Clock::time_point now = Clock::now();
  if (now < next_post_) return;
  next_post_ = now + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(config_.train.progress_seconds));
  coll_.PostProgress(Counters::From(progress_, *reader_).span());
  if (root()) ReportProgress(coll_.LatestProgress(), false);
}

// Root, after every batch: stops the job on SIGINT/SIGTERM (interrupt.h). With checkpoints,
// SIGTERM first requests a cut and stops once it is complete (the other workers, quiesced
// at their batch boundaries by the cut, then see the job aborted).
void TrainingJob::CheckStop() {
  const int signal = StopSignal();
  if (signal == 0) return;
  if (signal != SIGTERM || !checkpoints()) throw Interrupted(signal, FinalCheckpoint::kNone);
  if (!stop_cut_) {
    ckpt_->Request();  // no-op when a periodic cut is already under way: that one serves
    stop_cut_ = true;
    stop_deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(kStopCheckpointSeconds));
    return;
  }
  if (ckpt_->requested()) {  // the cut is not made yet
    if (Clock::now() < stop_deadline_) return;
    throw Interrupted(signal, FinalCheckpoint::kTimedOut);
  }
  ckpt_->Drain();
  throw Interrupted(signal, FinalCheckpoint::kWritten);
}

void TrainingJob::OnCut(const std::vector<ByteRange>& remaining) {
  const WorkerReport report = ReportOf(progress_, false, remaining);
  if (root()) {
    ckpt_->Cut(epoch_, false, report);
  } else {
    ReportCutReadyAndAwaitResume(control_, coordinator_, report);
  }
}

// This worker's shard is finished: tell the coordinator; the root settles a cut requested
// too late for its own worker to see and waits for every other worker's report.
void TrainingJob::SettleShardDone(int epoch) {
  if (!checkpoints()) return;
  const WorkerReport done = ReportOf(progress_, true, {});
  if (!root()) {
    ReportShardDone(control_, coordinator_, epoch, done);
    return;
  }
  if (ckpt_->requested()) ckpt_->Cut(epoch, false, done);
  ckpt_->CollectShardDone(epoch);
}

// Exact end-of-epoch counters of every worker; the root reports them and checks the epoch.
Counters TrainingJob::GatherEpochCounters() {
  const std::vector<double> all = coll_.Gather(Counters::From(progress_, *reader_).span());
  const BadRowStats& bad = reader_->bad_rows();
  const std::vector<std::string> samples = coll_.GatherBytes(bad.first.empty() ? "" : bad.first[0]);
  if (!root()) return Counters();
  const Counters sum = ReportProgress(all, true);
  BadRowStats sample;
  for (const std::string& s : samples) {
    if (!s.empty() && sample.first.empty()) sample.first.push_back(s);
  }
  sample.count = static_cast<std::uint64_t>(sum.bad_rows);
  SettleEpochRows(sum, sample);
  return sum;
}

// Root, at an epoch's end: the checks of its rows (none trained; too many malformed, on the
// first full pass over data.train: the readers count bad rows cumulatively) and what
// summary.json reports of them.
void TrainingJob::SettleEpochRows(const Counters& sum, const BadRowStats& sample) {
  const auto rows = static_cast<std::uint64_t>(sum.rows - before_.rows);
  totals_.last_train_loss = rows == 0 ? std::numeric_limits<double>::quiet_NaN()
                                      : (sum.loss - before_.loss) / static_cast<double>(rows);
  if (reader_ != ctx_.train) return;  // a resumed remainder may legitimately be empty
  CheckEpochTrainedRows(rows, sample.count, sample);
  if (totals_.train_bad.read != 0) return;
  totals_.train_bad = {.bad = sample.count, .read = rows + sample.count};
  CheckBadRowShare(config_, totals_.train_bad, sample);
}

// Root: a progress event from every worker's counters; returns their sum.
Counters TrainingJob::ReportProgress(const std::vector<double>& all, bool end) {
  ProgressReport r;
  r.epoch = epoch_;
  r.epochs = config_.train.epochs;
  Counters sum;
  for (int w = 0; w < coll_.size(); ++w) {
    const Counters c = Counters::At(all, w);
    sum.rows += c.rows;
    sum.loss += c.loss;
    sum.bytes += c.bytes;
    sum.bad_rows += c.bad_rows;
    r.workers.push_back(c.kv());
  }
  r.fraction = end || epoch_bytes_ == 0 ? 1.0 : sum.bytes / static_cast<double>(epoch_bytes_);
  r.rows = static_cast<std::uint64_t>(ctx_.start->rows_base + sum.rows);
  const double epoch_rows = sum.rows - before_.rows;
  r.rows_per_s = epoch_rows / std::max(1e-9, ctx_.out->Elapsed() - t0_);
  r.train_loss = epoch_rows == 0 ? 0.0 : (sum.loss - before_.loss) / epoch_rows;
  ctx_.out->Progress(r);
  return sum;
}

void TrainingJob::CheckpointEpochEnd(int epoch) {
  if (!checkpoints()) return;
  if (stopper_) ckpt_->SetValidation(stopper_->record());
  ckpt_->Cut(epoch, /*epoch_done=*/true, ReportOf(progress_, true, {}));
}

// Every worker scores its shard of `reader`; the root gets the exact metrics of all of them
// (the other workers an empty result).
EvalResult TrainingJob::ScoreAll(RowSource* reader) {
  std::vector<float> scores, labels;
  reader->Rewind();
  worker_.Score(reader, &scores, &labels);
  const std::vector<float> all_scores = coll_.GatherV(scores);
  const std::vector<float> all_labels = coll_.GatherV(labels);
  return root() ? fmps::Evaluate(config_.model.loss, all_scores, all_labels) : EvalResult();
}

// Scores this worker's test shard; the root computes the exact metrics of all of them.
void TrainingJob::EvaluateEpoch(int epoch) {
  // Test rows that are the validation rows (an estimator's eval set) were scored just before.
  const EvalResult eval = ctx_.test == ctx_.valid ? last_valid_ : ScoreAll(ctx_.test);
  std::array<std::uint64_t, 1> bad = {ctx_.test->bad_rows().count};
  if (epoch == 1) coll_.AllReduce(bad, ReduceOp::kSum);
  if (root()) {
    totals_.last_eval = eval;
    if (stopper_) stopper_->RecordTest(epoch, eval);
    const double epoch_rows = after_.rows - before_.rows;
    ctx_.out->Evaluation(epoch, static_cast<std::uint64_t>(ctx_.start->rows_base + after_.rows),
                         epoch_rows / std::max(1e-9, ctx_.out->Elapsed() - t0_),
                         epoch_rows == 0 ? 0.0 : (after_.loss - before_.loss) / epoch_rows,
                         totals_.last_eval);
    if (epoch == 1) totals_.bad_rows += bad[0];
  }
}

// Every worker scores its validation rows; the root computes the metric, records it, has the
// servers keep a new best model (early stopping) and decides whether to stop, which every
// worker learns. Returns whether training stops after this epoch.
bool TrainingJob::ValidateEpoch(int epoch) {
  const EvalResult r = ScoreAll(ctx_.valid);
  last_valid_ = r;
  std::string decision;
  if (root()) {
    const double value = MetricValue(stopper_->metric(), r);
    if (stopper_->Record(epoch, value) && stopper_->enabled()) KeepBestOnServers();
    const bool stop = stopper_->ShouldStop(epoch) && epoch < config_.train.epochs;
    ctx_.out->Validation(epoch, MetricName(stopper_->metric()), r, value,
                         stopper_->record().best_epoch, stop);
    if (stop) totals_.stopped_epoch = epoch;
    decision = stop ? "stop" : "go";
  }
  coll_.Broadcast(&decision);
  return decision == "stop";
}

// Root: every server copies its store as the best model (no data request is in flight).
void TrainingJob::KeepBestOnServers() {
  pb::Control keep;
  keep.mutable_keep_best();
  for (int s = 0; s < ctx_.num_servers; ++s) control_->Send(s, keep);
  for (int s = 0; s < ctx_.num_servers; ++s) {
    control_->WaitFor(pb::Control::kBestKept, "best model copy",
                      [s](const ControlMessage& m) { return m.sender == s; });
  }
}

// A resumed job whose record says it had already stopped early trains no more epochs. Every
// worker reads the same manifest, so all agree.
bool TrainingJob::StoppedBefore(int epoch) const {
  if (epoch != ctx_.start->first_epoch || ctx_.valid == nullptr || !ctx_.start->manifest) {
    return false;
  }
  EarlyStopper replay(config_, ctx_.start->manifest->validation);
  return replay.ShouldStop(epoch - 1);
}

// Root: whether the model saved is the best epoch's (early stopping) rather than the last.
bool TrainingJob::SavesBestModel() const {
  return stopper_ && stopper_->enabled() && stopper_->record().best_epoch != 0;
}

// Root, once no more training follows: dumps the servers' model and writes it in the
// background (ModelSave); FinishOnRoot publishes it. A failure of what runs meanwhile (the
// test evaluation, the last checkpoint) leaves no model file.
void TrainingJob::StartModelSave() {
  save_.emplace(ModelSaveRequest{.control = control_,
                                 .num_servers = ctx_.num_servers,
                                 .config = &config_,
                                 .spec = &ctx_.inputs->spec,
                                 .target = ctx_.out->ModelDestination(),
                                 .what = SavesBestModel() ? DumpOf::kBest : DumpOf::kStore});
}

// Root, at the end: what summary.json and the final line report of validation, and whether
// the model written is the best epoch's (its test metrics, when measured in this run).
void TrainingJob::SettleBestModel() {
  if (!stopper_) return;
  totals_.valid_metric = MetricName(stopper_->metric());
  totals_.validation = stopper_->record();
  totals_.best_model = SavesBestModel();
  if (!totals_.best_model) return;
  if (const std::optional<EvalResult> best = stopper_->BestTest()) totals_.last_eval = *best;
}

// Push accounting: every worker's traffic, summed (in-flight peak: the largest).
void TrainingJob::CollectTraffic() {
  const KVTraffic& mine = client_->traffic();
  std::array<std::uint64_t, 2> sent = {mine.push_messages, mine.push_keys};
  std::array<std::uint64_t, 1> peak = {mine.max_in_flight};
  coll_.AllReduce(sent, ReduceOp::kSum);
  coll_.AllReduce(peak, ReduceOp::kMax);
  totals_.worker_traffic = {sent[0], sent[1], peak[0]};
}

TrainSummary TrainingJob::FinishOnRoot() {
  ckpt_->Drain();
  SettleBestModel();
  if (!save_) StartModelSave();  // checkpoints on, or no epoch trained by this run
  const SavedModel saved = save_->Finish();
  totals_.server_stats = CollectServerStats(control_, ctx_.num_servers);
  ShutdownServers(control_, ctx_.num_servers);
  totals_.rows_trained = static_cast<std::uint64_t>(ctx_.start->rows_base + after_.rows);
  totals_.rows_this_run = static_cast<std::uint64_t>(after_.rows);
  totals_.loss_sum = ctx_.start->loss_base + after_.loss;
  totals_.wall_seconds = ctx_.out->Elapsed();
  ctx_.out->Summary(MakeSummary(config_, totals_, saved));
  LogJobEnd(totals_, saved);
  TrainSummary s;
  s.loss = config_.model.loss;
  s.rows_trained = totals_.rows_trained;
  s.wall_s = totals_.wall_seconds;
  s.rows_per_s = totals_.rows_this_run / std::max(1e-9, totals_.train_seconds);
  s.tested = totals_.tested;
  s.test_logloss = totals_.last_eval.logloss;
  s.test_auc = totals_.last_eval.auc;
  s.test_rmse = totals_.last_eval.rmse;
  s.num_keys = saved.num_keys;
  s.bad_rows = totals_.bad_rows;
  s.model_path = totals_.model_path;
  s.valid_metric = totals_.valid_metric;
  s.best_epoch = totals_.validation.best_epoch;
  s.best_valid =
      s.best_epoch == 0 ? std::numeric_limits<double>::quiet_NaN() : totals_.validation.best_value;
  return s;
}

}  // namespace

int JobProgressWidth() { return Counters::kSize; }

std::optional<TrainSummary> RunWorkerJob(const JobContext& context, Collectives& collectives,
                                         const WorkerLinks& links) {
  TrainingJob job(context, collectives, links);
  return job.Run();
}

}  // namespace fmps
