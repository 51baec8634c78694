#include "worker/job/checkpoint.h"

#include <xxhash.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/log.h"
#include "worker/job/job.h"
#include "worker/job/run_output.h"

namespace fmps {
namespace fs = std::filesystem;

namespace {

constexpr const char* kManifest = "MANIFEST";

std::uint64_t Bits(double d) { return std::bit_cast<std::uint64_t>(d); }
double Double(std::uint64_t u) { return std::bit_cast<double>(u); }
// "rows" is an integer; manifests written before held the bits of a double there, which for
// any count >= 1 are >= the bits of 1.0 (4.6e18, more rows than any job trains).
double RowsFromManifest(std::uint64_t v) {
  return v >= Bits(1.0) ? Double(v) : static_cast<double>(v);
}

// XXH3-64 of a whole file; nullopt if it cannot be read.
std::optional<std::uint64_t> FileChecksum(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> buf(1 << 20);
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) XXH3_64bits_update(st, buf.data(), n);
  const bool ok = !std::ferror(f);
  std::fclose(f);
  const std::uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  if (!ok) return std::nullopt;
  return h;
}

std::string ManifestToYaml(const Manifest& m) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "seq" << YAML::Value << m.seq;
  out << YAML::Key << "config_digest" << YAML::Value << m.config_digest;
  out << YAML::Key << "epoch" << YAML::Value << m.epoch;
  out << YAML::Key << "epoch_done" << YAML::Value << m.epoch_done;
  // rows trained: a readable integer; the loss sum stays a double's bit pattern, so a
  // resume continues it exactly.
  out << YAML::Key << "rows" << YAML::Value << static_cast<std::uint64_t>(m.rows);
  out << YAML::Key << "loss" << YAML::Value << Bits(m.loss);
  out << YAML::Key << "train_bytes" << YAML::Value << m.train_bytes;
  out << YAML::Key << "shards" << YAML::Value << YAML::BeginSeq;
  for (const ShardFileInfo& s : m.shards) {
    out << YAML::Flow << YAML::BeginMap << YAML::Key << "file" << YAML::Value << s.path << YAML::Key
        << "bytes" << YAML::Value << s.bytes << YAML::Key << "checksum" << YAML::Value << s.checksum
        << YAML::Key << "keys" << YAML::Value << s.keys << YAML::EndMap;
  }
  out << YAML::EndSeq;
  out << YAML::Key << "workers" << YAML::Value << YAML::BeginSeq;
  for (const auto& ranges : m.workers) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const ByteRange& r : ranges) {
      out << YAML::Flow << YAML::BeginSeq << r.begin << r.end << YAML::EndSeq;
    }
    out << YAML::EndSeq;
  }
  out << YAML::EndSeq;
  if (!m.validation.history.empty()) {
    const ValidationRecord& v = m.validation;
    out << YAML::Key << "validation" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "best_epoch" << YAML::Value << v.best_epoch;
    out << YAML::Key << "best_value" << YAML::Value << Bits(v.best_value);
    out << YAML::Key << "best_seq" << YAML::Value << v.best_seq;
    out << YAML::Key << "history" << YAML::Value << YAML::Flow << YAML::BeginSeq;
    for (double h : v.history) out << Bits(h);
    out << YAML::EndSeq;
    out << YAML::Key << "best_test" << YAML::Value << YAML::Flow << YAML::BeginSeq
        << v.best_test_rows << Bits(v.best_test_logloss) << Bits(v.best_test_auc)
        << Bits(v.best_test_rmse) << YAML::EndSeq << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

Manifest ManifestFromYaml(const std::string& text) {
  const YAML::Node n = YAML::Load(text);
  Manifest m;
  m.seq = n["seq"].as<std::uint64_t>();
  m.config_digest = n["config_digest"].as<std::string>();
  m.epoch = n["epoch"].as<int>();
  m.epoch_done = n["epoch_done"].as<bool>();
  m.rows = RowsFromManifest(n["rows"].as<std::uint64_t>());
  m.loss = Double(n["loss"].as<std::uint64_t>());
  m.train_bytes = n["train_bytes"].as<std::uint64_t>();
  for (const auto& s : n["shards"]) {
    ShardFileInfo info;
    info.path = s["file"].as<std::string>();
    info.bytes = s["bytes"].as<std::uint64_t>();
    info.checksum = s["checksum"].as<std::uint64_t>();
    info.keys = s["keys"].as<std::uint64_t>();
    m.shards.push_back(info);
  }
  for (const auto& w : n["workers"]) {
    std::vector<ByteRange> ranges;
    for (const auto& r : w) ranges.push_back({r[0].as<std::uint64_t>(), r[1].as<std::uint64_t>()});
    m.workers.push_back(std::move(ranges));
  }
  if (m.shards.empty() || m.workers.empty()) throw YAML::Exception(YAML::Mark(), "incomplete");
  if (const YAML::Node v = n["validation"]) {
    m.validation.best_epoch = v["best_epoch"].as<int>();
    m.validation.best_value = Double(v["best_value"].as<std::uint64_t>());
    m.validation.best_seq = v["best_seq"].as<std::uint64_t>();
    for (const auto& h : v["history"])
      m.validation.history.push_back(Double(h.as<std::uint64_t>()));
    const YAML::Node t = v["best_test"];
    m.validation.best_test_rows = t[0].as<std::uint64_t>();
    m.validation.best_test_logloss = Double(t[1].as<std::uint64_t>());
    m.validation.best_test_auc = Double(t[2].as<std::uint64_t>());
    m.validation.best_test_rmse = Double(t[3].as<std::uint64_t>());
  }
  return m;
}

// Checkpoint directories in `dir`, newest first.
std::vector<std::pair<std::uint64_t, std::string>> ListCheckpoints(const std::string& dir) {
  std::vector<std::pair<std::uint64_t, std::string>> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("ckpt-", 0) != 0 || !e.is_directory()) continue;
    try {
      out.emplace_back(std::stoull(name.substr(5)), e.path().string());
    } catch (const std::exception&) {
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

// Why checkpoint `path` cannot be used, or "" if it is complete. Fills *m.
std::string CheckCheckpoint(const std::string& path, Manifest* m) {
  std::ifstream in(path + "/" + kManifest);
  if (!in) return path + "/" + kManifest + " is missing (checkpoint incomplete)";
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    *m = ManifestFromYaml(ss.str());
  } catch (const std::exception& e) {
    return path + "/" + kManifest + " is unreadable (" + e.what() + ")";
  }
  for (const ShardFileInfo& s : m->shards) {
    const std::string file = path + "/" + s.path;
    std::error_code ec;
    const auto size = fs::file_size(file, ec);
    if (ec) return file + " is missing";
    if (size != s.bytes) {
      return file + " has " + std::to_string(size) + " bytes, the manifest says " +
             std::to_string(s.bytes) + " (truncated or damaged)";
    }
    const auto sum = FileChecksum(file);
    if (!sum) return file + " cannot be read";
    if (*sum != s.checksum) return file + " fails its checksum (damaged)";
  }
  return "";
}

}  // namespace

