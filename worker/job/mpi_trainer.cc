#include "worker/job/mpi_trainer.h"

#include <mpi.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <limits>
#include <memory>
#include <optional>

#include "common/base/error.h"
#include "common/comm/kv.h"
#include "common/base/log.h"
#include "common/comm/mpi/mpi_transport.h"
#include "common/data/reader.h"
#include "server/store/param_store.h"
#include "server/server.h"
#include "worker/job/checkpoint.h"
#include "worker/job/job.h"
#include "worker/job/run_output.h"
#include "worker/worker.h"

namespace fmps {
namespace {

using Clock = std::chrono::steady_clock;

// One worker's counters as exchanged between worker ranks.
struct Counters {
  double rows = 0, loss = 0, bytes = 0, pulls = 0, pushes = 0, pull_s = 0, push_s = 0;
  static constexpr int kSize = 7;

  static Counters From(const Progress& p) {
    const KVStats kv = p.kv();
    return {static_cast<double>(p.rows.load()),
            p.loss_sum.load(),
            static_cast<double>(p.bytes.load()),
            static_cast<double>(kv.pulls),
            static_cast<double>(kv.pushes),
            kv.pull_seconds,
            kv.push_seconds};
  }
  KVStats kv() const {
    return {static_cast<std::uint64_t>(pulls), static_cast<std::uint64_t>(pushes), pull_s, push_s};
  }
  double* data() { return &rows; }
};
static_assert(sizeof(Counters) == Counters::kSize * sizeof(double));

// Live progress from the workers to the coordinator (worker rank 0 of `comm`) during an
// epoch: each worker sends its cumulative counters every period with a non-blocking send;
// the coordinator drains them between batches. Finish() (collective) accounts for every
// message so none is left in flight at the epoch's end.
class ProgressChannel {
 public:
  static constexpr int kTag = 0x50;

  ProgressChannel(MPI_Comm comm, int num_workers) : comm_(comm), latest_(num_workers) {
    MPI_Comm_rank(comm_, &rank_);
    received_.assign(num_workers, 0);
  }

  void Send(const Counters& c) {
    if (rank_ == 0) {
      latest_[0] = c;
      return;
    }
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    buffer_ = c;
    MPI_Isend(buffer_.data(), Counters::kSize, MPI_DOUBLE, 0, kTag, comm_, &request_);
    ++sent_;
  }

  // Coordinator: receives whatever progress messages have arrived.
  void Drain() {
    int flag = 1;
    while (true) {
      MPI_Status status;
      MPI_Iprobe(MPI_ANY_SOURCE, kTag, comm_, &flag, &status);
      if (!flag) return;
      ReceiveFrom(status.MPI_SOURCE);
    }
  }

  // Collective over the workers: completes every progress message of this epoch.
  void Finish() {
    if (request_ != MPI_REQUEST_NULL) MPI_Wait(&request_, MPI_STATUS_IGNORE);
    std::vector<long long> sent(latest_.size());
    long long mine = sent_;
    MPI_Gather(&mine, 1, MPI_LONG_LONG, sent.data(), 1, MPI_LONG_LONG, 0, comm_);
    if (rank_ == 0) {
      for (std::size_t w = 1; w < sent.size(); ++w) {
        while (received_[w] < sent[w]) ReceiveFrom(static_cast<int>(w));
      }
    }
  }

  const std::vector<Counters>& latest() const { return latest_; }

 private:
  void ReceiveFrom(int source) {
    Counters c;
    MPI_Recv(c.data(), Counters::kSize, MPI_DOUBLE, source, kTag, comm_, MPI_STATUS_IGNORE);
    latest_[source] = c;
    ++received_[source];
  }

