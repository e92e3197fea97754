// Draft-model speculative decoding on the CPU (model/draft_backend.hpp), with tiny random
// models as target and draft: a vocabulary that differs is refused; greedy output with an
// imperfect draft is the target's plain greedy output; a draft identical to the target has
// every proposal accepted (its KV kept in step, the last proposal of a fully accepted run
// included); seeded runs reproduce; sampled output follows the target's distribution
// (chi-square, 100,000 draws), also with a draft over part of the vocabulary that stops where
// it is unsure; such drafts keep greedy output; and on the real default model and
// Qwen2.5-Coder-0.5B, each drafting for itself, greedy output is the plain output with every
// proposal accepted.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/draft_backend.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer.hpp"
#include "util/require_model.hpp"
#include "util/chi_square.hpp"
#include "util/tiny_model.hpp"

using namespace troupe;

namespace {

// Seed 1 is the target. With a tied output head a tiny random model's greedy choice is
// mostly the token it was fed (the residual stream stays close to that token's embedding),
// whatever the seed, so the models here have heads of their own. The drafts: seed 2, the same
// weights as the target quantized to 4 bits instead of 8 (close to it: most proposals
// accepted); other seeds, unrelated weights (few accepted).
std::shared_ptr<const gguf::file> tiny_file(uint64_t seed) {
  test::tiny_model_options o;
  o.tied_output = false;
  o.weight_type = ggml_type::q8_0;
  o.seed = seed;
  if (seed == 2) {
    o.seed = 1;
    o.weight_type = ggml_type::q4_1;
    o.embedding_type = ggml_type::q4_1;
  }
  return std::make_shared<const gguf::file>(gguf::file::parse(test::make_tiny_llama(o)));
}

cpu::cpu_backend_options pool_options(int32_t num_blocks = 64) {
  cpu::cpu_backend_options o;
  o.num_blocks = num_blocks;
  o.block_size = 4;  // proposals cross block boundaries
  o.num_threads = 1;
  o.eog_ids = {2};
  return o;
}

// draft_rows > 0: the draft's head covers token ids below it only; min_confidence: the
// draft's stop rule.
std::shared_ptr<draft_backend> make_pair(uint64_t target_seed, uint64_t draft_seed, int64_t draft_rows = 0,
                                         double min_confidence = 0.0) {
  const auto o = pool_options();
  auto draft_o = o;
  draft_o.num_output_rows = draft_rows;
  return std::make_shared<draft_backend>(std::make_shared<cpu::cpu_backend>(tiny_file(target_seed), o),
                                         std::make_shared<cpu::cpu_backend>(tiny_file(draft_seed), draft_o),
                                         o.eog_ids, min_confidence);
}

std::string refusal(const tokenizer& target, const tokenizer& draft) {
  try {
    check_draft_vocabulary(target, draft);
  } catch (const error& e) {
    return e.what();
  }
  return "";
}

// The tiny model's tokenizer keys, with `edit` applied to the token texts and `extra` keys.
tokenizer tiny_tokenizer(const std::function<void(std::vector<std::string>&)>& edit, uint32_t eos = 2,
                         const std::function<void(test::gguf_writer&)>& extra = {}) {
  auto vocab = test::make_tiny_vocab();
  edit(vocab.tokens);
  test::gguf_writer w;
  w.add_string("general.architecture", "llama");
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "smollm");
  w.add_strings("tokenizer.ggml.tokens", vocab.tokens);
  w.add_i32s("tokenizer.ggml.token_type", vocab.token_types);
  w.add_strings("tokenizer.ggml.merges", vocab.merges);
  w.add_u32("tokenizer.ggml.bos_token_id", 1);
  w.add_u32("tokenizer.ggml.eos_token_id", eos);
  if (extra) extra(w);
  return tokenizer::from_gguf(gguf::file::parse(w.bytes()));
}

