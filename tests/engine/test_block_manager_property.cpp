// Property test of engine/block_manager: thousands of random submit / grow / fork / release /
// discard / swap operations against a simulated KV memory. Every sequence must read back
// exactly its own KV through its block table (so no block is handed to two sequences that
// write different data, copy-on-write and prefix hits are right), invariants hold after
// each operation, and at the end every block is free or cached-evictable.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "troupe/engine/block_manager.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

// Like real KV, a position's simulated KV depends on every token up to it, so a block with
// the right tokens after a different prefix reads back wrong.
std::vector<uint64_t> simulated_kv(const std::vector<int32_t>& tokens) {
  std::vector<uint64_t> kv(tokens.size());
  uint64_t h = 0;
  for (size_t p = 0; p < tokens.size(); ++p) {
    h = (h ^ static_cast<uint64_t>(tokens[p] + 1)) * 0x100000001b3ULL;
    kv[p] = h;
  }
  return kv;
}

struct simulated_sequence {
  std::vector<int32_t> tokens;  // known tokens; KV exists for [0, num_computed)
  int32_t num_computed = 0;
  uint64_t family = 0;          // the sequence it was forked from, transitively
};

class simulation {
 public:
  simulation(const block_manager_config& config, uint32_t seed)
      : bm_(config),
        config_(config),
        rng_(seed),
        device_(static_cast<size_t>(config.num_blocks), std::vector<uint64_t>(static_cast<size_t>(config.block_size), 0)),
        host_(static_cast<size_t>(config.num_swap_blocks), std::vector<uint64_t>(static_cast<size_t>(config.block_size), 0)) {
    // A few long "system prompts" that new prompts start with, so prefix hits are common.
    for (int t = 0; t < 4; ++t) {
      std::vector<int32_t> base(48);
      for (auto& id : base) id = pick(0, 5);
      bases_.push_back(base);
    }
  }

  void run(int num_ops) {
    for (int op = 0; op < num_ops; ++op) {
      const int kind = pick(0, 99);
      if (kind < 22) submit();
      else if (kind < 60) grow();
      else if (kind < 68) fork();
      else if (kind < 82) release();
      else if (kind < 91) swap_out();
      else swap_in();
      bm_.check_invariants();
      check_contents();
    }
    for (const auto& [id, seq] : seqs_) bm_.release(id);
    seqs_.clear();
    bm_.check_invariants();
    const auto s = bm_.stats();
    CHECK(s.num_used_blocks == 0);
    CHECK(s.num_cached_blocks + s.num_free_blocks == config_.num_blocks);
    CHECK(bm_.num_free_blocks() == config_.num_blocks);
    CHECK(s.num_used_swap_blocks == 0);
    for (int32_t b = 0; b < config_.num_blocks; ++b) CHECK(bm_.ref_count(b) == 0);
    // The run exercised what it claims to.
    INFO(num_grown_, " grows, ", num_refused_, " refused, ", num_copies_, " copies, ", num_swaps_, " swaps, hit ratio ",
         s.prefix_hit_ratio(), ", ", s.num_evicted_blocks, " evicted");
    CHECK(num_grown_ > num_ops / 4);
    CHECK(num_refused_ > 0);
    CHECK(num_copies_ > 0);
    CHECK((num_swaps_ > 0) == (config_.num_swap_blocks > 0));
    CHECK((s.num_evicted_blocks > 0) == config_.enable_prefix_caching);
    CHECK((s.prefix_hit_ratio() > 0.1) == config_.enable_prefix_caching);
  }

