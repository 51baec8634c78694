// KVClient: the worker's view of the parameter servers, in the ps-lite style of three
// verbs: Pull(keys) -> timestamp, Push(keys, grads) -> timestamp, Wait(timestamp).
//
// Contract:
//  * Keys within one call are unique, in any order. Every key's value row has row_width
//    floats (w, v: KVClientOptions::shape). Keys are partitioned across servers by
//    ServerOfKey (common/base/hash.h).
//  * Pull writes keys.size() * row_width floats into `vals`, in key order; `vals` must stay
//    valid and untouched until Wait(ts) returns. The keys are copied before Pull returns.
//  * Push copies keys, grads and counts before returning (or, given a vector of grads,
//    takes its storage): the caller may reuse its buffers at once. The push is applied when
//    Wait(ts) returns (async: applied by every server holding one of its keys; bsp: the
//    whole step has been applied).
//  * Buffers: over a transport that moves buffers (in-process), servers hand the value
//    arrays of consumed requests back in their replies; the client keeps a few and sends
//    them with its pulls, so steady-state training allocates, zero-fills and copies no value
//    arrays (PullInto takes the reply's array by swap instead of a copy).
//  * Requests to one server are served in the order issued. Wait may be called in any
//    order; every Pull/Push must be waited for exactly once.
//  * Every wait has a timeout: no reply within `reply_timeout` throws TransportError naming
//    the server. Errors from the transport (job aborted) propagate as TransportError.
// Thread safety: one thread uses a KVClient. Cost: O(n) per call plus the servers' work.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/comm/transport.h"
#include "common/base/types.h"
#include "common/model/model_shape.h"

namespace fmps {

using Timestamp = std::uint64_t;

struct KVClientOptions {
  int num_servers = 1;  // servers are endpoints 0 .. num_servers-1
  ModelShape shape;  // the model's: every key's row is shape.row_width() floats
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
  bool cut = false;           // push: a server asked for a checkpoint cut (kFlagCut)
};

class KVClient {
 public:
  // `transport` must outlive the client.
  KVClient(Transport* transport, const KVClientOptions& options);

  // create: servers create missing keys (training); otherwise they read as zeros (eval).
  // keep_rows (needs create): the servers keep the keys' rows for one Push(...,
  // keys_of_pull = this pull's timestamp) of exactly these keys, which then sends no keys
  // and costs the servers no lookups. Such a push must follow (a server refuses more than
  // kMaxKeptPulls kept pulls per client).
  Timestamp Pull(std::span<const Key> keys, float* vals, bool create, bool keep_rows = false);
  // The same into a vector: resizes *vals to keys.size() * row_width floats, whose storage
  // the reply may replace (one server: swapped in, no copy). Neither the vector nor its
  // data may be touched until Wait(ts) returns.
  Timestamp PullInto(std::span<const Key> keys, std::vector<float>* vals, bool create,
                     bool keep_rows = false);

  // grads: keys.size() * row_width floats; counts: empty or one occurrence count per key.
  // step and has_data matter in bsp: every worker pushes once per step to every server
  // (possibly with no keys) and the servers apply the step once all workers have pushed.
  // keys_of_pull (async only; 0 = none): the timestamp of a keep_rows Pull of exactly
  // `keys` in the same order, not yet pushed; throws std::logic_error if it is not one.
  Timestamp Push(std::span<const Key> keys, std::span<const float> grads,
                 std::span<const std::uint32_t> counts, std::int64_t step, bool has_data,
                 bool to_all_servers, Timestamp keys_of_pull = 0);
  // The same, taking the storage of *grads (one server: no copy) and leaving in *grads a
  // recycled buffer of unspecified size and contents.
  Timestamp PushTaking(std::span<const Key> keys, std::vector<float>* grads,
                       std::span<const std::uint32_t> counts, std::int64_t step, bool has_data,
                       bool to_all_servers, Timestamp keys_of_pull = 0);

  // Blocks until request `ts` is complete.
  WaitResult Wait(Timestamp ts);

  // Streams every server's (key, row) pairs to sink in chunks, each server's chunks in
  // ascending key order. Blocking. Returns the bytes all servers' stores use.
  std::uint64_t Dump(
      const std::function<void(int server, std::span<const Key>, std::span<const float>)>& sink);

  // Control messages (anything that is not a reply to this client's requests, e.g.
  // checkpoint coordination) are kept in arrival order in an inbox while waiting.
  // Sends `msg` to endpoint `dest` as is.
  void Send(int dest, Message msg);
  // Removes and returns the first inbox message of `kind` (optionally only with step ==
  // *step), receiving whatever has arrived first; nullopt if none. Never blocks.
  std::optional<Message> Take(MsgKind kind, std::optional<std::int64_t> step = std::nullopt);
  // Like Take but waits up to reply_timeout; throws TransportError naming `what` after it.
  Message WaitFor(MsgKind kind, std::optional<std::int64_t> step, const char* what);

  // Tells every server to leave its loop. No reply.
  void ShutdownServers();

  const KVStats& stats() const { return stats_; }
  const KVTraffic& traffic() const { return traffic_; }
  int num_servers() const { return options_.num_servers; }
  int row_width() const { return options_.shape.row_width(); }

 private:
  struct Pending {
    Timestamp ts = 0;
    int remaining = 0;                                  // replies still expected
    float* vals = nullptr;                              // pull destination
    std::vector<float>* vec = nullptr;                  // ... when it is a whole vector
    std::size_t pull_values = 0;                        // floats the pull writes into vals
    std::vector<std::vector<std::uint32_t>> positions;  // pull: per server, key positions
    WaitResult result;
    bool is_pull = false;
    std::chrono::steady_clock::time_point issued;
  };
  // Splits keys by server into split_keys_ / split_pos_.
  void Split(std::span<const Key> keys);
  Timestamp StartPull(std::span<const Key> keys, float* vals, std::vector<float>* vec, bool create,
                      bool keep_rows);
  Timestamp StartPush(std::span<const Key> keys, std::span<const float> grads,
                      std::vector<float>* grads_vec, std::span<const std::uint32_t> counts,
                      std::int64_t step, bool has_data, bool to_all_servers,
                      Timestamp keys_of_pull);
  // Keeps a buffer a reply brought back (at most kMaxSpare); Spare() takes one (or an empty
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
  std::deque<Message> inbox_;     // control messages not yet taken
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
