// Grammars over SmolLM2's real vocabulary (49,152 tokens): random walks that pick allowed
// tokens until the output is complete must produce JSON that parses and validates against
// the schema; the trie-walk mask must equal the brute-force one along the way; guided
// regex and choice outputs must match. Needs the default model (real_model).
#include <doctest/doctest.h>
#include <simdjson.h>

#include <random>
#include <regex>

#include "tests/grammar/grammar_test_util.hpp"
#include "tests/grammar/schema_validator.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/tokenizer.hpp"
#include "util/require_model.hpp"

using namespace troupe;

namespace {

std::shared_ptr<const token_trie> smollm2_vocab() {
  static const std::shared_ptr<const token_trie> vocab = [] {
    const tokenizer tok = tokenizer::from_gguf(gguf::file::open(TROUPE_TEST_MODEL));
    return token_trie::from_tokenizer(tok);
  }();
  return vocab;
}

// Picks allowed tokens at random, preferring (3 times in 4) tokens that close something,
// so that strings, numbers and arrays end; stops once the output is complete. Every
// check_every steps the trie-walk mask is compared with the brute-force one.
std::string random_walk(grammar_matcher& m, std::mt19937& rng, int check_every) {
  const token_trie& vocab = m.masks().vocab();
  std::string text;
  for (int step = 0; step < 3000 && !m.is_accepting(); ++step) {
    const token_bitset mask = m.next_mask();
    if (check_every > 0 && step % check_every == 0) REQUIRE(mask == m.next_mask_by_brute_force());
    std::vector<int32_t> all, closing;
    mask.for_each([&](int32_t id) {
      if (vocab.is_eog(id)) return;
      all.push_back(id);
      if (vocab.piece(id).find_first_of("\"]},") != std::string_view::npos) closing.push_back(id);
    });
    REQUIRE_MESSAGE(!all.empty(), "nothing allowed after: " << text);
    const std::vector<int32_t>& pool = !closing.empty() && rng() % 4 != 0 ? closing : all;
    const int32_t id = pool[rng() % pool.size()];
    REQUIRE(m.accept_token(id));
    text += vocab.piece(id);
  }
  REQUIRE_MESSAGE(m.is_accepting(), "no complete output after 3000 tokens: " << text);
  const token_bitset mask = m.next_mask();
  for (const int32_t id : vocab.eog_ids()) CHECK(mask.test(id));
  return text;
}

}  // namespace

TEST_CASE("smollm2: random walks over every schema case produce JSON that validates") {
  TROUPE_REQUIRE_MODEL();
  const auto vocab = smollm2_vocab();
  std::mt19937 rng(1234);
  for (const test::schema_case& c : test::schema_cases()) {
    CAPTURE(c.name);
    auto masks = std::make_shared<const grammar_masks>(compile_json_schema(c.schema, 8), vocab);
    simdjson::dom::parser schema_parser;
    const simdjson::dom::element schema = schema_parser.parse(std::string(c.schema));
    test::schema_validator validator(schema);
    for (int walk = 0; walk < 4; ++walk) {
      grammar_matcher m(masks);
      const std::string text = random_walk(m, rng, walk == 0 ? 5 : 0);
      CAPTURE(text);
      simdjson::dom::parser parser;
      simdjson::dom::element value;
      REQUIRE_MESSAGE(parser.parse(text).get(value) == simdjson::SUCCESS, "not JSON: " << text);
      CHECK_MESSAGE(validator.check(schema, value) == "", validator.check(schema, value));
    }
  }
}

TEST_CASE("smollm2: random walks under json_object produce JSON objects") {
  TROUPE_REQUIRE_MODEL();
  auto masks = std::make_shared<const grammar_masks>(compile_json_object(8), smollm2_vocab());
  std::mt19937 rng(99);
  for (int walk = 0; walk < 10; ++walk) {
    grammar_matcher m(masks);
    const std::string text = random_walk(m, rng, walk == 0 ? 3 : 0);
    CAPTURE(text);
    simdjson::dom::parser parser;
    simdjson::dom::element value;
    REQUIRE(parser.parse(text).get(value) == simdjson::SUCCESS);
    CHECK(value.type() == simdjson::dom::element_type::OBJECT);
    CHECK(m.is_terminated());
  }
}

TEST_CASE("smollm2: random walks under a guided regex and a guided choice match them") {
  TROUPE_REQUIRE_MODEL();
  std::mt19937 rng(7);
  // Bounded: std::regex checks by recursion per character, and an unbounded [a-z]+ lets a
  // random walk write thousands of letters (a stack overflow under the sanitizers).
  const char* pattern = "(\\d{3}-){2}\\d{4}|[A-Z][a-z]{1,12} [A-Z]\\.";
  auto masks = std::make_shared<const grammar_masks>(compile_regex(pattern), smollm2_vocab());
  for (int walk = 0; walk < 10; ++walk) {
    grammar_matcher m(masks);
    const std::string text = random_walk(m, rng, walk == 0 ? 1 : 0);
    CHECK_MESSAGE(std::regex_match(text, std::regex(pattern)), text);
  }
  auto choice = std::make_shared<const grammar_masks>(compile_choice({"positive", "negative", "neutral"}), smollm2_vocab());
  for (int walk = 0; walk < 10; ++walk) {
    grammar_matcher m(choice);
    const std::string text = random_walk(m, rng, 1);
    CHECK((text == "positive" || text == "negative" || text == "neutral"));
    CHECK(m.is_terminated());
  }
}

TEST_CASE("smollm2: control tokens are never allowed and EOG ids only at the end") {
  TROUPE_REQUIRE_MODEL();
  const tokenizer tok = tokenizer::from_gguf(gguf::file::open(TROUPE_TEST_MODEL));
  grammar_matcher m(std::make_shared<const grammar_masks>(compile_json_object(8), smollm2_vocab()));
  const token_bitset mask = m.next_mask();
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    if (tok.kind(id) == token_kind::control) CHECK_FALSE(mask.test(id));
  }
  REQUIRE(m.accept_token(tok.encode("{\"", false, false).at(0)));
  for (const int32_t id : tok.eog_ids()) CHECK_FALSE(m.next_mask().test(id));
}
