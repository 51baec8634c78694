#include "worker/job/job_server.h"

#include <string>

#include "common/base/log.h"
#include "common/model/model_file.h"
#include "worker/job/job.h"

namespace fmps {

ServerOptions MakeServerOptions(const Config& config, const JobTopology& topology, int index) {
  ServerOptions o;
  o.index = index;
  o.num_workers = topology.num_workers;
  o.first_worker_endpoint = topology.num_servers;
  o.consistency = config.train.consistency;
  o.checkpoint_dir = config.checkpoint.dir;
  o.clip_gradient = config.optimizer.clip_gradient;
  // Twice the workers' wait, so a job whose workers fail reports their view first.
  o.idle_timeout = 2 * ReplyTimeout(config);
  return o;
}

JobServer MakeJobServer(const Config& config, const ResumePoint& start, const JobTopology& topology,
                        int index, Transport* transport) {
  JobServer s;
  s.store = std::make_unique<ParamStore>(MakeStoreOptions(config), MakeOptimizer(config.optimizer));
  if (start.manifest) {
    LoadCheckpoint(*start.manifest, index, topology.num_servers, s.store.get());
  } else if (!config.train.init_model.empty()) {
    const std::uint64_t loaded =
        WarmStart(Model::Load(config.train.init_model), index, topology.num_servers, s.store.get());
    Log("server " + std::to_string(index) + ": warm start with " + std::to_string(loaded) +
        " keys from " + config.train.init_model);
  }
  s.server = std::make_unique<Server>(s.store.get(), transport,
                                      MakeServerOptions(config, topology, index));
  return s;
}

}  // namespace fmps
