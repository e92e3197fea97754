// request_plan: each request's prompt, length, priority and cancel point from its index.
#include "plan.hpp"

#include "random.hpp"

namespace troupe::load {
namespace {

// Purposes of the seeded streams (any distinct constants).
constexpr uint64_t request_stream = 1;
constexpr uint64_t arrival_stream = 2;
constexpr uint64_t think_stream = 3;

int64_t draw_length(random_stream& rng, const length_spec& s) {
  return rng.uniform_int(s.min_tokens, s.max_tokens);
}

}  // namespace

request_plan::request_plan(workload w, std::vector<prompt_entry> file_prompts)
    : workload_(std::move(w)), file_prompts_(std::move(file_prompts)) {
  if (workload_.prompt_file && file_prompts_.empty()) {
    throw workload_error("prompt.file " + *workload_.prompt_file + " holds no prompts");
  }
  if (workload_.output_from_file) {
    for (size_t i = 0; i < file_prompts_.size(); ++i) {
      if (!file_prompts_[i].output_tokens) {
        throw workload_error("output.from_file: prompt " + std::to_string(i + 1) + " of " +
                             *workload_.prompt_file + " has no output_tokens");
      }
    }
  }
}

request_spec request_plan::make_request(uint64_t index) const {
  // Draw in a fixed order so that changing one field's spec leaves the others' draws alone.
  random_stream rng(workload_.seed, request_stream, index);
  const uint64_t prompt_seed = rng.next();
  const double priority_draw = rng.uniform();
  const double cancel_draw = rng.uniform();
  const uint64_t length_seed = rng.next();
  random_stream length_rng(length_seed);

  request_spec r;
  r.index = index;
  r.id = std::to_string(index);
  r.id.insert(r.id.begin(), 'r');  // not "r" + ...: GCC 12 warns (-Wrestrict) on that
  const prompt_entry* entry = nullptr;
  if (!file_prompts_.empty()) {
    entry = &file_prompts_[prompt_seed % file_prompts_.size()];
    r.prompt = entry->text;
  } else {
    r.prompt = synthetic_prompt(draw_length(length_rng, *workload_.prompt_tokens), prompt_seed);
  }
  r.max_tokens = workload_.output_from_file ? *entry->output_tokens
                                            : draw_length(length_rng, workload_.output_tokens);
  if (!workload_.priorities.empty()) {
    double total = 0;
    for (const auto& c : workload_.priorities) total += c.weight;
    double point = priority_draw * total;
    r.priority = workload_.priorities.back().priority;
    for (const auto& c : workload_.priorities) {
      if (point < c.weight) {
        r.priority = c.priority;
        break;
      }
      point -= c.weight;
    }
  }
  if (cancel_draw < workload_.cancel.share) r.cancel_after_tokens = workload_.cancel.after_tokens;
  return r;
}

double request_plan::arrival_gap_ms(uint64_t index) const {
  const auto& a = *workload_.arrival;
  const double mean_ms = 1000.0 / a.rate_per_s;
  if (a.process == arrival_process::constant) return mean_ms;
  random_stream rng(workload_.seed, arrival_stream, index);
  return rng.exponential(mean_ms);
}

double request_plan::think_time_ms(uint64_t index) const {
  const auto& c = *workload_.closed;
  if (c.think_time == think_time_kind::constant || c.think_time_ms == 0) return c.think_time_ms;
  random_stream rng(workload_.seed, think_stream, index);
  return rng.exponential(c.think_time_ms);
}

request_plan make_plan(const workload& w) {
  std::vector<prompt_entry> prompts;
  if (w.prompt_file) prompts = load_prompt_file(*w.prompt_file);
  return request_plan(w, std::move(prompts));
}

}  // namespace troupe::load
