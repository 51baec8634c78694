#include "worker/job/mpi_trainer.h"

#include <mpi.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/base/error.h"
#include "common/base/log.h"
#include "common/comm/kv.h"
#include "common/comm/mpi/mpi_collectives.h"
#include "common/comm/mpi/mpi_transport.h"
#include "common/comm/mpi/peer_probe.h"
#include "common/data/reader.h"
#include "worker/job/checkpoint.h"
#include "worker/job/interrupt.h"
#include "worker/job/job.h"
#include "worker/job/job_server.h"
#include "worker/job/run_output.h"
#include "worker/job/training_job.h"

namespace fmps {
namespace {

// Everything set up in the first phase, before any rank does real work.
struct Setup {
  Config config;
  std::uint64_t train_bytes = 0;
  ResumePoint start;
  std::optional<double> bias_start;  // BiasStart, computed by rank 0 and broadcast
  JobInputs inputs;
  std::unique_ptr<ShardReader> train;
  std::unique_ptr<ShardReader> test;
  std::unique_ptr<ShardReader> valid;
  std::unique_ptr<RunOutput> out;
  JobRequest request;
  std::optional<TrainSummary> summary;  // the root worker's, after the job
};

std::string RoleName(int rank, int servers) {
  return rank < servers ? "server " + std::to_string(rank)
                        : "worker " + std::to_string(rank - servers);
}

// One worker rank's part of the job (the coordinator when it is worker 0).
void RunWorker(Setup& s, MPI_Comm workers, MpiTransport* transport, int num_servers) {
  MpiCollectives collectives(workers, JobProgressWidth(), ReplyTimeout(s.config));
  const int index = collectives.rank();
  std::unique_ptr<ShardReader> resumed;
  if (s.start.mid_epoch) {
    resumed =
        std::make_unique<ShardReader>(s.inputs.spec, s.inputs.train_files,
                                      ResumeRanges(*s.start.manifest, index, collectives.size()));
    SkipHeldOut(s.inputs, resumed.get());
  }
  KVClient client(transport, MakeKVOptions(s.config, num_servers));
  ControlChannel control(transport, ReplyTimeout(s.config));
  std::optional<Checkpointer> checkpointer;
  JobContext ctx;
  ctx.config = &s.config;
  ctx.inputs = &s.inputs;
  ctx.start = &s.start;
  ctx.train_bytes = s.train_bytes;
  ctx.num_servers = num_servers;
  ctx.mode = "mpi";
  ctx.train = s.train.get();
  ctx.test = s.test.get();
  ctx.valid = s.valid.get();
  ctx.resumed = resumed.get();
  ctx.out = s.out.get();
  ctx.checkpointer = &checkpointer;
  std::optional<TrainSummary> summary;
  try {
    summary = RunWorkerJob(ctx, collectives, {.kv = &client, .control = &control});
  } catch (const Interrupted& e) {
    // Only the root worker acts on SIGINT/SIGTERM (interrupt.h); the servers and the other
    // workers keep going until this aborts them all, after the final checkpoint if any.
    // Aborting here, before the checkpointer is destroyed, leaves a cut that timed out to
    // the servers still writing it (a directory without MANIFEST, which --resume skips).
    // mpirun then exits with 128 + signal (after its own MPI_ABORT banner).
    std::fprintf(stderr, "fmps: %s\n", e.what());
    MpiAbort(e.exit_status());
  }
  s.summary = std::move(summary);
}

// Phase 1 on one rank: loads and checks what this rank will need. Throws on a problem.
void PrepareRank(const std::string& config_path, const std::vector<std::string>& overrides,
                 int rank, int size, Setup* s) {
  s->config = s->request.fold >= 0 ? LoadConfigForFolds(config_path, overrides)
                                   : LoadConfig(config_path, overrides);
  const int servers = s->config.cluster.servers;
  CheckInitModel(s->config);
  if (servers >= size) {
    throw ConfigError("cluster.servers: " + std::to_string(servers) +
                      " server rank(s) leave no worker rank in an MPI world of " +
                      std::to_string(size) + " ranks; start at least " +
                      std::to_string(servers + 1) + " ranks or lower cluster.servers");
  }
  const std::vector<std::string> train_files = ExpandPaths(s->config.data.train, "data.train");
  s->train_bytes = TotalBytes(train_files);
  // Rank 0 chooses the checkpoint (verifying shards; the others read its manifest later) and
  // computes where the bias starts (broadcast with it).
  if (rank == 0) {
    s->start = FindResume(s->config, s->request.resume, s->train_bytes);
    s->bias_start = BiasStart(s->config, train_files, HeldOutFor(s->config, s->request), s->start);
  }
  if (rank < servers) return;
  const int w = rank - servers, workers = size - servers;
  s->inputs = PrepareInputs(s->config, s->request);
  s->train = std::make_unique<ShardReader>(s->inputs.spec, s->inputs.train_files, w, workers);
  SkipHeldOut(s->inputs, s->train.get());
  s->valid = OpenValidReader(s->inputs, w, workers);
  if (!s->inputs.test_files.empty()) {
    s->test = std::make_unique<ShardReader>(s->inputs.spec, s->inputs.test_files, w, workers);
  }
  if (w == 0) s->out = std::make_unique<RunOutput>(s->config);
}

// Phase 1 on every rank: each validates; the lowest failing rank reports its error once.
// Returns the status every rank then exits with (0: all ranks are ready).
int ValidateOnEveryRank(const std::string& config_path, const std::vector<std::string>& overrides,
                        int rank, int size, Setup* s) {
  std::string error;
  int code = 0;
  try {
    PrepareRank(config_path, overrides, rank, size, s);
  } catch (const ConfigError& e) {
    error = e.what();
    code = 2;
  } catch (const std::exception& e) {
    error = e.what();
    code = 1;
  }
  int first_bad = error.empty() ? size : rank;
  MPI_Allreduce(MPI_IN_PLACE, &first_bad, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (first_bad == size) return 0;
  MPI_Bcast(&code, 1, MPI_INT, first_bad, MPI_COMM_WORLD);
  if (rank == first_bad) std::fprintf(stderr, "fmps: error: %s\n", error.c_str());
  return code;
}

// Phase 2 on one rank: its server or its worker, over the KV channel `kv` (every rank) and
// the worker ranks' communicator `workers`. Returns the wire bytes it sent and received.
std::array<unsigned long long, 2> RunRank(Setup& s, int rank, int size, MPI_Comm kv,
                                          MPI_Comm workers) {
  const int servers = s.config.cluster.servers;
  std::optional<MpiTransport> transport(std::in_place, kv);
  if (rank < servers) {
    const JobTopology topology{servers, size - servers};
    JobServer server = MakeJobServer(s.config, s.start, topology, rank, &*transport, s.bias_start);
    if (rank == 0) {
      Log("MPI mode: " + std::to_string(servers) + " server rank(s), " +
          std::to_string(size - servers) + " worker rank(s)");
    }
    server.server->Run();
  } else {
    RunWorker(s, workers, &*transport, servers);
  }
  transport->Flush(ReplyTimeout(s.config));
  return {transport->bytes_sent(), transport->bytes_received()};
}

// Gathers every rank's wire bytes to the root worker (world rank `servers`), which adds them
// to summary.json as "wire_bytes_sent" and "wire_bytes_received", arrays indexed by rank.
void AddWireBytes(const Setup& s, int rank, int size, std::array<unsigned long long, 2> mine) {
  const int root = s.config.cluster.servers;
  std::vector<unsigned long long> all(rank == root ? 2 * static_cast<std::size_t>(size) : 0);
  MPI_Gather(mine.data(), 2, MPI_UNSIGNED_LONG_LONG, all.data(), 2, MPI_UNSIGNED_LONG_LONG, root,
             MPI_COMM_WORLD);
  if (rank != root || !s.out) return;
  const std::string path = s.out->dir() + "/summary.json";
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::size_t end = text.rfind('}');
  if (end == std::string::npos) return;  // no summary (an interrupted run)
  std::string sent, received;
  for (int r = 0; r < size; ++r) {
    if (r > 0) {
      sent += ',';
      received += ',';
    }
    sent += std::to_string(all[2 * r]);
    received += std::to_string(all[2 * r + 1]);
  }
  text.erase(end);
  WriteFileAtomic(path, text + ",\"wire_bytes_sent\":[" + sent + "],\"wire_bytes_received\":[" +
                            received + "]}\n");
}

// After a timeout: probes every rank and, when some do not answer, returns the one line
// naming them and their hosts (empty when all answer). The rank that waited longest for a
// peer is not known, so every failing worker rank may report; the lowest answering worker
// reports at once and the others wait 3 s each (more than Open MPI takes to kill them after
// the first report's MPI_Abort: SIGTERM, which fmps only notes, then SIGKILL after
// odls_base_sigkill_timeout, 1 s), so the user sees one line.
std::string ReportUnreachable(PeerProbe& probe, const std::vector<std::string>& hosts, int rank,
                              int servers, const std::string& error) {
  const std::vector<int> gone = probe.Unanswered(std::chrono::milliseconds(1000));
  if (gone.empty()) return "";
  std::string names;
  for (int r : gone) {
    names += (names.empty() ? "" : ", ") + std::string("rank ") + std::to_string(r) + " (" +
             RoleName(r, servers) + ") on host " + hosts[r];
  }
  int earlier_reporters = 0;  // answering worker ranks below this one
  for (int r = servers; r < rank; ++r) {
    earlier_reporters += std::find(gone.begin(), gone.end(), r) == gone.end() ? 1 : 0;
  }
  if (rank >= servers) std::this_thread::sleep_for(std::chrono::seconds(3) * earlier_reporters);
  return names + (gone.size() == 1 ? " does" : " do") + " not answer (probed for 1 s after rank " +
         std::to_string(rank) + " (" + RoleName(rank, servers) + ") failed: " + error + ")";
}

}  // namespace

int TrainMpi(const std::string& config_path, const std::vector<std::string>& overrides,
             bool resume) {
  std::optional<TrainSummary> summary;
  const int code = TrainMpi(config_path, overrides, JobRequest{.resume = resume}, &summary);
  if (summary) std::printf("%s\n", FinalLine(summary->loss, *summary).c_str());
  return code;
}

int TrainMpi(const std::string& config_path, const std::vector<std::string>& overrides,
             const JobRequest& request, std::optional<TrainSummary>* summary) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  Setup s;
  s.request = request;
  if (const int code = ValidateOnEveryRank(config_path, overrides, rank, size, &s)) {
    return code;
  }
  // Every rank learns the checkpoint rank 0 chose (0: none).
  unsigned long long seq = s.start.manifest ? s.start.manifest->seq : 0;
  MPI_Bcast(&seq, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
  // ... and where the bias starts (NaN: it is not set).
  double bias_start = s.bias_start.value_or(std::nan(""));
  MPI_Bcast(&bias_start, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  if (!std::isnan(bias_start)) s.bias_start = bias_start;

  // Phase 2: the job. Any error from here on aborts every rank.
  const int servers = s.config.cluster.servers;
  MPI_Comm workers = MPI_COMM_NULL;  // worker ranks only: their collectives
  MPI_Comm kv = MPI_COMM_NULL;       // every rank: the KV transport's private channel
  MPI_Comm_split(MPI_COMM_WORLD, rank < servers ? 0 : 1, rank, &workers);
  MPI_Comm_dup(MPI_COMM_WORLD, &kv);
  PeerProbe probe(MPI_COMM_WORLD);
  const std::vector<std::string> hosts = GatherHostNames(MPI_COMM_WORLD);
  try {
    if (seq != 0 && rank != 0) s.start = ResumeFrom(LoadManifest(s.config.checkpoint.dir, seq));
    AddWireBytes(s, rank, size, RunRank(s, rank, size, kv, workers));
  } catch (const TransportError& e) {
    // A timeout or a broken peer: name the ranks that no longer answer, if any.
    const std::string unreachable = ReportUnreachable(probe, hosts, rank, servers, e.what());
    if (unreachable.empty()) {
      std::fprintf(stderr, "fmps: error: rank %d (%s): %s\n", rank, RoleName(rank, servers).c_str(),
                   e.what());
    } else {
      std::fprintf(stderr, "fmps: error: %s\n", unreachable.c_str());
    }
    MpiAbort(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fmps: error: rank %d (%s): %s\n", rank, RoleName(rank, servers).c_str(),
                 e.what());
    MpiAbort(1);
  }
  MPI_Comm_free(&workers);
  MPI_Comm_free(&kv);
  if (summary != nullptr) *summary = std::move(s.summary);
  return 0;
}

}  // namespace fmps
