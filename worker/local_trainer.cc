#include "worker/local_trainer.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <limits>
#include <functional>
#include <memory>
#include <mutex>
#include <numeric>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/kv.h"
#include "common/log.h"
#include "common/model_file.h"
#include "common/reader.h"
#include "common/transport.h"
#include "server/param_store.h"
#include "server/server.h"
#include "worker/run_output.h"
#include "worker/worker.h"

namespace fmps {
namespace {

// Collects the first error of any thread and aborts the transport so nobody hangs.
class ErrorSink {
 public:
  explicit ErrorSink(InProcHub* hub) : hub_(hub) {}
  void Fail(std::exception_ptr e, const std::string& what) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_) first_ = e;
    }
    hub_->Abort(what);
  }
  // Runs fn, routing any exception to Fail.
  void Guard(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      Fail(std::current_exception(), e.what());
    } catch (...) {
      Fail(std::current_exception(), "unknown error");
    }
  }
  void RethrowIfFailed() {
    std::lock_guard<std::mutex> lock(mu_);
    if (first_) std::rethrow_exception(first_);
  }
  bool failed() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_ != nullptr;
  }

 private:
  InProcHub* hub_;
  std::mutex mu_;
  std::exception_ptr first_;
};

StoreOptions MakeStoreOptions(const Config& c) {
  StoreOptions o;
  o.k = c.model.k;
  o.init_std = c.model.init_std;
  o.seed = c.train.seed;
  o.min_count = c.model.min_count;
  o.l2_w = c.model.l2_w;
  o.l2_v = c.model.l2_v;
  return o;
}

WorkerOptions MakeWorkerOptions(const Config& c) {
  WorkerOptions o;
  o.k = c.model.k;
  o.loss = c.model.loss;
  o.batch_size = c.train.batch_size;
  o.consistency = c.train.consistency;
  o.max_delay = c.train.max_delay;
  o.send_counts = c.model.min_count > 1;
  return o;
}

std::uint64_t TotalBytes(const std::vector<std::unique_ptr<ShardReader>>& readers) {
  std::uint64_t total = 0;
  for (const auto& r : readers) total += r->bytes_in_shard();
  return total;
}

}  // namespace

