#include "server/server.h"

#include <time.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>

#include "common/base/error.h"
#include "common/base/huge_pages.h"
#include "common/comm/wire.h"

namespace fmps {

namespace {
constexpr std::size_t kDumpChunkKeys = 1 << 16;
// Pull reply values written and hashed per block when the transport checksums them (PullInto).
constexpr std::size_t kChecksumBlockBytes = std::size_t{256} << 10;

// Peak resident set size of this process (VmHWM in /proc/self/status); 0 if unknown.
std::uint64_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string field;
  while (status >> field) {
    if (field == "VmHWM:") {
      std::uint64_t kib = 0;
      status >> kib;
      return kib * 1024;
    }
    status.ignore(1 << 12, '\n');
  }
  return 0;
}

// CPU time consumed so far by the calling thread.
std::uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}
}  // namespace

Server::Server(ParamStore* store, Transport* transport, const ServerOptions& options)
    : store_(store), transport_(transport), options_(options) {
  step_pushes_.resize(options_.num_workers);
  arrived_.assign(options_.num_workers, false);
}

void Server::Check(bool ok, const Message& m, const char* what) const {
  if (!ok) ProtocolError(m.sender, what);
}

void Server::ProtocolError(int sender, const std::string& what) const {
  throw TransportError("server " + std::to_string(transport_->endpoint()) +
                       ": malformed request from endpoint " + std::to_string(sender) + ": " + what);
}

Server::~Server() {
  if (writer_.joinable()) writer_.join();
}

void Server::FinishWrite() {
  writer_.join();
  write_done_ = false;
  if (write_error_) std::rethrow_exception(write_error_);
  pb::Control done;
  pb::ShardWritten* w = done.mutable_shard_written();
  w->set_seq(write_seq_);
  w->set_bytes(written_.bytes);
  w->set_checksum(written_.checksum);
  w->set_keys(written_.keys);
  ReplyControl(write_requester_, std::move(done));
}

void Server::HandleSnapshot(int requester, std::uint64_t seq) {
  if (writer_.joinable()) FinishWrite();  // one write at a time
  cut_pending_ = false;
  snapshot_ = store_->Snapshot(std::move(snapshot_));
  pb::Control ack;
  ack.mutable_snapshot_ack()->set_seq(seq);
  ReplyControl(requester, std::move(ack));
  const std::string dir = CheckpointPath(options_.checkpoint_dir, seq);
  const std::string path = dir + "/" + ShardFileName(options_.index);
  write_requester_ = requester;
  write_seq_ = seq;
  write_error_ = nullptr;
  writer_ = std::thread([this, path] {
    try {
      written_ = WriteShardFile(snapshot_, path);
    } catch (...) {
      write_error_ = std::current_exception();
    }
    write_done_ = true;
  });
}

void Server::Run() {
  auto last_heard = std::chrono::steady_clock::now();
  while (true) {
    if (write_done_) FinishWrite();
    // Poll often while a shard is being written, so its completion is reported promptly.
    // With replies held back, only look for a queued request: none waiting, send them.
    std::optional<Received> r =
        transport_->Receive(!held_.empty()       ? std::chrono::milliseconds(0)
                            : writer_.joinable() ? std::chrono::milliseconds(20)
                                                 : std::chrono::milliseconds(1000),
                            Channels::kBoth);
    if (!r) {
      SendHeldReplies();
      CheckIdle(last_heard);
      continue;  // idle: workers may be parsing or evaluating
    }
    last_heard = std::chrono::steady_clock::now();
    if (Message* m = std::get_if<Message>(&*r)) {
      HandleData(std::move(*m));
    } else if (!HandleControl(std::get<ControlMessage>(*r))) {
      SendHeldReplies();
      if (writer_.joinable()) FinishWrite();
      return;
    }
  }
}

void Server::CheckIdle(std::chrono::steady_clock::time_point last_heard) const {
  const auto idle = options_.idle_timeout;
  if (idle <= std::chrono::milliseconds::zero()) return;
  if (std::chrono::steady_clock::now() - last_heard < idle) return;
  throw TransportError("server " + std::to_string(options_.index) + " heard from no worker for " +
                       std::to_string(idle.count() / 1000) + " s");
}

