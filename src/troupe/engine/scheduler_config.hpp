// The knobs of admission batching (batcher_policy) and iteration-level scheduling
// (scheduler_policy), with vLLM's names where vLLM has the knob, and their validation.
#pragma once
#include <cstdint>
#include <string>

#include "troupe/engine/proposer.hpp"
#include "troupe/model/error.hpp"

namespace troupe {

// What happens to a running sequence evicted for KV space: recompute drops its blocks and
// feeds prompt+output again later; swap copies its blocks to host memory and back.
enum class preemption_mode { recompute, swap };

struct scheduler_config {
  // Continuous batching (vLLM: --max-num-seqs, --max-num-batched-tokens, --max-model-len,
  // --enable-chunked-prefill, --preemption-mode).
  int32_t max_num_seqs = 64;             // running sequences at once
  int32_t max_num_batched_tokens = 2048; // tokens fed per step, all sequences together
  int32_t max_model_len = 2048;          // prompt + output; the engine caps it by the model's context
  bool enable_chunked_prefill = true;    // false: a prompt is only scheduled whole
  preemption_mode preemption = preemption_mode::recompute;  // swap falls back to recompute
                                                            // when host space runs out
  // A waiting sequence's effective priority improves by one level per ageing_ms waited, so
  // that a stream of high-priority work cannot starve low-priority requests. 0 = no ageing.
  int64_t ageing_ms = 5000;
  // Chunked prefill sizes chunks by cost as well as tokens: a step may cost no more than a
  // max_num_batched_tokens chunk at the start of a prompt, where attending over (query, key)
  // pairs costs one token's matmul work per attention_cost pairs (engine/step_cost.hpp). A
  // chunk deep in a long prompt is then smaller, and streams decoding beside it keep their
  // pace. The engine fills it in from the backend and refines it from the
  // steps it times when this is negative (the default); 0 = chunks sized by tokens alone.
  double attention_cost = -1;
  // Set by the engine when attention_cost came from the backend: the scheduler then refits it
  // from the steps it times (step_cost_model).
  bool fit_attention_cost = false;
  // Asynchronous scheduling: plan step N+1 while the worker runs step N, so that the worker
  // starts it as soon as step N ends (scheduler_policy::schedule_ahead). Worth it where a
  // step is short (a GPU); off, every step is planned after the last one is back.
  bool async_scheduling = false;

  // The steady decode lane: a sequence that decodes one token per step inside its last KV
  // block, with nothing about it changing, is planned as a member of the lane (no pool call,
  // no per-sequence checks) until its block fills or its length runs out, so that planning
  // costs what changed, not the batch. Off, every running sequence is planned one by one
  // each step (the same steps: tests compare the two).
  bool steady_decodes = true;

  // Speculative decoding (vLLM's --speculative-config with method "ngram"): while few
  // sequences decode, each proposes up to num_speculative_tokens tokens by prompt lookup
  // (n-grams of ngram_min..ngram_max tokens) and the step verifies them (model/speculative.hpp).
  // A request may turn it on or off for itself. Speculation needs the synchronous loop: a
  // step with proposals is never planned ahead of. With a draft model (method draft) the
  // scheduler reserves the proposals' slots and budget the same way and the worker's draft
  // model fills them (model/draft_backend.hpp).
  speculative_method speculative = speculative_method::off;
  // Whether the backend runs a draft model; set by the engine from the backend. Without one a
  // request asking for draft proposals decodes without speculation.
  bool has_draft_model = false;
  int32_t num_speculative_tokens = 4;
  // A draft model stops proposing once the product of its own probabilities of its proposals
  // falls under this (the last one is still proposed), and then every step may fill up to
  // num_speculative_tokens slots; 0: it fills every slot, and the slots adapt as for prompt
  // lookup (one more than were accepted last step).
  double draft_min_confidence = 0.5;
  int32_t ngram_min = 2;
  int32_t ngram_max = 4;
  // Proposals are made only while at most this many sequences decode in a step: past it a
  // step is no longer bound by reading the weights, and verifying proposals costs more than
  // the tokens they save (docs/speculative.md has the measurement behind the default).
  int32_t speculative_max_batch = 4;
  // Proposals must pay for themselves: the scheduler learns from the steps it times what a
  // proposal costs against a plain decode step (engine/speculation_cost.hpp), and a greedy
  // sequence whose accepted proposals stay under that break-even sits out 4, 8, ... 32 steps
  // before it tries again (sampled ones are not weighed: their text would depend on timing).
  // Off, only steps with nothing accepted make a sequence sit out.
  bool speculative_break_even = true;

