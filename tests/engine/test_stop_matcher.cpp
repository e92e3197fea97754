// stop_matcher: stop strings found across chunk boundaries, never emitted, held-back text
// released when it can no longer match or at flush, and the outcome independent of chunking.
#include <doctest/doctest.h>

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "troupe/engine/stop_matcher.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

struct outcome {
  std::string text;                  // everything emitted, flush included
  std::optional<size_t> stop_index;
  bool operator==(const outcome&) const = default;
};

outcome run(const std::vector<std::string>& stops, const std::vector<std::string>& chunks) {
  stop_matcher m(stops);
  outcome o;
  for (const std::string& chunk : chunks) {
    stop_matcher::result r = m.push(chunk);
    o.text += r.text;
    if (r.stop_index) o.stop_index = r.stop_index;
  }
  o.text += m.flush();
  return o;
}

// The specification: the stop string whose first occurrence ends earliest wins (the longest
// of those ending at the same byte); the text before its start is emitted.
outcome reference(const std::vector<std::string>& stops, const std::string& text) {
  outcome o{text, std::nullopt};
  size_t best_end = std::string::npos;
  for (size_t i = 0; i < stops.size(); ++i) {
    const size_t pos = text.find(stops[i]);
    if (pos == std::string::npos) continue;
    const size_t end = pos + stops[i].size();
    if (end < best_end || (end == best_end && stops[i].size() > stops[*o.stop_index].size())) {
      best_end = end;
      o.stop_index = i;
      o.text = text.substr(0, pos);
    }
  }
  return o;
}

}  // namespace

TEST_CASE("stop_matcher: without stop strings every chunk is emitted at once") {
  stop_matcher m({});
  CHECK(m.push("hello ").text == "hello ");
  CHECK(m.push("world").text == "world");
  CHECK(m.num_held_bytes() == 0);
  CHECK(m.flush().empty());
}

TEST_CASE("stop_matcher: a stop string split across chunks is found and not emitted") {
  stop_matcher m({"STOP"});
  CHECK(m.push("hello ST").text == "hello ");
  stop_matcher::result r = m.push("OP world");
  CHECK(r.text.empty());
  CHECK(r.stop_index == 0u);
  CHECK(m.is_stopped());
}

TEST_CASE("stop_matcher: a stop string spread over one-byte chunks is found") {
  const outcome o = run({"<end>"}, {"a", "<", "e", "n", "d", ">", "b"});
  CHECK(o.text == "a");
  CHECK(o.stop_index == 0u);
}

TEST_CASE("stop_matcher: a prefix that stops matching is released with the next chunk") {
  stop_matcher m({"STOP"});
  CHECK(m.push("lo S").text == "lo ");
  CHECK(m.push("T").text.empty());
  CHECK(m.num_held_bytes() == 2);
  CHECK(m.push("x").text == "STx");
  CHECK(m.num_held_bytes() == 0);
}

TEST_CASE("stop_matcher: a stop string that never completes is released at flush") {
  stop_matcher m({"STOP"});
  CHECK(m.push("abc STO").text == "abc ");
  CHECK(m.flush() == "STO");
  CHECK_FALSE(m.is_stopped());
}

TEST_CASE("stop_matcher: of overlapping candidates the one completed first wins") {
  const std::vector<std::string> stops{"abc", "bcd"};
  CHECK(run(stops, {"xabcd"}) == outcome{"x", 0});
  CHECK(run(stops, {"xab", "cd"}) == outcome{"x", 0});
  CHECK(run(stops, {"xbcd"}) == outcome{"x", 1});
  CHECK(run(stops, {"xa", "bd"}) == outcome{"xabd", std::nullopt});
}

TEST_CASE("stop_matcher: of several stop strings the earliest in the text wins, not the first listed") {
  CHECK(run({"world", "lo"}, {"hello world"}) == outcome{"hel", 1});
  CHECK(run({"world", "lo"}, {"hel", "lo wor", "ld"}) == outcome{"hel", 1});
}

