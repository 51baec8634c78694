#include "common/comm/control.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "common/base/error.h"

namespace fmps {

ControlChannel::ControlChannel(Transport* transport, std::chrono::milliseconds timeout)
    : transport_(transport), timeout_(timeout) {}

void ControlChannel::Send(int dest, pb::Control msg) {
  transport_->SendControl(dest, std::move(msg));
}

void ControlChannel::Keep(ControlMessage msg) { kept_.push_back(std::move(msg)); }

std::optional<ControlMessage> ControlChannel::Find(ControlType type, const Match& match) {
  for (auto it = kept_.begin(); it != kept_.end(); ++it) {
    if (it->body.body_case() == type && (!match || match(*it))) {
      ControlMessage m = std::move(*it);
      kept_.erase(it);
      return m;
    }
  }
  return std::nullopt;
}

std::optional<ControlMessage> ControlChannel::TryTake(ControlType type, const Match& match) {
  while (std::optional<ControlMessage> m = transport_->RecvControl(std::chrono::milliseconds(0))) {
    kept_.push_back(std::move(*m));
  }
  return Find(type, match);
}

ControlMessage ControlChannel::WaitFor(ControlType type, const char* what, const Match& match) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  if (std::optional<ControlMessage> m = TryTake(type, match)) return std::move(*m);
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      throw TransportError(std::string("no ") + what + " within " +
                           std::to_string(timeout_.count() / 1000) + " s");
    }
    std::optional<ControlMessage> m = transport_->RecvControl(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
        std::chrono::milliseconds(1));
    if (!m) continue;
    kept_.push_back(std::move(*m));
    if (std::optional<ControlMessage> found = Find(type, match)) return std::move(*found);
  }
}

void ShutdownServers(ControlChannel* control, int num_servers) {
  for (int s = 0; s < num_servers; ++s) {
    pb::Control m;
    m.mutable_shutdown();
    control->Send(s, std::move(m));
  }
}

namespace {
// One data message of a dump: a chunk from a server, with a row per key.
void CheckDumpChunk(const Message& m, int num_servers, std::size_t row_width) {
  if (m.kind != MsgKind::kDumpChunk || m.sender < 0 || m.sender >= num_servers) {
    throw TransportError("unexpected data message (kind " +
                         std::to_string(static_cast<int>(m.kind)) + ") from endpoint " +
                         std::to_string(m.sender) + " during a dump");
  }
  if (m.vals.size() != m.keys.size() * row_width) {
    throw TransportError("malformed dump chunk from server " + std::to_string(m.sender));
  }
}
}  // namespace

std::uint64_t DumpServers(
    ControlChannel* control, int num_servers, int row_width,
    const std::function<void(int, std::span<const Key>, std::vector<float>&&)>& sink, DumpOf what) {
  for (int s = 0; s < num_servers; ++s) {
    pb::Control m;
    if (what == DumpOf::kBest) {
      m.mutable_dump_best_request();
    } else {
      m.mutable_dump_request();
    }
    control->Send(s, std::move(m));
  }
  std::vector<bool> done(num_servers, false);
  int remaining = num_servers;
  std::uint64_t bytes = 0;
  while (remaining > 0) {
    std::optional<Received> r = control->transport()->Receive(control->timeout(), Channels::kBoth);
    if (!r) {
      throw TransportError("no model dump from the servers within " +
                           std::to_string(control->timeout().count() / 1000) + " s");
    }
    if (Message* m = std::get_if<Message>(&*r)) {
      CheckDumpChunk(*m, num_servers, static_cast<std::size_t>(row_width));
      if (done[m->sender]) throw TransportError("dump chunk after the server's DumpDone");
      sink(m->sender, m->keys, std::move(m->vals));
      continue;
    }
    ControlMessage& c = std::get<ControlMessage>(*r);
    if (c.body.body_case() != pb::Control::kDumpDone) {
      control->Keep(std::move(c));
      continue;
    }
    if (c.sender < 0 || c.sender >= num_servers || done[c.sender]) {
      throw TransportError("unexpected DumpDone from endpoint " + std::to_string(c.sender));
    }
    done[c.sender] = true;
    --remaining;
    bytes += c.body.dump_done().store_bytes();
  }
  return bytes;
}

}  // namespace fmps