  MPI_Comm comm_;
  int rank_ = 0;
  MPI_Request request_ = MPI_REQUEST_NULL;
  Counters buffer_;
  long long sent_ = 0;
  std::vector<long long> received_;
  std::vector<Counters> latest_;
};

// Everything set up in the first phase, before any rank does real work.
struct Setup {
  Config config;
  std::uint64_t train_bytes = 0;
  ResumePoint start;
  JobInputs inputs;
  std::unique_ptr<ShardReader> train;
  std::unique_ptr<ShardReader> test;
  std::unique_ptr<RunOutput> out;
};

std::string RoleName(int rank, int servers) {
  return rank < servers ? "server " + std::to_string(rank)
                        : "worker " + std::to_string(rank - servers);
}

// Training loop of one worker rank (the coordinator when its index is 0).
void RunWorker(Setup& s, MPI_Comm workers, int num_workers, MpiTransport* transport,
               int num_servers) {
  const Config& config = s.config;
  int index = 0;
  MPI_Comm_rank(workers, &index);
  const bool coordinator = index == 0;
  KVClient client(transport, MakeKVOptions(config, num_servers));
  ControlChannel control(transport, ReplyTimeout(config));
  Worker worker(MakeWorkerOptions(config), &client);
  Progress progress;
  ProgressChannel channel(workers, num_workers);
  const int coordinator_endpoint = num_servers;  // worker 0
  int epoch = s.start.first_epoch;
  std::optional<Checkpointer> ckpt;
  if (coordinator) {
    ckpt.emplace(config, &control, num_servers, num_workers, num_servers, /*own_worker=*/0,
                 s.train_bytes, s.start.rows_base, s.start.loss_base);
  }
  const bool checkpoints = !config.checkpoint.dir.empty();
  worker.set_cut_handler([&](const std::vector<ByteRange>& remaining) {
    if (coordinator) {
      ckpt->Cut(epoch, false, ReportOf(progress, false, remaining));
    } else {
      ReportCutReady(&control, coordinator_endpoint, ReportOf(progress, false, remaining));
      AwaitCutResume(&control);
    }
  });
  std::unique_ptr<ShardReader> resume_reader;
  if (s.start.mid_epoch) {
    resume_reader = std::make_unique<ShardReader>(
        s.inputs.spec, s.inputs.train_files, ResumeRanges(*s.start.manifest, index, num_workers));
  }

  std::uint64_t epoch_bytes = s.train->bytes_in_shard();
  MPI_Allreduce(MPI_IN_PLACE, &epoch_bytes, 1, MPI_UINT64_T, MPI_SUM, workers);
  const auto period = std::chrono::duration<double>(config.train.progress_seconds);
  const Clock::time_point start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - start).count(); };

  JobTotals totals;
  totals.workers = num_workers;
  totals.servers = num_servers;
  totals.mode = "mpi";
  totals.last_eval.logloss = totals.last_eval.auc = totals.last_eval.rmse =
      std::numeric_limits<double>::quiet_NaN();
  if (coordinator) totals.model_path = s.out->ModelPath();
  Counters job_before;  // job-wide sums at the start of the epoch (coordinator)