sequence_step make_step(uint64_t id, std::vector<int32_t> tokens, int32_t start, const sampling_params& params,
                        uint64_t sample_index, int32_t num_slots, int32_t num_blocks_per_seq = 16) {
  sequence_step s;
  s.seq_id = id;
  s.tokens = std::move(tokens);
  s.tokens.insert(s.tokens.end(), static_cast<size_t>(num_slots), draft_slot);
  s.num_draft_tokens = num_slots;
  s.start_pos = start;
  s.block_table.resize(static_cast<size_t>(num_blocks_per_seq));
  std::iota(s.block_table.begin(), s.block_table.end(), static_cast<int32_t>(id) * num_blocks_per_seq);
  s.params = params;
  s.sample_index = sample_index;
  return s;
}

// A sequence decoded to n output tokens: the prompt whole, then steps of [last token] plus
// k proposal slots (0: plain steps). Counts the proposals made and accepted.
struct decoded {
  std::vector<int32_t> tokens;
  int64_t num_proposed = 0;
  int64_t num_accepted = 0;
  int64_t num_short_runs = 0;  // steps whose draft filled fewer slots than it had
};

// ks: the proposal slots of successive decode steps, cycled (0: a plain step).
decoded decode_cycle(backend& b, uint64_t id, const std::vector<int32_t>& prompt, const sampling_params& params,
                     int n, const std::vector<int32_t>& ks, int32_t num_blocks_per_seq = 16) {
  decoded d;
  size_t step = 0;
  std::vector<int32_t> seq = prompt;
  batch_plan p;
  p.sequences.push_back(make_step(id, prompt, 0, params, 0, 0, num_blocks_per_seq));
  while (static_cast<int>(d.tokens.size()) < n) {
    const auto out = b.step(p).outputs.at(0);
    const int32_t had = p.sequences[0].num_draft_tokens;
    REQUIRE(out.num_drafted <= had);
    REQUIRE(static_cast<int32_t>(out.accepted.size()) <= (out.num_drafted >= 0 ? out.num_drafted : had));
    d.num_proposed += out.num_drafted >= 0 ? out.num_drafted : had;
    d.num_short_runs += out.num_drafted >= 0 && out.num_drafted < had ? 1 : 0;
    d.num_accepted += static_cast<int64_t>(out.accepted.size());
    for (const auto& a : out.accepted) d.tokens.push_back(a.token);
    d.tokens.push_back(out.token);
    seq.insert(seq.end(), d.tokens.end() - static_cast<ptrdiff_t>(out.accepted.size() + 1), d.tokens.end());
    const int32_t k = ks[step++ % ks.size()];
    const int32_t slots = std::min<int32_t>(k, n - static_cast<int32_t>(d.tokens.size()));
    p.sequences[0] = make_step(id, {seq.back()}, static_cast<int32_t>(seq.size()) - 1, params, d.tokens.size(),
                               std::max(slots, 0), num_blocks_per_seq);
  }
  d.tokens.resize(static_cast<size_t>(n));
  return d;
}

decoded decode(backend& b, uint64_t id, const std::vector<int32_t>& prompt, const sampling_params& params, int n,
               int32_t k, int32_t num_blocks_per_seq = 16) {
  return decode_cycle(b, id, prompt, params, n, {k}, num_blocks_per_seq);
}

// A backend that counts the steps and tokens it is given, and passes everything on.
class counting_backend final : public backend {
 public:
  explicit counting_backend(std::shared_ptr<backend> inner) : inner_(std::move(inner)) {}
  const model_config& config() const override { return inner_->config(); }
  kv_cache_shape kv_shape() const override { return inner_->kv_shape(); }
  step_result step(const batch_plan& plan) override {
    ++num_steps;
    bool only_single_feeds = true;
    for (const auto& s : plan.sequences) {
      num_tokens += static_cast<int64_t>(s.tokens.size());
      only_single_feeds = only_single_feeds && s.tokens.size() == 1 && !s.wants_all_logits && !s.wants_sample;
    }
    num_single_feed_steps += only_single_feeds ? 1 : 0;
    return inner_->step(plan);
  }
  void copy_blocks(const std::vector<std::pair<int32_t, int32_t>>& pairs) override { inner_->copy_blocks(pairs); }
  int32_t num_swap_blocks() const override { return inner_->num_swap_blocks(); }
  void swap_out(const std::vector<std::pair<int32_t, int32_t>>& pairs) override { inner_->swap_out(pairs); }
  void swap_in(const std::vector<std::pair<int32_t, int32_t>>& pairs) override { inner_->swap_in(pairs); }
  bool supports_speculation() const override { return inner_->supports_speculation(); }
  int64_t num_steps = 0;
  int64_t num_tokens = 0;
  int64_t num_single_feed_steps = 0;  // steps that only fed one token to each sequence, asking nothing back

