// A stand-in for the model in scheduler tests: a paged KV memory of token ids and a next
// token that hashes everything the sequence's block table says was fed.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include <doctest/doctest.h>

#include "troupe/engine/scheduler_policy.hpp"

namespace troupe::test {

// Stands in for the model over a paged KV memory that holds token ids: a step first does
// the block moves (swap_out, copies, swap_in), then writes every fed token into its slot
// through the block table, then reads each sequence's context [0, start_pos + n) back the
// same way. The next token hashes that context, the seed and the sample index, so a wrong
// start_pos, block table, block move or sample_index changes every later token. A test may
// give another next-token rule (a predictable one, for speculative decoding). Proposed
// tokens are verified as the backends do: position by position, accepted while the sample
// equals the proposal, each sample reading the context back through the block table.
class simulated_worker {
 public:
  using next_token_rule = std::function<int32_t(const std::vector<int32_t>& context, uint64_t seed, uint64_t index)>;

  simulated_worker(int32_t num_blocks, int32_t block_size, int32_t num_host_blocks, std::vector<int32_t> eog_ids = {2})
      : block_size_(block_size),
        device_(static_cast<size_t>(num_blocks * block_size), -1),
        host_(static_cast<size_t>(num_host_blocks * block_size), -1),
        plans_(std::move(eog_ids)) {}

  // Runs a scheduled step the way the worker actor does: the delta through plan_state
  // (last_plan() is what ran), then the block moves and the plan.
  step_result run(const scheduled_step& step) {
    auto delta = step.plan;
    last_plan_ = plans_.apply(std::move(delta));
    auto result = run(step.ops, last_plan_);
    plans_.on_result(result);
    return result;
  }
  const batch_plan& last_plan() const { return last_plan_; }
  void set_rule(next_token_rule rule) { rule_ = std::move(rule); }
  const plan_state& plans() const { return plans_; }

  // Draft-model proposals (draft_slot) are filled by this rule, as the worker's draft model
  // would fill them; without one they stay slots, which no sample equals. The rule returning
  // draft_stops leaves that slot and the ones after it unfilled (a draft model unsure there):
  // they are not fed, and the output says how many were filled (num_drafted).
  static constexpr int32_t draft_stops = -2;
  void set_draft_rule(next_token_rule rule) { draft_rule_ = std::move(rule); }

  step_result run(const kv_operations& ops, const batch_plan& given) {
    for (const auto& c : ops.swap_out) move_block(device_, c.src, host_, c.dst);
    for (const auto& c : ops.copies) move_block(device_, c.src, device_, c.dst);
    for (const auto& c : ops.swap_in) move_block(host_, c.src, device_, c.dst);
    batch_plan plan = given;
    std::vector<int32_t> num_drafted(plan.sequences.size(), -1);
    for (size_t si = 0; si < plan.sequences.size(); ++si) {
      auto& s = plan.sequences[si];
      REQUIRE(s.block_table.size() * static_cast<size_t>(block_size_) >= s.start_pos + s.tokens.size());
      for (size_t i = 0; i < s.tokens.size(); ++i) slot(s.block_table, s.start_pos + static_cast<int32_t>(i)) = s.tokens[i];
      if (s.num_draft_tokens == 0 || s.tokens.back() != draft_slot || !draft_rule_) continue;
      const int32_t known_end = s.start_pos + static_cast<int32_t>(s.tokens.size()) - s.num_draft_tokens;
      std::vector<int32_t> context;
      for (int32_t pos = 0; pos < known_end; ++pos) context.push_back(slot(s.block_table, pos));
      int32_t filled = 0;
      for (; filled < s.num_draft_tokens; ++filled) {
        const int32_t token = draft_rule_(context, s.params.seed, s.sample_index + static_cast<uint64_t>(filled));
        if (token == draft_stops) break;
        context.push_back(token);
        s.tokens[s.tokens.size() - static_cast<size_t>(s.num_draft_tokens - filled)] = token;
        slot(s.block_table, known_end + filled) = token;
      }
      s.tokens.resize(s.tokens.size() - static_cast<size_t>(s.num_draft_tokens - filled));
      s.num_draft_tokens = filled;
      num_drafted[si] = filled;
    }
    step_result result;
    for (size_t si = 0; si < plan.sequences.size(); ++si) {
      const auto& s = plan.sequences[si];
      sequence_output o;
      o.seq_id = s.seq_id;
      o.num_drafted = num_drafted[si];
      if (s.wants_sample) {
        const int32_t num_drafts = s.num_draft_tokens;
        const int32_t known_end = s.start_pos + static_cast<int32_t>(s.tokens.size()) - num_drafts;
        std::vector<int32_t> context;
        for (int32_t pos = 0; pos < known_end; ++pos) context.push_back(slot(s.block_table, pos));
        for (int32_t i = 0;; ++i) {
          const int32_t token = rule_ ? rule_(context, s.params.seed, s.sample_index + static_cast<uint64_t>(i))
                                      : next_token(context, s.params.seed, s.sample_index + static_cast<uint64_t>(i));
          if (i < num_drafts && token == s.tokens[s.tokens.size() - static_cast<size_t>(num_drafts - i)]) {
            o.accepted.push_back({token, 0.0f, {}});
            context.push_back(slot(s.block_table, known_end + i));
            continue;
          }
          o.token = token;
          if (s.params.num_logprobs > 0) o.top_logprobs = next_distribution(context, s.params.num_logprobs);
          break;
        }
      }
      result.outputs.push_back(o);
    }
    return result;
  }

