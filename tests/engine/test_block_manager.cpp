// Specification of engine/block_manager: allocation and release, growth across block
// boundaries, exhaustion, copy-on-write forks, prefix-cache hits and LRU eviction, swap, stats.
#include <doctest/doctest.h>

#include <numeric>
#include <vector>

#include "troupe/engine/block_manager.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

block_manager make_manager(int32_t num_blocks, int32_t block_size = 4, int32_t num_swap_blocks = 0,
                           bool enable_prefix_caching = true) {
  return block_manager(block_manager_config{num_blocks, block_size, num_swap_blocks, enable_prefix_caching});
}

// Token ids first, first+1, ...: distinct runs never share a block's contents.
std::vector<int32_t> run_of(int32_t num_tokens, int32_t first = 100) {
  std::vector<int32_t> tokens(static_cast<size_t>(num_tokens));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void check_throws_code(auto&& call, error_code code) {
  try {
    call();
    FAIL("expected troupe::error");
  } catch (const error& e) {
    CHECK(e.code() == code);
  }
}

TEST_CASE("allocating and releasing sequences returns every block to the pool") {
  auto bm = make_manager(8, 4, 0, false);
  bm.grow(1, 10, {});
  bm.grow(2, 7, {});
  CHECK(bm.block_table(1).size() == 3);
  CHECK(bm.block_table(2).size() == 2);
  CHECK(bm.num_free_blocks() == 3);
  bm.release(1);
  bm.release(2);
  CHECK(bm.num_free_blocks() == 8);
  CHECK(bm.stats().num_used_blocks == 0);
  bm.check_invariants();
}

TEST_CASE("grow allocates a new block exactly when a sequence crosses a block boundary") {
  auto bm = make_manager(8);
  const auto tokens = run_of(9);
  bm.grow(1, 1, tokens);
  CHECK(bm.block_table(1).size() == 1);
  for (int32_t n = 2; n <= 4; ++n) {
    CHECK(bm.grow(1, n, tokens).copies.empty());
    CHECK(bm.block_table(1).size() == 1);
  }
  bm.grow(1, 5, tokens);
  CHECK(bm.block_table(1).size() == 2);
  bm.grow(1, 9, tokens);
  CHECK(bm.block_table(1).size() == 3);
  CHECK(bm.block_table(1) == std::vector<int32_t>{0, 1, 2});
  bm.check_invariants();
}

TEST_CASE("growing to fewer tokens than a sequence holds changes nothing") {
  auto bm = make_manager(8);
  bm.grow(1, 9, {});
  bm.grow(1, 3, {});
  CHECK(bm.block_table(1).size() == 3);
  CHECK(bm.num_free_blocks() == 5);
}

TEST_CASE("can_grow turns false and grow throws context_overflow, changing nothing, once the pool is exhausted") {
  auto bm = make_manager(4);
  CHECK(bm.can_grow(1, 16));
  CHECK_FALSE(bm.can_grow(1, 17));
  bm.grow(1, 12, {});
  CHECK(bm.can_grow(2, 4));
  CHECK_FALSE(bm.can_grow(2, 5));
  CHECK(bm.can_grow(1, 16));
  CHECK_FALSE(bm.can_grow(1, 17));
  check_throws_code([&] { bm.grow(2, 5, {}); }, error_code::context_overflow);
  check_throws_code([&] { bm.grow(1, 17, {}); }, error_code::context_overflow);
  CHECK_FALSE(bm.has_sequence(2));
  CHECK(bm.block_table(1).size() == 3);
  CHECK(bm.num_free_blocks() == 1);
  bm.check_invariants();
}

TEST_CASE("can_ever_fit tells a prompt longer than the whole pool from one that must wait") {
  auto bm = make_manager(4);
  bm.grow(1, 16, {});
  CHECK(bm.can_ever_fit(16));
  CHECK_FALSE(bm.can_ever_fit(17));
}

TEST_CASE("fork shares every block and a grow into the shared partial last block copies it exactly once") {
  auto bm = make_manager(8);
  const auto tokens = run_of(6);
  bm.grow(1, 6, tokens);
  bm.fork(1, 2);
  CHECK(bm.block_table(2) == bm.block_table(1));
  CHECK(bm.ref_count(0) == 2);
  CHECK(bm.ref_count(1) == 2);
  CHECK(bm.num_blocks_needed(2, 7) == 1);

  const auto child_ops = bm.grow(2, 7, concat(tokens, {7}));
  REQUIRE(child_ops.copies.size() == 1);
  CHECK(child_ops.copies[0].src == 1);
  CHECK(child_ops.copies[0].dst == bm.block_table(2)[1]);
  CHECK(bm.block_table(2)[0] == 0);  // the full first block stays shared
  CHECK(bm.ref_count(0) == 2);
  CHECK(bm.ref_count(1) == 1);

  CHECK(bm.grow(1, 7, concat(tokens, {8})).copies.empty());  // the parent now owns block 1 alone
  CHECK(bm.grow(2, 8, concat(tokens, {7, 7})).copies.empty());
  CHECK(bm.block_table(1)[1] == 1);
  bm.check_invariants();
}

TEST_CASE("a fork whose last block is full shares it and grows into new blocks without copying") {
  auto bm = make_manager(8);
  bm.grow(1, 8, run_of(8));
  bm.fork(1, 2);
  const auto ops = bm.grow(2, 9, run_of(9));
  CHECK(ops.copies.empty());
  CHECK(bm.block_table(2).size() == 3);
  CHECK(bm.ref_count(bm.block_table(1)[1]) == 2);
}

TEST_CASE("releasing a forked child leaves the parent's blocks held") {
  auto bm = make_manager(8, 4, 0, false);
  bm.grow(1, 6, {});
  bm.fork(1, 2);
  bm.release(2);
  CHECK(bm.ref_count(0) == 1);
  CHECK(bm.ref_count(1) == 1);
  CHECK(bm.num_free_blocks() == 6);
  bm.release(1);
  CHECK(bm.num_free_blocks() == 8);
  bm.check_invariants();
}

TEST_CASE("a second sequence with the same prompt reuses the first one's full blocks") {
  auto bm = make_manager(16);
  const auto prompt = run_of(10);
  bm.grow(1, 10, prompt);
  CHECK(bm.num_cached_prefix_tokens(prompt) == 8);
  bm.grow(2, 10, prompt);
  CHECK(bm.num_reused_prefix_tokens(2) == 8);
  CHECK(bm.block_table(2)[0] == bm.block_table(1)[0]);
  CHECK(bm.block_table(2)[1] == bm.block_table(1)[1]);
  CHECK(bm.block_table(2)[2] != bm.block_table(1)[2]);  // the partial tail is never shared
  CHECK(bm.ref_count(bm.block_table(1)[0]) == 2);
  bm.check_invariants();
}

TEST_CASE("a prompt that is entirely cached still leaves its last block to compute") {
  auto bm = make_manager(16);
  const auto prompt = run_of(8);
  bm.grow(1, 8, prompt);
  CHECK(bm.num_cached_prefix_tokens(prompt) == 4);
  bm.grow(2, 8, prompt);
  CHECK(bm.num_reused_prefix_tokens(2) == 4);
  CHECK(bm.block_table(2)[1] != bm.block_table(1)[1]);
}

TEST_CASE("a prompt shorter than one block has nothing cached") {
  auto bm = make_manager(16);
  bm.grow(1, 3, run_of(3));
  CHECK(bm.num_cached_prefix_tokens(run_of(3)) == 0);
  CHECK(bm.num_cached_prefix_tokens(run_of(4)) == 0);
  CHECK(bm.num_cached_prefix_tokens({}) == 0);
}

TEST_CASE("blocks are cached as they fill during decode, not before") {
  auto bm = make_manager(16);
  auto tokens = run_of(3);
  bm.grow(1, 3, tokens);
  CHECK(bm.num_cached_prefix_tokens(run_of(9)) == 0);
  tokens.push_back(103);
  bm.grow(1, 4, tokens);
  CHECK(bm.num_cached_prefix_tokens(run_of(9)) == 4);
}

TEST_CASE("a different token in the second block stops the prefix chain at the first") {
  auto bm = make_manager(16);
  const auto prompt = run_of(13);
  bm.grow(1, 13, prompt);
  auto other = prompt;
  other[6] = 9999;
  CHECK(bm.num_cached_prefix_tokens(other) == 4);
  bm.grow(2, 13, other);
  CHECK(bm.block_table(2)[0] == bm.block_table(1)[0]);
  CHECK(bm.block_table(2)[1] != bm.block_table(1)[1]);
  other[1] = 9999;  // a different first block: nothing matches, even where later blocks agree
  CHECK(bm.num_cached_prefix_tokens(other) == 0);
}

TEST_CASE("a chunked prefill reuses only the cached blocks inside the grown range") {
  auto bm = make_manager(16);
  const auto prompt = run_of(20);
  bm.grow(1, 20, prompt);
  bm.grow(2, 6, prompt);
  CHECK(bm.num_reused_prefix_tokens(2) == 4);
  CHECK(bm.block_table(2).size() == 2);
  CHECK(bm.block_table(2)[1] != bm.block_table(1)[1]);
}

TEST_CASE("released cached blocks count as free and are reused by a later hit") {
  auto bm = make_manager(8);
  const auto prompt = run_of(10);
  bm.grow(1, 10, prompt);
  const auto first = bm.block_table(1);
  bm.release(1);
  CHECK(bm.num_free_blocks() == 8);
  CHECK(bm.stats().num_cached_blocks == 2);
  CHECK(bm.num_cached_prefix_tokens(prompt) == 8);
  bm.grow(2, 10, prompt);
  CHECK(bm.block_table(2)[0] == first[0]);
  CHECK(bm.block_table(2)[1] == first[1]);
  bm.check_invariants();
}

TEST_CASE("allocation takes truly free blocks before evicting cached ones") {
  auto bm = make_manager(4);
  bm.grow(1, 8, run_of(8));  // blocks 0 and 1, both full and cached
  bm.release(1);
  bm.grow(2, 8, run_of(8, 500));
  CHECK(bm.num_cached_prefix_tokens(run_of(9)) == 8);
  CHECK(bm.stats().num_evicted_blocks == 0);
  bm.grow(3, 1, {});
  CHECK(bm.stats().num_evicted_blocks == 1);
}

TEST_CASE("the least recently used cached block is evicted first and a hit refreshes it") {
  auto bm = make_manager(3, 4, 0, true);
  const auto a = run_of(5, 100);
  const auto b = run_of(5, 200);
  const auto c = run_of(5, 300);
  bm.grow(1, 4, a);
  bm.release(1);
  bm.grow(2, 4, b);
  bm.release(2);
  bm.grow(3, 4, c);
  bm.release(3);  // LRU order now a, b, c
  bm.grow(4, 5, a);
  CHECK(bm.num_reused_prefix_tokens(4) == 4);  // a is refreshed; its tail block evicts b
  bm.release(4);  // order now c, a
  CHECK(bm.num_cached_prefix_tokens(b) == 0);
  CHECK(bm.num_cached_prefix_tokens(c) == 4);
  bm.grow(5, 5, {});  // the free block, then c
  CHECK(bm.num_cached_prefix_tokens(c) == 0);
  CHECK(bm.num_cached_prefix_tokens(a) == 4);
  bm.check_invariants();
}

TEST_CASE("a released chain is evicted from its tail, keeping the prefix that others extend") {
  auto bm = make_manager(3);
  const auto prompt = run_of(9);
  bm.grow(1, 8, prompt);
  bm.release(1);
  bm.grow(2, 1, {});
  bm.grow(3, 1, {});  // needs one cached block: the second one goes
  CHECK(bm.num_cached_prefix_tokens(prompt) == 4);
}

TEST_CASE("discarding a sequence whose step failed frees its blocks and drops them from the prefix cache") {
  auto bm = make_manager(8);
  const auto prompt = run_of(10);
  bm.grow(1, 10, prompt);
  bm.grow(2, 10, prompt);  // shares the two cached blocks
  bm.discard(1);
  bm.discard(42);  // unknown: a no-op
  CHECK(bm.num_cached_prefix_tokens(prompt) == 0);
  CHECK(bm.block_table(2).size() == 3);
  bm.discard(2);
  CHECK(bm.num_free_blocks() == 8);
  CHECK(bm.stats().num_cached_blocks == 0);
  bm.check_invariants();
}

TEST_CASE("with prefix caching disabled nothing is cached or looked up") {
  auto bm = make_manager(8, 4, 0, false);
  const auto prompt = run_of(10);
  bm.grow(1, 10, prompt);
  CHECK(bm.num_cached_prefix_tokens(prompt) == 0);
  bm.release(1);
  CHECK(bm.stats().num_cached_blocks == 0);
  CHECK(bm.stats().num_free_blocks == 8);
  bm.grow(2, 10, prompt);
  CHECK(bm.num_reused_prefix_tokens(2) == 0);
  CHECK(bm.stats().num_prefix_query_tokens == 0);
}

TEST_CASE("swap out and back in moves a sequence through host blocks and frees what it left") {
  auto bm = make_manager(6, 4, 4);
  bm.grow(1, 10, run_of(10));
  const auto device = bm.block_table(1);
  CHECK(bm.can_swap_out(1));
  const auto out = bm.swap_out(1);
  REQUIRE(out.swap_out.size() == 3);
  for (size_t i = 0; i < 3; ++i) CHECK(out.swap_out[i].src == device[i]);
  CHECK(bm.is_swapped(1));
  CHECK(bm.num_free_blocks() == 6);
  CHECK(bm.stats().num_used_swap_blocks == 3);
  check_throws_code([&] { bm.block_table(1); }, error_code::invalid_argument);
  check_throws_code([&] { bm.grow(1, 11, {}); }, error_code::invalid_argument);
  CHECK_FALSE(bm.can_grow(1, 11));

  bm.grow(2, 12, run_of(12, 500));
  CHECK(bm.can_swap_in(1));
  const auto in = bm.swap_in(1);
  REQUIRE(in.swap_in.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(in.swap_in[i].src == out.swap_out[i].dst);
    CHECK(in.swap_in[i].dst == bm.block_table(1)[i]);
  }
  CHECK_FALSE(bm.is_swapped(1));
  CHECK(bm.stats().num_used_swap_blocks == 0);
  CHECK(bm.num_free_blocks() == 0);
  bm.check_invariants();
}

TEST_CASE("swapping is refused when the other side has no room") {
  auto bm = make_manager(6, 4, 2);
  bm.grow(1, 12, {});
  CHECK_FALSE(bm.can_swap_out(1));
  check_throws_code([&] { bm.swap_out(1); }, error_code::context_overflow);
  bm.grow(2, 8, {});
  CHECK(bm.swap_out(2).swap_out.size() == 2);
  bm.grow(3, 12, {});
  CHECK_FALSE(bm.can_swap_in(2));
  check_throws_code([&] { bm.swap_in(2); }, error_code::context_overflow);
  bm.release(1);
  CHECK(bm.can_swap_in(2));
  CHECK_FALSE(bm.can_swap_out(2));
  bm.release(2);  // a swapped-out sequence returns its host blocks
  CHECK(bm.stats().num_used_swap_blocks == 0);
  bm.check_invariants();
}

TEST_CASE("swapping out a forked sequence copies its shared blocks and leaves the sibling intact") {
  auto bm = make_manager(8, 4, 8);
  bm.grow(1, 6, run_of(6));
  bm.fork(1, 2);
  const auto out = bm.swap_out(2);
  CHECK(out.swap_out.size() == 2);
  CHECK(bm.ref_count(0) == 1);
  CHECK(bm.ref_count(1) == 1);
  CHECK(bm.grow(1, 7, run_of(7)).copies.empty());
  bm.swap_in(2);
  CHECK(bm.block_table(2)[0] != bm.block_table(1)[0]);
  CHECK(bm.grow(2, 7, run_of(7)).copies.empty());
  bm.check_invariants();
}

TEST_CASE("stats count used, cached and free blocks, the prefix hit ratio and the waste in last blocks") {
  auto bm = make_manager(10, 4, 2);
  const auto prompt = run_of(10);
  bm.grow(1, 10, prompt);          // 3 blocks, 2 slots unused
  bm.grow(2, 10, prompt);          // reuses 2 blocks: 8 of 10 tokens hit
  bm.grow(3, 5, run_of(5, 500));   // 2 blocks, 3 slots unused
  bm.release(3);                   // its full block stays cached
  auto s = bm.stats();
  CHECK(s.num_total_blocks == 10);
  CHECK(s.num_used_blocks == 4);
  CHECK(s.num_cached_blocks == 1);
  CHECK(s.num_free_blocks == 5);
  CHECK(s.num_total_swap_blocks == 2);
  CHECK(s.num_prefix_query_tokens == 25);
  CHECK(s.num_prefix_hit_tokens == 8);
  CHECK(s.prefix_hit_ratio() == doctest::Approx(8.0 / 25.0));
  CHECK(s.num_reserved_slots == 16);
  CHECK(s.num_unused_slots == 4);
  CHECK(s.waste_ratio() == doctest::Approx(0.25));
  CHECK(bm.count_slots().num_reserved == 16);
  CHECK(bm.count_slots().num_unused == 4);

  bm.fork(1, 4);  // a shared partial tail is counted once
  CHECK(bm.stats().num_unused_slots == 4);
  CHECK(bm.count_slots().num_unused == 4);
}

TEST_CASE("release of an unknown or finished sequence is harmless, other calls on one are caller bugs") {
  auto bm = make_manager(4, 4, 2);
  bm.release(42);
  bm.grow(1, 4, {});
  bm.release(1);
  bm.release(1);
  CHECK(bm.num_free_blocks() == 4);
  check_throws_code([&] { bm.block_table(42); }, error_code::invalid_argument);
  check_throws_code([&] { bm.fork(42, 43); }, error_code::invalid_argument);
  check_throws_code([&] { bm.swap_out(42); }, error_code::invalid_argument);
  check_throws_code([&] { bm.swap_in(42); }, error_code::invalid_argument);
  check_throws_code([&] { bm.grow(42, -1, {}); }, error_code::invalid_argument);
  CHECK_FALSE(bm.can_swap_out(42));
  CHECK_FALSE(bm.can_swap_in(42));
  bm.grow(2, 4, {});
  bm.grow(3, 4, {});
  check_throws_code([&] { bm.fork(2, 3); }, error_code::invalid_argument);
  check_throws_code([&] { block_manager(block_manager_config{0, 16, 0, true}); }, error_code::invalid_argument);
  bm.check_invariants();
}

TEST_CASE("can_grow with the prompt counts prefix hits that the two-argument form cannot see") {
  auto bm = make_manager(5);
  const auto prompt = run_of(13);
  bm.grow(1, 13, prompt);  // 4 of 5 blocks in use; the first three hold the cached prefix
  CHECK_FALSE(bm.can_grow(2, 13));
  CHECK(bm.can_grow(2, 13, prompt));  // reuses 3 blocks, needs only the free one
  bm.grow(2, 13, prompt);
  CHECK(bm.num_free_blocks() == 0);
  CHECK_FALSE(bm.can_grow(3, 13, prompt));
}

}  // namespace
}  // namespace troupe
