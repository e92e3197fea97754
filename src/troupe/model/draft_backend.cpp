// draft_backend: the draft model's proposal steps, then the target's step, then the general
// acceptance rule per position.
#include "troupe/model/draft_backend.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <string>
#include <utility>

#include "troupe/model/error.hpp"
#include "troupe/model/sampler_math.hpp"
#include "troupe/model/speculative.hpp"

namespace troupe {

namespace {

// The three random streams of a draft-model step, apart from each other and from the
// plain sampler's stream (which the bonus token uses).
enum class stream : uint64_t { draft = 0xD7AF7D7AF7ull, accept = 0xACCE97ACCE97ull, resample = 0x7E5A3B1E7E5Aull };

double uniform(uint64_t seed, uint64_t sample_index, stream s) {
  return sample_uniform(splitmix64(seed ^ static_cast<uint64_t>(s)), sample_index);
}

// A draw from `probs` (summing to 1) by one uniform, scanning in token order; only a token
// of positive probability can come out. -1 when no token has any.
int32_t draw_from(std::span<const float> probs, double u) {
  double total = 0;
  for (float x : probs) total += x;
  const double target = u * total;
  double acc = 0;
  int32_t last = -1;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (!(probs[i] > 0)) continue;
    last = static_cast<int32_t>(i);
    acc += probs[i];
    if (target < acc) return last;
  }
  return last;
}

// log(sum(exp(raw))), computed from the largest logit.
float log_sum_exp(std::span<const float> raw) {
  float max_logit = -INFINITY;
  for (float x : raw) max_logit = std::max(max_logit, x);
  double sum = 0;
  for (float x : raw) sum += std::exp(static_cast<double>(x - max_logit));
  return max_logit + static_cast<float>(std::log(sum));
}

// What the sampler reports of an emitted token: its log-softmax under the raw logits, and
// the n likeliest tokens (ties by id), as sampler::sample reports them.
sampled_token_info describe(std::span<const float> raw, int32_t token, int32_t num_logprobs) {
  const float lse = log_sum_exp(raw);
  sampled_token_info info;
  info.token = token;
  info.logprob = raw[static_cast<size_t>(token)] - lse;
  if (num_logprobs > 0) {
    std::vector<int32_t> ids(raw.size());
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
    const auto n = std::min(static_cast<size_t>(num_logprobs), ids.size());
    std::partial_sort(ids.begin(), ids.begin() + static_cast<ptrdiff_t>(n), ids.end(), [&](int32_t a, int32_t b) {
      const float x = raw[static_cast<size_t>(a)], y = raw[static_cast<size_t>(b)];
      return x != y ? x > y : a < b;
    });
    for (size_t i = 0; i < n; ++i) {
      info.top_logprobs.push_back({ids[i], raw[static_cast<size_t>(ids[i])] - lse});
    }
  }
  return info;
}

// How many of the step's proposals are slots for the draft model: all of them or none.
int32_t num_slots(const sequence_step& s) {
  if (s.num_draft_tokens <= 0 || s.tokens.size() <= static_cast<size_t>(s.num_draft_tokens)) return 0;
  const auto proposals = std::span<const int32_t>(s.tokens).last(static_cast<size_t>(s.num_draft_tokens));
  const auto slots = std::count(proposals.begin(), proposals.end(), draft_slot);
  if (slots == 0) return 0;
  if (slots != static_cast<ptrdiff_t>(proposals.size())) {
    throw error(error_code::bad_plan, "sequence " + std::to_string(s.seq_id) +
                                          ": proposals mix draft-model slots and proposed tokens");
  }
  return s.num_draft_tokens;
}

std::string quoted(const std::string& text) { return "\"" + text + "\""; }

// softmax(raw)[token]: the draft's own belief in a proposal, whatever the request's knobs.
double probability_of(std::span<const float> raw, int32_t token) {
  return std::exp(static_cast<double>(raw[static_cast<size_t>(token)]) - static_cast<double>(log_sum_exp(raw)));
}

}  // namespace

