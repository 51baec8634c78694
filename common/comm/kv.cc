#include "common/comm/kv.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "common/base/error.h"
#include "common/base/hash.h"
#include "common/base/huge_pages.h"

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
  if (buffer.capacity() == 0) return;
  // Over a decoding transport only a push takes spares (one per push): lend the rest to the
  // transport, which decodes the next replies into them (evaluation makes no pushes).
  const std::size_t keep = transport_->moves_buffers() ? kMaxSpare : 1;
  if (spare_.size() < keep) {
    spare_.push_back(std::move(buffer));
  } else if (!transport_->moves_buffers()) {
    transport_->Lend(std::move(buffer));
  }
}

std::vector<float> KVClient::Spare() {
  if (spare_.empty()) return {};
  std::vector<float> b = std::move(spare_.back());
  spare_.pop_back();
  return b;
}

Timestamp KVClient::AddPending(Pending&& p) {
  pending_.push_back(std::move(p));
  traffic_.max_in_flight = std::max<std::uint64_t>(traffic_.max_in_flight, pending_.size());
  return pending_.back().ts;
}

Timestamp KVClient::Pull(const PullRequest& request, std::vector<float>* vals) {
  if (request.keep_rows && !request.create) {
    throw std::logic_error("KVClient::Pull: keep_rows needs create");
  }
  const std::span<const Key> keys = request.keys;
  DataFlags flags;
  flags.set(DataFlag::kCreate, request.create);
  flags.set(DataFlag::kKeepRows, request.keep_rows);
  ReserveHugeFloats(vals, keys.size() * row_width());
  vals->resize(keys.size() * row_width());
  Pending p;
  p.ts = next_ts_++;
  p.vals = vals;
  p.pull_values = vals->size();
  p.is_pull = true;
  p.issued = std::chrono::steady_clock::now();
  auto send = [&](int server, auto&& server_keys) {
    Message m;
    m.kind = MsgKind::kPull;
    m.request_id = p.ts;
    m.flags = flags;
    m.keys.assign(server_keys.begin(), server_keys.end());
    // A buffer for the server to write the reply into (its contents are not sent).
    if (transport_->moves_buffers()) {
      m.vals = Spare();
      ReserveHugeFloats(&m.vals, m.keys.size() * row_width());
    }
    transport_->Send(server, std::move(m));
    ++p.remaining;
  };
  if (options_.num_servers == 1) {
    send(0, keys);
  } else {
    Split(keys);
    p.positions.resize(options_.num_servers);
    for (int s = 0; s < options_.num_servers; ++s) {
      if (split_keys_[s].empty()) continue;
      p.positions[s] = split_pos_[s];
      send(s, split_keys_[s]);
    }
  }
  if (request.keep_rows) kept_pulls_.emplace_back(p.ts, keys.size());
  return AddPending(std::move(p));
}

void KVClient::UseKeptPull(const PushRequest& request) {
  if (!request.kept_pull) return;
  if (request.bsp) throw std::logic_error("KVClient::Push: kept_pull is for async pushes");
  const auto it = std::find_if(kept_pulls_.begin(), kept_pulls_.end(),
                               [&](const auto& e) { return e.first == *request.kept_pull; });
  if (it == kept_pulls_.end() || it->second != request.keys.size()) {
    throw std::logic_error("KVClient::Push: kept_pull is not a kept pull of these keys");
  }
  kept_pulls_.erase(it);
}

Message KVClient::PushMessage(const PushRequest& request, Timestamp ts) const {
  Message m;
  m.kind = MsgKind::kPush;
  m.request_id = ts;
  if (request.bsp) {
    m.bsp_step = request.bsp->step;
    m.flags.set(DataFlag::kHasData, request.bsp->has_data);
  }
  if (request.kept_pull) {
    m.flags.set(DataFlag::kKeysOfPull);
    m.ref = *request.kept_pull;
  }
  return m;
}

Timestamp KVClient::Push(const PushRequest& request, std::vector<float>* grads) {
  UseKeptPull(request);
  Pending p;
  p.ts = next_ts_++;
  p.issued = std::chrono::steady_clock::now();
  if (options_.num_servers == 1) {
    Message m = PushMessage(request, p.ts);
    if (!request.kept_pull) m.keys.assign(request.keys.begin(), request.keys.end());
    m.vals = std::move(*grads);
    *grads = Spare();
    m.counts.assign(request.counts.begin(), request.counts.end());
    traffic_.push_keys += request.keys.size();
    transport_->Send(0, std::move(m));
    p.remaining = 1;
    ++traffic_.push_messages;
  } else {
    p.remaining = SendSplitPush(request, *grads, p.ts);
  }
  return AddPending(std::move(p));
}

int KVClient::SendSplitPush(const PushRequest& request, std::span<const float> grads,
                            Timestamp ts) {
  const int width = row_width();
  const std::span<const std::uint32_t> counts = request.counts;
  Split(request.keys);
  int sent = 0;
  for (int s = 0; s < options_.num_servers; ++s) {
    const auto& pos = split_pos_[s];
    if (pos.empty() && !request.bsp) continue;  // a bsp push reaches every server
    Message m = PushMessage(request, ts);
    if (!request.kept_pull) m.keys = split_keys_[s];
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
    ++sent;
    ++traffic_.push_messages;
  }
  return sent;
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

void KVClient::DeliverPull(Pending* p, Message&& reply) {
  const int width = row_width();
  const int s = reply.sender;
  if (options_.num_servers == 1) {
    if (reply.vals.size() != p->pull_values) {
      throw TransportError("pull reply from server 0 has " + std::to_string(reply.vals.size()) +
                           " values, expected " + std::to_string(p->pull_values));
    }
    std::swap(*p->vals, reply.vals);  // same size: the caller's vector takes the reply's array
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
    float* out = p->vals->data();
    for (std::size_t j = 0; j < pos.size(); ++j) {
      std::memcpy(out + static_cast<std::size_t>(pos[j]) * width, &reply.vals[j * width],
                  sizeof(float) * width);
    }
  }
  Recycle(std::move(reply.vals));
}

void KVClient::Deliver(Message&& reply) {
  Pending* p = Find(reply.request_id);
  const bool pull_reply = reply.kind == MsgKind::kPullReply;
  if ((!pull_reply && reply.kind != MsgKind::kPushReply) || p == nullptr || p->remaining <= 0 ||
      p->is_pull != pull_reply) {
    throw TransportError("unexpected data message (kind " +
                         std::to_string(static_cast<int>(reply.kind)) + ", request " +
                         std::to_string(reply.request_id) + ") from endpoint " +
                         std::to_string(reply.sender));
  }
  if (pull_reply) {
    DeliverPull(p, std::move(reply));
  } else {
    if (reply.flags.has(DataFlag::kAnyHadData)) p->result.any_had_data = true;
    if (reply.flags.has(DataFlag::kCut)) p->result.cut = true;
    Recycle(std::move(reply.vals));  // the push's gradients, handed back by the server
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

}  // namespace fmps
