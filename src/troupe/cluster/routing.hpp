// The routing rule of the replica router, as pure functions: which replica a request goes
// to, from each replica's live load and the request's prefix affinity (docs/scale-out.md).
#pragma once
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "troupe/engine/prefix_key.hpp"
#include "troupe/engine/request.hpp"

namespace troupe::cluster {

// What the router knows of one replica when it routes a request.
struct replica_load {
  bool up = false;           // connected, key accepted, answering its stats in time
  int64_t in_flight = 0;     // requests the router sent there that have not ended
  int32_t num_waiting = 0;   // its scheduler's waiting queue, from the last stats snapshot
  double kv_use = 0.0;       // its KV pool's used blocks per block, in [0, 1], from the same snapshot
  bool has_prefix = false;   // its last prefix digest holds the request's prefix key
  // Its recent time per step over the fastest up replica's (>= 1; 1 while unknown): the
  // latency its streams see now, from its stats snapshots (a slower device, a noisy
  // neighbour, a replica that has started swapping).
  double slowness = 1.0;
};

// The most prefix keys the router keeps of one replica's digest (a replica sends at most
// this many: engine/prefix_digest.hpp's default capacity).
inline constexpr size_t max_digest_keys = 4096;

struct routing_options {
  // A replica's score: in_flight + waiting_weight * num_waiting + kv_weight * kv_use
  //                    + latency_weight * (slowness - 1).
  double waiting_weight = 0.5;
  double kv_weight = 4.0;
  double latency_weight = 2.0;  // steps twice as slow as the fastest replica's: two requests more
  // A request keeps its affinity replica while that one's score is at most the least
  // score plus this slack ("much busier" is more than this many requests ahead).
  double affinity_slack = 4.0;
};

double load_score(const replica_load& r, const routing_options& o = {});

// The replica for a request, in this order:
// 1. of the up replicas whose prefix digest holds the request's key (has_prefix), the least
//    loaded, unless it is much busier than the least loaded of all (more than
//    affinity_slack above its score);
// 2. else its affinity replica (the one a request with the same prefix went to) when that
//    is up and not much busier than the least loaded;
// 3. else the up replica of least score.
// Ties go to the first at or after `rotation` (mod the count), so that equal replicas share
// the work. None when no replica is up.
std::optional<size_t> pick_replica(const std::vector<replica_load>& replicas, std::optional<size_t> affinity,
                                   size_t rotation, const routing_options& o = {});

// The request's prefix key (engine/prefix_key.hpp): the replicas compute it alike for
// their prefix digests.
using troupe::prefix_key;
using troupe::prefix_key_chars;

// Which replica each recent prefix key went to: at most `capacity` keys, the least
// recently used forgotten first.
class affinity_table {
 public:
  explicit affinity_table(size_t capacity = 8192) : capacity_(capacity) {}
  std::optional<size_t> find(uint64_t key) const;
  void remember(uint64_t key, size_t replica);
  size_t size() const { return index_.size(); }

 private:
  size_t capacity_;
  std::list<std::pair<uint64_t, size_t>> order_;  // most recent first
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, size_t>>::iterator> index_;
};

}  // namespace troupe::cluster