void check_draft_vocabulary(const tokenizer& target, const tokenizer& draft) {
  const auto refuse = [](const std::string& what) {
    throw error(error_code::invalid_argument, "the draft model's vocabulary is not the target's: " + what);
  };
  if (target.vocab_size() != draft.vocab_size()) {
    refuse("the target has " + std::to_string(target.vocab_size()) + " tokens, the draft " +
           std::to_string(draft.vocab_size()));
  }
  for (int32_t id = 0; id < target.vocab_size(); ++id) {
    if (target.token_text(id) != draft.token_text(id)) {
      refuse("token " + std::to_string(id) + " is " + quoted(target.token_text(id)) + " in the target, " +
             quoted(draft.token_text(id)) + " in the draft");
    }
  }
  if (target.bos_id() != draft.bos_id()) {
    refuse("bos is " + std::to_string(target.bos_id()) + " in the target, " + std::to_string(draft.bos_id()) +
           " in the draft");
  }
  if (target.eos_id() != draft.eos_id()) {
    refuse("eos is " + std::to_string(target.eos_id()) + " in the target, " + std::to_string(draft.eos_id()) +
           " in the draft");
  }
  auto target_eog = target.eog_ids(), draft_eog = draft.eog_ids();
  std::sort(target_eog.begin(), target_eog.end());
  std::sort(draft_eog.begin(), draft_eog.end());
  if (target_eog != draft_eog) {
    const auto list = [](const std::vector<int32_t>& ids) {
      std::string s;
      for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
      return "{" + s + "}";
    };
    refuse("the end-of-generation tokens are " + list(target_eog) + " in the target, " + list(draft_eog) +
           " in the draft");
  }
}

struct draft_backend::drafting {
  size_t plan_index = 0;   // the sequence's index in the step's plan
  size_t draft_index = 0;  // its index in the draft's first step
  int32_t k = 0;           // slots: at most this many proposals
  double confidence = 1.0;  // the draft's probability of its proposals so far, multiplied
  bool is_done = false;     // no more proposals: k made, the draft unsure, or no mass left
  int32_t last_pos = 0;    // position of the last known token (t)
  std::vector<int32_t> window;  // the penalty window, with the proposals drawn so far
  std::vector<int32_t> proposals;
  std::vector<std::vector<float>> q;  // the distribution each proposal was drawn from
};

draft_backend::draft_backend(std::shared_ptr<backend> target, std::shared_ptr<backend> draft,
                             std::vector<int32_t> eog_ids, double min_confidence)
    : target_(std::move(target)),
      draft_(std::move(draft)),
      sampler_(target_ ? target_->config().vocab_size : 1, std::move(eog_ids)),
      min_confidence_(min_confidence) {
  if (!(min_confidence >= 0.0 && min_confidence <= 1.0)) {
    throw error(error_code::invalid_argument, "draft_backend: min_confidence must be in [0, 1]");
  }
  if (!target_ || !draft_) throw error(error_code::invalid_argument, "draft_backend needs a target and a draft");
  if (!target_->supports_speculation()) {
    throw error(error_code::invalid_argument, "draft_backend: the target backend does not verify proposals");
  }
  const auto t = target_->kv_shape(), d = draft_->kv_shape();
  if (t.num_blocks != d.num_blocks || t.block_size != d.block_size ||
      target_->num_swap_blocks() != draft_->num_swap_blocks()) {
    throw error(error_code::invalid_argument,
                "draft_backend: the draft's KV pool (" + std::to_string(d.num_blocks) + " blocks of " +
                    std::to_string(d.block_size) + ", " + std::to_string(draft_->num_swap_blocks()) +
                    " swap blocks) must match the target's (" + std::to_string(t.num_blocks) + " blocks of " +
                    std::to_string(t.block_size) + ", " + std::to_string(target_->num_swap_blocks()) + ")");
  }
  if (target_->config().vocab_size != draft_->config().vocab_size) {
    throw error(error_code::invalid_argument,
                "draft_backend: the draft's vocabulary size " + std::to_string(draft_->config().vocab_size) +
                    " is not the target's " + std::to_string(target_->config().vocab_size));
  }
}

kv_cache_shape draft_backend::kv_shape() const {
  auto shape = target_->kv_shape();
  shape.bytes_per_block += draft_->kv_shape().bytes_per_block;
  return shape;
}

void draft_backend::copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) {
  target_->copy_blocks(pairs);
  draft_->copy_blocks(pairs);
}

void draft_backend::swap_out(const std::vector<std::pair<int32_t, int32_t>>& device_to_host) {
  target_->swap_out(device_to_host);
  draft_->swap_out(device_to_host);
}