WorkerReport ReportOf(const Progress& progress, bool done, std::vector<ByteRange> remaining) {
  WorkerReport r;
  r.done = done;
  r.remaining = std::move(remaining);
  r.rows = static_cast<double>(progress.rows.load());
  r.loss = progress.loss_sum.load();
  return r;
}

pb::WorkerReport ToProto(const WorkerReport& r) {
  pb::WorkerReport p;
  p.set_done(r.done);
  p.set_rows(r.rows);
  p.set_loss(r.loss);
  for (const ByteRange& b : r.remaining) {
    pb::ByteRange* range = p.add_remaining();
    range->set_begin(b.begin);
    range->set_end(b.end);
  }
  return p;
}

WorkerReport FromProto(const pb::WorkerReport& p, int sender) {
  WorkerReport r;
  r.done = p.done();
  r.rows = p.rows();
  r.loss = p.loss();
  for (const pb::ByteRange& b : p.remaining()) {
    if (b.begin() > b.end()) {
      throw TransportError("malformed checkpoint report from endpoint " + std::to_string(sender) +
                           ": byte range [" + std::to_string(b.begin()) + ", " +
                           std::to_string(b.end()) + ")");
    }
    r.remaining.push_back({b.begin(), b.end()});
  }
  return r;
}

void ReportCutReady(ControlChannel* control, int coordinator, const WorkerReport& report) {
  pb::Control m;
  *m.mutable_cut_ready()->mutable_report() = ToProto(report);
  control->Send(coordinator, std::move(m));
}

void AwaitCutResume(ControlChannel* control) {
  control->WaitFor(pb::Control::kCutResume, "checkpoint resume");
}

void ReportShardDone(ControlChannel* control, int coordinator, int epoch,
                     const WorkerReport& report) {
  pb::Control m;
  pb::ShardDone* done = m.mutable_shard_done();
  done->set_epoch(epoch);
  *done->mutable_report() = ToProto(report);
  control->Send(coordinator, std::move(m));
}

