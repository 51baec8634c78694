#include "worker/job/job.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/log.h"
#include "common/base/types.h"
#include "common/model/model_file.h"

namespace fmps {

std::optional<RowSubset> HeldOutOf(const Config& config) {
  if (config.data.valid_fraction <= 0.0) return std::nullopt;
  return RowSubset{.lo = 0.0, .hi = config.data.valid_fraction, .inside = true};
}

RowSubset CrossValidationFold(int fold, int folds) {
  const double hi = fold + 1 == folds ? 1.0 : (fold + 1) / static_cast<double>(folds);
  return RowSubset{.lo = fold / static_cast<double>(folds), .hi = hi, .inside = true};
}

std::optional<RowSubset> HeldOutFor(const Config& config, const JobRequest& request) {
  if (request.fold >= 0) return CrossValidationFold(request.fold, request.folds);
  return HeldOutOf(config);
}

std::unique_ptr<ShardReader> OpenValidReader(const JobInputs& in, int w, int num_workers) {
  if (!in.valid_files.empty()) {
    return std::make_unique<ShardReader>(in.spec, in.valid_files, w, num_workers);
  }
  if (!in.held_out) return nullptr;
  auto r = std::make_unique<ShardReader>(in.spec, in.train_files, w, num_workers);
  r->SetSubset(*in.held_out);
  return r;
}

void SkipHeldOut(const JobInputs& in, ShardReader* train) {
  if (!in.held_out || in.valid_files.size() != 0) return;
  RowSubset rest = *in.held_out;
  rest.inside = false;
  train->SetSubset(rest);
}

JobInputs PrepareInputs(const Config& config, const JobRequest& request) {
  JobInputs in;
  in.train_files = ExpandPaths(config.data.train, "data.train");
  if (!config.data.test.empty()) in.test_files = ExpandPaths(config.data.test, "data.test");
  if (!config.data.valid.empty()) in.valid_files = ExpandPaths(config.data.valid, "data.valid");
  in.held_out = HeldOutFor(config, request);
  auto require_data = [](const std::vector<std::string>& files, const char* key) {
    if (TotalBytes(files) != 0) return;
    std::string msg = key;
    msg += ": '";
    msg += files.front();
    msg += files.size() == 1 ? "' is empty" : "' and every other file are empty";
    msg += " (no rows to read)";
    throw ConfigError(msg);
  };
  require_data(in.train_files, "data.train");
  if (!in.test_files.empty()) require_data(in.test_files, "data.test");
  if (!in.valid_files.empty()) require_data(in.valid_files, "data.valid");
  in.spec.data = config.data;
  in.spec.loss = config.model.loss;
  in.spec.field_limit = FieldLimitOf(ShapeFromConfig(config.model));
  in.spec.sides = config.model.sides;  // recall models: sides, sampled negatives
  in.spec.sample_negatives = true;
  if (config.data.format == DataFormat::kCsv &&
      config.data.csv.transform == NumericTransform::kStandardize &&
      !config.data.csv.numeric.empty()) {
    in.spec.numeric_stats = ComputeNumericStats(in.spec, in.train_files);
  }
  return in;
}

void CheckEpochTrainedRows(std::uint64_t epoch_rows, std::uint64_t bad_rows,
                           const BadRowStats& local_bad) {
  if (epoch_rows != 0) return;
  std::string msg = "data.train: no row could be trained: ";
  msg += std::to_string(bad_rows);
  msg += " malformed row(s) skipped";
  if (!local_bad.first.empty()) {
    msg += ", the first ";
    msg += local_bad.first.front();
  }
  throw DataError(msg);
}

void CheckBadRowShare(const Config& config, const BadRowShare& share,
                      const BadRowStats& local_bad) {
  if (share.fraction() <= config.data.max_bad_fraction) return;
  char msg[160];
  std::snprintf(msg, sizeof(msg),
                "data.train: %llu of %llu rows (%.1f%%) are malformed, more than "
                "data.max_bad_fraction %g allows",
                static_cast<unsigned long long>(share.bad),
                static_cast<unsigned long long>(share.read), 100.0 * share.fraction(),
                config.data.max_bad_fraction);
  std::string text = msg;
  if (!local_bad.first.empty()) text += "; the first bad row: " + local_bad.first.front();
  throw DataError(text);
}

void CheckInitModel(const Config& config) {
  const std::string& path = config.train.init_model;
  if (path.empty()) return;
  ModelMeta meta;
  try {
    meta = Model::ReadMeta(path);
  } catch (const Error& e) {
    throw ConfigError(std::string("train.init_model: ") + e.what());
  }
  if (meta.shape != ShapeFromConfig(config.model)) {
    throw ConfigError("train.init_model: " + path + " has model shape " + meta.shape.ToString() +
                      " but the config trains " + ShapeFromConfig(config.model).ToString());
  }
  if (meta.loss != config.model.loss) {
    throw ConfigError("train.init_model: " + path + " was trained with loss " +
                      ToString(meta.loss) + " but model.loss is " + ToString(config.model.loss));
  }
  if (KeySettings(meta.features.data) != KeySettings(config.data)) {
    throw ConfigError("train.init_model: " + path +
                      " was trained with different data settings (format, hash_bits or csv "
                      "roles), so its keys would mean something else");
  }
}

std::uint64_t WarmStart(const Model& model, int server, int num_servers, ParamStore* store) {
  std::uint64_t set = 0;
  if (ServerOfKey(kBiasKey, num_servers) == server) {
    std::vector<float> bias(static_cast<std::size_t>(model.shape().row_width()), 0.0f);
    bias[0] = model.meta().bias;
    store->Set(kBiasKey, bias.data());
    ++set;
  }
  for (std::size_t i = 0; i < model.num_keys(); ++i) {
    if (ServerOfKey(model.keys()[i], num_servers) != server) continue;
    store->Set(model.keys()[i], model.row(i));
    ++set;
  }
  return set;
}

StoreOptions MakeStoreOptions(const Config& c) {
  StoreOptions o{.shape = ShapeFromConfig(c.model), .init_std = c.model.init_std};
  o.seed = c.train.seed;  // the initial embeddings depend on (seed, key) only
  o.min_count = c.model.min_count;
  o.l2_w = c.model.l2_w;
  o.l2_v = c.model.l2_v;
  return o;
}

WorkerOptions MakeWorkerOptions(const Config& c) {
  return {.shape = ShapeFromConfig(c.model),
          .loss = c.model.loss,
          .batch_size = c.train.batch_size,
          .consistency = c.train.consistency,
          .max_delay = c.train.max_delay,
          .send_counts = c.model.min_count > 1,
          .gradient = EffectiveGradient(c.optimizer)};
}

KVClientOptions MakeKVOptions(const Config& c, int num_servers) {
  KVClientOptions o;
  o.num_servers = num_servers;
  o.shape = ShapeFromConfig(c.model);
  o.reply_timeout = ReplyTimeout(c);
  return o;
}

std::chrono::milliseconds ReplyTimeout(const Config& c) {
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(std::min(c.cluster.timeout_seconds, 1e9) * 1000.0));
}