 private:
  int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }

  // A random live sequence in the wanted residency, or 0 when there is none.
  uint64_t pick_sequence(bool want_swapped) {
    std::vector<uint64_t> ids;
    for (const auto& [id, seq] : seqs_) {
      if (bm_.is_swapped(id) == want_swapped) ids.push_back(id);
    }
    return ids.empty() ? 0 : ids[static_cast<size_t>(pick(0, static_cast<int>(ids.size()) - 1))];
  }

  void write(uint64_t id, int32_t from, int32_t to) {
    const auto kv = simulated_kv(seqs_.at(id).tokens);
    const auto& table = bm_.block_table(id);
    const int32_t bs = config_.block_size;
    for (int32_t p = from; p < to; ++p) {
      device_[static_cast<size_t>(table[static_cast<size_t>(p / bs)])][static_cast<size_t>(p % bs)] =
          kv[static_cast<size_t>(p)];
    }
  }

  void apply(const std::vector<block_copy>& copies, std::vector<std::vector<uint64_t>>& from,
             std::vector<std::vector<uint64_t>>& to) {
    for (const auto& c : copies) to[static_cast<size_t>(c.dst)] = from[static_cast<size_t>(c.src)];
  }

  void submit() {
    const uint64_t id = next_id_++;
    simulated_sequence seq;
    seq.family = id;
    if (pick(0, 1) == 0) {
      const auto& base = bases_[static_cast<size_t>(pick(0, static_cast<int>(bases_.size()) - 1))];
      seq.tokens.assign(base.begin(), base.begin() + pick(1, static_cast<int>(base.size())));
    } else {  // whole blocks drawn from two patterns: equal blocks after different prefixes
      for (int i = pick(1, 6); i > 0; --i) {
        for (int32_t t = 0; t < config_.block_size; ++t) seq.tokens.push_back(pick(0, 1) * 7 + t % 2);
      }
    }
    for (int i = pick(0, 6); i > 0; --i) seq.tokens.push_back(pick(0, 5));
    const auto size = static_cast<int32_t>(seq.tokens.size());
    const int32_t cached = bm_.num_cached_prefix_tokens(seq.tokens);
    CHECK(cached % config_.block_size == 0);
    CHECK(cached < size);
    const int32_t num_tokens = pick(0, 2) == 0 ? pick(1, size) : size;  // sometimes a first prefill chunk
    if (!bm_.can_grow(id, num_tokens, seq.tokens)) {
      expect_refused([&] { bm_.grow(id, num_tokens, seq.tokens); });
      return;
    }
    CHECK(bm_.grow(id, num_tokens, seq.tokens).copies.empty());
    const int32_t reused = bm_.num_reused_prefix_tokens(id);
    CHECK(reused == std::min(cached, num_tokens / config_.block_size * config_.block_size));
    seq.num_computed = num_tokens;
    seqs_.emplace(id, std::move(seq));
    write(id, reused, num_tokens);
    ++num_grown_;
  }

  void grow() {
    const uint64_t id = pick_sequence(false);
    if (id == 0) return;
    auto& seq = seqs_.at(id);
    if (seq.tokens.size() > 120) return release_one(id);  // finished
    const auto known = static_cast<int32_t>(seq.tokens.size());
    int32_t num_tokens = 0;
    if (seq.num_computed < known) {
      num_tokens = std::min(known, seq.num_computed + pick(1, 9));  // the next prefill chunk
    } else {
      for (int i = pick(0, 3) == 0 ? pick(2, 5) : 1; i > 0; --i) seq.tokens.push_back(pick(0, 5));
      num_tokens = static_cast<int32_t>(seq.tokens.size());
    }
    if (!bm_.can_grow(id, num_tokens)) {
      expect_refused([&] { bm_.grow(id, num_tokens, seq.tokens); });
      if (pick(0, 1) == 0) release_one(pick_sequence(false));  // preempt by recompute
      return;
    }
    const auto ops = bm_.grow(id, num_tokens, seq.tokens);
    CHECK(ops.copies.size() <= 1);
    num_copies_ += static_cast<int>(ops.copies.size());
    apply(ops.copies, device_, device_);
    write(id, seq.num_computed, num_tokens);
    seq.num_computed = num_tokens;
    ++num_grown_;
  }

  void fork() {
    const uint64_t parent = pick_sequence(false);
    if (parent == 0) return;
    const uint64_t child = next_id_++;
    bm_.fork(parent, child);
    seqs_.emplace(child, seqs_.at(parent));
  }

  void release() {
    if (pick(0, 9) == 0) return bm_.release(next_id_ + 1000);  // unknown: a no-op
    const uint64_t id = pick_sequence(pick(0, 3) == 0);
    if (id == 0) return;
    if (pick(0, 7) == 0) {  // its step failed
      bm_.discard(id);
      seqs_.erase(id);
    } else {
      release_one(id);
    }
  }

  void release_one(uint64_t id) {
    bm_.release(id);
    seqs_.erase(id);
  }

  void swap_out() {
    const uint64_t id = pick_sequence(false);
    if (id == 0) return;
    if (!bm_.can_swap_out(id)) {
      expect_refused([&] { bm_.swap_out(id); });
      return;
    }
    apply(bm_.swap_out(id).swap_out, device_, host_);
    ++num_swaps_;
  }

  void swap_in() {
    const uint64_t id = pick_sequence(true);
    if (id == 0) return;
    if (!bm_.can_swap_in(id)) {
      expect_refused([&] { bm_.swap_in(id); });
      return;
    }
    apply(bm_.swap_in(id).swap_in, host_, device_);
  }

  // A refused call throws context_overflow and leaves the pool as it was.
  void expect_refused(auto&& call) {
    const int32_t num_free = bm_.num_free_blocks();
    const auto num_swap_used = bm_.stats().num_used_swap_blocks;
    try {
      call();
      FAIL("a call that can_* refused went through");
    } catch (const error& e) {
      CHECK(e.code() == error_code::context_overflow);
    }
    CHECK(bm_.num_free_blocks() == num_free);
    CHECK(bm_.stats().num_used_swap_blocks == num_swap_used);
    ++num_refused_;
  }

  // Reading each sequence's KV through its block table gives back its own, and a
  // partly filled block is shared only within one fork family.
  void check_contents() {
    const int32_t bs = config_.block_size;
    std::map<int32_t, uint64_t> partial_owner;
    for (const auto& [id, seq] : seqs_) {
      if (bm_.is_swapped(id)) continue;
      const auto& table = bm_.block_table(id);
      const auto kv = simulated_kv(seq.tokens);
      REQUIRE(table.size() == static_cast<size_t>((seq.num_computed + bs - 1) / bs));
      for (int32_t p = 0; p < seq.num_computed; ++p) {
        const int32_t block = table[static_cast<size_t>(p / bs)];
        if (device_[static_cast<size_t>(block)][static_cast<size_t>(p % bs)] != kv[static_cast<size_t>(p)]) {
          FAIL("sequence ", id, " reads wrong KV at position ", p, " from block ", block);
        }
      }
      if (seq.num_computed % bs != 0) {
        const auto [it, is_new] = partial_owner.emplace(table.back(), seq.family);
        if (!is_new) CHECK(it->second == seq.family);
      }
    }
  }

  block_manager bm_;
  block_manager_config config_;
  std::mt19937 rng_;
  std::vector<std::vector<uint64_t>> device_;
  std::vector<std::vector<uint64_t>> host_;
  std::vector<std::vector<int32_t>> bases_;
  std::map<uint64_t, simulated_sequence> seqs_;
  uint64_t next_id_ = 1;
  int num_grown_ = 0;
  int num_refused_ = 0;
  int num_copies_ = 0;
  int num_swaps_ = 0;
};

TEST_CASE("random submit, grow, fork, release and swap never leak, share wrongly or break an invariant") {
  SUBCASE("prefix caching, swap space") { simulation({64, 4, 32, true}, 20240611).run(6000); }
  SUBCASE("prefix caching, odd block size, small pool") { simulation({24, 3, 12, true}, 7).run(6000); }
  SUBCASE("prefix caching, blocks of 16") { simulation({40, 16, 16, true}, 99).run(4000); }
  SUBCASE("no prefix caching, no swap space") { simulation({48, 4, 0, false}, 12345).run(6000); }
}

}  // namespace
}  // namespace troupe