void draft_backend::swap_in(const std::vector<std::pair<int32_t, int32_t>>& host_to_device) {
  target_->swap_in(host_to_device);
  draft_->swap_in(host_to_device);
}

draft_backend::unfed_run& draft_backend::unfed_at(uint64_t seq_id, int32_t start_pos) {
  unfed_run& run = unfed_.try_emplace(seq_id, unfed_run{start_pos, {}, num_steps_}).first->second;
  const auto run_end = run.pos + static_cast<int32_t>(run.tokens.size());
  if (start_pos < run.pos || start_pos > run_end) {
    run.tokens.clear();
    run.pos = start_pos;
  }
  run.tokens.resize(static_cast<size_t>(start_pos - run.pos));  // what is fed again from start_pos on
  run.step = num_steps_;
  return run;
}

void draft_backend::run_draft(const batch_plan& plan, std::vector<drafting>& seqs) {
  const auto vocab = static_cast<size_t>(config().vocab_size);
  ++num_steps_;
  if (num_steps_ % 64 == 0) {
    std::erase_if(unfed_, [&](const auto& entry) { return entry.second.step + max_unfed_age < num_steps_; });
  }
  // catch_up: the unfed runs of the sequences speculating now, fed before their last token
  // (which alone needs the draft's row); feed: every other known token fed now.
  batch_plan catch_up, feed;
  feed.sequences.reserve(plan.sequences.size());
  for (size_t i = 0; i < plan.sequences.size(); ++i) {
    const auto& s = plan.sequences[i];
    const int32_t k = num_slots(s);
    const auto num_known = s.tokens.size() - static_cast<size_t>(k);
    unfed_run& run = unfed_at(s.seq_id, s.start_pos);
    if (k == 0 && s.num_draft_tokens == 0 && num_known == 1) {
      // A plain decode: the draft sees its token when the sequence next speculates.
      run.tokens.push_back(s.tokens.front());
      continue;
    }
    sequence_step f;
    f.seq_id = s.seq_id;
    f.block_table = s.block_table;
    f.wants_sample = false;
    f.start_pos = run.pos;
    f.tokens = std::move(run.tokens);
    unfed_.erase(s.seq_id);
    if (k > 0 && !f.tokens.empty()) {
      // The run in a step of its own: of this sequence only the last token's row is wanted.
      sequence_step c = f;
      c.tokens = std::exchange(f.tokens, {});
      f.start_pos = s.start_pos;
      catch_up.sequences.push_back(std::move(c));
    }
    f.tokens.insert(f.tokens.end(), s.tokens.begin(), s.tokens.begin() + static_cast<ptrdiff_t>(num_known));
    if (k > 0) {
      f.wants_all_logits = true;
      drafting d;
      d.plan_index = i;
      d.draft_index = feed.sequences.size();
      d.k = k;
      d.last_pos = s.start_pos + static_cast<int32_t>(num_known) - 1;
      d.window = s.penalty_tokens;
      seqs.push_back(std::move(d));
    }
    feed.sequences.push_back(std::move(f));
  }
  if (!catch_up.sequences.empty()) draft_->step(catch_up);
  if (feed.sequences.empty()) return;
  std::vector<float> scratch;
  const auto propose = [&](drafting& d, std::span<const float> row) {
    const auto& s = plan.sequences[d.plan_index];
    const auto index = s.sample_index + d.proposals.size();
    scratch.assign(row.begin(), row.end());
    auto& q = d.q.emplace_back();
    sampler_.distribution(scratch, s.params, d.window, s.num_prompt_penalty_tokens, index, q);
    const int32_t token = draw_from(q, uniform(s.params.seed, index, stream::draft));
    if (token < 0) {
      // The request's knobs leave the draft nothing to draw (a head over part of the
      // vocabulary, every token of it banned): the target decides from here.
      d.q.pop_back();
      d.is_done = true;
      return;
    }
    d.proposals.push_back(token);
    if (s.params.has_penalties()) d.window.push_back(token);
    if (min_confidence_ > 0) d.confidence *= probability_of(row, token);
    d.is_done = static_cast<int32_t>(d.proposals.size()) >= d.k || d.confidence < min_confidence_;
  };
  auto r = draft_->step(feed);
  for (auto& d : seqs) {
    const auto& logits = r.outputs[d.draft_index].logits;
    propose(d, std::span<const float>(logits).last(vocab));
  }
  // Proposal j + 1 comes from feeding proposal j: one-token steps, batched over sequences.
  for (int32_t j = 1;; ++j) {
    feed.sequences.clear();
    std::vector<drafting*> fed;
    for (auto& d : seqs) {
      if (d.is_done) continue;
      const auto& s = plan.sequences[d.plan_index];
      sequence_step f;
      f.seq_id = s.seq_id;
      f.tokens = {d.proposals.back()};
      f.start_pos = d.last_pos + j;
      f.block_table = s.block_table;
      f.wants_sample = false;
      f.wants_all_logits = true;
      feed.sequences.push_back(std::move(f));
      fed.push_back(&d);
    }
    if (fed.empty()) break;
    r = draft_->step(feed);
    for (size_t i = 0; i < fed.size(); ++i) propose(*fed[i], r.outputs[i].logits);
  }
  for (const auto& d : seqs) {
    if (d.proposals.empty()) continue;
    unfed_[plan.sequences[d.plan_index].seq_id] = {d.last_pos + static_cast<int32_t>(d.proposals.size()),
                                                  {d.proposals.back()}, num_steps_};
  }
}

