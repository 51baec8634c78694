// KVClient: the worker's view of the parameter servers, in the ps-lite style of three
// verbs: Pull(request) -> timestamp, Push(request) -> timestamp, Wait(timestamp). It uses
// only the data channel of its Transport; control messages are ControlChannel's
// (common/comm/control.h).
//
// Contract:
//  * Keys within one call are unique, in any order. Every key's value row has row_width
//    floats (w, v: KVClientOptions::shape). Keys are partitioned across servers by
//    ServerOfKey (common/base/hash.h).
//  * Pull resizes *vals to keys.size() * row_width floats and fills them in key order when
//    Wait(ts) returns; neither the vector nor its data may be touched until then (with one
//    server the reply's array is swapped in, no copy). The keys are copied before Pull
//    returns.
//  * Push copies keys and counts before returning and takes the storage of *grads (one
//    server: no copy), leaving in *grads a recycled buffer of unspecified size and contents.
//    The push is applied when Wait(ts) returns (async: applied by every server holding one
//    of its keys; bsp: the whole step has been applied).
//  * Buffers: over a transport that moves buffers (in-process), servers hand the value
//    arrays of consumed requests back in their replies; the client keeps a few and sends
//    them with its pulls, so steady-state training allocates, zero-fills and copies no value
//    arrays. Over MPI the transport does the same: a reply's values are decoded into the
//    array of a message this rank sent before or of a buffer the client lent it
//    (Transport::Lend: the caller's old pull buffer once a reply is swapped in), and with one
//    server the reply's array is swapped in as is.
//  * Requests to one server are served in the order issued. Wait may be called in any
//    order; every Pull/Push must be waited for exactly once.
//  * Every wait has a timeout: no reply within `reply_timeout` throws TransportError naming
//    the server. Errors from the transport (job aborted) propagate as TransportError, and so
//    does any data message that is not a reply to this client's requests.
// Thread safety: one thread uses a KVClient. Cost: O(n) per call plus the servers' work.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/base/types.h"
#include "common/comm/transport.h"
#include "common/model/model_shape.h"

namespace fmps {

using Timestamp = std::uint64_t;

struct KVClientOptions {
  int num_servers = 1;  // servers are endpoints 0 .. num_servers-1
  ModelShape shape;     // the model's: every key's row is shape.row_width() floats
  std::chrono::milliseconds reply_timeout{std::chrono::minutes(10)};
};

// Request counts and latencies (issue to completion) seen by one client.
struct KVStats {
  std::uint64_t pulls = 0;
  std::uint64_t pushes = 0;
  double pull_seconds = 0.0;  // summed latency of completed pulls
  double push_seconds = 0.0;  // summed latency of completed pushes
};

// What one client has sent, for accounting (every push applied exactly once: the servers'
// ServerStats must add up to the clients' KVTraffic) and for the in-flight bound.
struct KVTraffic {
  std::uint64_t push_messages = 0;  // kPush messages sent (one per server a Push reaches)
  std::uint64_t push_keys = 0;      // keys in them
  std::uint64_t max_in_flight = 0;  // most requests (Pull/Push) issued and not yet waited for
};

// What a completed request reports.
struct WaitResult {
  bool any_had_data = false;  // bsp push: some worker had rows in that step
  bool cut = false;           // push: a server asked for a checkpoint cut (DataFlag::kCut)
};

struct PullRequest {
  std::span<const Key> keys = {};
  // Servers create missing keys (training); otherwise they read as zeros (eval).
  bool create = false;
  // Needs create: the servers keep the keys' rows for one push of exactly these keys that
  // names this pull (PushRequest::kept_pull), which then sends no keys and costs the servers
  // no lookups. Such a push must follow (a server refuses more than kMaxKeptPulls kept pulls
  // per client).
  bool keep_rows = false;
};

// A bsp push: every worker pushes once per step to every server (possibly with no keys) and
// the servers apply the step once all workers have pushed.
struct BspStep {
  std::int64_t step = 0;
  bool has_data = false;  // this worker had rows in the step
};

struct PushRequest {
  std::span<const Key> keys = {};
  std::span<const std::uint32_t> counts = {};  // empty or one occurrence count per key
  // bsp: the step; the push goes to every server. Unset: an async push, sent only to the
  // servers holding one of its keys.
  std::optional<BspStep> bsp = std::nullopt;
  // async only: the timestamp of a keep_rows Pull of exactly `keys` in the same order, not
  // yet pushed (Push throws std::logic_error if it is not one).
  std::optional<Timestamp> kept_pull = std::nullopt;
};

class KVClient {
 public:
  // `transport` must outlive the client.
  KVClient(Transport* transport, const KVClientOptions& options);

  // Issues a pull into *vals (see the contract above). Throws std::logic_error if keep_rows
  // is asked without create.
  Timestamp Pull(const PullRequest& request, std::vector<float>* vals);
  // Issues a push of *grads: keys.size() * row_width floats (see the contract above). Throws
  // std::logic_error for a kept_pull that is not an unpushed keep_rows pull of these keys,
  // or one given with bsp.
  Timestamp Push(const PushRequest& request, std::vector<float>* grads);

  // Blocks until request `ts` is complete.
  WaitResult Wait(Timestamp ts);

  const KVStats& stats() const { return stats_; }
  const KVTraffic& traffic() const { return traffic_; }
  int num_servers() const { return options_.num_servers; }
  int row_width() const { return options_.shape.row_width(); }

 private:
  struct Pending {
    Timestamp ts = 0;
    int remaining = 0;                                  // replies still expected
    std::vector<float>* vals = nullptr;                 // pull destination
    std::size_t pull_values = 0;                        // floats the pull writes into vals
    std::vector<std::vector<std::uint32_t>> positions;  // pull: per server, key positions
    WaitResult result;
    bool is_pull = false;
    std::chrono::steady_clock::time_point issued;
  };
  // Splits keys by server into split_keys_ / split_pos_.
  void Split(std::span<const Key> keys);
  // Checks and forgets the kept pull a push names.
  void UseKeptPull(const PushRequest& request);
  // The kPush message (without keys or values) of a push.
  Message PushMessage(const PushRequest& request, Timestamp ts) const;
  // Sends the push split by server; returns the messages sent.
  int SendSplitPush(const PushRequest& request, std::span<const float> grads, Timestamp ts);
  void DeliverPull(Pending* p, Message&& reply);
  // Adds a new pending request; returns its timestamp.
  Timestamp AddPending(Pending&& p);
  // Keeps a buffer a reply brought back (at most kMaxSpare; over a transport that does not
  // move buffers one, lending the others to it); Spare() takes one (or an empty
  // vector), of unspecified size and contents.
  void Recycle(std::vector<float>&& buffer);
  std::vector<float> Spare();
  Pending* Find(Timestamp ts);
  void Deliver(Message&& reply);
  Message Receive(const char* what);

  Transport* transport_;
  KVClientOptions options_;
  Timestamp next_ts_ = 1;
  std::vector<Pending> pending_;  // few entries (bounded by in-flight requests)
  // keep_rows pulls not yet pushed: (timestamp, number of keys).
  std::vector<std::pair<Timestamp, std::size_t>> kept_pulls_;
  std::vector<std::vector<Key>> split_keys_;
  std::vector<std::vector<std::uint32_t>> split_pos_;
  static constexpr std::size_t kMaxSpare = 8;
  std::vector<std::vector<float>> spare_;  // recycled value buffers
  KVStats stats_;
  KVTraffic traffic_;
};

}  // namespace fmps
