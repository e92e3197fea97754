// What a request actor talks to besides its sink: the batcher (admission, cancel), the
// scheduler, a watcher of the scheduler (monitored: the scheduler's end ends the request)
// and the serving metrics.
#pragma once
#include <memory>

#include "troupe/actors/batcher.hpp"
#include "troupe/actors/scheduler.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

struct request_actor_links {
  batcher_actor batcher;
  scheduler_actor scheduler;
  // Quits when the scheduler does. Request actors monitor one of a few such watchers rather
  // than the scheduler itself: CAF keeps an actor's monitors in a list that every demonitor
  // scans, so with one entry per live request in the scheduler's list each request's end
  // cost a scan of all the others (4-7% of the runtime's CPU at 1,024 streams).
  caf::actor scheduler_watcher;
  std::shared_ptr<serving_metrics> metrics;  // null: none; gets each gap between output tokens
  int64_t kv_pool_tokens = 0;  // positions the whole KV pool holds: a longer prompt never fits
};

}  // namespace troupe
