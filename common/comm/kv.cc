#include "common/comm/kv.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/base/error.h"
#include "common/base/hash.h"

namespace fmps {

KVClient::KVClient(Transport* transport, const KVClientOptions& options)
    : transport_(transport), options_(options) {
  split_keys_.resize(options_.num_servers);
  split_pos_.resize(options_.num_servers);
}

void KVClient::Split(std::span<const Key> keys) {
  for (int s = 0; s < options_.num_servers; ++s) {
    split_keys_[s].clear();
    split_pos_[s].clear();
  }
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const int s = ServerOfKey(keys[i], options_.num_servers);
    split_keys_[s].push_back(keys[i]);
    split_pos_[s].push_back(static_cast<std::uint32_t>(i));
  }
}

void KVClient::Recycle(std::vector<float>&& buffer) {
  if (buffer.capacity() == 0 || spare_.size() >= kMaxSpare) return;
  spare_.push_back(std::move(buffer));
}

std::vector<float> KVClient::Spare() {
  if (spare_.empty()) return {};
  std::vector<float> b = std::move(spare_.back());
  spare_.pop_back();
  return b;
}

Timestamp KVClient::Pull(std::span<const Key> keys, float* vals, bool create, bool keep_rows) {
  return StartPull(keys, vals, nullptr, create, keep_rows);
}

Timestamp KVClient::PullInto(std::span<const Key> keys, std::vector<float>* vals, bool create,
                             bool keep_rows) {
  vals->resize(keys.size() * row_width());
  return StartPull(keys, vals->data(), vals, create, keep_rows);
}

Timestamp KVClient::StartPull(std::span<const Key> keys, float* vals, std::vector<float>* vec,
                              bool create, bool keep_rows) {
  if (keep_rows && !create) throw std::logic_error("KVClient::Pull: keep_rows needs create");
  const std::uint32_t flags = (create ? kFlagCreate : 0) | (keep_rows ? kFlagKeepRows : 0);
  Pending p;
  p.ts = next_ts_++;
  p.vals = vals;
  p.vec = vec;
  p.pull_values = keys.size() * row_width();
  p.is_pull = true;
  p.issued = std::chrono::steady_clock::now();
  const int servers = options_.num_servers;
  if (servers == 1) {
    Message m;
    m.kind = MsgKind::kPull;
    m.request_id = p.ts;
    m.flags = flags;
    m.keys.assign(keys.begin(), keys.end());
    // A buffer for the server to write the reply into (its contents are not sent).
    if (transport_->moves_buffers()) m.vals = Spare();
    transport_->Send(0, std::move(m));
    p.remaining = 1;
  } else {
    Split(keys);
    p.positions.resize(servers);
    for (int s = 0; s < servers; ++s) {
      if (split_keys_[s].empty()) continue;
      Message m;
      m.kind = MsgKind::kPull;
      m.request_id = p.ts;
      m.flags = flags;
      m.keys = split_keys_[s];
      if (transport_->moves_buffers()) m.vals = Spare();
      p.positions[s] = split_pos_[s];
      transport_->Send(s, std::move(m));
      ++p.remaining;
    }
  }
  if (keep_rows) kept_pulls_.emplace_back(p.ts, keys.size());
  pending_.push_back(std::move(p));
  traffic_.max_in_flight = std::max<std::uint64_t>(traffic_.max_in_flight, pending_.size());
  return pending_.back().ts;
}

Timestamp KVClient::Push(std::span<const Key> keys, std::span<const float> grads,
                         std::span<const std::uint32_t> counts, std::int64_t step, bool has_data,
                         bool to_all_servers, Timestamp keys_of_pull) {
  return StartPush(keys, grads, nullptr, counts, step, has_data, to_all_servers, keys_of_pull);
}

Timestamp KVClient::PushTaking(std::span<const Key> keys, std::vector<float>* grads,
                               std::span<const std::uint32_t> counts, std::int64_t step,
                               bool has_data, bool to_all_servers, Timestamp keys_of_pull) {
  return StartPush(keys, *grads, grads, counts, step, has_data, to_all_servers, keys_of_pull);
}