void draft_backend::verify(const sequence_step& s, drafting& d, std::span<const float> rows, sequence_output& out) {
  const auto vocab = static_cast<size_t>(config().vocab_size);
  std::vector<float> scratch, p;
  std::vector<int32_t> window(s.penalty_tokens.begin(), s.penalty_tokens.end());
  out.accepted.clear();
  const size_t num_proposals = d.proposals.size();
  out.num_drafted = static_cast<int32_t>(num_proposals);
  for (size_t i = 0; i <= num_proposals; ++i) {
    const auto raw = rows.subspan(i * vocab, vocab);
    const uint64_t index = s.sample_index + i;
    scratch.assign(raw.begin(), raw.end());
    if (i == num_proposals) {
      // Every proposal accepted: the bonus token is the plain sample after the last one.
      auto r = sampler_.sample(scratch, s.params, window, s.num_prompt_penalty_tokens, index);
      out.token = r.token;
      out.logprob = r.logprob;
      out.top_logprobs = std::move(r.top_logprobs);
      return;
    }
    sampler_.distribution(scratch, s.params, window, s.num_prompt_penalty_tokens, index, p);
    const int32_t proposal = d.proposals[i];
    const int32_t token = accept_or_resample(p, d.q[i], proposal, uniform(s.params.seed, index, stream::accept),
                                             uniform(s.params.seed, index, stream::resample));
    auto info = describe(raw, token, s.params.num_logprobs);
    if (token == proposal) {
      if (s.params.has_penalties()) window.push_back(token);
      out.accepted.push_back(std::move(info));
      continue;
    }
    out.token = info.token;
    out.logprob = info.logprob;
    out.top_logprobs = std::move(info.top_logprobs);
    return;
  }
}

step_result draft_backend::step(const batch_plan& plan) {
  std::vector<drafting> seqs;
  run_draft(plan, seqs);
  if (seqs.empty()) return target_->step(plan);
  batch_plan verified = plan;
  for (const auto& d : seqs) {
    auto& s = verified.sequences[d.plan_index];
    // Slots the draft did not fill are not fed: the scheduler rolls their positions back.
    s.tokens.resize(s.tokens.size() - static_cast<size_t>(d.k - static_cast<int32_t>(d.proposals.size())));
    std::copy(d.proposals.begin(), d.proposals.end(), s.tokens.end() - static_cast<ptrdiff_t>(d.proposals.size()));
    // The target only computes the rows; the rule above replaces its coupled draw.
    s.num_draft_tokens = 0;
    s.wants_sample = false;
    s.wants_all_logits = true;
  }
  auto result = target_->step(verified);
  const auto vocab = static_cast<size_t>(config().vocab_size);
  for (auto& d : seqs) {
    const auto& s = plan.sequences[d.plan_index];
    auto& out = result.outputs[d.plan_index];
    const auto rows = std::span<const float>(out.logits).last((d.proposals.size() + 1) * vocab);
    verify(s, d, rows, out);
    if (!s.wants_all_logits) out.logits = {};
  }
  return result;
}

}  // namespace troupe
