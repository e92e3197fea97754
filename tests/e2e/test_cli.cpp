// The `troupe` binary as a user runs it: info, generate (plain and chat), interactive chat,
// and clear errors with a non-zero exit for bad input.
#include <doctest/doctest.h>

#include <string>

#include "process.hpp"
#include "util/require_model.hpp"

using troupe::test::run_process;

namespace {

const std::string troupe_bin = TROUPE_BINARY;
const std::string model = TROUPE_TEST_MODEL;

}  // namespace

TEST_CASE("cli: troupe info prints the metadata and the tensor table") {
  TROUPE_REQUIRE_MODEL();
  const auto r = run_process(troupe_bin + " info " + model);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("llama.block_count") != std::string::npos);
  CHECK(r.out.find("token_embd.weight") != std::string::npos);
  CHECK(r.out.find("blk.29.ffn_down.weight") != std::string::npos);
}

TEST_CASE("cli: troupe generate streams a greedy continuation and reports speed on stderr") {
  TROUPE_REQUIRE_MODEL();
  const auto r = run_process(troupe_bin + " generate --model " + model +
                             " --prompt 'The capital of France is' --temperature 0 -n 12 --threads 2");
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("The capital of France is", 0) == 0);
  CHECK(r.out.size() > std::string("The capital of France is").size() + 5);
  CHECK(r.err.find("tok/s") != std::string::npos);
  CHECK(r.err.find("generation: 12 tokens") != std::string::npos);
}

TEST_CASE("cli: the same seed gives the same text") {
  TROUPE_REQUIRE_MODEL();
  const std::string cmd = troupe_bin + " generate --model " + model +
                          " --prompt 'Once upon a time' --temperature 1.0 --seed 42 -n 24 --ignore-eos";
  const auto a = run_process(cmd);
  const auto b = run_process(cmd);
  CHECK(a.exit_code == 0);
  CHECK(a.out == b.out);
}

TEST_CASE("cli: --speculative ngram and --draft-model print the text of plain decoding; --min-tokens holds the end back") {
  TROUPE_REQUIRE_MODEL();
  const std::string cmd = troupe_bin + " generate --model " + model +
                          " --chat --prompt 'Repeat exactly: the cat sat on the mat, the cat sat on the mat.'"
                          " --temperature 0 -n 40 --threads 2";
  const auto plain = run_process(cmd);
  const auto spec = run_process(cmd + " --speculative ngram --num-speculative-tokens 3");
  CHECK(plain.exit_code == 0);
  CHECK(spec.exit_code == 0);
  CHECK(spec.out == plain.out);
  CHECK(run_process(cmd + " --speculative eagle").exit_code == 1);
  CHECK(run_process(cmd + " --speculative draft").exit_code == 1);  // no draft model loaded
  // The model as its own draft: greedy, so the same text.
  const auto drafted = run_process(cmd + " --draft-model " + model + " --num-speculative-tokens 3");
  CHECK(drafted.exit_code == 0);
  CHECK(drafted.out == plain.out);

  // "Say yes" ends in a few tokens; with --min-tokens 30 the end comes no earlier than 30.
  const std::string yes = troupe_bin + " generate --model " + model +
                          " --chat --prompt 'Answer with one word: yes or no?' --temperature 0 -n 40 --threads 2";
  const auto count = [](const std::string& err) {
    const auto at = err.find("generation: ");
    return at == std::string::npos ? -1 : std::stoi(err.substr(at + 12));
  };
  const auto short_answer = run_process(yes);
  const auto held = run_process(yes + " --min-tokens 30");
  CHECK(short_answer.exit_code == 0);
  CHECK(held.exit_code == 0);
  CHECK(count(short_answer.err) < 30);
  CHECK(count(held.err) >= 30);
}

TEST_CASE("cli: an interactive chat answers each line and keeps the conversation") {
  TROUPE_REQUIRE_MODEL();
  const auto r = run_process(troupe_bin + " generate --model " + model + " --chat --temperature 0 -n 16",
                             "Hello!\nWhat did I just say?\n");
  CHECK(r.exit_code == 0);
  // Two answers, the second reusing the first turn's KV cache.
  CHECK(r.err.find("(0 cached)") != std::string::npos);
  CHECK(r.err.find("cached)") != r.err.rfind("cached)"));
  CHECK(r.err.find("(0 cached)") == r.err.rfind("(0 cached)"));
}

TEST_CASE("cli: --kv-cache-dtype q8_0 generates on the CPU; CUDA and unknown types are refused naming the flag") {
  TROUPE_REQUIRE_MODEL();
  auto r = run_process(troupe_bin + " generate --model " + model +
                       " --prompt 'The capital of France is' --temperature 0 -n 8 --threads 2 --kv-cache-dtype q8_0");
  CHECK(r.exit_code == 0);
  CHECK(r.out.size() > std::string("The capital of France is").size() + 5);
  r = run_process(troupe_bin + " generate --model " + model + " --prompt x --device cuda --kv-cache-dtype q4_0");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--kv-cache-dtype q4_0 is supported on the CPU backend only") != std::string::npos);
  r = run_process(troupe_bin + " generate --model " + model + " --prompt x --kv-cache-dtype fp8");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--kv-cache-dtype must be f16, q8_0 or q4_0, got 'fp8'") != std::string::npos);
}

TEST_CASE("cli: bad input gets a message naming the problem and exit code 1") {
  TROUPE_REQUIRE_MODEL();
  auto r = run_process(troupe_bin + " generate --model " + model + " --prompt x --top-p 3");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("top_p") != std::string::npos);
  r = run_process(troupe_bin + " generate --model " + model + " --prompt x --temperature hot");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--temperature") != std::string::npos);
  r = run_process(troupe_bin + " generate --model " + model + " --prompt x --no-such-flag");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--no-such-flag") != std::string::npos);
  r = run_process(troupe_bin + " generate --model /nonexistent.gguf --prompt x");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("/nonexistent.gguf") != std::string::npos);
  r = run_process(troupe_bin + " generate --model /etc/hostname --prompt x");
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("invalid_model") != std::string::npos);
  r = run_process(troupe_bin + " frobnicate");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("usage") != std::string::npos);
}