Timestamp KVClient::StartPush(std::span<const Key> keys, std::span<const float> grads,
                              std::vector<float>* grads_vec, std::span<const std::uint32_t> counts,
                              std::int64_t step, bool has_data, bool to_all_servers,
                              Timestamp keys_of_pull) {
  const int width = row_width();
  const int servers = options_.num_servers;
  if (keys_of_pull != 0) {
    const auto it = std::find_if(kept_pulls_.begin(), kept_pulls_.end(),
                                 [&](const auto& e) { return e.first == keys_of_pull; });
    if (it == kept_pulls_.end() || it->second != keys.size()) {
      throw std::logic_error("KVClient::Push: keys_of_pull is not a kept pull of these keys");
    }
    kept_pulls_.erase(it);
  }
  Pending p;
  p.ts = next_ts_++;
  p.issued = std::chrono::steady_clock::now();
  auto make = [&] {
    Message m;
    m.kind = MsgKind::kPush;
    m.request_id = p.ts;
    m.step = step;
    m.flags = has_data ? kFlagHasData : 0;
    if (keys_of_pull != 0) {
      m.flags |= kFlagKeysOfPull;
      m.ref = keys_of_pull;
    }
    return m;
  };
  if (servers == 1) {
    Message m = make();
    if (keys_of_pull == 0) m.keys.assign(keys.begin(), keys.end());
    if (grads_vec != nullptr) {
      m.vals = std::move(*grads_vec);
      *grads_vec = Spare();
    } else {
      m.vals = Spare();
      m.vals.assign(grads.begin(), grads.end());
    }
    m.counts.assign(counts.begin(), counts.end());
    traffic_.push_keys += keys.size();
    transport_->Send(0, std::move(m));
    p.remaining = 1;
    ++traffic_.push_messages;
  } else {
    Split(keys);
    for (int s = 0; s < servers; ++s) {
      const auto& pos = split_pos_[s];
      if (pos.empty() && !to_all_servers) continue;
      Message m = make();
      if (keys_of_pull == 0) m.keys = split_keys_[s];
      m.vals = Spare();
      m.vals.resize(pos.size() * width);
      for (std::size_t j = 0; j < pos.size(); ++j) {
        std::memcpy(&m.vals[j * width], &grads[static_cast<std::size_t>(pos[j]) * width],
                    sizeof(float) * width);
      }
      if (!counts.empty()) {
        m.counts.resize(pos.size());
        for (std::size_t j = 0; j < pos.size(); ++j) m.counts[j] = counts[pos[j]];
      }
      traffic_.push_keys += pos.size();
      transport_->Send(s, std::move(m));
      ++p.remaining;
      ++traffic_.push_messages;
    }
  }
  pending_.push_back(std::move(p));
  traffic_.max_in_flight = std::max<std::uint64_t>(traffic_.max_in_flight, pending_.size());
  return pending_.back().ts;
}

KVClient::Pending* KVClient::Find(Timestamp ts) {
  for (auto& p : pending_) {
    if (p.ts == ts) return &p;
  }
  return nullptr;
}

Message KVClient::Receive(const char* what) {
  std::optional<Message> m = transport_->Recv(options_.reply_timeout);
  if (!m) {
    throw TransportError(std::string("no reply from the servers to a ") + what + " within " +
                         std::to_string(options_.reply_timeout.count() / 1000) + " s");
  }
  return std::move(*m);
}

namespace {
// Replies to a KVClient's own requests; anything else is a control message for the inbox.
bool IsReply(MsgKind kind) {
  return kind == MsgKind::kPullReply || kind == MsgKind::kPushReply || kind == MsgKind::kDumpChunk;
}
}  // namespace

