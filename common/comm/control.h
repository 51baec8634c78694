// ControlChannel: sends and receives the typed control messages (common/proto/control.proto)
// of one endpoint, beside its KVClient on the same Transport: checkpoint cuts, statistics,
// model dumps, shutdown. The KVClient's data path never sees a control message, and control
// messages wait here, in arrival order, until taken by type.
//
// Thread safety: used by the endpoint's owning thread (the thread that also drives its
// KVClient). Cost: control messages are rare; TryTake scans the few kept messages.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>

#include "common/base/types.h"
#include "common/comm/transport.h"

namespace fmps {

using ControlType = pb::Control::BodyCase;

class ControlChannel {
 public:
  // Which messages of a type a take accepts (all when empty).
  using Match = std::function<bool(const ControlMessage&)>;

  // `transport` must outlive the channel. `timeout` bounds every WaitFor.
  ControlChannel(Transport* transport, std::chrono::milliseconds timeout);

  // Sends `msg` to endpoint `dest`. Throws TransportError (job aborted, unknown dest, no body).
  void Send(int dest, pb::Control msg);
  // Removes and returns the oldest message of `type` (accepted by `match`), after taking in
  // whatever control messages have arrived; nullopt if none. Never blocks.
  std::optional<ControlMessage> TryTake(ControlType type, const Match& match = {});
  // Like TryTake but waits up to the timeout; then throws TransportError naming `what`.
  ControlMessage WaitFor(ControlType type, const char* what, const Match& match = {});
  // Keeps a control message received elsewhere (see DumpServers) for TryTake/WaitFor.
  void Keep(ControlMessage msg);

  Transport* transport() const { return transport_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  std::optional<ControlMessage> Find(ControlType type, const Match& match);

  Transport* transport_;
  std::chrono::milliseconds timeout_;
  std::deque<ControlMessage> kept_;  // received, not yet taken
};

// Tells servers 0 .. num_servers-1 to leave their loops (Shutdown). No reply.
void ShutdownServers(ControlChannel* control, int num_servers);

// Streams every (key, row) pair of servers 0 .. num_servers-1 to sink: sends DumpRequest,
// then receives each server's kDumpChunk data messages (keys in the store's order, rows of
// row_width floats) until its DumpDone. The sink is handed each chunk's rows to keep (a
// model of 10^5+ FFM keys is hundreds of MB: keeping the received arrays spares a copy).
// Control messages of other types that arrive meanwhile are kept in `control`. The endpoint
// must have no data request in flight (an unexpected data message throws TransportError).
// Returns the bytes all stores use.
// Which parameters DumpServers streams: the stores', or the best model each server kept
// (pb::Control keep_best; a server that kept none dumps its store).
enum class DumpOf { kStore, kBest };
std::uint64_t DumpServers(
    ControlChannel* control, int num_servers, int row_width,
    const std::function<void(int server, std::span<const Key>, std::vector<float>&& rows)>& sink,
    DumpOf what = DumpOf::kStore);

}  // namespace fmps
