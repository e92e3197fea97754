// The replica router's rule as pure functions: least load, rotation among equals, prefix
// affinity unless the affinity replica is much busier, the replicas' prefix digests before
// the affinity table, and the prefix key.
#include <doctest/doctest.h>

#include <cmath>

#include "troupe/cluster/gate.hpp"
#include "troupe/cluster/router.hpp"
#include "troupe/cluster/routing.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;
using namespace troupe::cluster;

namespace {

replica_load up(int64_t in_flight, int32_t waiting = 0, double kv = 0.0) { return {true, in_flight, waiting, kv}; }
replica_load down() { return {false, 0, 0, 0.0}; }
replica_load cached(int64_t in_flight, int32_t waiting = 0) { return {true, in_flight, waiting, 0.0, true}; }

request prompt(std::string text) {
  request r;
  r.prompt = std::move(text);
  return r;
}

}  // namespace

TEST_CASE("routing: no replica up, no pick") {
  CHECK_FALSE(pick_replica({}, std::nullopt, 0).has_value());
  CHECK_FALSE(pick_replica({down(), down()}, std::nullopt, 0).has_value());
  CHECK_FALSE(pick_replica({down(), down()}, 1, 0).has_value());  // affinity to a down replica is no help
}

TEST_CASE("routing: the least loaded up replica wins") {
  CHECK(pick_replica({up(3), up(1), up(2)}, std::nullopt, 0) == 1);
  CHECK(pick_replica({up(3), down(), up(2)}, std::nullopt, 0) == 2);
  // The stats snapshot counts: a long waiting queue or a full KV pool weighs.
  CHECK(pick_replica({up(1, 6), up(2)}, std::nullopt, 0) == 1);            // 1 + 3 > 2
  CHECK(pick_replica({up(1, 0, 1.0), up(2, 0, 0.0)}, std::nullopt, 0) == 1);  // 1 + 4 > 2
  CHECK(load_score(up(2, 4, 0.5)) == doctest::Approx(2 + 0.5 * 4 + 4.0 * 0.5));
}

TEST_CASE("routing: a replica whose steps are slower than the fastest's counts as busier") {
  replica_load slow = up(1);
  slow.slowness = 2.0;  // its streams see steps twice as long
  CHECK(load_score(slow) == doctest::Approx(1 + 2.0 * 1.0));
  CHECK(pick_replica({slow, up(2)}, std::nullopt, 0) == 1);  // 3 > 2
  CHECK(pick_replica({slow, up(4)}, std::nullopt, 0) == 0);  // 3 < 4: slower, but far less loaded
  slow.slowness = 1.2;
  CHECK(pick_replica({slow, up(2)}, std::nullopt, 0) == 0);  // 1.4 < 2
  // Unknown or nonsense values count as no slower; a huge one is capped.
  replica_load odd = up(1);
  odd.slowness = 0.5;
  CHECK(load_score(odd) == doctest::Approx(1.0));
  odd.slowness = std::nan("");
  CHECK(load_score(odd) == doctest::Approx(1.0));
  odd.slowness = 1e12;
  CHECK(load_score(odd) == doctest::Approx(1 + 2.0 * 100));
  routing_options off;
  off.latency_weight = 0;
  slow.slowness = 3.0;
  CHECK(pick_replica({slow, up(2)}, std::nullopt, 0, off) == 0);
}

TEST_CASE("routing: equal replicas share the work by rotation") {
  const std::vector<replica_load> idle{up(0), up(0), up(0)};
  CHECK(pick_replica(idle, std::nullopt, 0) == 0);
  CHECK(pick_replica(idle, std::nullopt, 1) == 1);
  CHECK(pick_replica(idle, std::nullopt, 2) == 2);
  CHECK(pick_replica(idle, std::nullopt, 3) == 0);
  // A down one is passed over.
  CHECK(pick_replica({up(0), down(), up(0)}, std::nullopt, 1) == 2);
}

TEST_CASE("routing: affinity holds unless the replica is much busier") {
  routing_options o;
  o.affinity_slack = 4.0;
  CHECK(pick_replica({up(0), up(3)}, 1, 0, o) == 1);   // 3 <= 0 + 4: stays
  CHECK(pick_replica({up(0), up(4)}, 1, 0, o) == 1);   // at the slack: stays
  CHECK(pick_replica({up(0), up(5)}, 1, 0, o) == 0);   // past it: the least loaded
  CHECK(pick_replica({up(2), down()}, 1, 0, o) == 0);  // the affinity replica is down
  CHECK(pick_replica({up(0), up(1)}, 7, 0, o) == 0);   // an index out of range is ignored
  o.affinity_slack = 0.0;
  CHECK(pick_replica({up(0), up(1)}, 1, 0, o) == 0);
}

TEST_CASE("routing: a replica whose digest holds the prefix wins over the least loaded and the affinity") {
  routing_options o;
  o.affinity_slack = 4.0;
  CHECK(pick_replica({up(0), up(0), cached(2)}, std::nullopt, 0, o) == 2);
  // The digest beats the front door's affinity table: the cache is known, the table guessed.
  CHECK(pick_replica({up(0), up(1), cached(2)}, 1, 0, o) == 2);
}