// The sequence number after every checkpoint present in `dir` (1 if none).
static std::uint64_t NextCheckpointSeq(const std::string& dir) {
  const auto list = ListCheckpoints(dir);
  return list.empty() ? 1 : list.front().first + 1;
}

std::optional<Manifest> FindResumePoint(const std::string& dir, const std::string& digest,
                                        std::uint64_t train_bytes) {
  for (const auto& [seq, path] : ListCheckpoints(dir)) {
    Manifest m;
    const std::string problem = CheckCheckpoint(path, &m);
    if (!problem.empty()) {
      Warn("checkpoint " + path + " is not usable: " + problem +
           "; trying the previous checkpoint");
      continue;
    }
    if (m.config_digest != digest) {
      throw ConfigError("checkpoint.dir: " + path +
                        " was written with different data, model or optimizer settings; "
                        "resume with the config it was written with, or use a new "
                        "checkpoint.dir");
    }
    if (m.train_bytes != train_bytes) {
      throw ConfigError("checkpoint.dir: " + path + " was written for training files of " +
                        std::to_string(m.train_bytes) + " bytes, they now have " +
                        std::to_string(train_bytes) + "; the data changed");
    }
    for (ShardFileInfo& s : m.shards) s.path = path + "/" + s.path;
    Log("resuming from " + path + " (epoch " + std::to_string(m.epoch) +
        (m.epoch_done ? ", finished" : "") + ")");
    return m;
  }
  return std::nullopt;
}

ResumePoint FindResume(const Config& config, bool resume, std::uint64_t train_bytes) {
  ResumePoint p;
  if (!config.checkpoint.dir.empty()) {
    // Fail now, not at the first checkpoint hours later, if the directory is unusable.
    std::error_code ec;
    fs::create_directories(config.checkpoint.dir, ec);
    if (ec || !fs::is_directory(config.checkpoint.dir)) {
      throw IoError("checkpoint.dir: cannot create directory '" + config.checkpoint.dir + "'" +
                    (ec ? ": " + ec.message() : ""));
    }
  }
  if (!resume) return p;
  if (config.checkpoint.dir.empty()) {
    throw ConfigError("--resume needs checkpoint.dir (where the checkpoints are)");
  }
  std::optional<Manifest> m =
      FindResumePoint(config.checkpoint.dir, ConfigDigest(config), train_bytes);
  if (!m) {
    Log("--resume: no complete checkpoint in " + config.checkpoint.dir + "; starting afresh");
    return p;
  }
  return ResumeFrom(std::move(*m));
}

ResumePoint ResumeFrom(Manifest manifest) {
  ResumePoint p;
  p.first_epoch = manifest.epoch_done ? manifest.epoch + 1 : manifest.epoch;
  p.mid_epoch = !manifest.epoch_done;
  p.rows_base = manifest.rows;
  p.loss_base = manifest.loss;
  p.manifest = std::move(manifest);
  return p;
}

Manifest LoadManifest(const std::string& dir, std::uint64_t seq) {
  const std::string path = CheckpointPath(dir, seq);
  std::ifstream in(path + "/" + kManifest);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) throw IoError("cannot read " + path + "/" + kManifest);
  Manifest m;
  try {
    m = ManifestFromYaml(ss.str());
  } catch (const std::exception& e) {
    throw IoError("cannot read " + path + "/" + kManifest + ": " + e.what());
  }
  for (ShardFileInfo& info : m.shards) info.path = path + "/" + info.path;
  return m;
}

std::vector<ByteRange> ResumeRanges(const Manifest& manifest, int w, int num_workers) {
  if (static_cast<int>(manifest.workers.size()) == num_workers) return manifest.workers[w];
  std::vector<ByteRange> all;
  for (const auto& ranges : manifest.workers) all.insert(all.end(), ranges.begin(), ranges.end());
  std::sort(all.begin(), all.end(),
            [](const ByteRange& a, const ByteRange& b) { return a.begin < b.begin; });
  return SplitRanges(all, num_workers)[w];
}

void LoadCheckpoint(const Manifest& manifest, int s, int num_servers, ParamStore* store) {
  for (const ShardFileInfo& info : manifest.shards) {
    LoadShardFile(info.path, &info, store, [&](Key k) { return ServerOfKey(k, num_servers) == s; });
  }
}