  for (; epoch <= config.train.epochs; ++epoch) {
    const double t0 = elapsed();
    ShardReader* reader =
        s.start.mid_epoch && epoch == s.start.first_epoch ? resume_reader.get() : s.train.get();
    auto report = [&](const std::vector<Counters>& all, bool end) {
      ProgressReport r;
      r.epoch = epoch;
      r.epochs = config.train.epochs;
      Counters sum;
      for (const Counters& c : all) {
        sum.rows += c.rows;
        sum.loss += c.loss;
        sum.bytes += c.bytes;
        r.workers.push_back(c.kv());
      }
      r.fraction = end || epoch_bytes == 0 ? 1.0 : sum.bytes / epoch_bytes;
      r.rows = static_cast<std::uint64_t>(sum.rows);
      const double epoch_rows = sum.rows - job_before.rows;
      r.rows_per_s = epoch_rows / std::max(1e-9, elapsed() - t0);
      r.train_loss = epoch_rows == 0 ? 0.0 : (sum.loss - job_before.loss) / epoch_rows;
      s.out->Progress(r);
      return sum;
    };
    Clock::time_point next = Clock::now() + std::chrono::duration_cast<Clock::duration>(period);
    auto hook = [&] {
      if (coordinator) {
        channel.Drain();
        ckpt->Poll();
        if (ckpt->Due()) ckpt->Request();
      }
      if (Clock::now() < next) return;
      next = Clock::now() + std::chrono::duration_cast<Clock::duration>(period);
      channel.Send(Counters::From(progress));
      if (coordinator) report(channel.latest(), false);
    };

    reader->Rewind();
    progress.bytes = 0;
    worker.TrainEpoch(reader, &progress, hook);
    if (checkpoints && !coordinator) {
      ReportShardDone(&control, coordinator_endpoint, epoch, ReportOf(progress, true, {}));
    }
    if (coordinator && checkpoints) {
      // Settle a cut requested too late for this worker to see, then checkpoint the epoch.
      if (ckpt->requested()) ckpt->Cut(epoch, false, ReportOf(progress, true, {}));
      ckpt->CollectShardDone(epoch);
      ckpt->Cut(epoch, /*epoch_done=*/true, ReportOf(progress, true, {}));
    }
    channel.Finish();
    // Exact end-of-epoch counters of every worker.
    Counters mine = Counters::From(progress);
    std::vector<Counters> all(num_workers);
    MPI_Gather(mine.data(), Counters::kSize, MPI_DOUBLE, all[0].data(), Counters::kSize, MPI_DOUBLE,
               0, workers);
    totals.train_seconds += elapsed() - t0;
    Counters epoch_sum;
    if (coordinator) epoch_sum = report(all, true);
    if (epoch == 1) {
      std::uint64_t bad = s.train->bad_rows().count, sum = 0;
      MPI_Reduce(&bad, &sum, 1, MPI_UINT64_T, MPI_SUM, 0, workers);
      totals.bad_rows += sum;
    }
    if (coordinator && !(s.start.mid_epoch && epoch == s.start.first_epoch)) {
      CheckEpochTrainedRows(static_cast<std::uint64_t>(epoch_sum.rows - job_before.rows),
                            totals.bad_rows, s.train->bad_rows());
    }

    if (s.test) {
      std::vector<float> scores, labels;
      s.test->Rewind();
      worker.Score(s.test.get(), &scores, &labels);
      int n = static_cast<int>(scores.size());
      std::vector<int> counts(num_workers), displs(num_workers);
      MPI_Gather(&n, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, workers);
      std::vector<float> all_scores, all_labels;
      if (coordinator) {
        long long total = 0;
        for (int w = 0; w < num_workers; ++w) {
          displs[w] = static_cast<int>(total);
          total += counts[w];
        }
        if (total > std::numeric_limits<int>::max()) {
          throw Error("test set too large to gather for exact AUC (" + std::to_string(total) +
                      " rows > 2^31)");
        }
        all_scores.resize(total);
        all_labels.resize(total);
      }
      MPI_Gatherv(scores.data(), n, MPI_FLOAT, all_scores.data(), counts.data(), displs.data(),
                  MPI_FLOAT, 0, workers);
      MPI_Gatherv(labels.data(), n, MPI_FLOAT, all_labels.data(), counts.data(), displs.data(),
                  MPI_FLOAT, 0, workers);
      if (epoch == 1) {
        std::uint64_t bad = s.test->bad_rows().count, sum = 0;
        MPI_Reduce(&bad, &sum, 1, MPI_UINT64_T, MPI_SUM, 0, workers);
        totals.bad_rows += sum;
      }
      if (coordinator) {
        totals.last_eval = Evaluate(config.model.loss, all_scores, all_labels);
        const double epoch_rows = epoch_sum.rows - job_before.rows;
        s.out->Evaluation(epoch, static_cast<std::uint64_t>(epoch_sum.rows),
                          epoch_rows / std::max(1e-9, elapsed() - t0),
                          epoch_rows == 0 ? 0.0 : (epoch_sum.loss - job_before.loss) / epoch_rows,
                          totals.last_eval);
      }
    }
    job_before = epoch_sum;
  }

  // Push accounting: every worker's traffic, summed (in-flight peak: the largest).
  const KVTraffic& mine = client.traffic();
  std::array<std::uint64_t, 2> sent = {mine.push_messages, mine.push_keys};
  std::uint64_t peak = mine.max_in_flight;
  MPI_Reduce(coordinator ? MPI_IN_PLACE : sent.data(), sent.data(), 2, MPI_UINT64_T, MPI_SUM, 0,
             workers);
  MPI_Reduce(coordinator ? MPI_IN_PLACE : &peak, &peak, 1, MPI_UINT64_T, MPI_MAX, 0, workers);
  totals.worker_traffic = {sent[0], sent[1], peak};

  if (coordinator) {
    ckpt->Drain();
    const SavedModel saved =
        SaveModelFromServers(&control, num_servers, config, s.inputs.spec, s.out->ModelPath());
    totals.server_stats = CollectServerStats(&control, num_servers);
    ShutdownServers(&control, num_servers);
    totals.rows_trained = static_cast<std::uint64_t>(s.start.rows_base + job_before.rows);
    totals.loss_sum = s.start.loss_base + job_before.loss;
    totals.wall_seconds = s.out->Elapsed();
    s.out->Summary(MakeSummary(config, totals, saved));
    LogJobEnd(totals, saved);
    std::printf("test_logloss %.6f test_auc %.6f rows %llu model %s\n", totals.last_eval.logloss,
                totals.last_eval.auc, static_cast<unsigned long long>(totals.rows_trained),
                totals.model_path.c_str());
  }
}

}  // namespace