ServerStats CollectServerStats(ControlChannel* control, int num_servers) {
  pb::Control request;
  request.mutable_stats_request();
  for (int s = 0; s < num_servers; ++s) control->Send(s, request);
  ServerStats sum;
  for (int s = 0; s < num_servers; ++s) {
    const ControlMessage m =
        control->WaitFor(pb::Control::kStats, "server statistics",
                         [s](const ControlMessage& c) { return c.sender == s; });
    const pb::Stats& r = m.body.stats();
    sum.pulls += r.pulls();
    sum.pushes += r.pushes();
    sum.keys_pulled += r.keys_pulled();
    sum.keys_pushed += r.keys_pushed();
    sum.rejected_rows += r.rejected_rows();
    sum.peak_rss_bytes = std::max<std::uint64_t>(sum.peak_rss_bytes, r.peak_rss_bytes());
    sum.busy_ns += r.busy_ns();
  }
  return sum;
}

namespace {
double BytesPerKey(const SavedModel& m) {
  return m.stored_keys == 0 ? 0.0 : static_cast<double>(m.server_bytes) / m.stored_keys;
}

// The test set's metrics (only when data.test is set: nothing unmeasured is reported).
void AddTestMetrics(Loss loss, const EvalResult& eval, JsonObject* j) {
  if (loss == Loss::kLogistic) {
    j->Add("test_logloss", eval.logloss).Add("test_auc", eval.auc);
  } else {
    j->Add("test_rmse", eval.rmse);
  }
  j->Add("test_rows", eval.rows);
}

// The validation figures (only with validation rows).
void AddValidation(const JobTotals& t, JsonObject* j) {
  if (t.valid_metric.empty()) return;
  const ValidationRecord& v = t.validation;
  j->Add("valid_metric", t.valid_metric)
      .AddArray("valid_history", v.history)
      .Add("best_epoch", v.best_epoch)
      .Add("best_valid", v.best_epoch == 0 ? std::nan("") : v.best_value)
      .Add("model_epoch",
           t.best_model && v.best_epoch != 0 ? v.best_epoch : static_cast<int>(v.history.size()))
      .Add("stopped_epoch", t.stopped_epoch);
}
}  // namespace