void Server::HandleData(Message&& m) {
  Check(m.flags.within(AllowedFlags(m.kind)), m, "flags not allowed for the message kind");
  const std::uint64_t t0 = ThreadCpuNs();
  switch (m.kind) {
    case MsgKind::kPull:
      HandlePull(std::move(m));
      break;
    case MsgKind::kPush:
      HandlePush(std::move(m));
      break;
    default:
      Check(false, m, "unexpected data message kind");
  }
  stats_.busy_ns += ThreadCpuNs() - t0;
}

bool Server::HandleControl(const ControlMessage& m) {
  switch (m.body.body_case()) {
    case pb::Control::kCutRequest:
      cut_pending_ = true;
      return true;
    case pb::Control::kSnapshot:
      HandleSnapshot(m.sender, m.body.snapshot().seq());
      return true;
    case pb::Control::kStatsRequest:
      HandleStats(m.sender);
      return true;
    case pb::Control::kDumpRequest:
      HandleDump(m.sender, false);
      return true;
    case pb::Control::kDumpBestRequest:
      HandleDump(m.sender, has_best_);
      return true;
    case pb::Control::kKeepBest:
      HandleKeepBest(m.sender);
      return true;
    case pb::Control::kShutdown:
      return false;
    default:
      ProtocolError(m.sender, "unexpected control message (type " +
                                  std::to_string(static_cast<int>(m.body.body_case())) + ")");
  }
}

void Server::HandleStats(int requester) {
  stats_.peak_rss_bytes = PeakRssBytes();
  pb::Control reply;
  pb::Stats* s = reply.mutable_stats();
  s->set_server(static_cast<std::uint32_t>(options_.index));
  s->set_pulls(stats_.pulls);
  s->set_pushes(stats_.pushes);
  s->set_keys_pulled(stats_.keys_pulled);
  s->set_keys_pushed(stats_.keys_pushed);
  s->set_rejected_rows(stats_.rejected_rows);
  s->set_peak_rss_bytes(stats_.peak_rss_bytes);
  s->set_busy_ns(stats_.busy_ns);
  ReplyControl(requester, std::move(reply));
}

void Server::HandlePull(Message&& m) {
  const std::size_t n = m.keys.size();
  const bool create = m.flags.has(DataFlag::kCreate);
  Message reply;
  reply.kind = MsgKind::kPullReply;
  reply.request_id = m.request_id;
  // The request's vals are a buffer lent for the reply (in-process; see KVClient), else a
  // recycled push's (see Recycle): reused as is, its old contents overwritten by the store.
  reply.vals = std::move(m.vals);
  if (reply.vals.capacity() == 0) std::swap(reply.vals, spare_vals_);
  ReserveHugeFloats(&reply.vals, n * store_->row_width());
  reply.vals.resize(n * store_->row_width());
  ParamStore::RowHandle* handles = nullptr;
  if (m.flags.has(DataFlag::kKeepRows)) {
    Check(create, m, "kept rows without create");
    Check(std::count_if(kept_.begin(), kept_.end(),
                        [&](const KeptRows& k) { return k.sender == m.sender; }) < kMaxKeptPulls,
          m, "too many kept pulls without their pushes");
    KeptRows& kept = kept_.emplace_back();
    kept.sender = m.sender;
    kept.pull_id = m.request_id;
    if (!spare_rows_.empty()) {
      kept.rows = std::move(spare_rows_.back());
      spare_rows_.pop_back();
    }
    kept.rows.resize(n);
    handles = kept.rows.data();
  }
  PullInto(m.keys.data(), n, create, handles, &reply);
  ++stats_.pulls;
  stats_.keys_pulled += n;
  Reply(m.sender, std::move(reply));
}