TrainSummary TrainLocal(const Config& config) {
  const int num_servers = config.cluster.local_servers;
  const int num_workers = config.cluster.local_workers;
  const int coordinator = num_servers + num_workers;
  const int k = config.model.k;
  const std::vector<std::string> train_files = ExpandPaths(config.data.train, "data.train");
  const std::vector<std::string> test_files =
      config.data.test.empty() ? std::vector<std::string>{}
                               : ExpandPaths(config.data.test, "data.test");

  FeatureSpec spec;
  spec.data = config.data;
  spec.loss = config.model.loss;
  if (config.data.format == DataFormat::kCsv &&
      config.data.csv.transform == NumericTransform::kStandardize &&
      !config.data.csv.numeric.empty()) {
    spec.numeric_stats = ComputeNumericStats(spec, train_files);
  }

  // Open every reader first so that a missing or malformed file fails before any work.
  std::vector<std::unique_ptr<ShardReader>> train_readers;
  std::vector<std::unique_ptr<ShardReader>> test_readers;
  for (int w = 0; w < num_workers; ++w) {
    train_readers.push_back(std::make_unique<ShardReader>(spec, train_files, w, num_workers));
    if (!test_files.empty()) {
      test_readers.push_back(std::make_unique<ShardReader>(spec, test_files, w, num_workers));
    }
  }
  RunOutput out(config);
  Log("single-node mode: " + std::to_string(num_servers) + " server thread(s), " +
      std::to_string(num_workers) + " worker thread(s), output in " + out.dir());

  InProcHub hub(num_servers + num_workers + 1);
  ErrorSink errors(&hub);

  std::vector<std::unique_ptr<ParamStore>> stores;
  std::vector<std::unique_ptr<Transport>> server_transports;
  std::vector<std::thread> server_threads;
  ServerOptions server_options;
  server_options.num_workers = num_workers;
  server_options.first_worker_endpoint = num_servers;
  server_options.consistency = config.train.consistency;
  for (int s = 0; s < num_servers; ++s) {
    stores.push_back(
        std::make_unique<ParamStore>(MakeStoreOptions(config), MakeOptimizer(config.optimizer)));
    server_transports.push_back(hub.Connect(s));
  }
  for (int s = 0; s < num_servers; ++s) {
    server_threads.emplace_back([&, s] {
      errors.Guard([&] {
        Server server(stores[s].get(), server_transports[s].get(), server_options);
        server.Run();
      });
    });
  }

  KVClientOptions kv_options;
  kv_options.num_servers = num_servers;
  kv_options.row_width = 1 + k;
  std::vector<std::unique_ptr<Transport>> worker_transports;
  std::vector<std::unique_ptr<KVClient>> clients;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int w = 0; w < num_workers; ++w) {
    worker_transports.push_back(hub.Connect(num_servers + w));
    clients.push_back(std::make_unique<KVClient>(worker_transports.back().get(), kv_options));
    workers.push_back(std::make_unique<Worker>(MakeWorkerOptions(config), clients.back().get()));
  }
  std::unique_ptr<Transport> coord_transport = hub.Connect(coordinator);
  KVClient coord(coord_transport.get(), kv_options);

  // Runs fn(w) on every worker in its own thread and waits; the calling thread prints
  // progress every train.progress_seconds meanwhile when `report` is set.
  auto run_workers = [&](const std::function<void(int)>& fn,
                         const std::function<void()>& report) {
    std::mutex mu;
    std::condition_variable cv;
    int running = num_workers;
    std::vector<std::thread> threads;
    for (int w = 0; w < num_workers; ++w) {
      threads.emplace_back([&, w] {
        errors.Guard([&] { fn(w); });
        std::lock_guard<std::mutex> lock(mu);
        --running;
        cv.notify_all();
      });
    }
    {
      std::unique_lock<std::mutex> lock(mu);
      const auto period = std::chrono::duration<double>(config.train.progress_seconds);
      while (!cv.wait_for(lock, period, [&] { return running == 0; })) {
        if (report) {
          lock.unlock();
          report();
          lock.lock();
        }
      }
    }
    for (auto& t : threads) t.join();
  };

  Progress progress;
  const std::uint64_t epoch_bytes = TotalBytes(train_readers);
  double train_seconds = 0.0;
  std::uint64_t bad_rows = 0;
  EvalResult last_eval;
  last_eval.logloss = last_eval.auc = last_eval.rmse = std::numeric_limits<double>::quiet_NaN();
  auto shutdown = [&] {
    if (!errors.failed()) errors.Guard([&] { coord.ShutdownServers(); });
    for (auto& t : server_threads) t.join();
    server_threads.clear();
  };

  try {
    for (int epoch = 1; epoch <= config.train.epochs; ++epoch) {
      const std::uint64_t rows_before = progress.rows.load();
      const double loss_before = progress.loss_sum.load();
      const double t0 = out.Elapsed();
      auto epoch_stats = [&](double* fraction, std::uint64_t* rows, double* rate, double* loss) {
        std::uint64_t bytes = 0;
        for (const auto& r : train_readers) bytes += r->bytes_consumed();
        *fraction = epoch_bytes == 0 ? 1.0 : static_cast<double>(bytes) / epoch_bytes;
        *rows = progress.rows.load();
        const std::uint64_t epoch_rows = *rows - rows_before;
        *rate = epoch_rows / std::max(1e-9, out.Elapsed() - t0);
        *loss = epoch_rows == 0 ? 0.0 : (progress.loss_sum.load() - loss_before) / epoch_rows;
      };
      for (auto& r : train_readers) r->Rewind();
      run_workers([&](int w) { workers[w]->TrainEpoch(train_readers[w].get(), &progress); },
                  [&] {
                    double fraction, rate, loss;
                    std::uint64_t rows;
                    epoch_stats(&fraction, &rows, &rate, &loss);
                    out.Progress(epoch, config.train.epochs, fraction, rows, rate, loss);
                  });
      errors.RethrowIfFailed();
      train_seconds += out.Elapsed() - t0;
      double fraction, rate, loss;
      std::uint64_t rows;
      epoch_stats(&fraction, &rows, &rate, &loss);
      out.Progress(epoch, config.train.epochs, 1.0, rows, rate, loss);
      if (epoch == 1) {
        for (const auto& r : train_readers) bad_rows += r->bad_rows().count;
      }

      if (!test_readers.empty()) {
        std::vector<std::vector<float>> scores(num_workers), labels(num_workers);
        for (auto& r : test_readers) r->Rewind();
        run_workers(
            [&](int w) { workers[w]->Score(test_readers[w].get(), &scores[w], &labels[w]); },
            nullptr);
        errors.RethrowIfFailed();
        std::vector<float> all_scores, all_labels;
        for (int w = 0; w < num_workers; ++w) {
          all_scores.insert(all_scores.end(), scores[w].begin(), scores[w].end());
          all_labels.insert(all_labels.end(), labels[w].begin(), labels[w].end());
        }
        last_eval = Evaluate(config.model.loss, all_scores, all_labels);
        out.Evaluation(epoch, rows, rate, loss, last_eval);
        if (epoch == 1) {
          for (const auto& r : test_readers) bad_rows += r->bad_rows().count;
        }
      }
    }

    // Assemble the model from every server's shard, keys ascending.
    std::vector<Key> keys;
    std::vector<float> rows;
    coord.Dump([&](int, std::span<const Key> ks, std::span<const float> vs) {
      keys.insert(keys.end(), ks.begin(), ks.end());
      rows.insert(rows.end(), vs.begin(), vs.end());
    });
    shutdown();
    errors.RethrowIfFailed();

    const std::size_t width = 1 + k;
    std::vector<std::uint32_t> order(keys.size());
    std::iota(order.begin(), order.end(), 0u);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return keys[a] < keys[b]; });
    ModelMeta meta;
    meta.k = k;
    meta.loss = config.model.loss;
    meta.features = spec;
    meta.config_yaml = ConfigToYaml(config);
    std::vector<Key> sorted_keys;
    std::vector<float> sorted_rows;
    sorted_keys.reserve(keys.size());
    sorted_rows.reserve(rows.size());
    for (std::uint32_t i : order) {
      if (keys[i] == kBiasKey) {
        meta.bias = rows[i * width];
        continue;
      }
      sorted_keys.push_back(keys[i]);
      sorted_rows.insert(sorted_rows.end(), &rows[i * width], &rows[i * width] + width);
    }
    meta.num_keys = sorted_keys.size();
    ModelWriter writer(out.ModelPath(), meta);
    writer.Append(sorted_keys, sorted_rows);
    writer.Finish();

    std::size_t store_keys = 0, store_bytes = 0;
    for (const auto& s : stores) {
      store_keys += s->size();
      store_bytes += s->MemoryBytes();
    }
    TrainSummary summary;
    summary.rows_trained = progress.rows.load();
    summary.wall_s = out.Elapsed();
    summary.rows_per_s = summary.rows_trained / std::max(1e-9, train_seconds);
    summary.test_logloss = last_eval.logloss;
    summary.test_auc = last_eval.auc;
    summary.test_rmse = last_eval.rmse;
    summary.num_keys = meta.num_keys;
    summary.bad_rows = bad_rows;
    summary.model_path = out.ModelPath();

    JsonObject j;
    j.Add("rows_trained", summary.rows_trained)
        .Add("epochs", config.train.epochs)
        .Add("wall_s", summary.wall_s)
        .Add("train_s", train_seconds)
        .Add("rows_per_s", summary.rows_per_s)
        .Add("train_logloss", summary.rows_trained == 0
                                  ? 0.0
                                  : progress.loss_sum.load() / summary.rows_trained)
        .Add("test_logloss", summary.test_logloss);
    if (config.model.loss == Loss::kLogistic) {
      j.Add("test_auc", summary.test_auc);
    } else {
      j.Add("test_rmse", summary.test_rmse);
    }
    j.Add("test_rows", last_eval.rows)
        .Add("workers", num_workers)
        .Add("servers", num_servers)
        .Add("mode", "single-node")
        .Add("num_keys", summary.num_keys)
        .Add("server_bytes_per_key",
             store_keys == 0 ? 0.0 : static_cast<double>(store_bytes) / store_keys)
        .Add("bad_rows", summary.bad_rows)
        .Add("model", summary.model_path);
    out.Summary(j);
    char line[200];
    std::snprintf(line, sizeof(line), "server memory: %.1f bytes per key (%zu keys)",
                  store_keys == 0 ? 0.0 : static_cast<double>(store_bytes) / store_keys,
                  store_keys);
    Log(line);
    Log("done: " + std::to_string(summary.rows_trained) + " rows in " +
        std::to_string(summary.wall_s) + " s; model " + summary.model_path);
    return summary;
  } catch (const std::exception& e) {
    // Record this error (unless a thread failed first), stop every thread, report the first.
    errors.Fail(std::current_exception(), e.what());
    for (auto& t : server_threads) t.join();
    errors.RethrowIfFailed();
    throw;
  }
}

}  // namespace fmps