 private:
  std::shared_ptr<backend> inner_;
};

std::vector<int32_t> tiny_prompt(int32_t vocab, int salt) {
  std::vector<int32_t> prompt;
  for (int i = 0; i < 9; ++i) prompt.push_back((i * 37 + 5 + salt * 11) % vocab);
  return prompt;
}

using test::chi_square;
using test::chi_square_limit;

}  // namespace

TEST_CASE("draft model: a vocabulary that is not the target's is refused, naming the first difference") {
  const auto target = tokenizer::from_gguf(*tiny_file(1));
  CHECK(refusal(target, tokenizer::from_gguf(*tiny_file(2))).empty());  // other weights, same vocabulary
  CHECK(refusal(target, tiny_tokenizer([](auto&) {})).empty());

  const auto smaller = refusal(target, tiny_tokenizer([](auto& tokens) { tokens.pop_back(); }));
  CHECK(smaller.find("the target has " + std::to_string(target.vocab_size()) + " tokens, the draft " +
                     std::to_string(target.vocab_size() - 1)) != std::string::npos);

  const auto renamed = refusal(target, tiny_tokenizer([](auto& tokens) { tokens[200] = "Ġrenamed"; }));
  CHECK(renamed.find("token 200 is \"" + target.token_text(200) + "\" in the target, \"Ġrenamed\" in the draft") !=
        std::string::npos);

  const auto other_eos = refusal(target, tiny_tokenizer([](auto&) {}, 1));
  CHECK(other_eos.find("eos is 2 in the target, 1 in the draft") != std::string::npos);
  const auto other_eog = refusal(target, tiny_tokenizer([](auto&) {}, 2, [](test::gguf_writer& w) {
                                   w.add_u32("tokenizer.ggml.eom_token_id", 200);
                                 }));
  CHECK(other_eog.find("end-of-generation tokens are {") != std::string::npos);
  CHECK(other_eog.find(",200} in the draft") != std::string::npos);
  MESSAGE(smaller << "\n" << renamed << "\n" << other_eos << "\n" << other_eog);

  // Pools that differ are refused too: the block ids must mean the same in both.
  const auto o = pool_options();
  CHECK_THROWS_AS(draft_backend(std::make_shared<cpu::cpu_backend>(tiny_file(1), o),
                                std::make_shared<cpu::cpu_backend>(tiny_file(2), pool_options(32)), o.eog_ids),
                  error);
}

TEST_CASE("draft model: greedy output with an imperfect draft is the target's plain greedy output") {
  const auto target_file = tiny_file(1);
  cpu::cpu_backend plain(target_file, pool_options());
  const int32_t vocab = plain.config().vocab_size;
  sampling_params greedy;
  greedy.temperature = 0.0f;
  int64_t proposed = 0, accepted = 0;
  for (int salt = 0; salt < 4; ++salt) {
    CAPTURE(salt);
    const auto prompt = tiny_prompt(vocab, salt);
    const auto want = decode(plain, 1, prompt, greedy, 40, 0).tokens;
    for (const auto& [k, draft_seed] : {std::pair{1, 2}, {3, 2}, {4, 2}, {3, 3}}) {
      CAPTURE(k);
      CAPTURE(draft_seed);
      auto b = make_pair(1, static_cast<uint64_t>(draft_seed));
      const auto got = decode(*b, 2, prompt, greedy, 40, k);
      CHECK(got.tokens == want);
      proposed += got.num_proposed;
      accepted += got.num_accepted;
    }
  }
  MESSAGE("imperfect draft: " << accepted << " of " << proposed << " proposals accepted");
  CHECK(accepted > 0);
  CHECK(accepted < proposed);
}