void Server::PullInto(const Key* keys, std::size_t n, bool create, ParamStore::RowHandle* handles,
                      Message* reply) {
  float* out = reply->vals.data();
  if (!transport_->ChecksumsValues(reply->vals.size())) {
    store_->Pull(keys, n, create, out, handles);
    return;
  }
  // Blocks of keys whose values stay in L2, each hashed right after the store wrote it.
  const std::size_t width = static_cast<std::size_t>(store_->row_width());
  const std::size_t block = std::max<std::size_t>(1, kChecksumBlockBytes / (width * sizeof(float)));
  StreamChecksum checksum;
  for (std::size_t at = 0; at < n; at += block) {
    const std::size_t len = std::min(block, n - at);
    store_->Pull(keys + at, len, create, out + at * width,
                 handles == nullptr ? nullptr : handles + at);
    checksum.Update({out + at * width, len * width});
  }
  reply->vals_checksum = checksum.Digest();
}

void Server::Recycle(std::vector<float>&& grads, Message* reply) {
  if (transport_->moves_buffers()) {
    reply->vals = std::move(grads);
  } else if (grads.capacity() > spare_vals_.capacity()) {
    spare_vals_ = std::move(grads);
  }
}

void Server::SendHeldReplies() {
  for (auto& [dest, reply] : held_) transport_->Send(dest, std::move(reply));
  held_.clear();
}

void Server::Reply(int dest, Message&& msg) {
  SendHeldReplies();
  transport_->Send(dest, std::move(msg));
}

void Server::ReplyControl(int dest, pb::Control&& msg) {
  SendHeldReplies();
  transport_->SendControl(dest, std::move(msg));
}

void Server::Clip(float* grads, std::size_t n) const {
  const float c = options_.clip_gradient;
  if (c <= 0.0f) return;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isfinite(grads[i])) grads[i] = std::clamp(grads[i], -c, c);
  }
}

void Server::ApplyAsyncPush(Message&& m) {
  const std::size_t width = store_->row_width();
  const std::uint32_t* counts = m.counts.empty() ? nullptr : m.counts.data();
  const bool kept_rows = m.flags.has(DataFlag::kKeysOfPull);
  auto kept = kept_.end();
  if (kept_rows) {
    Check(m.keys.empty(), m, "a push of kept rows carries keys");
    kept = std::find_if(kept_.begin(), kept_.end(), [&](const KeptRows& k) {
      return k.sender == m.sender && k.pull_id == m.ref;
    });
    Check(kept != kept_.end(), m, "push refers to an unknown pull");
  }
  const std::size_t keys = kept_rows ? kept->rows.size() : m.keys.size();
  Check(m.vals.size() == keys * width, m, "gradient size mismatch");
  Check(m.counts.empty() || m.counts.size() == keys, m, "count size mismatch");
  Clip(m.vals.data(), m.vals.size());
  if (kept_rows) {
    stats_.rejected_rows += store_->PushRows(kept->rows.data(), keys, m.vals.data(), counts);
    spare_rows_.push_back(std::move(kept->rows));
    kept_.erase(kept);
  } else {
    stats_.rejected_rows += store_->Push(m.keys.data(), keys, m.vals.data(), counts);
  }
  ++stats_.pushes;
  stats_.keys_pushed += keys;
  Message reply;
  reply.kind = MsgKind::kPushReply;
  reply.request_id = m.request_id;
  reply.flags.set(DataFlag::kCut, cut_pending_);
  Recycle(std::move(m.vals), &reply);
  held_.emplace_back(m.sender, std::move(reply));  // sent with the next reply (see Run)
}

void Server::HandlePush(Message&& m) {
  if (options_.consistency == Consistency::kAsync) {
    ApplyAsyncPush(std::move(m));
    return;
  }
  Check(m.vals.size() == m.keys.size() * store_->row_width(), m, "gradient size mismatch");
  Check(m.counts.empty() || m.counts.size() == m.keys.size(), m, "count size mismatch");
  Check(!m.flags.has(DataFlag::kKeysOfPull), m, "a bsp push must carry its keys");
  ++stats_.pushes;
  stats_.keys_pushed += m.keys.size();
  const int w = m.sender - options_.first_worker_endpoint;
  Check(w >= 0 && w < options_.num_workers, m, "push from a non-worker endpoint");
  Check(m.bsp_step == step_, m, "bsp push for the wrong step");
  Check(!arrived_[w], m, "two bsp pushes for one step");
  arrived_[w] = true;
  step_pushes_[w] = std::move(m);
  if (++arrived_count_ == options_.num_workers) ApplyBspStep();
}

