// What a request actor talks to besides its sink: the batcher (admission, cancel), the
// scheduler (monitored: its end ends the request) and the serving metrics.
#pragma once
#include <memory>

#include "troupe/actors/batcher.hpp"
#include "troupe/actors/scheduler.hpp"
#include "troupe/engine/serving_metrics.hpp"

namespace troupe {

struct request_actor_links {
  batcher_actor batcher;
  scheduler_actor scheduler;
  std::shared_ptr<serving_metrics> metrics;  // null: none; gets each gap between output tokens
  int64_t kv_pool_tokens = 0;  // positions the whole KV pool holds: a longer prompt never fits
};

}  // namespace troupe