int TrainMpi(const std::string& config_path, const std::vector<std::string>& overrides,
             bool resume) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);

  // Phase 1: every rank validates what it will need; the lowest failing rank reports.
  Setup s;
  std::string error;
  int code = 0;
  int servers = 1;
  try {
    s.config = LoadConfig(config_path, overrides);
    servers = s.config.cluster.servers;
    CheckInitModel(s.config);
    if (servers >= size) {
      throw ConfigError("cluster.servers: " + std::to_string(servers) +
                        " server rank(s) leave no worker rank in an MPI world of " +
                        std::to_string(size) + " ranks; start at least " +
                        std::to_string(servers + 1) + " ranks or lower cluster.servers");
    }
    s.train_bytes = TotalBytes(ExpandPaths(s.config.data.train, "data.train"));
    // Rank 0 chooses the checkpoint (verifying shards); the others read its manifest below.
    if (rank == 0) s.start = FindResume(s.config, resume, s.train_bytes);
    if (rank >= servers) {
      const int w = rank - servers, workers = size - servers;
      s.inputs = PrepareInputs(s.config);
      s.train = std::make_unique<ShardReader>(s.inputs.spec, s.inputs.train_files, w, workers);
      if (!s.inputs.test_files.empty()) {
        s.test = std::make_unique<ShardReader>(s.inputs.spec, s.inputs.test_files, w, workers);
      }
      if (w == 0) s.out = std::make_unique<RunOutput>(s.config);
    }
  } catch (const ConfigError& e) {
    error = e.what();
    code = 2;
  } catch (const std::exception& e) {
    error = e.what();
    code = 1;
  }
  int first_bad = error.empty() ? size : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_bad < size) {
    MPI_Bcast(&code, 1, MPI_INT, first_bad, MPI_COMM_WORLD);
    if (rank == first_bad) std::fprintf(stderr, "fmps: error: %s\n", error.c_str());
    return code;
  }

  // Every rank learns the checkpoint rank 0 chose (0: none).
  unsigned long long seq = s.start.manifest ? s.start.manifest->seq : 0;
  MPI_Bcast(&seq, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);

  // Phase 2: the job. Any error from here on aborts every rank.
  const bool is_server = rank < servers;
  MPI_Comm workers = MPI_COMM_NULL;  // worker ranks only: collectives and progress
  MPI_Comm kv = MPI_COMM_NULL;       // every rank: the KV transport's private channel
  MPI_Comm_split(MPI_COMM_WORLD, is_server ? 0 : 1, rank, &workers);
  MPI_Comm_dup(MPI_COMM_WORLD, &kv);
  try {
    if (seq != 0 && rank != 0) s.start = ResumeFrom(LoadManifest(s.config.checkpoint.dir, seq));
    std::optional<MpiTransport> transport(std::in_place, kv);
    if (is_server) {
      ParamStore store(MakeStoreOptions(s.config), MakeOptimizer(s.config.optimizer));
      if (s.start.manifest) {
        LoadCheckpoint(*s.start.manifest, rank, servers, &store);
      } else if (!s.config.train.init_model.empty()) {
        const std::uint64_t loaded =
            WarmStart(Model::Load(s.config.train.init_model), rank, servers, &store);
        Log("server " + std::to_string(rank) + ": warm start with " + std::to_string(loaded) +
            " keys from " + s.config.train.init_model);
      }
      ServerOptions options;
      options.num_workers = size - servers;
      options.first_worker_endpoint = servers;
      options.consistency = s.config.train.consistency;
      options.index = rank;
      options.checkpoint_dir = s.config.checkpoint.dir;
      options.clip_gradient = s.config.optimizer.clip_gradient;
      Server server(&store, &*transport, options);
      if (rank == 0) {
        Log("MPI mode: " + std::to_string(servers) + " server rank(s), " +
            std::to_string(size - servers) + " worker rank(s)");
      }
      server.Run();
    } else {
      RunWorker(s, workers, size - servers, &*transport, servers);
    }
    transport->Flush(ReplyTimeout(s.config));
    transport.reset();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmps: error: rank %d (%s): %s\n", rank, RoleName(rank, servers).c_str(),
                 e.what());
    MpiAbort(1);
  }
  MPI_Comm_free(&workers);
  MPI_Comm_free(&kv);
  return 0;
}

}  // namespace fmps