Checkpointer::Checkpointer(const Config& config, ControlChannel* control,
                           const CheckpointerOptions& options)
    : config_(config),
      control_(control),
      num_servers_(options.num_servers),
      num_workers_(options.num_workers),
      first_worker_(options.num_servers),
      own_worker_(options.own_worker),
      train_bytes_(options.train_bytes),
      next_seq_(config.checkpoint.dir.empty() ? 1 : NextCheckpointSeq(config.checkpoint.dir)),
      first_seq_(next_seq_),
      rows_base_(options.rows_base),
      loss_base_(options.loss_base),
      enabled_(!config.checkpoint.dir.empty()),
      last_(std::chrono::steady_clock::now()),
      done_(options.num_workers),
      validation_(options.validation) {}

Checkpointer::~Checkpointer() {
  if (!enabled_) return;
  // A job that fails leaves no half-written checkpoint: remove those this one started and
  // did not complete (after a normal end, Drain() has completed them all).
  for (const auto& [seq, path] : ListCheckpoints(config_.checkpoint.dir)) {
    if (seq < first_seq_ || fs::exists(path + "/" + kManifest)) continue;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
}

bool Checkpointer::Due() const {
  return enabled_ && !requested_ &&
         std::chrono::duration<double>(std::chrono::steady_clock::now() - last_).count() >=
             config_.checkpoint.every_seconds;
}

void Checkpointer::SendToServers(const pb::Control& msg) {
  for (int s = 0; s < num_servers_; ++s) control_->Send(s, msg);
}

int Checkpointer::WorkerOf(const ControlMessage& m) const {
  const int w = m.sender - first_worker_;
  if (w < 0 || w >= num_workers_) {
    throw TransportError("checkpoint report from endpoint " + std::to_string(m.sender) +
                         ", which is no worker");
  }
  return w;
}

void Checkpointer::Request() {
  if (!enabled_ || requested_) return;
  pb::Control m;
  m.mutable_cut_request()->set_seq(next_seq_);
  SendToServers(m);
  requested_ = true;
}

void Checkpointer::CollectShardDone(int epoch) {
  const auto of_epoch = [epoch](const ControlMessage& m) {
    return m.body.shard_done().epoch() == epoch;
  };
  for (int w = 0; w < num_workers_; ++w) {
    if (w == own_worker_ || done_[w]) continue;
    while (true) {
      const ControlMessage m =
          control_->WaitFor(pb::Control::kShardDone, "end-of-shard report", of_epoch);
      const int from = WorkerOf(m);
      done_[from] = FromProto(m.body.shard_done().report(), m.sender);
      if (from == w) break;
    }
  }
}

void Checkpointer::AwaitReports(int epoch, std::vector<std::optional<WorkerReport>>* reports,
                                std::vector<bool>* waiting) {
  const auto of_epoch = [epoch](const ControlMessage& m) {
    return m.body.shard_done().epoch() == epoch;
  };
  const auto deadline = std::chrono::steady_clock::now() + ReplyTimeout(config_);
  while (true) {
    int missing = 0;
    for (int w = 0; w < num_workers_; ++w) {
      if (!(*reports)[w] && done_[w]) (*reports)[w] = done_[w];
      missing += !(*reports)[w];
    }
    if (missing == 0) return;
    if (std::optional<ControlMessage> m = control_->TryTake(pb::Control::kCutReady)) {
      const int w = WorkerOf(*m);
      (*reports)[w] = FromProto(m->body.cut_ready().report(), m->sender);
      (*waiting)[w] = true;
      continue;
    }
    if (std::optional<ControlMessage> m = control_->TryTake(pb::Control::kShardDone, of_epoch)) {
      done_[WorkerOf(*m)] = FromProto(m->body.shard_done().report(), m->sender);
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw TransportError("checkpoint: " + std::to_string(missing) +
                           " worker(s) did not reach a batch boundary in time");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void Checkpointer::Cut(int epoch, bool epoch_done, const std::optional<WorkerReport>& own) {
  if (!enabled_) return;
  // Every worker's position: own, already done, or reported now (ready or done).
  std::vector<std::optional<WorkerReport>> reports(num_workers_);
  std::vector<bool> waiting(num_workers_, false);
  if (own_worker_ >= 0) reports[own_worker_] = own;
  AwaitReports(epoch, &reports, &waiting);

  const std::uint64_t seq = next_seq_++;
  const std::string path = CheckpointPath(config_.checkpoint.dir, seq);
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw IoError("checkpoint.dir: cannot create " + path + ": " + ec.message());
  pb::Control snapshot;
  snapshot.mutable_snapshot()->set_seq(seq);
  SendToServers(snapshot);
  for (int s = 0; s < num_servers_; ++s) {
    control_->WaitFor(pb::Control::kSnapshotAck, "snapshot", [seq](const ControlMessage& m) {
      return m.body.snapshot_ack().seq() == seq;
    });
  }
  pb::Control resume;
  resume.mutable_cut_resume()->set_seq(seq);
  for (int w = 0; w < num_workers_; ++w) {
    if (waiting[w]) control_->Send(first_worker_ + w, resume);
  }
  requested_ = false;
  last_ = std::chrono::steady_clock::now();

  PendingCheckpoint p;
  p.manifest.seq = seq;
  p.manifest.config_digest = ConfigDigest(config_);
  p.manifest.epoch = epoch;
  p.manifest.epoch_done = epoch_done;
  p.manifest.rows = rows_base_;
  p.manifest.loss = loss_base_;
  p.manifest.train_bytes = train_bytes_;
  for (const auto& r : reports) {
    p.manifest.rows += r->rows;
    p.manifest.loss += r->loss;
    p.manifest.workers.push_back(epoch_done ? std::vector<ByteRange>{} : r->remaining);
  }
  p.manifest.shards.resize(num_servers_);
  if (epoch_done && validation_.best_epoch == epoch) validation_.best_seq = seq;
  p.manifest.validation = validation_;
  pending_.push_back(std::move(p));
  if (epoch_done) done_.assign(num_workers_, std::nullopt);
}

void Checkpointer::Apply(const ControlMessage& m) {
  const pb::ShardWritten& w = m.body.shard_written();
  for (PendingCheckpoint& p : pending_) {
    if (p.manifest.seq != w.seq()) continue;
    if (m.sender < 0 || m.sender >= num_servers_) {
      throw TransportError("shard report from endpoint " + std::to_string(m.sender) +
                           ", which is no server");
    }
    ShardFileInfo& info = p.manifest.shards[m.sender];
    info.path = ShardFileName(m.sender);
    info.bytes = w.bytes();
    info.checksum = w.checksum();
    info.keys = w.keys();
    if (++p.written == num_servers_) Complete(&p);
    return;
  }
  throw TransportError("shard report for an unknown checkpoint from server " +
                       std::to_string(m.sender));
}

void Checkpointer::Complete(PendingCheckpoint* p) {
  const std::string path = CheckpointPath(config_.checkpoint.dir, p->manifest.seq);
  WriteFileAtomic(path + "/" + kManifest, ManifestToYaml(p->manifest));
  Log("checkpoint " + path + " written");
  Prune();
}

void Checkpointer::Poll() {
  while (std::optional<ControlMessage> m = control_->TryTake(pb::Control::kShardWritten)) Apply(*m);
  pending_.erase(
      std::remove_if(pending_.begin(), pending_.end(),
                     [&](const PendingCheckpoint& p) { return p.written == num_servers_; }),
      pending_.end());
}

void Checkpointer::Drain() {
  while (!pending_.empty()) {
    Apply(control_->WaitFor(pb::Control::kShardWritten, "checkpoint shard write"));
    Poll();
  }
}

void Checkpointer::SetValidation(const ValidationRecord& record) {
  const std::uint64_t seq = record.best_epoch == validation_.best_epoch ? validation_.best_seq : 0;
  validation_ = record;
  validation_.best_seq = seq;
}

void Checkpointer::Prune() {
  // Keep the newest `keep` complete checkpoints; delete everything older than the oldest
  // kept one (complete or not). Newer incomplete ones may still be in progress.
  int complete = 0;
  std::uint64_t oldest_kept = 0;
  const auto list = ListCheckpoints(config_.checkpoint.dir);
  for (const auto& [seq, path] : list) {
    if (!fs::exists(path + "/" + kManifest)) continue;
    if (++complete == config_.checkpoint.keep) {
      oldest_kept = seq;
      break;
    }
  }
  if (oldest_kept == 0) return;
  for (const auto& [seq, path] : list) {
    if (seq >= oldest_kept || seq == validation_.best_seq) continue;
    // The MANIFEST first: a job killed mid-prune (a signal, MPI_Abort) never leaves a
    // MANIFEST naming a shard that is gone.
    std::error_code ec;
    fs::remove(path + "/" + kManifest, ec);
    fs::remove_all(path, ec);
  }
}

}  // namespace fmps