TEST_CASE("draft model: a draft identical to the target has every greedy proposal accepted") {
  // Any KV the draft missed (the last proposal of a fully accepted run above all) or read
  // wrongly would change its rows and show as a rejection.
  const auto file = tiny_file(1);
  const auto o = pool_options();
  draft_backend b(std::make_shared<cpu::cpu_backend>(file, o), std::make_shared<cpu::cpu_backend>(file, o), o.eog_ids);
  cpu::cpu_backend plain(file, o);
  sampling_params greedy;
  greedy.temperature = 0.0f;
  const auto prompt = tiny_prompt(b.config().vocab_size, 5);
  const auto got = decode(b, 3, prompt, greedy, 45, 4);
  CHECK(got.tokens == decode(plain, 1, prompt, greedy, 45, 0).tokens);
  CHECK(got.num_proposed > 30);
  CHECK(got.num_accepted == got.num_proposed);
}

TEST_CASE("draft model: plain decodes between speculating steps reach the draft in one chunk, and every proposal of an identical draft is accepted") {
  // Plain steps (k = 0) are not fed to the draft when they run: the next speculating step
  // feeds them first. A position the draft missed or got twice at the wrong place would
  // change its rows and show as a rejection.
  const auto file = tiny_file(1);
  const auto o = pool_options();
  auto counted = std::make_shared<counting_backend>(std::make_shared<cpu::cpu_backend>(file, o));
  draft_backend b(std::make_shared<cpu::cpu_backend>(file, o), counted, o.eog_ids);
  cpu::cpu_backend plain(file, o);
  sampling_params greedy;
  greedy.temperature = 0.0f;
  const auto prompt = tiny_prompt(b.config().vocab_size, 6);
  const auto want = decode(plain, 1, prompt, greedy, 50, 0).tokens;
  // Three plain steps, then k = 3 (a full acceptance leaves its last proposal unfed, in
  // front of the plain tokens), then one plain, then k = 2.
  const auto got = decode_cycle(b, 3, prompt, greedy, 50, {0, 0, 0, 3, 0, 2});
  CHECK(got.tokens == want);
  CHECK(got.num_proposed > 15);
  CHECK(got.num_accepted == got.num_proposed);
  // Only the prompt, the speculating steps and their catch-up chunks ran the draft: no draft
  // step for a plain decode alone. Every known position reaches it once (in a catch-up chunk
  // or its own step), besides the proposals it feeds itself.
  MESSAGE("draft steps " << counted->num_steps << ", tokens fed to the draft " << counted->num_tokens);
  CHECK(counted->num_single_feed_steps == 0);
  CHECK(counted->num_tokens <= static_cast<int64_t>(prompt.size()) + 50 + got.num_proposed);
  // Runs cut by rejections, on a draft of other weights: the text stays the target's.
  auto other = std::make_shared<draft_backend>(std::make_shared<cpu::cpu_backend>(file, o),
                                               std::make_shared<cpu::cpu_backend>(tiny_file(2), o), o.eog_ids);
  CHECK(decode_cycle(*other, 2, prompt, greedy, 50, {0, 4, 0, 0, 1}).tokens == want);
}

