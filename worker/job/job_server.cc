#include "worker/job/job_server.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/base/hash.h"
#include "common/base/log.h"
#include "common/data/reader.h"
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

constexpr std::size_t kBiasRows = 100000;  // BiasStart reads the first 10^5 rows

// A fresh job: the server owning the bias sets it to `bias_start` (when given).
void InitBias(const JobTopology& topology, int index, std::optional<double> bias_start,
              ParamStore* store) {
  if (!bias_start || ServerOfKey(kBiasKey, topology.num_servers) != index) return;
  std::vector<float> row(static_cast<std::size_t>(store->row_width()), 0.0f);
  row[0] = static_cast<float>(*bias_start);
  store->Set(kBiasKey, row.data());
}

}  // namespace

std::optional<double> BiasStart(const Config& config, const std::vector<std::string>& train_files,
                                const std::optional<RowSubset>& held_out,
                                const ResumePoint& start) {
  if (config.model.loss != Loss::kSquared || start.manifest || !config.train.init_model.empty()) {
    return std::nullopt;
  }
  FeatureSpec spec;
  spec.data = config.data;
  spec.data.csv.transform = NumericTransform::kNone;
  spec.data.on_error = OnError::kSkip;
  spec.loss = config.model.loss;
  ShardReader reader(spec, train_files, 0, 1);
  if (held_out) {
    RowSubset rest = *held_out;
    rest.inside = false;
    reader.SetSubset(rest);
  }
  return MeanLabelOf({&reader});
}

double MeanLabelOf(const std::vector<RowSource*>& sources) {
  RowBlock block;
  double sum = 0.0;
  std::size_t rows = 0;
  for (RowSource* source : sources) {
    while (rows < kBiasRows) {
      block.Clear();
      const std::size_t n = source->Read(std::min<std::size_t>(4096, kBiasRows - rows), &block);
      if (n == 0) break;
      for (float label : block.labels) sum += label;
      rows += n;
    }
    source->Rewind();
  }
  return rows == 0 ? 0.0 : sum / static_cast<double>(rows);
}

JobServer MakeJobServer(const Config& config, const ResumePoint& start, const JobTopology& topology,
                        int index, Transport* transport, std::optional<double> bias_start) {
  JobServer s;
  s.store = std::make_unique<ParamStore>(MakeStoreOptions(config), MakeOptimizer(config.optimizer));
  if (start.manifest) {
    LoadCheckpoint(*start.manifest, index, topology.num_servers, s.store.get());
  } else if (!config.train.init_model.empty()) {
    const std::uint64_t loaded =
        WarmStart(Model::Load(config.train.init_model), index, topology.num_servers, s.store.get());
    Log("server " + std::to_string(index) + ": warm start with " + std::to_string(loaded) +
        " keys from " + config.train.init_model);
  } else {
    InitBias(topology, index, bias_start, s.store.get());
  }
  s.server = std::make_unique<Server>(s.store.get(), transport,
                                      MakeServerOptions(config, topology, index));
  if (start.manifest) {
    std::optional<StoreSnapshot> best =
        LoadBest(config, *start.manifest, topology, index, *s.store);
    if (best) s.server->SetBest(std::move(*best));
  }
  return s;
}

}  // namespace fmps
