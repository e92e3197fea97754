// Structured-output mask cost on a real vocabulary: for a few grammars, a realistic output
// is tokenized with the model's own tokenizer and replayed token by token; each step times
// fill_mask (the allowed-token bitset), accept_token and apply_token_mask on a logits row.
// "cold" is the first replay on a freshly bound grammar (per-state trie walks happen here),
// "warm" a second request with the same schema (the grammar cache's case). The peer in the
// same run is the brute-force mask (every token's bytes tried), on the cold replay's steps.
// Prints a table, then one JSON line per grammar and pass.
//
//   bench_grammar MODEL.gguf [MODEL2.gguf ...] [--brute-force-steps N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "troupe/grammar/compile.hpp"
#include "troupe/grammar/matcher.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/gguf.hpp"
#include "troupe/model/tokenizer.hpp"

using namespace troupe;
using clock_type = std::chrono::steady_clock;

namespace {

struct workload {
  const char* name;
  grammar_spec spec;
  const char* output;
};

const std::vector<workload>& workloads() {
  static const std::vector<workload> w{
      {"person (nested, enum, ranges)",
       {grammar_kind::json_schema,
        R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
            "email":{"type":"string","pattern":"^[a-z0-9.]+@[a-z0-9]+\\.[a-z]{2,}$"},"role":{"enum":["admin","editor","viewer"]},
            "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},"zip":{"type":"string","maxLength":10}},"required":["street","city"]},
            "tags":{"type":"array","items":{"type":"string"},"maxItems":8},"active":{"type":"boolean"}},
            "required":["name","age","role","address","tags","active"],"additionalProperties":false})"},
       "{\n  \"name\": \"Marguerite Duval-Okonkwo\",\n  \"age\": 42,\n  \"email\": \"m.duval@example.org\",\n"
       "  \"role\": \"editor\",\n  \"address\": {\n    \"street\": \"17 rue des Lilas, b\xC3\xA2timent C\",\n"
       "    \"city\": \"Montr\xC3\xA9" "al\",\n    \"zip\": \"H2X 1Y4\"\n  },\n"
       "  \"tags\": [\"photography\", \"open source\", \"long-distance running\", \"\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\"],\n"
       "  \"active\": true\n}"},
      {"tool call (anyOf arguments)",
       {grammar_kind::json_schema,
        R"({"type":"object","properties":{"name":{"enum":["get_weather","search_web"]},"arguments":{"anyOf":[
            {"type":"object","properties":{"location":{"type":"string"},"unit":{"enum":["celsius","fahrenheit"]},"days":{"type":"integer","minimum":1,"maximum":14}},"required":["location","unit"]},
            {"type":"object","properties":{"query":{"type":"string"},"max_results":{"type":"integer"}},"required":["query"]}]}},
            "required":["name","arguments"]})"},
       R"({"name": "search_web", "arguments": {"query": "best hiking trails near Lake Tahoe with waterfalls and easy parking, open in late October", "max_results": 10}})"},
      {"recursive tree ($ref)",
       {grammar_kind::json_schema,
        R"({"$defs":{"node":{"type":"object","properties":{"name":{"type":"string"},"size":{"type":"number"},"children":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["name","children"]}},"$ref":"#/$defs/node"})"},
       R"({"name":"src","children":[{"name":"main.cpp","size":2048,"children":[]},{"name":"grammar","children":[{"name":"regex.cpp","size":15360.5,"children":[]},{"name":"matcher.cpp","size":3072,"children":[]}]},{"name":"README.md","size":812,"children":[]}]})"},
      {"json_object",
       {grammar_kind::json_object},
       "{\n  \"summary\": \"The meeting covered the Q3 roadmap, hiring, and the migration to the new build system.\",\n"
       "  \"action_items\": [\n    {\"owner\": \"Priya\", \"task\": \"draft the migration plan\", \"due\": \"2024-10-04\"},\n"
       "    {\"owner\": \"Tom\", \"task\": \"benchmark the new cache\", \"due\": null}\n  ],\n"
       "  \"sentiment\": 0.72,\n  \"follow_up\": true\n}"},
      {"guided_regex (date time)",
       {grammar_kind::regex, R"(\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ)"},
       "2024-10-04T17:45:09Z"},
  };
  return w;
}

struct pass_result {
  std::vector<double> mask_us, accept_us, apply_us;
  uint64_t num_masks = 0, num_hits = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}