TEST_CASE("draft model: sequences with different proposal counts, prefill chunks and plain decodes share a step") {
  // Two speculating sequences (k = 1 and 3), one plain decode and one prefill chunk in every
  // step, against each decoded alone; greedy, so the tokens must match exactly.
  const auto o = pool_options(128);
  auto b = std::make_shared<draft_backend>(std::make_shared<cpu::cpu_backend>(tiny_file(1), o),
                                           std::make_shared<cpu::cpu_backend>(tiny_file(2), o), o.eog_ids);
  cpu::cpu_backend plain(tiny_file(1), o);
  const int32_t vocab = b->config().vocab_size;
  sampling_params greedy;
  greedy.temperature = 0.0f;
  const int32_t ks[3] = {1, 3, 0};
  std::vector<std::vector<int32_t>> seqs, outs(3);
  for (int i = 0; i < 3; ++i) seqs.push_back(tiny_prompt(vocab, i + 7));
  batch_plan p;
  for (size_t i = 0; i < 3; ++i) p.sequences.push_back(make_step(i, seqs[i], 0, greedy, 0, 0));
  // The filler: a prompt fed a chunk per step, never sampled, in blocks of its own.
  std::vector<int32_t> filler(60);
  for (int32_t i = 0; i < 60; ++i) filler[static_cast<size_t>(i)] = (i * 13 + 1) % vocab;
  for (int round = 0; round < 12; ++round) {
    auto step = p;
    auto chunk = make_step(5, {filler.begin() + round * 5, filler.begin() + round * 5 + 5}, round * 5, greedy, 0, 0);
    chunk.wants_sample = false;
    step.sequences.push_back(chunk);
    const auto r = b->step(step);
    for (size_t i = 0; i < 3; ++i) {
      const auto& out = r.outputs[i];
      for (const auto& a : out.accepted) outs[i].push_back(a.token);
      outs[i].push_back(out.token);
      seqs[i].insert(seqs[i].end(), outs[i].end() - static_cast<ptrdiff_t>(out.accepted.size() + 1), outs[i].end());
      p.sequences[i] = make_step(i, {seqs[i].back()}, static_cast<int32_t>(seqs[i].size()) - 1, greedy, outs[i].size(),
                                 ks[i]);
    }
  }
  for (size_t i = 0; i < 3; ++i) {
    CAPTURE(i);
    const auto n = static_cast<int>(outs[i].size());
    CHECK(outs[i] == decode(plain, 1, tiny_prompt(vocab, static_cast<int>(i) + 7), greedy, n, 0).tokens);
  }
}

TEST_CASE("draft model: a seeded sampled run reproduces") {
  sampling_params params;
  params.temperature = 1.2f;
  params.top_p = 0.95f;
  params.repetition_penalty = 1.2f;
  params.penalty_last_n = 8;
  params.seed = 99;
  const auto prompt = tiny_prompt(make_pair(1, 2)->config().vocab_size, 3);
  const auto first = decode(*make_pair(1, 2), 1, prompt, params, 40, 3);
  const auto again = decode(*make_pair(1, 2), 1, prompt, params, 40, 3);
  CHECK(first.tokens == again.tokens);
  params.seed = 100;
  CHECK(decode(*make_pair(1, 2), 1, prompt, params, 40, 3).tokens != first.tokens);
}

namespace {

// One context, decoded with 2 draft proposals over and over with a new seed each time: the
// first emitted token must follow the target's distribution there (sampler::distribution,
// the same knobs), whether it is an accepted proposal or the rule's resample.
void check_first_token_distribution(int64_t draft_rows, double min_confidence) {
  auto b = make_pair(1, 2, draft_rows, min_confidence);
  const int32_t vocab = b->config().vocab_size;
  sampling_params params;
  params.temperature = 3.0f;  // the tiny model's rows are peaked; this spreads them
  params.top_k = 80;          // the kept sets of draft and target differ
  const std::vector<int32_t> prompt = {5, 9, 17, 3, 11, 8};
  // Prefill through the pair (both models' KV), with the target's last row for reference.
  batch_plan prefill;
  prefill.sequences.push_back(make_step(1, prompt, 0, params, 0, 0));
  prefill.sequences[0].wants_sample = false;
  prefill.sequences[0].wants_all_logits = true;
  auto logits = b->step(prefill).outputs[0].logits;
  const sampler s(vocab, {2});
  std::vector<float> row(logits.end() - vocab, logits.end()), p0;
  s.distribution(row, params, {}, 0, 0, p0);

  constexpr int64_t num_draws = 100000;
  std::vector<int64_t> first(static_cast<size_t>(vocab));
  int64_t num_accepted = 0;
  // The known token 8 fed again at position 5 with two slots behind it, each draw.
  auto step = make_step(1, {8}, 5, params, 0, 2);
  for (int64_t i = 0; i < num_draws; ++i) {
    step.params.seed = static_cast<uint64_t>(i) + 1;
    const auto out = b->step({{step}}).outputs[0];
    num_accepted += static_cast<int64_t>(out.accepted.size());
    ++first[static_cast<size_t>(out.accepted.empty() ? out.token : out.accepted[0].token)];
  }
  const auto [stat, df] = chi_square(first, p0, num_draws);
  MESSAGE("first token: chi2 " << stat << " (df " << df << ", limit " << chi_square_limit(df) << "), "
                               << static_cast<double>(num_accepted) / num_draws << " proposals accepted per draw");
  CHECK(df > 10);
  CHECK(stat < chi_square_limit(df));
  CHECK(num_accepted > 0);
}

}  // namespace

