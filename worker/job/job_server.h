// A server of a training job, built the same way in both modes (a thread in single-node
// mode, a rank under MPI): its ParamStore restored from the checkpoint being resumed, or
// warm-started from train.init_model, and its ServerOptions derived from the config.
#pragma once

#include <memory>
#include <optional>
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
// or else from train.init_model (if set; logged). Otherwise, for squared loss, the server
// owning the bias starts it at the mean label of the first 10^5 training rows (read once,
// labels only). After a resume with an early-stopping record, the server also gets the best
// epoch's parameters (Server::SetBest). `mean_label`, when given, is where that bias starts
// instead (a job over sources other than data.train's files: MeanLabelOf). Throws
// ModelError/IoError on a bad file.
JobServer MakeJobServer(const Config& config, const ResumePoint& start, const JobTopology& topology,
                        int index, Transport* transport,
                        std::optional<double> mean_label = std::nullopt);

// The mean label of the first 10^5 rows of `sources` (read in order; 0 without rows), each
// rewound afterwards. For jobs that train from sources in memory.
double MeanLabelOf(const std::vector<RowSource*>& sources);

}  // namespace fmps
