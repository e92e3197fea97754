// batcher_policy: admission batching releases on size and on the oldest's age, releases at
// once with max_wait_ms 0, and refuses with queue_full past max_queue_len.
#include <doctest/doctest.h>

#include "troupe/engine/batcher_policy.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {
scheduler_config batching(int32_t max_batch_size, int64_t max_wait_ms, int32_t max_queue_len = 100) {
  scheduler_config c;
  c.max_batch_size = max_batch_size;
  c.max_wait_ms = max_wait_ms;
  c.max_queue_len = max_queue_len;
  return c;
}
}  // namespace

TEST_CASE("the batcher releases all held requests once max_batch_size are held") {
  batcher_policy b(batching(3, 1000));
  CHECK(b.offer(1, 0).is_accepted());
  CHECK(b.take_ready(0).empty());
  CHECK(b.offer(2, 5).is_accepted());
  CHECK(b.take_ready(5).empty());
  CHECK(b.offer(3, 6).is_accepted());
  CHECK(b.take_ready(6) == std::vector<uint64_t>{1, 2, 3});
  CHECK(b.num_held() == 0);
  CHECK_FALSE(b.next_deadline_ms().has_value());
}

TEST_CASE("the batcher releases when the oldest request has waited max_wait_ms") {
  batcher_policy b(batching(8, 50));
  b.offer(7, 100);
  b.offer(8, 120);
  REQUIRE(b.next_deadline_ms().has_value());
  CHECK(*b.next_deadline_ms() == 150);
  CHECK(b.take_ready(149).empty());
  CHECK(b.take_ready(150) == std::vector<uint64_t>{7, 8});
}

TEST_CASE("the deadline follows the oldest held request after a release") {
  batcher_policy b(batching(2, 50));
  b.offer(1, 0);
  b.offer(2, 10);
  CHECK(b.take_ready(10).size() == 2);
  b.offer(3, 30);
  CHECK(*b.next_deadline_ms() == 80);
}

TEST_CASE("max_wait_ms 0 releases every request at once") {
  batcher_policy b(batching(8, 0));
  b.offer(1, 42);
  CHECK(b.take_ready(42) == std::vector<uint64_t>{1});
  CHECK_FALSE(b.next_deadline_ms().has_value());
}

TEST_CASE("over max_queue_len the batcher refuses with queue_full") {
  batcher_policy b(batching(4, 1000, 4));
  for (uint64_t id = 1; id <= 3; ++id) CHECK(b.offer(id, 0).is_accepted());
  SUBCASE("counting its own held requests") {
    CHECK(b.offer(4, 0).is_accepted());  // the fourth completes a batch, not refused
    b.take_ready(0);
    CHECK(b.offer(5, 0).is_accepted());
  }
  SUBCASE("counting the scheduler's waiting queue too") {
    const auto r = b.offer(4, 0, 1);
    CHECK(r.refusal == refusal_reason::queue_full);
    CHECK(r.message.find("max_queue_len 4") != std::string::npos);
    CHECK(b.num_held() == 3);
    CHECK(b.num_refused() == 1);
  }
}

TEST_CASE("a full waiting room refuses until something leaves it") {
  batcher_policy b(batching(2, 1000, 2));
  b.offer(1, 0);
  CHECK_FALSE(b.offer(2, 0, 1).is_accepted());
  CHECK(b.remove(1));
  CHECK(b.offer(2, 0, 1).is_accepted());
}

TEST_CASE("a cancelled request leaves the batcher without being released") {
  batcher_policy b(batching(8, 10));
  b.offer(1, 0);
  b.offer(2, 5);
  CHECK(b.remove(1));
  CHECK_FALSE(b.remove(1));
  CHECK(*b.next_deadline_ms() == 15);
  CHECK(b.take_ready(15) == std::vector<uint64_t>{2});
}

TEST_CASE("a request id held twice is an error") {
  batcher_policy b(batching(8, 10));
  b.offer(1, 0);
  CHECK_THROWS_AS(b.offer(1, 1), error);
}

TEST_CASE("scheduler_config::validate names the field out of range") {
  auto message_of = [](scheduler_config c) {
    try {
      c.validate();
    } catch (const error& e) {
      CHECK(e.code() == error_code::invalid_argument);
      return std::string(e.what());
    }
    return std::string();
  };
  scheduler_config c;
  CHECK(message_of(c).empty());
  c.max_batch_size = 0;
  CHECK(message_of(c).starts_with("max_batch_size"));
  c = {};
  c.max_wait_ms = -1;
  CHECK(message_of(c).starts_with("max_wait_ms"));
  c = {};
  c.max_num_batched_tokens = 32;
  CHECK(message_of(c).starts_with("max_num_batched_tokens"));
  c = {};
  c.enable_chunked_prefill = false;
  c.max_model_len = 4096;
  CHECK(message_of(c).find("enable_chunked_prefill") != std::string::npos);
  c = {};
  c.max_queue_len = 2;
  CHECK(message_of(c).starts_with("max_queue_len"));
}