  // The k likeliest next tokens after `context`, most likely first, for steps that ask for
  // logprobs (beam search reads them): distinct ids from the context's hash, with
  // log-probabilities that fall with rank by hashed steps. The end-of-generation id 2
  // appears when the hash says so, so that beams end.
  static std::vector<token_logprob> next_distribution(const std::vector<int32_t>& context, int32_t k) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int32_t t : context) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
    std::vector<token_logprob> out;
    float logprob = -static_cast<float>(h % 7) * 0.125f - 0.05f;
    for (int32_t i = 0; static_cast<int32_t>(out.size()) < k; ++i) {
      h = (h ^ static_cast<uint64_t>(i + 1)) * 1099511628211ull;
      const int32_t token = (h >> 11) % 23 == 0 ? 2 : 10 + static_cast<int32_t>((h >> 17) % 990);
      if (std::any_of(out.begin(), out.end(), [&](const token_logprob& x) { return x.token == token; })) continue;
      out.push_back({token, logprob});
      logprob -= 0.05f + static_cast<float>((h >> 29) % 16) * 0.0625f;
    }
    return out;
  }

  static int32_t next_token(const std::vector<int32_t>& context, uint64_t seed, uint64_t sample_index) {
    uint64_t h = 1469598103934665603ull ^ seed ^ (sample_index << 32);
    for (int32_t t : context) h = (h ^ static_cast<uint64_t>(t)) * 1099511628211ull;
    return 10 + static_cast<int32_t>(h % 990);  // never an end-of-generation id below 10
  }

 private:
  int32_t& slot(const std::vector<int32_t>& table, int32_t pos) {
    return device_.at(static_cast<size_t>(table.at(static_cast<size_t>(pos / block_size_)) * block_size_ + pos % block_size_));
  }
  void move_block(const std::vector<int32_t>& from, int32_t src, std::vector<int32_t>& to, int32_t dst) {
    const auto first = from.begin() + static_cast<ptrdiff_t>(src) * block_size_;
    std::copy(first, first + block_size_, to.begin() + static_cast<ptrdiff_t>(dst) * block_size_);
  }

  int32_t block_size_;
  std::vector<int32_t> device_;  // num_blocks x block_size token ids
  std::vector<int32_t> host_;
  plan_state plans_;
  batch_plan last_plan_;
  next_token_rule rule_;
  next_token_rule draft_rule_;
};

// What the simulated worker samples for a request that runs alone and is never preempted.
inline std::vector<int32_t> run_alone(const sequence_request& r, int32_t max_sequence_tokens) {
  std::vector<int32_t> context = r.prompt_tokens;
  std::vector<int32_t> output;
  while (true) {
    output.push_back(simulated_worker::next_token(context, r.params.seed, output.size()));
    context.push_back(output.back());
    const auto& stops = r.params.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), output.back()) != stops.end()) return output;
    if (static_cast<int32_t>(output.size()) >= r.params.max_tokens ||
        static_cast<int32_t>(context.size()) >= max_sequence_tokens) {
      return output;
    }
  }
}

}  // namespace troupe::test
