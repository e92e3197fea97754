// A recorder of when each actor ran, for the scheduling benchmark's step timeline
// (bench_sched_overhead --trace). Off by default: a span then costs one relaxed atomic
// load. While on, each thread appends to its own buffer; stop() gathers them.
#pragma once
#include <cstdint>
#include <vector>

namespace troupe::trace {

enum class lane : uint8_t {
  worker,     // the worker actor's step handler: plan_state, KV moves, the backend, the reply
  backend,    // the backend's step alone (inside worker)
  scheduler,  // the scheduler actor: a step's result applied, the next planned and sent, fan-out
  fan_out,    // a fan-out actor delivering one step's events
  request,    // a request actor handling one event
  batcher,    // the batcher admitting requests
};
const char* name_of(lane l);

struct span {
  lane what = lane::worker;
  uint32_t thread = 0;  // a small number per thread, in order of first use
  int64_t begin_ns = 0;  // steady clock
  int64_t end_ns = 0;
};

void start();               // clears what was recorded and starts recording
std::vector<span> stop();   // stops, and returns every span recorded, by begin time
bool is_on();

class scoped_span {
 public:
  explicit scoped_span(lane what);
  ~scoped_span();
  scoped_span(const scoped_span&) = delete;
  scoped_span& operator=(const scoped_span&) = delete;

 private:
  lane what_;
  int64_t begin_ns_ = -1;  // -1: not recording
};

}  // namespace troupe::trace