void KVClient::Deliver(Message&& reply) {
  if (!IsReply(reply.kind)) {
    inbox_.push_back(std::move(reply));  // control message: kept for Take/WaitFor
    return;
  }
  Pending* p = Find(reply.request_id);
  if (p == nullptr || p->remaining <= 0) {
    throw TransportError("unexpected reply (request " + std::to_string(reply.request_id) +
                         ") from endpoint " + std::to_string(reply.sender));
  }
  const int width = row_width();
  if (reply.kind == MsgKind::kPullReply) {
    const int s = reply.sender;
    if (options_.num_servers == 1) {
      if (reply.vals.size() != p->pull_values) {
        throw TransportError("pull reply from server 0 has " + std::to_string(reply.vals.size()) +
                             " values, expected " + std::to_string(p->pull_values));
      }
      if (p->vec != nullptr) {
        std::swap(*p->vec, reply.vals);  // same size: the caller's vector takes the reply's array
      } else {
        std::memcpy(p->vals, reply.vals.data(), reply.vals.size() * sizeof(float));
      }
    } else {
      if (s < 0 || s >= options_.num_servers) {
        throw TransportError("pull reply from non-server endpoint " + std::to_string(s));
      }
      const auto& pos = p->positions[s];
      if (reply.vals.size() != pos.size() * width) {
        throw TransportError("pull reply from server " + std::to_string(s) + " has " +
                             std::to_string(reply.vals.size()) + " values, expected " +
                             std::to_string(pos.size() * width));
      }
      for (std::size_t j = 0; j < pos.size(); ++j) {
        std::memcpy(p->vals + static_cast<std::size_t>(pos[j]) * width, &reply.vals[j * width],
                    sizeof(float) * width);
      }
    }
    Recycle(std::move(reply.vals));
  } else if (reply.kind == MsgKind::kPushReply) {
    if (reply.flags & kFlagAnyHadData) p->result.any_had_data = true;
    if (reply.flags & kFlagCut) p->result.cut = true;
    Recycle(std::move(reply.vals));  // the push's gradients, handed back by the server
  } else {
    throw TransportError("unexpected message kind " + std::to_string(static_cast<int>(reply.kind)) +
                         " from endpoint " + std::to_string(reply.sender));
  }
  --p->remaining;
}

WaitResult KVClient::Wait(Timestamp ts) {
  Pending* p = Find(ts);
  if (p == nullptr) throw TransportError("Wait on unknown request " + std::to_string(ts));
  while (p->remaining > 0) {
    Deliver(Receive("request"));
    p = Find(ts);  // Deliver never erases, but keep the pointer fresh
  }
  WaitResult result = p->result;
  const double latency =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - p->issued).count();
  if (p->is_pull) {
    ++stats_.pulls;
    stats_.pull_seconds += latency;
  } else {
    ++stats_.pushes;
    stats_.push_seconds += latency;
  }
  pending_.erase(pending_.begin() + (p - pending_.data()));
  return result;
}

std::uint64_t KVClient::Dump(
    const std::function<void(int, std::span<const Key>, std::span<const float>)>& sink) {
  if (!pending_.empty()) throw TransportError("Dump while requests are in flight");
  for (int s = 0; s < options_.num_servers; ++s) {
    Message m;
    m.kind = MsgKind::kDump;
    transport_->Send(s, std::move(m));
  }
  int done = 0;
  std::uint64_t bytes = 0;
  while (done < options_.num_servers) {
    Message m = Receive("model dump");
    if (!IsReply(m.kind)) {
      inbox_.push_back(std::move(m));
      continue;
    }
    if (m.kind != MsgKind::kDumpChunk) {
      throw TransportError("unexpected message during dump from endpoint " +
                           std::to_string(m.sender));
    }
    if (m.vals.size() != m.keys.size() * row_width()) {
      throw TransportError("malformed dump chunk from server " + std::to_string(m.sender));
    }
    sink(m.sender, m.keys, m.vals);
    if (m.flags & kFlagLast) {
      ++done;
      bytes += static_cast<std::uint64_t>(std::max<std::int64_t>(0, m.step));
    }
  }
  return bytes;
}

void KVClient::Send(int dest, Message msg) { transport_->Send(dest, std::move(msg)); }

std::optional<Message> KVClient::Take(MsgKind kind, std::optional<std::int64_t> step) {
  while (std::optional<Message> m = transport_->Recv(std::chrono::milliseconds(0))) {
    Deliver(std::move(*m));
  }
  for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
    if (it->kind == kind && (!step || it->step == *step)) {
      Message m = std::move(*it);
      inbox_.erase(it);
      return m;
    }
  }
  return std::nullopt;
}

Message KVClient::WaitFor(MsgKind kind, std::optional<std::int64_t> step, const char* what) {
  const auto deadline = std::chrono::steady_clock::now() + options_.reply_timeout;
  while (true) {
    if (std::optional<Message> m = Take(kind, step)) return std::move(*m);
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      throw TransportError(std::string("no ") + what + " within " +
                           std::to_string(options_.reply_timeout.count() / 1000) + " s");
    }
    std::optional<Message> m = transport_->Recv(std::min<std::chrono::milliseconds>(
        std::chrono::milliseconds(100),
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)));
    if (m) Deliver(std::move(*m));
  }
}

void KVClient::ShutdownServers() {
  for (int s = 0; s < options_.num_servers; ++s) {
    Message m;
    m.kind = MsgKind::kShutdown;
    transport_->Send(s, std::move(m));
  }
}

}  // namespace fmps
