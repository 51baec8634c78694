#include "worker/job/local_trainer.h"

#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/comm/collectives.h"
#include "common/comm/kv.h"
#include "common/comm/transport.h"
#include "common/data/reader.h"
#include "worker/job/job.h"
#include "worker/job/job_server.h"
#include "worker/job/run_output.h"

namespace fmps {
namespace {

// Collects the first error of any thread and aborts the transport and the collectives so
// nobody hangs.
class ErrorSink {
 public:
  ErrorSink(InProcHub* hub, InProcCollectiveGroup* group) : hub_(hub), group_(group) {}
  void Fail(std::exception_ptr e, const std::string& what) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_) first_ = e;
    }
    hub_->Abort(what);
    group_->Abort(what);
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

 private:
  InProcHub* hub_;
  InProcCollectiveGroup* group_;
  std::mutex mu_;
  std::exception_ptr first_;
};

// Every worker's readers, opened before any work so that a missing or malformed file fails
// first. After a mid-epoch resume, `resumed` reads what remained at the checkpoint.
struct WorkerReaders {
  std::vector<std::unique_ptr<ShardReader>> train, test, valid, resumed;
};

WorkerReaders OpenReaders(const JobInputs& inputs, const ResumePoint& start, int num_workers) {
  WorkerReaders r;
  for (int w = 0; w < num_workers; ++w) {
    r.train.push_back(
        std::make_unique<ShardReader>(inputs.spec, inputs.train_files, w, num_workers));
    SkipHeldOut(inputs, r.train.back().get());
    if (auto valid = OpenValidReader(inputs, w, num_workers)) r.valid.push_back(std::move(valid));
    if (!inputs.test_files.empty()) {
      r.test.push_back(
          std::make_unique<ShardReader>(inputs.spec, inputs.test_files, w, num_workers));
    }
    if (start.mid_epoch) {
      r.resumed.push_back(std::make_unique<ShardReader>(
          inputs.spec, inputs.train_files, ResumeRanges(*start.manifest, w, num_workers)));
      SkipHeldOut(inputs, r.resumed.back().get());
    }
  }
  return r;
}

template <typename T>
std::vector<RowSource*> Borrow(const std::vector<std::unique_ptr<T>>& owned) {
  std::vector<RowSource*> out;
  for (const auto& p : owned) out.push_back(p.get());
  return out;
}

// Worker w's sources (index = worker), borrowed; test, valid and resumed may be empty.
struct LocalSources {
  std::vector<RowSource*> train, test, valid, resumed;
};

// What one local job runs on: its inputs, where it starts and every worker's sources.
struct LocalJob {
  const Config& config;
  const JobInputs& inputs;
  const ResumePoint& start;
  std::uint64_t train_bytes = 0;
  LocalSources sources;
  // Where a fresh squared-loss job's bias starts (BiasStart); nullopt: at 0.
  std::optional<double> bias_start;
  RunOutputOptions output;  // output.dir's files, or memory
};