void Server::ApplyBspStep() {
  const std::size_t width = store_->row_width();
  agg_index_.Clear();
  agg_grads_.clear();
  agg_counts_.clear();
  bool any_had_data = false;
  bool any_counts = false;
  for (const Message& m : step_pushes_) {  // worker order: reproducible sums
    any_had_data |= m.flags.has(DataFlag::kHasData);
    any_counts |= !m.counts.empty();
    for (std::size_t i = 0; i < m.keys.size(); ++i) {
      bool inserted;
      const std::size_t idx = agg_index_.Insert(m.keys[i], &inserted);
      if (inserted) {
        agg_grads_.resize(agg_grads_.size() + width, 0.0f);
        agg_counts_.push_back(0);
      }
      float* dst = &agg_grads_[idx * width];
      const float* src = &m.vals[i * width];
      for (std::size_t j = 0; j < width; ++j) dst[j] += src[j];
      if (!m.counts.empty()) agg_counts_[idx] += m.counts[i];
    }
  }
  const auto& keys = agg_index_.keys();
  Clip(agg_grads_.data(), agg_grads_.size());
  stats_.rejected_rows += store_->Push(keys.data(), keys.size(), agg_grads_.data(),
                                       any_counts ? agg_counts_.data() : nullptr);
  for (int w = 0; w < options_.num_workers; ++w) {
    Message reply;
    reply.kind = MsgKind::kPushReply;
    reply.request_id = step_pushes_[w].request_id;
    reply.flags.set(DataFlag::kAnyHadData, any_had_data);
    reply.flags.set(DataFlag::kCut, cut_pending_);
    const int dest = step_pushes_[w].sender;
    Recycle(std::move(step_pushes_[w].vals), &reply);
    step_pushes_[w] = Message();
    arrived_[w] = false;
    Reply(dest, std::move(reply));
  }
  arrived_count_ = 0;
  ++step_;
}

void Server::SetBest(StoreSnapshot best) {
  best_ = std::move(best);
  has_best_ = true;
}

void Server::HandleKeepBest(int requester) {
  best_ = store_->Snapshot(std::move(best_));
  has_best_ = true;
  pb::Control ack;
  ack.mutable_best_kept();
  ReplyControl(requester, std::move(ack));
}

// Streams the store (or, with `best`, the best epoch's snapshot) in its own order, a chunk at
// a time: no copy of the whole store (for an FFM store of 674k keys at 39 fields, k 8, that
// copy was 850 MB). The coordinator sorts.
void Server::HandleDump(int requester, bool best) {
  const std::size_t width = store_->row_width();
  Message chunk;
  auto send = [&] {
    chunk.kind = MsgKind::kDumpChunk;
    Reply(requester, std::move(chunk));
    chunk = Message();
  };
  // Rows are appended as copied (no zero-fill first). Each chunk leaves with its message, so
  // each takes fresh memory; plain pages: huge ones cost more to clear here (tried: the
  // kernel's zeroing of fresh 2 MiB pages tripled the dump's system time).
  auto add = [&](Key key) {
    if (chunk.keys.empty()) {
      chunk.keys.reserve(kDumpChunkKeys);
      chunk.vals.reserve(kDumpChunkKeys * width);
    }
    chunk.keys.push_back(key);
  };
  auto flush_full = [&] {
    if (chunk.keys.size() == kDumpChunkKeys) send();
  };
  std::vector<float>& vals = chunk.vals;
  if (best) {
    for (std::size_t i = 0; i < best_.size(); ++i) {
      const KeyRecord r = best_.record(i);
      add(r.key);
      vals.push_back(r.w);
      if (r.v != nullptr) {
        vals.insert(vals.end(), r.v, r.v + (width - 1));
      } else {
        vals.insert(vals.end(), width - 1, 0.0f);
      }
      flush_full();
    }
  } else {
    store_->ForEach([&](Key key, const float* row) {
      add(key);
      vals.insert(vals.end(), row, row + width);
      flush_full();
    });
  }
  if (!chunk.keys.empty()) send();
  pb::Control done;
  done.mutable_dump_done()->set_store_bytes(store_->MemoryBytes());
  ReplyControl(requester, std::move(done));
}

}  // namespace fmps