double mean(const std::vector<double>& v) {
  double s = 0;
  for (const double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
double micros_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

pass_result replay(const std::shared_ptr<const grammar_masks>& masks, const std::vector<int32_t>& tokens) {
  pass_result r;
  const grammar_mask_stats before = masks->stats();
  grammar_matcher m(masks);
  token_bitset mask;
  std::vector<float> logits(masks->vocab().vocab_size(), 0.5f);
  for (const int32_t id : tokens) {
    auto t0 = clock_type::now();
    m.fill_mask(mask);
    r.mask_us.push_back(micros_since(t0));
    t0 = clock_type::now();
    apply_token_mask(mask, logits);
    r.apply_us.push_back(micros_since(t0));
    if (!mask.test(id)) throw error(error_code::internal, "the replayed output's token " + std::to_string(id) + " is masked");
    t0 = clock_type::now();
    if (!m.accept_token(id)) throw error(error_code::internal, "the replayed output is not accepted");
    r.accept_us.push_back(micros_since(t0));
  }
  if (!m.is_accepting()) throw error(error_code::internal, "the replayed output is incomplete");
  const grammar_mask_stats after = masks->stats();
  r.num_masks = after.num_masks - before.num_masks;
  r.num_hits = after.num_cache_hits - before.num_cache_hits;
  return r;
}

// Mean microseconds of the brute-force mask over the first num_steps steps.
double brute_force_us(const std::shared_ptr<const grammar_masks>& masks, const std::vector<int32_t>& tokens,
                      size_t num_steps) {
  grammar_matcher m(masks);
  std::vector<double> us;
  for (size_t i = 0; i < tokens.size() && i < num_steps; ++i) {
    const auto t0 = clock_type::now();
    const token_bitset b = m.next_mask_by_brute_force();
    us.push_back(micros_since(t0));
    if (b != m.next_mask()) throw error(error_code::internal, "trie mask differs from the brute-force mask");
    m.accept_token(tokens[i]);
  }
  return mean(us);
}

void run_model(const std::string& path, size_t brute_force_steps) {
  const tokenizer tok = tokenizer::from_gguf(gguf::file::open(path));
  auto t0 = clock_type::now();
  const std::shared_ptr<const token_trie> trie = token_trie::from_tokenizer(tok);
  const double trie_ms = micros_since(t0) / 1000;
  std::printf("\n%s: vocabulary %d tokens, trie %u nodes built in %.1f ms\n", path.c_str(), tok.vocab_size(),
              trie->num_nodes(), trie_ms);
  std::printf("%-30s %5s %8s | %-5s %8s %8s %8s %6s | %8s %8s | %9s %7s\n", "grammar", "toks", "compile", "pass",
              "mask_mu", "mask_p50", "mask_p99", "hit%", "accept", "apply", "brute_mu", "speedup");
  for (const workload& w : workloads()) {
    const std::vector<int32_t> tokens = tok.encode(w.output, false, false);
    t0 = clock_type::now();
    grammar_cache cache(trie, 8);
    const std::shared_ptr<const grammar_masks> masks = cache.get(w.spec);
    const double compile_ms = micros_since(t0) / 1000;
    const pass_result cold = replay(masks, tokens);
    const pass_result warm = replay(cache.get(w.spec), tokens);
    const double brute = brute_force_us(masks, tokens, brute_force_steps);
    for (const auto& [label, r] : {std::pair<const char*, const pass_result&>{"cold", cold}, {"warm", warm}}) {
      const double hit_rate = r.num_masks ? 100.0 * static_cast<double>(r.num_hits) / static_cast<double>(r.num_masks) : 0;
      std::printf("%-30s %5zu %6.1fms | %-5s %7.1fus %7.1fus %7.1fus %5.1f%% | %6.2fus %6.2fus | %7.0fus %6.0fx\n",
                  w.name, tokens.size(), compile_ms, label, mean(r.mask_us), percentile(r.mask_us, 0.5),
                  percentile(r.mask_us, 0.99), hit_rate, mean(r.accept_us), mean(r.apply_us), brute,
                  brute / std::max(mean(r.mask_us), 1e-3));
      std::printf("BENCH_GRAMMAR {\"model\":\"%s\",\"vocab\":%d,\"grammar\":\"%s\",\"pass\":\"%s\",\"tokens\":%zu,"
                  "\"compile_ms\":%.2f,\"mask_mean_us\":%.2f,\"mask_p50_us\":%.2f,\"mask_p99_us\":%.2f,"
                  "\"cache_hit_rate\":%.3f,\"accept_mean_us\":%.2f,\"apply_mean_us\":%.2f,\"brute_force_mean_us\":%.1f}\n",
                  path.c_str(), tok.vocab_size(), w.name, label, tokens.size(), compile_ms, mean(r.mask_us),
                  percentile(r.mask_us, 0.5), percentile(r.mask_us, 0.99), hit_rate / 100, mean(r.accept_us),
                  mean(r.apply_us), brute);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> models;
  size_t brute_force_steps = 20;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--brute-force-steps") == 0 && i + 1 < argc) {
      brute_force_steps = std::stoul(argv[++i]);
    } else if (argv[i][0] == '-') {
      std::fprintf(stderr, "usage: bench_grammar MODEL.gguf [MODEL2.gguf ...] [--brute-force-steps N]\n");
      return 2;
    } else {
      models.emplace_back(argv[i]);
    }
  }
  if (models.empty()) {
    std::fprintf(stderr, "usage: bench_grammar MODEL.gguf [MODEL2.gguf ...] [--brute-force-steps N]\n");
    return 2;
  }
  try {
    for (const std::string& m : models) run_model(m, brute_force_steps);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_grammar: %s\n", e.what());
    return 1;
  }
  return 0;
}