TEST_CASE("routing: of several replicas holding the prefix, the least loaded; ties rotate") {
  CHECK(pick_replica({cached(3), up(0), cached(1)}, std::nullopt, 0) == 2);
  const std::vector<replica_load> both{cached(1), up(0), cached(1)};
  CHECK(pick_replica(both, std::nullopt, 0) == 0);
  CHECK(pick_replica(both, std::nullopt, 1) == 2);  // rotation starts past the first
}

TEST_CASE("routing: a replica holding the prefix that is much busier loses it; then the affinity, then least load") {
  routing_options o;
  o.affinity_slack = 4.0;
  CHECK(pick_replica({up(0), cached(4)}, std::nullopt, 0, o) == 1);  // at the slack: stays
  CHECK(pick_replica({up(0), cached(5)}, std::nullopt, 0, o) == 0);  // past it
  // Past the slack, the affinity table is asked as before.
  CHECK(pick_replica({up(0), cached(9), up(2)}, 2, 0, o) == 2);
  CHECK(pick_replica({up(0), cached(9), up(5)}, 2, 0, o) == 0);
  // A down replica's digest does not count.
  replica_load gone = cached(0);
  gone.up = false;
  CHECK(pick_replica({up(1), gone}, std::nullopt, 0, o) == 0);
}

TEST_CASE("routing: the prefix key covers the start of a prompt, a chat or token ids") {
  const std::string shared(prefix_key_chars, 'a');
  CHECK(prefix_key(prompt(shared + " one")) == prefix_key(prompt(shared + " two")));
  CHECK(prefix_key(prompt("short one")) != prefix_key(prompt("short two")));
  request chat_a, chat_b, chat_c;
  chat_a.messages = {{"system", "You are terse.", {}, {}}, {"user", "hi", {}, {}}};
  chat_b.messages = {{"system", "You are terse.", {}, {}}, {"user", "hi", {}, {}}};
  chat_c.messages = {{"system", "You are verbose.", {}, {}}, {"user", "hi", {}, {}}};
  CHECK(prefix_key(chat_a) == prefix_key(chat_b));
  CHECK(prefix_key(chat_a) != prefix_key(chat_c));
  request long_chat_a = chat_a, long_chat_b = chat_a;
  long_chat_a.messages[0].content = shared;
  long_chat_b.messages[0].content = shared;
  long_chat_a.messages[1].content = "first question";
  long_chat_b.messages[1].content = "another question";
  CHECK(prefix_key(long_chat_a) == prefix_key(long_chat_b));
  request toks_a, toks_b;
  toks_a.prompt_token_ids = {1, 2, 3};
  toks_b.prompt_token_ids = {1, 2, 4};
  CHECK(prefix_key(toks_a) != prefix_key(toks_b));
  // A prompt and a chat with the same text differ.
  request chat_text;
  chat_text.messages = {{"user", "hi", {}, {}}};
  CHECK(prefix_key(chat_text) != prefix_key(prompt("user\nhi\n")));
}

TEST_CASE("routing: the affinity table remembers the latest replica and forgets the oldest key") {
  affinity_table t(2);
  CHECK_FALSE(t.find(1).has_value());
  t.remember(1, 0);
  t.remember(2, 1);
  CHECK(t.find(1) == 0);
  t.remember(1, 2);  // the latest choice counts, and key 1 is now the most recent
  CHECK(t.find(1) == 2);
  t.remember(3, 0);  // over capacity: key 2 (least recent) goes
  CHECK_FALSE(t.find(2).has_value());
  CHECK(t.find(1) == 2);
  CHECK(t.find(3) == 0);
  CHECK(t.size() == 2);
}

TEST_CASE("cluster: addresses, keys and loopback") {
  auto a = parse_address("10.0.0.5:7000", "--replica");
  CHECK(a.host == "10.0.0.5");
  CHECK(a.port == 7000);
  CHECK(a.name() == "10.0.0.5:7000");
  CHECK(parse_address("7001", "--replica").host == "127.0.0.1");
  CHECK(parse_address("[::1]:7002", "--replica").host == "::1");
  CHECK(parse_address("127.0.0.1:0", "--listen", true).port == 0);
  CHECK_THROWS_AS(parse_address("127.0.0.1:0", "--replica"), troupe::error);
  CHECK_THROWS_AS(parse_address("host:http", "--replica"), troupe::error);
  CHECK_THROWS_AS(parse_address("host:70000", "--replica"), troupe::error);
  CHECK_THROWS_AS(parse_address(":7000", "--replica"), troupe::error);
  CHECK(keys_match("", ""));
  CHECK(keys_match("secret", "secret"));
  CHECK_FALSE(keys_match("secret", "secreT"));
  CHECK_FALSE(keys_match("secret", "secret2"));
  CHECK_FALSE(keys_match("", "x"));
  CHECK(is_loopback_host("127.0.0.1"));
  CHECK(is_loopback_host("127.1.2.3"));
  CHECK(is_loopback_host("::1"));
  CHECK(is_loopback_host("localhost"));
  CHECK_FALSE(is_loopback_host("0.0.0.0"));
  CHECK_FALSE(is_loopback_host("10.0.0.5"));
}
