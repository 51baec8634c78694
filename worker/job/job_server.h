// A server of a training job, built the same way in both modes (a thread in single-node
// mode, a rank under MPI): its ParamStore restored from the checkpoint being resumed, or
// warm-started from train.init_model, and its ServerOptions derived from the config.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/comm/transport.h"
#include "common/config/config.h"
#include "common/data/row_source.h"
#include "server/server.h"
#include "server/store/param_store.h"
#include "worker/job/checkpoint.h"

namespace fmps {

// Who serves and who is served: servers are endpoints 0 .. num_servers - 1, workers the
// num_workers endpoints after them.
struct JobTopology {
  int num_servers = 1;
  int num_workers = 1;
};

// A Server with the store it owns. Run() the server on the thread that owns its transport.
struct JobServer {
  std::unique_ptr<ParamStore> store;
  std::unique_ptr<Server> server;
};

ServerOptions MakeServerOptions(const Config& config, const JobTopology& topology, int index);

// Builds server `index`: a fresh store, then the keys it owns from start.manifest (if any)
// or else from train.init_model (if set; logged), or else, on the server owning the bias, the
// bias set to `bias_start` when given (BiasStart). After a resume with an early-stopping
// record, the server also gets the best epoch's parameters (Server::SetBest). Throws
// ModelError/IoError on a bad file.
JobServer MakeJobServer(const Config& config, const ResumePoint& start, const JobTopology& topology,
                        int index, Transport* transport, std::optional<double> bias_start);

// Where a fresh squared-loss job starts the bias, computed once by the job's driver and
// handed to the servers: the mean label of the first 10^5 rows it trains on, those of
// `train_files` outside `held_out` (its validation rows, HeldOutFor; nullopt: none). Reads
// labels only (csv columns are not transformed). The first steps then learn the features
// rather than the labels' offset (a rating's mean of ~3.5 takes AdaGrad hundreds of steps to
// reach). nullopt when the job does not start the bias so: logistic loss, a resume
// (start.manifest), a warm start (train.init_model).
std::optional<double> BiasStart(const Config& config, const std::vector<std::string>& train_files,
                                const std::optional<RowSubset>& held_out, const ResumePoint& start);

// The mean label of the first 10^5 rows of `sources` (read in order; 0 without rows), each
// rewound afterwards: BiasStart's figure for jobs that train from sources in memory.
double MeanLabelOf(const std::vector<RowSource*>& sources);

}  // namespace fmps
