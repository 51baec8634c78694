#include "worker/job/job_server.h"

#include <optional>
#include <string>
#include <utility>

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
  return o;
}

namespace {

// After a resume with a best epoch recorded: server `index`'s part of the best epoch's
// parameters, from the checkpoint that holds them (the one resumed from, or an older one the
// pruning kept).
std::optional<StoreSnapshot> LoadBest(const Config& config, const Manifest& manifest,
                                      const JobTopology& topology, int index,
                                      const ParamStore& resumed) {
  const ValidationRecord& v = manifest.validation;
  if (v.best_epoch == 0 || v.best_seq == 0) return std::nullopt;
  if (v.best_seq == manifest.seq) return resumed.Snapshot();
  ParamStore best(MakeStoreOptions(config), MakeOptimizer(config.optimizer));
  LoadCheckpoint(LoadManifest(config.checkpoint.dir, v.best_seq), index, topology.num_servers,
                 &best);
  return best.Snapshot();
}

}  // namespace

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
  if (start.manifest) {
    std::optional<StoreSnapshot> best = LoadBest(config, *start.manifest, topology, index, *s.store);
    if (best) s.server->SetBest(std::move(*best));
  }
  return s;
}

}  // namespace fmps