  // The watchdog: a step the worker has not answered within max(step_timeout_ms, 4x what its
  // cost predicts from the steps timed so far) counts as stuck; its requests fail with
  // `unavailable` and a worker with a fresh backend replaces the stuck one
  // (engine/step_deadline.hpp). 0 = no deadline. Twice vLLM's 60 s engine iteration
  // timeout: a CPU prefill chunk has taken 39.1 s on a busy two-core machine.
  int64_t step_timeout_ms = 120000;

  // Admission batching (the batcher): release when max_batch_size requests are held or the
  // oldest has waited max_wait_ms (0 = at once); refuse with queue_full past max_queue_len
  // requests waiting (in the batcher and the scheduler's waiting queue together).
  int32_t max_batch_size = 8;
  int64_t max_wait_ms = 0;
  int32_t max_queue_len = 1024;

  // Throws troupe::error(invalid_argument) naming the first field out of range.
  void validate() const {
    auto reject = [](const char* field, const std::string& rule, int64_t value) {
      throw error(error_code::invalid_argument,
                  std::string(field) + " must be " + rule + ", got " + std::to_string(value));
    };
    if (max_num_seqs < 1) reject("max_num_seqs", ">= 1", max_num_seqs);
    if (max_num_batched_tokens < max_num_seqs) {
      // Every running sequence's decode token must fit one step's budget.
      reject("max_num_batched_tokens", ">= max_num_seqs (" + std::to_string(max_num_seqs) + ")",
             max_num_batched_tokens);
    }
    if (max_model_len < 1) reject("max_model_len", ">= 1", max_model_len);
    if (!enable_chunked_prefill && max_num_batched_tokens < max_model_len) {
      // Without chunking a whole prompt (up to max_model_len) must fit one step.
      reject("max_num_batched_tokens",
             ">= max_model_len (" + std::to_string(max_model_len) + ") when enable_chunked_prefill is off",
             max_num_batched_tokens);
    }
    if (ageing_ms < 0) reject("ageing_ms", ">= 0 (0 = no ageing)", ageing_ms);
    if (step_timeout_ms < 0) reject("step_timeout_ms", ">= 0 (0 = no deadline)", step_timeout_ms);
    if (!(attention_cost >= 0) && attention_cost != -1) {
      throw error(error_code::invalid_argument,
                  "attention_cost must be -1 (measured), 0 (chunks sized by tokens alone) or > 0");
    }
    if (num_speculative_tokens < 1 || num_speculative_tokens > 16) {
      reject("num_speculative_tokens", "in [1, 16]", num_speculative_tokens);
    }
    if (ngram_min < 1 || ngram_min > ngram_max) reject("ngram_min", "in [1, ngram_max]", ngram_min);
    if (ngram_max > 64) reject("ngram_max", "<= 64", ngram_max);
    if (speculative_max_batch < 0) reject("speculative_max_batch", ">= 0", speculative_max_batch);
    if (!(draft_min_confidence >= 0.0 && draft_min_confidence <= 1.0)) {
      throw error(error_code::invalid_argument,
                  "draft_min_confidence must be in [0, 1], got " + std::to_string(draft_min_confidence));
    }
    if (max_batch_size < 1) reject("max_batch_size", ">= 1", max_batch_size);
    if (max_wait_ms < 0) reject("max_wait_ms", ">= 0 (0 = release at once)", max_wait_ms);
    if (max_queue_len < max_batch_size) {
      reject("max_queue_len", ">= max_batch_size (" + std::to_string(max_batch_size) + ")", max_queue_len);
    }
  }
};

}  // namespace troupe
