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
  out << YAML::Key << "rows" << YAML::Value << Bits(m.rows);
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
  m.rows = Double(n["rows"].as<std::uint64_t>());
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

Message EncodeReport(MsgKind kind, std::int64_t step, const WorkerReport& r) {
  Message m;
  m.kind = kind;
  m.step = step;
  m.flags = r.done ? 1u : 0u;
  m.keys.push_back(Bits(r.rows));
  m.keys.push_back(Bits(r.loss));
  for (const ByteRange& b : r.remaining) {
    m.keys.push_back(b.begin);
    m.keys.push_back(b.end);
  }
  return m;
}

WorkerReport DecodeReport(const Message& m) {
  if (m.keys.size() < 2 || m.keys.size() % 2 != 0) {
    throw TransportError("malformed checkpoint report from endpoint " + std::to_string(m.sender));
  }
  WorkerReport r;
  r.done = (m.flags & 1u) != 0;
  r.rows = Double(m.keys[0]);
  r.loss = Double(m.keys[1]);
  for (std::size_t i = 2; i < m.keys.size(); i += 2)
    r.remaining.push_back({m.keys[i], m.keys[i + 1]});
  return r;
}

std::string ConfigDigest(const Config& config) {
  Config c = config;
  c.data.test.clear();
  c.data.on_error = OnError::kSkip;
  c.train.epochs = 1;
  c.train.progress_seconds = 1;
  c.train.init_model.clear();
  c.cluster = ClusterConfig();
  c.checkpoint = CheckpointConfig();
  c.output = OutputConfig{"-"};
  const std::string yaml = ConfigToYaml(c);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(XXH3_64bits(yaml.data(), yaml.size())));
  return hex;
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

Checkpointer::Checkpointer(const Config& config, KVClient* client,
                           const CheckpointerOptions& options)
    : config_(config),
      client_(client),
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
      done_(options.num_workers) {}

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

void Checkpointer::Request() {
  if (!enabled_ || requested_) return;
  for (int s = 0; s < num_servers_; ++s) {
    Message m;
    m.kind = MsgKind::kCutRequest;
    m.step = static_cast<std::int64_t>(next_seq_);
    client_->Send(s, std::move(m));
  }
  requested_ = true;
}

void Checkpointer::CollectShardDone(int epoch) {
  for (int w = 0; w < num_workers_; ++w) {
    if (w == own_worker_ || done_[w]) continue;
    while (true) {
      Message m = client_->WaitFor(MsgKind::kShardDone, epoch, "end-of-shard report");
      const int from = m.sender - first_worker_;
      if (from < 0 || from >= num_workers_) throw TransportError("report from a non-worker");
      done_[from] = DecodeReport(m);
      if (from == w) break;
    }
  }
}

void Checkpointer::Cut(int epoch, bool epoch_done, const std::optional<WorkerReport>& own) {
  if (!enabled_) return;
  std::vector<bool> waiting(num_workers_, false);
  const std::vector<std::optional<WorkerReport>> reports = CollectCutReports(epoch, own, &waiting);
  const std::uint64_t seq = next_seq_++;
  SnapshotServers(seq);
  ResumeWorkers(seq, waiting);
  requested_ = false;
  last_ = std::chrono::steady_clock::now();
  AddPending(seq, epoch, epoch_done, reports);
  if (epoch_done) done_.assign(num_workers_, std::nullopt);
}

std::vector<std::optional<WorkerReport>> Checkpointer::CollectCutReports(
    int epoch, const std::optional<WorkerReport>& own, std::vector<bool>* waiting) {
  // Every worker's position: own, already done, or reported now (ready or done).
  std::vector<std::optional<WorkerReport>> reports(num_workers_);
  if (own_worker_ >= 0) reports[own_worker_] = own;
  const auto deadline = std::chrono::steady_clock::now() + ReplyTimeout(config_);
  while (true) {
    int missing = 0;
    for (int w = 0; w < num_workers_; ++w) {
      if (!reports[w] && done_[w]) reports[w] = done_[w];
      missing += !reports[w];
    }
    if (missing == 0) return reports;
    if (std::optional<Message> m = client_->Take(MsgKind::kCutReady)) {
      const int w = m->sender - first_worker_;
      reports.at(w) = DecodeReport(*m);
      waiting->at(w) = true;
      continue;
    }
    if (std::optional<Message> m = client_->Take(MsgKind::kShardDone, epoch)) {
      done_.at(m->sender - first_worker_) = DecodeReport(*m);
      continue;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw TransportError("checkpoint: " + std::to_string(missing) +
                           " worker(s) did not reach a batch boundary in time");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void Checkpointer::SnapshotServers(std::uint64_t seq) {
  const std::string path = CheckpointPath(config_.checkpoint.dir, seq);
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) throw IoError("checkpoint.dir: cannot create " + path + ": " + ec.message());
  for (int s = 0; s < num_servers_; ++s) {
    Message m;
    m.kind = MsgKind::kSnapshot;
    m.step = static_cast<std::int64_t>(seq);
    client_->Send(s, std::move(m));
  }
  for (int s = 0; s < num_servers_; ++s) {
    client_->WaitFor(MsgKind::kSnapshotAck, static_cast<std::int64_t>(seq), "snapshot");
  }
}

void Checkpointer::ResumeWorkers(std::uint64_t seq, const std::vector<bool>& waiting) {
  for (int w = 0; w < num_workers_; ++w) {
    if (!waiting[w]) continue;
    Message m;
    m.kind = MsgKind::kCutResume;
    m.step = static_cast<std::int64_t>(seq);
    client_->Send(first_worker_ + w, std::move(m));
  }
}

void Checkpointer::AddPending(std::uint64_t seq, int epoch, bool epoch_done,
                              const std::vector<std::optional<WorkerReport>>& reports) {
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
  pending_.push_back(std::move(p));
}

void Checkpointer::Apply(const Message& m) {
  for (PendingCheckpoint& p : pending_) {
    if (static_cast<std::int64_t>(p.manifest.seq) != m.step) continue;
    if (m.sender < 0 || m.sender >= num_servers_ || m.keys.size() != 3) {
      throw TransportError("malformed shard report from endpoint " + std::to_string(m.sender));
    }
    ShardFileInfo& info = p.manifest.shards[m.sender];
    info.path = ShardFileName(m.sender);
    info.bytes = m.keys[0];
    info.checksum = m.keys[1];
    info.keys = m.keys[2];
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
  while (std::optional<Message> m = client_->Take(MsgKind::kShardWritten)) Apply(*m);
  pending_.erase(
      std::remove_if(pending_.begin(), pending_.end(),
                     [&](const PendingCheckpoint& p) { return p.written == num_servers_; }),
      pending_.end());
}

void Checkpointer::Drain() {
  while (!pending_.empty()) {
    Apply(client_->WaitFor(MsgKind::kShardWritten, std::nullopt, "checkpoint shard write"));
    Poll();
  }
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
    if (seq >= oldest_kept) continue;
    std::error_code ec;
    fs::remove_all(path, ec);
  }
}

}  // namespace fmps