TEST_CASE("draft model: emitted tokens follow the target's distribution (chi-square, 100,000 draws)") {
  check_first_token_distribution(0, 0.0);
}

TEST_CASE("draft model: with a draft over part of the vocabulary that stops where unsure, still the target's "
          "distribution (chi-square, 100,000 draws)") {
  // The draft's q is zero past its head's rows, where the target's p is not: those tokens
  // come only from the resample, which must make up for them exactly.
  check_first_token_distribution(make_pair(1, 2)->config().vocab_size / 2, 0.5);
}

TEST_CASE("draft model: a draft that stops where it is unsure keeps the target's greedy output") {
  // min_confidence 0.9: the imperfect draft stops early on many steps; the unfilled slots
  // are not verified and the output is still the target's. A draft identical to the target
  // still has every proposal it makes accepted.
  const auto target_file = tiny_file(1);
  cpu::cpu_backend plain(target_file, pool_options());
  sampling_params greedy;
  greedy.temperature = 0.0f;
  int64_t proposed = 0, accepted = 0, short_runs = 0;
  for (int salt = 0; salt < 4; ++salt) {
    CAPTURE(salt);
    const auto prompt = tiny_prompt(plain.config().vocab_size, salt);
    const auto want = decode(plain, 1, prompt, greedy, 40, 0).tokens;
    for (uint64_t draft_seed : {2, 3}) {
      CAPTURE(draft_seed);
      const auto got = decode(*make_pair(1, draft_seed, 0, 0.9), 2, prompt, greedy, 40, 6);
      CHECK(got.tokens == want);
      proposed += got.num_proposed;
      accepted += got.num_accepted;
      short_runs += got.num_short_runs;
    }
    const auto self = decode(*make_pair(1, 1, 0, 0.9), 2, prompt, greedy, 40, 6);
    CHECK(self.tokens == want);
    CHECK(self.num_accepted == self.num_proposed);
  }
  MESSAGE("unsure draft: " << accepted << " of " << proposed << " proposals accepted, " << short_runs
                           << " runs stopped early");
  CHECK(short_runs > 10);
  CHECK(accepted > 0);
}

TEST_CASE("draft model: a head over the first ids of the vocabulary") {
  // The backend computes logits for ids below num_output_rows only (the others -infinity),
  // the same values as the whole head's there.
  const auto file = tiny_file(1);
  auto o = pool_options();
  cpu::cpu_backend whole(file, o);
  const int32_t vocab = whole.config().vocab_size;
  const int64_t rows = vocab / 2 + 3;  // not a whole number of the kernels' row groups
  o.num_output_rows = rows;
  cpu::cpu_backend part(file, o);
  sampling_params greedy;
  greedy.temperature = 0.0f;
  batch_plan p;
  p.sequences.push_back(make_step(1, tiny_prompt(vocab, 1), 0, greedy, 0, 0));
  p.sequences[0].wants_all_logits = true;
  const auto a = whole.step(p).outputs[0].logits, b = part.step(p).outputs[0].logits;
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    if (static_cast<int64_t>(i % static_cast<size_t>(vocab)) < rows) {
      REQUIRE(b[i] == a[i]);
    } else {
      REQUIRE(b[i] == -INFINITY);
    }
  }
  o.num_output_rows = -1;
  CHECK_THROWS_AS(cpu::cpu_backend(file, o), error);
}

