// grammar_matcher and grammar_masks on small vocabularies: the trie-walk mask equals the
// brute-force mask in every state of many documents, end-of-generation ids only when the
// output is complete, control tokens never, rollback and copies, the logits mask, and the
// compiled-grammar cache.
#include <doctest/doctest.h>

#include <cmath>
#include <thread>

#include "tests/grammar/grammar_test_util.hpp"
#include "troupe/model/error.hpp"

using namespace troupe;

namespace {

constexpr int32_t eog_a = 0;
constexpr int32_t eog_b = 1;
constexpr int32_t control = 2;

// Every byte, then pieces that cross JSON token boundaries and split UTF-8 characters.
std::shared_ptr<const token_trie> mixed_vocab() {
  static const std::shared_ptr<const token_trie> vocab = [] {
    std::vector<std::string> pieces{"<eos>", "<eot>", "<ctl>"};
    std::vector<bool> is_text{false, false, false};
    for (int b = 0; b < 256; ++b) {
      pieces.emplace_back(1, static_cast<char>(b));
      is_text.push_back(true);
    }
    for (const char* p : {"{\"", "\":", "\",", "\"}", "\"}]", "},{\"", "name", "age", " \"", "\n  ", "true",
                          "123", "12", "00", "\xC3", "\xA9\"", "\xC3\xA9", "\xE6\x9D", "\xB1\xE4\xBA\xAC",
                          "\":\"", "\":[", "],\"", "null}", "\\n", "\\u00", "e9", "[{\"", "value", "children",
                          "\":{\"", "ABC-", "-1", "\"red\"", "re", "d\"", "    ", "\n", ", ", ":\"", "red\"}"}) {
      pieces.emplace_back(p);
      is_text.push_back(true);
    }
    pieces.emplace_back("name");  // a duplicate piece: both ids are allowed together
    is_text.push_back(true);
    return std::make_shared<const token_trie>(pieces, is_text, std::vector<int32_t>{eog_b, eog_a});
  }();
  return vocab;
}

int32_t byte_token(uint8_t b) { return 3 + b; }

grammar_matcher matcher_for(std::shared_ptr<const grammar> g) {
  return grammar_matcher(std::make_shared<const grammar_masks>(std::move(g), mixed_vocab()));
}

}  // namespace

TEST_CASE("the trie-walk mask equals the brute-force mask in every state of every valid document") {
  for (const test::schema_case& c : test::schema_cases()) {
    CAPTURE(c.name);
    auto masks = std::make_shared<const grammar_masks>(compile_json_schema(c.schema, 8), mixed_vocab());
    for (const std::string& doc : c.valid) {
      CAPTURE(doc);
      grammar_matcher m(masks);
      for (size_t i = 0; i <= doc.size(); ++i) {
        const token_bitset fast = m.next_mask();
        REQUIRE(fast == m.next_mask_by_brute_force());
        CHECK_FALSE(fast.test(control));
        if (i < doc.size()) REQUIRE(m.accept_token(byte_token(static_cast<uint8_t>(doc[i]))));
      }
      CHECK(m.is_accepting());
    }
  }
}

TEST_CASE("a second matcher gets the same masks from the cache") {
  auto masks = std::make_shared<const grammar_masks>(compile_json_object(8), mixed_vocab());
  const std::string doc = R"({"name":"abc","n":[1,2]})";
  std::vector<token_bitset> first;
  grammar_matcher a(masks);
  for (const char c : doc) {
    first.push_back(a.next_mask());
    REQUIRE(a.accept_token(byte_token(static_cast<uint8_t>(c))));
  }
  const uint64_t hits_before = masks->stats().num_cache_hits;
  grammar_matcher b(masks);
  for (size_t i = 0; i < doc.size(); ++i) {
    CHECK(b.next_mask() == first[i]);
    REQUIRE(b.accept_token(byte_token(static_cast<uint8_t>(doc[i]))));
  }
  CHECK(masks->stats().num_cache_hits - hits_before == doc.size());
}

TEST_CASE("end-of-generation ids are allowed exactly when the output is complete") {
  grammar_matcher m = matcher_for(compile_json_schema(R"({"type":"integer"})", 8));
  CHECK_FALSE(m.next_mask().test(eog_a));
  CHECK_FALSE(m.accept_token(eog_a));
  REQUIRE(m.accept_bytes("12"));
  CHECK(m.is_accepting());
  const token_bitset mask = m.next_mask();
  CHECK(mask.test(eog_a));
  CHECK(mask.test(eog_b));
  CHECK(mask.test(byte_token('3')));  // more digits may follow
  CHECK(m.accept_token(eog_b));
  CHECK(m.is_finished());
  CHECK_FALSE(m.accept_token(byte_token('3')));
}