TEST_CASE("stop_matcher: of stop strings completing at the same byte the longest wins") {
  CHECK(run({"b", "ab"}, {"xab"}) == outcome{"x", 1});
  CHECK(run({"b", "ab"}, {"xa", "b"}) == outcome{"x", 1});
}

TEST_CASE("stop_matcher: a self-overlapping stop string is found after a false start") {
  CHECK(run({"aab"}, {"aaab"}) == outcome{"a", 0});
  CHECK(run({"abab"}, {"aba", "abab"}) == outcome{"aba", 0});
  CHECK(run({"abab"}, {"ab", "a", "c"}) == outcome{"abac", std::nullopt});
}

TEST_CASE("stop_matcher: after a stop nothing more is emitted and flush is empty") {
  stop_matcher m({"\n\n"});
  CHECK(m.push("para\n\nnext").text == "para");
  CHECK(m.push("more text").text.empty());
  CHECK_FALSE(m.push("x").stop_index.has_value());
  CHECK(m.flush().empty());
}

TEST_CASE("stop_matcher: multibyte stop strings match whole characters") {
  CHECK(run({"€"}, {"price: 5", "\xe2\x82", "\xac and more"}) == outcome{"price: 5", 0});
  CHECK(run({"日本"}, {"日", "本語"}) == outcome{"", 0});
}

TEST_CASE("stop_matcher: the held-back tail stays shorter than the longest stop string") {
  stop_matcher m({"0123456789", "ab"});
  std::string emitted;
  for (int i = 0; i < 10000; ++i) {
    emitted += m.push(i % 2 == 0 ? "01234" : "5678a").text;
    CHECK(m.num_held_bytes() < 10);
  }
  emitted += m.flush();
  CHECK(emitted.size() == 50000);
}

TEST_CASE("stop_matcher: an empty stop string is refused") {
  CHECK_THROWS_AS(stop_matcher({"ok", ""}), error);
}

TEST_CASE("stop_matcher: held-back text is never lost and chunking never changes the outcome") {
  std::mt19937 rng(7);
  const std::string alphabet = "abc";
  auto random_text = [&](size_t max_size) {
    std::string s(std::uniform_int_distribution<size_t>(1, max_size)(rng), 'a');
    for (char& c : s) c = alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(rng)];
    return s;
  };
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<std::string> stops;
    const int num_stops = std::uniform_int_distribution<int>(1, 3)(rng);
    for (int i = 0; i < num_stops; ++i) stops.push_back(random_text(4));
    const std::string text = random_text(24);
    std::vector<std::string> chunks;
    for (size_t pos = 0; pos < text.size();) {
      const size_t n = std::uniform_int_distribution<size_t>(0, 5)(rng);
      chunks.push_back(text.substr(pos, n));
      pos += n;
    }
    INFO("text " << text << ", first stop " << stops[0]);
    CHECK(run(stops, chunks) == reference(stops, text));
  }
}

TEST_CASE("stop_matcher: a stop string completed while stopping is not allowed is emitted and matching goes on") {
  stop_matcher m({"\n\n"});
  // Short of min_tokens: the stop string is text.
  stop_matcher::result early = m.push("a\n\nb", false);
  CHECK_FALSE(early.stop_index);
  CHECK(early.text == "a\n\nb");
  CHECK_FALSE(m.is_stopped());
  // Once allowed, the next occurrence stops the output.
  stop_matcher::result later = m.push("c\n\nd", true);
  REQUIRE(later.stop_index);
  CHECK(later.text == "c");
}

TEST_CASE("stop_matcher: a stop string begun before stopping is allowed and completed after it stops there") {
  stop_matcher m({"END"});
  stop_matcher::result before = m.push("xxEN", false);
  CHECK(before.text == "xx");  // "EN" is held: it may still become the stop string
  stop_matcher::result after = m.push("D tail", true);
  REQUIRE(after.stop_index);
  CHECK(after.text.empty());
}
