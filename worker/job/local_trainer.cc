#include "worker/job/local_trainer.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/comm/kv.h"
#include "common/base/log.h"
#include "common/data/reader.h"
#include "common/comm/transport.h"
#include "server/store/param_store.h"
#include "server/server.h"
#include "worker/job/checkpoint.h"
#include "worker/job/job.h"
#include "worker/job/run_output.h"
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

}  // namespace

TrainSummary TrainLocal(const Config& config, bool resume) {
  const int num_servers = config.cluster.local_servers;
  const int num_workers = config.cluster.local_workers;
  const JobInputs inputs = PrepareInputs(config);
  CheckInitModel(config);
  const std::uint64_t train_bytes = TotalBytes(inputs.train_files);
  const ResumePoint start = FindResume(config, resume, train_bytes);

  // Open every reader first so that a missing or malformed file fails before any work.
  std::vector<std::unique_ptr<ShardReader>> train_readers;
  std::vector<std::unique_ptr<ShardReader>> test_readers;
  for (int w = 0; w < num_workers; ++w) {
    train_readers.push_back(
        std::make_unique<ShardReader>(inputs.spec, inputs.train_files, w, num_workers));
    if (!inputs.test_files.empty()) {
      test_readers.push_back(
          std::make_unique<ShardReader>(inputs.spec, inputs.test_files, w, num_workers));
    }
  }
  // After a mid-epoch resume the first epoch reads only what remained at the checkpoint.
  std::vector<std::unique_ptr<ShardReader>> resume_readers;
  if (start.mid_epoch) {
    for (int w = 0; w < num_workers; ++w) {
      resume_readers.push_back(std::make_unique<ShardReader>(
          inputs.spec, inputs.train_files, ResumeRanges(*start.manifest, w, num_workers)));
    }
  }
  std::uint64_t epoch_bytes = 0;
  for (const auto& r : train_readers) epoch_bytes += r->bytes_in_shard();
  RunOutput out(config);
  Log("single-node mode: " + std::to_string(num_servers) + " server thread(s), " +
      std::to_string(num_workers) + " worker thread(s), output in " + out.dir());

  // Endpoints: servers 0..S-1, workers S..S+W-1, this coordinating thread S+W.
  InProcHub hub(num_servers + num_workers + 1);
  ErrorSink errors(&hub);

  std::vector<std::unique_ptr<ParamStore>> stores;
  std::vector<std::unique_ptr<Transport>> server_transports;
  std::vector<std::thread> server_threads;
  ServerOptions server_options;
  server_options.num_workers = num_workers;
  server_options.first_worker_endpoint = num_servers;
  server_options.consistency = config.train.consistency;
  server_options.checkpoint_dir = config.checkpoint.dir;
  server_options.clip_gradient = config.optimizer.clip_gradient;
  for (int s = 0; s < num_servers; ++s) {
    stores.push_back(
        std::make_unique<ParamStore>(MakeStoreOptions(config), MakeOptimizer(config.optimizer)));
    server_transports.push_back(hub.Connect(s));
  }
  if (start.manifest) {
    for (int s = 0; s < num_servers; ++s) {
      LoadCheckpoint(*start.manifest, s, num_servers, stores[s].get());
    }
  } else if (!config.train.init_model.empty()) {
    const Model init = Model::Load(config.train.init_model);
    std::uint64_t loaded = 0;
    for (int s = 0; s < num_servers; ++s)
      loaded += WarmStart(init, s, num_servers, stores[s].get());
    Log("warm start from " + config.train.init_model + ": " + std::to_string(loaded) + " keys");
  }
  for (int s = 0; s < num_servers; ++s) {
    server_threads.emplace_back([&, s] {
      errors.Guard([&] {
        ServerOptions options = server_options;
        options.index = s;
        Server server(stores[s].get(), server_transports[s].get(), options);
        server.Run();
      });
    });
  }

  const KVClientOptions kv_options = MakeKVOptions(config, num_servers);
  std::vector<std::unique_ptr<Transport>> worker_transports;
  std::vector<std::unique_ptr<KVClient>> clients;
  std::vector<std::unique_ptr<ControlChannel>> controls;
  std::vector<std::unique_ptr<Worker>> workers;
  std::vector<Progress> progress(num_workers);
  for (int w = 0; w < num_workers; ++w) {
    worker_transports.push_back(hub.Connect(num_servers + w));
    clients.push_back(std::make_unique<KVClient>(worker_transports.back().get(), kv_options));
    controls.push_back(
        std::make_unique<ControlChannel>(worker_transports.back().get(), ReplyTimeout(config)));
    workers.push_back(std::make_unique<Worker>(MakeWorkerOptions(config), clients.back().get()));
  }
  const int coord_endpoint = num_servers + num_workers;
  std::unique_ptr<Transport> coord_transport = hub.Connect(coord_endpoint);
  ControlChannel coord(coord_transport.get(), ReplyTimeout(config));
  Checkpointer ckpt(config, &coord, num_servers, num_workers, num_servers, /*own_worker=*/-1,
                    train_bytes, start.rows_base, start.loss_base);
  for (int w = 0; w < num_workers; ++w) {
    workers[w]->set_cut_handler([&, w](const std::vector<ByteRange>& remaining) {
      ReportCutReady(controls[w].get(), coord_endpoint, ReportOf(progress[w], false, remaining));
      AwaitCutResume(controls[w].get());
    });
  }

  // Runs fn(w) for every worker in its own thread and waits; meanwhile calls `report` every
  // train.progress_seconds (if set) and `tick` every 50 ms (if set). Errors of any of them
  // are recorded in `errors`; callers RethrowIfFailed() after it returns.
  auto run_workers = [&](const std::function<void(int)>& fn, const std::function<void()>& report,
                         const std::function<void()>& tick) {
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
      auto next_report = std::chrono::steady_clock::now() + period;
      while (!cv.wait_for(lock, std::chrono::milliseconds(50), [&] { return running == 0; })) {
        lock.unlock();
        // An error here (e.g. a checkpoint cut seeing the job aborted by a failed worker)
        // goes to `errors`, which stops the workers; the threads are joined before the caller
        // rethrows it (a std::thread must never be destroyed unjoined).
        if (report && std::chrono::steady_clock::now() >= next_report) {
          errors.Guard(report);
          next_report = std::chrono::steady_clock::now() + period;
        }
        if (tick && !errors.failed()) errors.Guard(tick);
        lock.lock();
      }
    }
    for (auto& t : threads) t.join();
  };
  auto total_rows = [&] {
    std::uint64_t n = 0;
    for (const auto& p : progress) n += p.rows.load();
    return n;
  };
  auto total_loss = [&] {
    double l = 0;
    for (const auto& p : progress) l += p.loss_sum.load();
    return l;
  };

  JobTotals totals;
  totals.workers = num_workers;
  totals.servers = num_servers;
  totals.mode = "single-node";
  totals.model_path = out.ModelPath();
  totals.last_eval.logloss = totals.last_eval.auc = totals.last_eval.rmse =
      std::numeric_limits<double>::quiet_NaN();
  try {
    for (int epoch = start.first_epoch; epoch <= config.train.epochs; ++epoch) {
      const bool resumed_epoch = start.mid_epoch && epoch == start.first_epoch;
      auto& readers = resumed_epoch ? resume_readers : train_readers;
      const std::uint64_t rows_before = total_rows();
      const double loss_before = total_loss();
      const double t0 = out.Elapsed();
      auto report = [&](bool end) {
        ProgressReport r;
        r.epoch = epoch;
        r.epochs = config.train.epochs;
        std::uint64_t bytes = 0;
        for (const auto& p : progress) {
          bytes += p.bytes.load();
          r.workers.push_back(p.kv());
        }
        r.fraction = end || epoch_bytes == 0 ? 1.0 : static_cast<double>(bytes) / epoch_bytes;
        r.rows = total_rows();
        const std::uint64_t epoch_rows = r.rows - rows_before;
        r.rows_per_s = epoch_rows / std::max(1e-9, out.Elapsed() - t0);
        r.train_loss = epoch_rows == 0 ? 0.0 : (total_loss() - loss_before) / epoch_rows;
        out.Progress(r);
      };
      for (auto& r : readers) r->Rewind();
      for (auto& p : progress) p.bytes = 0;
      run_workers(
          [&](int w) {
            workers[w]->TrainEpoch(readers[w].get(), &progress[w]);
            if (ckpt.enabled()) {
              ReportShardDone(controls[w].get(), coord_endpoint, epoch,
                              ReportOf(progress[w], true, {}));
            }
          },
          [&] { report(false); },
          [&] {
            ckpt.Poll();
            if (ckpt.Due()) {
              ckpt.Request();
              ckpt.Cut(epoch, false, std::nullopt);
            }
          });
      errors.RethrowIfFailed();
      if (!resumed_epoch) {
        std::uint64_t bad = 0;
        const BadRowStats* sample = &readers.front()->bad_rows();
        for (const auto& r : readers) {
          bad += r->bad_rows().count;
          if (sample->first.empty()) sample = &r->bad_rows();
        }
        CheckEpochTrainedRows(total_rows() - rows_before, bad, *sample);
      }
      totals.train_seconds += out.Elapsed() - t0;
      report(true);
      if (ckpt.enabled()) {
        ckpt.CollectShardDone(epoch);
        ckpt.Cut(epoch, /*epoch_done=*/true, std::nullopt);
      }
      if (epoch == 1) {
        for (const auto& r : train_readers) totals.bad_rows += r->bad_rows().count;
      }

      if (!test_readers.empty()) {
        std::vector<std::vector<float>> scores(num_workers), labels(num_workers);
        for (auto& r : test_readers) r->Rewind();
        run_workers(
            [&](int w) { workers[w]->Score(test_readers[w].get(), &scores[w], &labels[w]); },
            nullptr, nullptr);
        errors.RethrowIfFailed();
        std::vector<float> all_scores, all_labels;
        for (int w = 0; w < num_workers; ++w) {
          all_scores.insert(all_scores.end(), scores[w].begin(), scores[w].end());
          all_labels.insert(all_labels.end(), labels[w].begin(), labels[w].end());
        }
        totals.last_eval = Evaluate(config.model.loss, all_scores, all_labels);
        const std::uint64_t rows = total_rows() - rows_before;
        out.Evaluation(epoch, total_rows(), rows / std::max(1e-9, out.Elapsed() - t0),
                       rows == 0 ? 0.0 : (total_loss() - loss_before) / rows, totals.last_eval);
        if (epoch == 1) {
          for (const auto& r : test_readers) totals.bad_rows += r->bad_rows().count;
        }
      }
    }

    ckpt.Drain();
    const SavedModel saved =
        SaveModelFromServers(&coord, num_servers, config, inputs.spec, out.ModelPath());
    totals.server_stats = CollectServerStats(&coord, num_servers);
    for (const auto& c : clients) AddTraffic(c->traffic(), &totals.worker_traffic);
    errors.Guard([&] { ShutdownServers(&coord, num_servers); });
    for (auto& t : server_threads) t.join();
    server_threads.clear();
    errors.RethrowIfFailed();

    totals.rows_trained = static_cast<std::uint64_t>(start.rows_base) + total_rows();
    totals.loss_sum = start.loss_base + total_loss();
    totals.wall_seconds = out.Elapsed();
    out.Summary(MakeSummary(config, totals, saved));
    LogJobEnd(totals, saved);

    TrainSummary summary;
    summary.rows_trained = totals.rows_trained;
    summary.wall_s = totals.wall_seconds;
    summary.rows_per_s = totals.rows_trained / std::max(1e-9, totals.train_seconds);
    summary.test_logloss = totals.last_eval.logloss;
    summary.test_auc = totals.last_eval.auc;
    summary.test_rmse = totals.last_eval.rmse;
    summary.num_keys = saved.num_keys;
    summary.bad_rows = totals.bad_rows;
    summary.model_path = totals.model_path;
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