TEST_CASE("when nothing may follow, end-of-generation ids are the only tokens allowed") {
  grammar_matcher m = matcher_for(compile_json_object(8));
  REQUIRE(m.accept_bytes(R"({"a":1})"));
  CHECK(m.is_terminated());
  const token_bitset mask = m.next_mask();
  CHECK(mask.count() == 2);
  CHECK(mask.test(eog_a));
  CHECK(mask.test(eog_b));
}

TEST_CASE("control tokens and ids outside the vocabulary are never accepted") {
  grammar_matcher m = matcher_for(compile_regex(".*"));
  CHECK_FALSE(m.accept_token(control));
  CHECK_FALSE(m.next_mask().test(control));
  CHECK_THROWS_AS(m.accept_token(-1), troupe::error);
  CHECK_THROWS_AS(m.accept_token(mixed_vocab()->vocab_size()), troupe::error);
}

TEST_CASE("tokens holding part of a UTF-8 character are allowed where the bytes fit") {
  grammar_matcher m = matcher_for(compile_regex("\xC3\xA9x"));
  const int32_t lead = 3 + 256 + 14;  // "\xC3"
  REQUIRE(mixed_vocab()->piece(lead) == "\xC3");
  CHECK(m.next_mask().test(lead));
  REQUIRE(m.accept_token(lead));
  CHECK(m.next_mask().test(byte_token(0xA9)));
  CHECK_FALSE(m.next_mask().test(byte_token('x')));
}

TEST_CASE("a rejected token leaves the matcher unchanged") {
  grammar_matcher m = matcher_for(compile_choice({"red", "green"}));
  REQUIRE(m.accept_bytes("re"));
  const token_bitset before = m.next_mask();
  CHECK_FALSE(m.accept_token(byte_token('x')));
  CHECK(m.next_mask() == before);
  CHECK(m.num_steps() == 1);
}

TEST_CASE("rollback returns to the earlier state; a copy goes on independently") {
  grammar_matcher m = matcher_for(compile_json_object(8));
  REQUIRE(m.accept_bytes("{"));
  const token_bitset after_open = m.next_mask();
  REQUIRE(m.accept_bytes("\"a"));
  REQUIRE(m.accept_bytes("\":"));
  grammar_matcher fork = m;
  m.rollback(2);
  CHECK(m.num_steps() == 1);
  CHECK(m.next_mask() == after_open);
  CHECK(m.accept_bytes("}"));
  CHECK(m.is_accepting());
  CHECK(fork.accept_bytes("true}"));
  CHECK(fork.is_accepting());
  CHECK_THROWS_AS(m.rollback(5), troupe::error);
}

TEST_CASE("apply_token_mask sets the disallowed logits to -infinity") {
  token_bitset allowed(130);
  allowed.set(0);
  allowed.set(64);
  allowed.set(129);
  std::vector<float> logits(131, 1.0f);
  apply_token_mask(allowed, logits);
  for (size_t i = 0; i < logits.size(); ++i) {
    CAPTURE(i);
    CHECK((logits[i] == 1.0f) == (i == 0 || i == 64 || i == 129));
    if (logits[i] != 1.0f) CHECK(std::isinf(logits[i]));
  }
}

TEST_CASE("the grammar cache compiles a spec once and drops the least recently used") {
  grammar_cache cache(test::byte_vocab(), 2);
  const grammar_spec a{grammar_kind::json_schema, R"({"type":"integer"})"};
  const grammar_spec b{grammar_kind::regex, "[ab]+"};
  const grammar_spec c{grammar_kind::choice, "", {"x", "y"}};
  const auto first = cache.get(a);
  CHECK(cache.get(a) == first);
  cache.get(b);
  cache.get(c);  // a is the least recently used: dropped
  CHECK(cache.size() == 2);
  CHECK(cache.get(a) != first);
  CHECK(cache.num_compiles() == 4);
  CHECK_THROWS_AS(cache.get({grammar_kind::regex, "(a"}), troupe::error);
}

TEST_CASE("matchers on many threads share one grammar_masks safely") {
  auto masks = std::make_shared<const grammar_masks>(compile_json_object(8), mixed_vocab());
  const std::string doc = R"({"name":"\u00e9t\u00e9","list":[1,2,{"x":null}],"ok":true})";
  std::vector<token_bitset> expected;
  {
    grammar_matcher m(masks);
    for (const char c : doc) {
      expected.push_back(m.next_mask_by_brute_force());
      REQUIRE(m.accept_token(byte_token(static_cast<uint8_t>(c))));
    }
  }
  std::vector<std::thread> threads;
  std::vector<int> num_wrong(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        grammar_matcher m(masks);
        for (size_t i = 0; i < doc.size(); ++i) {
          if (m.next_mask() != expected[i]) ++num_wrong[t];
          m.accept_token(byte_token(static_cast<uint8_t>(doc[i])));
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const int n : num_wrong) CHECK(n == 0);
}