JsonObject MakeSummary(const Config& config, const JobTotals& t, const SavedModel& model) {
  JsonObject j;
  j.Add("rows_trained", t.rows_trained)
      .Add("rows_this_run", t.rows_this_run)
      .Add("epochs", config.train.epochs)
      .Add("wall_s", t.wall_seconds)
      .Add("train_s", t.train_seconds)
      .Add("rows_per_s", t.rows_this_run / std::max(1e-9, t.train_seconds))
      .Add("train_logloss", t.last_train_loss);
  if (t.tested) AddTestMetrics(config.model.loss, t.last_eval, &j);
  AddValidation(t, &j);
  j.Add("workers", t.workers)
      .Add("servers", t.servers)
      .Add("mode", t.mode)
      .Add("num_keys", model.num_keys)
      .Add("server_bytes_per_key", BytesPerKey(model))
      .Add("bad_rows", t.bad_rows)
      .Add("pushes_sent", t.worker_traffic.push_messages)
      .Add("push_keys_sent", t.worker_traffic.push_keys)
      .Add("pushes_received", t.server_stats.pushes)
      .Add("push_keys_applied", t.server_stats.keys_pushed)
      .Add("push_rows_rejected", t.server_stats.rejected_rows)
      .Add("max_in_flight", t.worker_traffic.max_in_flight)
      .Add("server_peak_rss_mb", static_cast<double>(t.server_stats.peak_rss_bytes) / (1 << 20))
      .Add("server_busy_s", static_cast<double>(t.server_stats.busy_ns) * 1e-9)
      .Add("model", t.model_path);
  return j;
}

void LogJobEnd(const JobTotals& t, const SavedModel& model) {
  char line[512];
  if (t.server_stats.rejected_rows != 0) {
    std::snprintf(line, sizeof(line),
                  "warning: the servers rejected %llu gradient row(s) with a non-finite value "
                  "(never applied); a smaller optimizer.lr may help",
                  static_cast<unsigned long long>(t.server_stats.rejected_rows));
    Log(line);
  }
  std::snprintf(line, sizeof(line), "server memory: %.1f bytes per key (%llu keys)",
                BytesPerKey(model), static_cast<unsigned long long>(model.num_keys));
  Log(line);
  char bad[96] = "";
  if (t.train_bad.bad != 0) {
    std::snprintf(bad, sizeof(bad), "; %llu malformed training rows skipped per epoch (%.2f%%)",
                  static_cast<unsigned long long>(t.train_bad.bad), 100.0 * t.train_bad.fraction());
  }
  char run[64] = "";
  if (t.rows_this_run != t.rows_trained) {
    std::snprintf(run, sizeof(run), " (%llu by this run)",
                  static_cast<unsigned long long>(t.rows_this_run));
  }
  std::snprintf(line, sizeof(line),
                "done: %llu rows%s in %.2f s (%.0f rows/s while training)%s; %s",
                static_cast<unsigned long long>(t.rows_trained), run, t.wall_seconds,
                t.rows_this_run / std::max(1e-9, t.train_seconds), bad, t.model_path.c_str());
  Log(line);
}

}  // namespace fmps