// The servers and workers of one single-node job, as threads; returns worker 0's summary.
TrainSummary RunLocalJob(const LocalJob& job) {
  const Config& config = job.config;
  const JobTopology topology{config.cluster.local_servers, config.cluster.local_workers};
  RunOutput out(config, job.output);
  Log("single-node mode: " + std::to_string(topology.num_servers) + " server thread(s), " +
      std::to_string(topology.num_workers) + " worker thread(s), output in " +
      (job.output.memory != nullptr ? std::string("memory") : out.dir()));

  // Endpoints: servers 0..S-1, workers S..S+W-1 (worker 0 coordinates).
  InProcHub hub(topology.num_servers + topology.num_workers);
  InProcCollectiveGroup group(topology.num_workers, JobProgressWidth());
  ErrorSink errors(&hub, &group);
  std::optional<Checkpointer> checkpointer;  // worker 0's; outlives the server threads
  std::vector<std::thread> threads;
  for (int s = 0; s < topology.num_servers; ++s) {
    threads.emplace_back([&, s, transport = hub.Connect(s)] {
      errors.Guard([&] {
        MakeJobServer(config, job.start, topology, s, transport.get(), job.bias_start)
            .server->Run();
      });
    });
  }
  std::optional<TrainSummary> summary;
  const KVClientOptions kv_options = MakeKVOptions(config, topology.num_servers);
  const LocalSources& src = job.sources;
  for (int w = 0; w < topology.num_workers; ++w) {
    threads.emplace_back([&, w, transport = hub.Connect(topology.num_servers + w)] {
      errors.Guard([&] {
        KVClient client(transport.get(), kv_options);
        ControlChannel control(transport.get(), ReplyTimeout(config));
        InProcCollectives collectives(&group, w);
        JobContext ctx;
        ctx.config = &config;
        ctx.inputs = &job.inputs;
        ctx.start = &job.start;
        ctx.train_bytes = job.train_bytes;
        ctx.num_servers = topology.num_servers;
        ctx.mode = "single-node";
        ctx.train = src.train[w];
        ctx.test = src.test.empty() ? nullptr : src.test[w];
        ctx.valid = src.valid.empty() ? nullptr : src.valid[w];
        ctx.resumed = src.resumed.empty() ? nullptr : src.resumed[w];
        ctx.out = w == 0 ? &out : nullptr;
        ctx.checkpointer = w == 0 ? &checkpointer : nullptr;
        std::optional<TrainSummary> s =
            RunWorkerJob(ctx, collectives, {.kv = &client, .control = &control});
        if (w == 0) summary = std::move(s);
      });
    });
  }
  for (auto& t : threads) t.join();
  errors.RethrowIfFailed();  // (then `checkpointer` removes what the job left incomplete)
  return *summary;
}

}  // namespace

TrainSummary TrainLocal(const Config& config, bool resume) {
  return TrainLocal(config, JobRequest{.resume = resume});
}

TrainSummary TrainLocal(const Config& config, const JobRequest& request) {
  const JobInputs inputs = PrepareInputs(config, request);
  CheckInitModel(config);
  const std::uint64_t train_bytes = TotalBytes(inputs.train_files);
  const ResumePoint start = FindResume(config, request.resume, train_bytes);
  const WorkerReaders readers = OpenReaders(inputs, start, config.cluster.local_workers);
  return RunLocalJob({.config = config,
                      .inputs = inputs,
                      .start = start,
                      .train_bytes = train_bytes,
                      .sources = {Borrow(readers.train), Borrow(readers.test),
                                  Borrow(readers.valid), Borrow(readers.resumed)},
                      .bias_start = BiasStart(config, inputs.train_files, inputs.held_out, start),
                      .output = {}});
}

TrainSummary TrainLocalFromSources(const Config& config, const MemorySources& sources,
                                   const RunOutputOptions& output) {
  if (!config.checkpoint.dir.empty()) {
    throw ConfigError(
        "checkpoint.dir: checkpoints and --resume need files; training from "
        "arrays in memory takes no checkpoint.dir");
  }
  const auto workers = static_cast<std::size_t>(config.cluster.local_workers);
  if (sources.train.size() != workers ||
      (!sources.test.empty() && sources.test.size() != workers) ||
      (!sources.valid.empty() && sources.valid.size() != workers)) {
    throw ConfigError("cluster.local_workers: " + std::to_string(workers) +
                      " worker(s) but sources for " + std::to_string(sources.train.size()));
  }
  if (config.train.early_stop.metric != EarlyStopMetric::kNone && sources.valid.empty()) {
    throw ConfigError(
        "train.early_stop.metric: early stopping needs validation rows (an eval set)");
  }
  CheckInitModel(config);
  JobInputs inputs;
  inputs.spec = sources.spec;
  const ResumePoint start;
  return RunLocalJob({.config = config,
                      .inputs = inputs,
                      .start = start,
                      .train_bytes = 0,
                      .sources = {sources.train, sources.test, sources.valid, {}},
                      .bias_start = config.model.loss == Loss::kSquared
                                        ? std::optional<double>(MeanLabelOf(sources.train))
                                        : std::nullopt,
                      .output = output});
}

}  // namespace fmps
