// `troupe generate`: one prompt (or an interactive chat with --chat and no --prompt)
// streamed to stdout, with prompt and generation speed on stderr.
#include "apps/generate.hpp"

#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "apps/cli_args.hpp"
#include "cpu/cpu_backend.hpp"
#include "engine/single_sequence.hpp"
#include "model/chat_template.hpp"
#include "model/error.hpp"
#include "model/tokenizer.hpp"

namespace troupe::apps {

namespace {

const char* generate_help =
    "usage: troupe generate --model M [--prompt TEXT] [options]\n"
    "  --model M              GGUF model file\n"
    "  --prompt TEXT          prompt; with --chat, the user's message (omit for an interactive chat)\n"
    "  --chat                 apply the model's chat template\n"
    "  --system TEXT          system message for --chat\n"
    "  -n, --max-tokens N     tokens to generate (default 256)\n"
    "  --temperature T        0 = greedy (default 0.8)\n"
    "  --top-k K              (default 40; 0 = off)\n"
    "  --top-p P              (default 0.95)\n"
    "  --min-p P              (default 0.05)\n"
    "  --repeat-penalty R     (default 1.0 = off)\n"
    "  --presence-penalty P   --frequency-penalty F   (default 0)\n"
    "  --seed S               (default: random)\n"
    "  --ignore-eos           keep generating past end-of-generation tokens\n"
    "  --threads N            compute threads (default: one per core)\n";

sampling_params read_params(const cli_args& args, int32_t vocab_size) {
  sampling_params p;
  p.max_tokens = (int32_t)args.get_int(args.has("-n") ? "-n" : "--max-tokens", 256, 1, 1 << 24);
  p.temperature = (float)args.get_float("--temperature", 0.8);
  p.top_k = (int32_t)args.get_int("--top-k", 40, 0, 1 << 30);
  p.top_p = (float)args.get_float("--top-p", 0.95);
  p.min_p = (float)args.get_float("--min-p", 0.05);
  p.repetition_penalty = (float)args.get_float("--repeat-penalty", 1.0);
  p.presence_penalty = (float)args.get_float("--presence-penalty", 0.0);
  p.frequency_penalty = (float)args.get_float("--frequency-penalty", 0.0);
  p.seed = args.has("--seed") ? args.get_u64("--seed", 0) : std::random_device{}();
  p.ignore_eos = args.has("--ignore-eos");
  p.validate(vocab_size);
  return p;
}

struct session {
  const tokenizer& tok;
  single_sequence& seq;
  sampling_params params;

  // Streams one answer to stdout; returns its text.
  std::string answer(const std::vector<int32_t>& prompt) {
    incremental_decoder decoder(tok);
    std::string text;
    generation_stats stats;
    seq.generate(prompt, params, [&](int32_t token) {
      const auto piece = decoder.push(token);
      text += piece;
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
      return true;
    }, stats);
    const auto rest = decoder.flush();
    text += rest;
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const double decoded = (double)std::max<int64_t>(0, stats.num_generated_tokens - 1);
    std::fprintf(stderr, "[prompt: %lld tokens (%lld cached), %.1f tok/s | generation: %lld tokens, %.1f tok/s]\n",
                 (long long)stats.num_prompt_tokens, (long long)stats.num_cached_tokens,
                 stats.prefill_seconds > 0 ? (double)stats.num_prompt_tokens / stats.prefill_seconds : 0.0,
                 (long long)stats.num_generated_tokens,
                 stats.decode_seconds > 0 ? decoded / stats.decode_seconds : 0.0);
    return text;
  }
};

}  // namespace

int run_generate(int argc, char** argv) {
  const cli_args args(argc, argv, 2,
                      {"--model", "--prompt", "--system", "-n", "--max-tokens", "--temperature", "--top-k", "--top-p",
                       "--min-p", "--repeat-penalty", "--presence-penalty", "--frequency-penalty", "--seed",
                       "--threads"},
                      {"--chat", "--ignore-eos", "--help", "-h"});
  if (args.has("--help") || args.has("-h")) {
    std::fputs(generate_help, stdout);
    return 0;
  }
  const auto model_path = args.get("--model");
  if (!model_path) throw error(error_code::invalid_argument, "--model is required (see troupe generate --help)");
  const bool chat = args.has("--chat");
  const auto prompt = args.get("--prompt");
  if (!chat && !prompt) throw error(error_code::invalid_argument, "--prompt is required without --chat");

  auto file = std::make_shared<const gguf::file>(gguf::file::open(*model_path));
  const auto tok = tokenizer::from_gguf(*file);
  const auto tmpl = chat_template::from_gguf(*file);
  cpu::cpu_backend_options options;
  options.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
  options.eog_ids = tok.eog_ids();
  const int64_t context = std::min<int64_t>(file->get_int(file->get_string("general.architecture").value_or("llama") +
                                                          ".context_length").value_or(4096), 8192);
  options.kv_cache_bytes = 0;
  options.num_blocks = (int32_t)((context + 15) / 16);
  cpu::cpu_backend backend(file, options);
  single_sequence seq(backend, tok.eog_ids());
  session s{tok, seq, read_params(args, backend.config().vocab_size)};

  if (!chat) {
    std::fwrite(prompt->data(), 1, prompt->size(), stdout);
    s.answer(tok.encode(*prompt, true, false));
    return 0;
  }
  std::vector<chat_message> conversation;
  if (auto system = args.get("--system")) conversation.push_back({"system", *system});
  auto turn = [&](const std::string& user) {
    conversation.push_back({"user", user});
    const auto rendered = tmpl.apply(conversation, true);
    conversation.push_back({"assistant", s.answer(tok.encode(rendered, true, true))});
  };
  if (prompt) {
    turn(*prompt);
    return 0;
  }
  std::fprintf(stderr, "troupe chat with %s (%d threads). Empty line or Ctrl-D ends.\n",
               backend.config().name.empty() ? model_path->c_str() : backend.config().name.c_str(),
               backend.num_threads());
  std::string line;
  while (true) {
    std::fputs("> ", stderr);
    if (!std::getline(std::cin, line) || line.empty()) break;
    try {
      turn(line);
    } catch (const error& e) {
      if (e.code() != error_code::context_overflow) throw;
      std::fprintf(stderr, "troupe: %s; starting a new conversation\n", e.what());
      conversation.clear();
      seq.reset();
    }
  }
  return 0;
}

}  // namespace troupe::apps
