#include "troupe/cluster/routing.hpp"

#include <algorithm>
#include <limits>

namespace troupe::cluster {

double load_score(const replica_load& r, const routing_options& o) {
  const double slower = r.slowness > 1.0 ? r.slowness - 1.0 : 0.0;  // NaN and values under 1 count as 1
  return static_cast<double>(r.in_flight) + o.waiting_weight * r.num_waiting + o.kv_weight * r.kv_use +
         o.latency_weight * std::min(slower, 100.0);
}

std::optional<size_t> pick_replica(const std::vector<replica_load>& replicas, std::optional<size_t> affinity,
                                   size_t rotation, const routing_options& o) {
  const size_t n = replicas.size();
  if (n == 0) return std::nullopt;
  std::optional<size_t> best;
  double best_score = std::numeric_limits<double>::infinity();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (rotation + k) % n;
    if (!replicas[i].up) continue;
    const double s = load_score(replicas[i], o);
    if (s < best_score) {
      best_score = s;
      best = i;
    }
  }
  if (!best) return std::nullopt;
  std::optional<size_t> cached;
  double cached_score = std::numeric_limits<double>::infinity();
  for (size_t k = 0; k < n; ++k) {
    const size_t i = (rotation + k) % n;
    if (!replicas[i].up || !replicas[i].has_prefix) continue;
    const double s = load_score(replicas[i], o);
    if (s < cached_score) {
      cached_score = s;
      cached = i;
    }
  }
  if (cached && cached_score <= best_score + o.affinity_slack) return cached;
  if (affinity && *affinity < n && replicas[*affinity].up &&
      load_score(replicas[*affinity], o) <= best_score + o.affinity_slack) {
    return affinity;
  }
  return best;
}

std::optional<size_t> affinity_table::find(uint64_t key) const {
  auto it = index_.find(key);
  if (it == index_.end()) return std::nullopt;
  return it->second->second;
}

void affinity_table::remember(uint64_t key, size_t replica) {
  if (auto it = index_.find(key); it != index_.end()) {
    order_.erase(it->second);
    index_.erase(it);
  }
  order_.emplace_front(key, replica);
  index_[key] = order_.begin();
  while (index_.size() > capacity_) {
    index_.erase(order_.back().first);
    order_.pop_back();
  }
}

}  // namespace troupe::cluster
