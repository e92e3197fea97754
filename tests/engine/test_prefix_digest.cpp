// Specification of engine/prefix_digest over a real block_manager: a request's prefix key is
// in the digest exactly while its prompt's first block is in the prefix cache; the digest
// is sorted and bounded.
#include <doctest/doctest.h>

#include <algorithm>
#include <numeric>
#include <vector>

#include "troupe/engine/block_manager.hpp"
#include "troupe/engine/prefix_digest.hpp"
#include "troupe/model/error.hpp"

namespace troupe {
namespace {

block_manager make_manager(int32_t num_blocks, bool enable_prefix_caching = true) {
  return block_manager(block_manager_config{num_blocks, 4, 0, enable_prefix_caching});
}

std::vector<int32_t> run_of(int32_t num_tokens, int32_t first) {
  std::vector<int32_t> tokens(static_cast<size_t>(num_tokens));
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

}  // namespace

TEST_CASE("prefix digest: a prompt's key is reported while its first block is cached, and not once it is evicted") {
  auto bm = make_manager(2);
  prefix_digest digest;
  const auto prompt = run_of(4, 100);
  bm.grow(1, 4, prompt);
  digest.remember(0xa, *bm.first_block_key(prompt));
  CHECK(digest.cached_keys(bm) == std::vector<uint64_t>{0xa});  // held by the running sequence
  bm.release(1);
  CHECK(digest.cached_keys(bm) == std::vector<uint64_t>{0xa});  // cached, evictable
  bm.grow(2, 8, run_of(8, 500));  // needs both blocks: the cached one is evicted
  CHECK(bm.stats().num_evicted_blocks == 1);
  CHECK(digest.cached_keys(bm).empty());
  CHECK(digest.size() == 1);  // still remembered: the block may come back
}

TEST_CASE("prefix digest: a prompt cached again after eviction is reported again") {
  auto bm = make_manager(2);
  prefix_digest digest;
  const auto prompt = run_of(4, 100);
  digest.remember(0xa, *bm.first_block_key(prompt));
  CHECK(digest.cached_keys(bm).empty());  // not computed yet
  bm.grow(1, 4, prompt);
  CHECK(digest.cached_keys(bm) == std::vector<uint64_t>{0xa});
}

TEST_CASE("prefix digest: the first block key depends on the first block only, and needs a full block") {
  auto bm = make_manager(8);
  const auto a = run_of(9, 100);
  auto b = a;
  b[6] = 7;  // differs past the first block
  CHECK(bm.first_block_key(a) == bm.first_block_key(b));
  CHECK(bm.first_block_key(run_of(4, 101)) != bm.first_block_key(a));
  CHECK_FALSE(bm.first_block_key(run_of(3, 100)).has_value());
  auto off = make_manager(8, false);
  CHECK_FALSE(off.first_block_key(a).has_value());
}

TEST_CASE("prefix digest: sorted, at most capacity keys, the least recently admitted forgotten first") {
  auto bm = make_manager(16);
  prefix_digest digest(3);
  const std::vector<uint64_t> keys{50, 10, 40, 30, 20};
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto prompt = run_of(4, 100 + 10 * static_cast<int32_t>(i));
    bm.grow(i + 1, 4, prompt);
    digest.remember(keys[i], *bm.first_block_key(prompt));
  }
  CHECK(digest.size() == 3);
  CHECK(digest.cached_keys(bm) == std::vector<uint64_t>{20, 30, 40});
  // Seen again: moves to the front, so the next one pushes out another.
  digest.remember(40, *bm.first_block_key(run_of(4, 120)));
  const auto prompt = run_of(4, 900);
  bm.grow(9, 4, prompt);
  digest.remember(60, *bm.first_block_key(prompt));
  CHECK(digest.cached_keys(bm) == std::vector<uint64_t>{20, 40, 60});
}

TEST_CASE("prefix digest: a pool reset (a fresh backend) empties the digest; capacity 0 is refused") {
  auto bm = make_manager(4);
  prefix_digest digest;
  const auto prompt = run_of(4, 100);
  bm.grow(1, 4, prompt);
  digest.remember(1, *bm.first_block_key(prompt));
  bm.reset();
  CHECK(digest.cached_keys(bm).empty());
  CHECK_THROWS_AS(prefix_digest(0), error);
}

}  // namespace troupe