TEST_CASE("draft model: a draft over part of the vocabulary keeps greedy output, and a request banning that part") {
  const auto target_file = tiny_file(1);
  cpu::cpu_backend plain(target_file, pool_options());
  const int32_t vocab = plain.config().vocab_size;
  sampling_params greedy;
  greedy.temperature = 0.0f;
  int64_t proposed = 0, accepted = 0;
  for (int salt = 0; salt < 3; ++salt) {
    const auto prompt = tiny_prompt(vocab, salt);
    const auto want = decode(plain, 1, prompt, greedy, 30, 0).tokens;
    const auto got = decode(*make_pair(1, 2, vocab / 2, 0.0), 2, prompt, greedy, 30, 3);
    CHECK(got.tokens == want);
    proposed += got.num_proposed;
    accepted += got.num_accepted;
  }
  CHECK(accepted > 0);
  // Every id the draft's head covers pushed down as far as a request may: the draft still
  // proposes among them, the target takes none, and the output is the plain one.
  auto banned = greedy;
  for (int32_t id = 0; id < 8; ++id) banned.logit_bias.push_back({id, -100.0f});
  const auto prompt = tiny_prompt(vocab, 4);
  const auto want = decode(plain, 1, prompt, banned, 20, 0).tokens;
  const auto got = decode(*make_pair(1, 2, 8, 0.0), 2, prompt, banned, 20, 3);
  CHECK(got.tokens == want);
  CHECK(got.num_proposed > 0);
  CHECK(got.num_accepted == 0);
}

namespace {

// `path` drafting for itself: the greedy text of plain decoding on a few prompts, every
// proposal accepted.
void check_self_draft(const char* path, const std::vector<const char*>& texts, int n) {
  const auto file = std::make_shared<const gguf::file>(gguf::file::open(path));
  const auto tok = tokenizer::from_gguf(*file);
  check_draft_vocabulary(tok, tok);
  auto o = pool_options(64);
  o.block_size = 16;
  o.num_threads = 2;
  o.eog_ids = tok.eog_ids();
  cpu::cpu_backend plain(file, o);
  draft_backend b(std::make_shared<cpu::cpu_backend>(file, o), std::make_shared<cpu::cpu_backend>(file, o), o.eog_ids);
  sampling_params greedy;
  greedy.temperature = 0.0f;
  greedy.ignore_eos = true;
  int64_t proposed = 0, accepted = 0;
  for (const char* text : texts) {
    CAPTURE(text);
    const auto prompt = tok.encode(text, true, false);
    const auto want = decode(plain, 1, prompt, greedy, n, 0, 4).tokens;
    const auto got = decode(b, 2, prompt, greedy, n, 4, 4);
    CHECK(got.tokens == want);
    proposed += got.num_proposed;
    accepted += got.num_accepted;
  }
  MESSAGE(accepted << " of " << proposed << " proposals accepted");
  CHECK(proposed > 0);
  CHECK(accepted == proposed);
}

}  // namespace

TEST_CASE("draft model on the default model: drafting for itself gives the greedy text of plain decoding") {
  TROUPE_REQUIRE_MODEL();
  check_self_draft(TROUPE_TEST_MODEL, {"The capital of France is", "def fibonacci(n):\n    ", "List three colours:"},
                   48);
}

TEST_CASE("qwen2.5-coder-0.5b: drafting for itself gives the greedy text of plain decoding") {
  TROUPE_REQUIRE_QWEN_MODEL();
  check_self_draft(TROUPE_TEST_QWEN_MODEL, {"def quicksort(items):\n    ", "// C++: read a file into a string\n"}, 32);
}
