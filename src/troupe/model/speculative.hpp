// Verification of proposed tokens (speculative decoding), shared by the backends.
//
// A speculative sequence_step feeds [t, d1, ..., dk]: t is the sequence's last sampled token
// and d1..dk are a proposer's guesses at what follows. One forward pass gives the target's
// logits after t and after every d_i. Verification walks them in order: the sampler draws
// position i exactly as a plain decode step would (same penalties over the tokens before it,
// same logit bias, temperature, top-k/p, min-p and end-token bans, same seeded random draw
// for that output index); when the draw equals d_{i+1} the proposal is accepted and the walk
// goes on, otherwise the draw is emitted and the walk ends. After k accepted proposals the
// draw after d_k is a bonus token.
//
// For a proposer whose proposals are fixed tokens (q one-hot, as n-gram lookup's), this is
// the rejection rule of speculative sampling (Leviathan et al., Chen et al.): d is accepted
// with probability min(1, p(d)/q(d)) = p(d), and on rejection the token comes from
// norm(max(0, p - q)), which is p without d. Drawing x ~ p once and accepting iff x == d
// realises both at once with a single uniform, so every emitted token follows the target
// distribution p exactly, and — because the uniform for output index n is the one a plain
// step would use — the text is the same token for token as without speculation, for greedy
// and for seeded sampling alike.
//
// A proposer with a proper distribution q (a draft model) needs the general rule with its
// own acceptance uniform (accept_or_resample below); the draws then follow p but are no
// longer the plain run's tokens.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "troupe/model/backend.hpp"
#include "troupe/model/sampler.hpp"

namespace troupe {

// logits: (num_draft_tokens + 1) rows of vocab_size values for the step's last
// num_draft_tokens + 1 fed positions (modified: used as scratch). Fills out.token,
// out.logprob, out.top_logprobs and out.accepted. `window` is scratch.
void verify_drafts(const sampler& s, std::span<float> logits, const sequence_step& step, sequence_output& out,
                   std::vector<int32_t>& window);

// The general rule for one position: p and q are the target's and the proposer's
// probabilities over the vocabulary (each summing to 1), `draft` was drawn from q.
// Accepts (returns draft) when accept_uniform < p(draft) / q(draft); otherwise returns a
// draw from norm(max(0, p - q)) by resample_uniform. Both uniforms in [0, 1).
int32_t accept_or_resample(std::span<const float> p, std::span<const float> q, int32_t draft, double accept_uniform,
                           double resample_uniform);

}  // namespace troupe
