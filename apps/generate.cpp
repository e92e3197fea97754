// `troupe generate`: one prompt (or an interactive chat with --chat and no --prompt)
// streamed to stdout through the actor runtime (engine::submit), with prompt and generation
// speed on stderr. In a chat, earlier turns' KV comes back from the prefix cache.
#include "apps/generate.hpp"

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "troupe/embed/backend_select.hpp"
#include "troupe/embed/draft_model.hpp"
#include "apps/cli_args.hpp"
#include "troupe/actors/engine.hpp"
#include "troupe/config/config.hpp"
#include "troupe/cpu/cpu_backend.hpp"
#include "troupe/model/chat_template.hpp"
#include "troupe/model/error.hpp"
#include "troupe/model/tokenizer.hpp"

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
    "  --min-tokens N         no end-of-generation before N tokens (default 0; at most --max-tokens)\n"
    "  --threads N            compute threads (default: one per core)\n"
    "  --kv-cache-dtype T     KV cache storage: f16 (default), q8_0 or q4_0 (CPU only)\n"
    "  --device D             auto (CUDA when a device is present, else the CPU), cpu or cuda\n"
    "  --devices 0,1          CUDA devices (default: the first --tensor-parallel ones)\n"
    "  --tensor-parallel N    split the model over N CUDA devices (default 1)\n"
    "  --gpu-memory-utilization F  share of free device memory for the KV cache (default 0.9)\n"
    "  --no-cuda-graphs       launch every kernel instead of replaying decode steps as CUDA graphs\n"
    "  --speculative M        speculative decoding: off (default), ngram (prompt lookup; the same text)\n"
    "                         or draft (--draft-model)\n"
    "  --draft-model FILE     GGUF draft model with the same vocabulary (CPU); implies --speculative draft\n"
    "  --num-speculative-tokens K  most tokens proposed per step (default 4)\n";

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
  p.min_tokens = (int32_t)args.get_int("--min-tokens", 0, 0, 1 << 24);
  p.validate(vocab_size);
  return p;
}

// Streams one request's deltas to stdout and wakes the main thread when it ends.
class stdout_sink : public event_sink {
 public:
  void on_event(const std::string&, const request_event& e) override {
    std::lock_guard lock(mutex_);
    if (auto d = std::get_if<delta_event>(&e)) {
      std::fwrite(d->text.data(), 1, d->text.size(), stdout);
      std::fflush(stdout);
      text_ += d->text;
    } else if (auto done = std::get_if<done_event>(&e)) {
      done_ = *done;
      ended_ = true;
      cv_.notify_all();
    } else if (auto err = std::get_if<error_event>(&e)) {
      error_ = *err;
      ended_ = true;
      cv_.notify_all();
    }
  }
  // Waits for the end; returns the answer's text or throws the request's error.
  std::string wait(done_event& done) {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return ended_; });
    if (error_) {
      throw error(error_->code == request_error_code::context_overflow ? error_code::context_overflow
                                                                      : error_code::invalid_argument,
                  error_->message);
    }
    done = *done_;
    return text_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool ended_ = false;
  std::string text_;
  std::optional<done_event> done_;
  std::optional<error_event> error_;
};

struct session {
  engine& eng;
  sampling_params params;
  int next_id = 0;

  // Streams one answer to stdout; returns its text.
  std::string answer(request req) {
    req.id = "generate-" + std::to_string(next_id++);
    req.params = params;
    auto sink = std::make_shared<stdout_sink>();
    eng.submit(std::move(req), sink);
    done_event done;
    const auto text = sink->wait(done);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    const auto& u = done.usage;
    const auto& t = done.timings;
    const int64_t computed = u.prompt_tokens - u.cached_prompt_tokens;
    const double prefill_s = (t.time_to_first_token_ms - t.queue_ms) / 1000.0;
    const double decode_s = t.per_output_token_ms * std::max(0, u.completion_tokens - 1) / 1000.0;
    std::fprintf(stderr, "[prompt: %d tokens (%d cached), %.1f tok/s | generation: %d tokens, %.1f tok/s]\n",
                 u.prompt_tokens, u.cached_prompt_tokens, prefill_s > 0 ? (double)computed / prefill_s : 0.0,
                 u.completion_tokens, decode_s > 0 ? (double)(u.completion_tokens - 1) / decode_s : 0.0);
    return text;
  }
};

}  // namespace

int run_generate(int argc, char** argv) {
  const cli_args args(argc, argv, 2,
                      {"--model", "--prompt", "--system", "-n", "--max-tokens", "--temperature", "--top-k", "--top-p",
                       "--min-p", "--repeat-penalty", "--presence-penalty", "--frequency-penalty", "--seed",
                       "--threads", "--device", "--devices", "--tensor-parallel", "--gpu-memory-utilization",
                       "--kv-cache-dtype", "--speculative", "--num-speculative-tokens", "--min-tokens",
                       "--draft-model"},
                      {"--chat", "--ignore-eos", "--help", "-h", "--cuda-graphs", "--no-cuda-graphs"});
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
  const int32_t max_model_len = 8192;
  auto model = model_bundle::load(file, max_model_len);
  const auto draft_path = args.get("--draft-model");
  std::shared_ptr<const gguf::file> draft_file;
  if (draft_path) draft_file = open_draft_model(*draft_path, model->tok);
  cpu::cpu_backend_options options;
  options.num_threads = (int)args.get_int("--threads", 0, 0, 1024);
  options.eog_ids = model->tok.eog_ids();
  options.num_blocks = (model->max_model_len + 15) / 16 + 1;
  const std::string kv_dtype = args.get_or("--kv-cache-dtype", "f16");
  if (!parse_kv_cache_dtype(kv_dtype)) {
    throw error(error_code::invalid_argument,
                "--kv-cache-dtype must be " + std::string(kv_cache_dtype_choices) + ", got '" + kv_dtype + "'");
  }
  options.kv_dtype = *parse_kv_cache_dtype(kv_dtype);
  backend_choice_options choice_options;
  choice_options.device = args.get_or("--device", "auto");
  if (auto devices = args.get("--devices")) choice_options.devices = parse_device_list(*devices);
  choice_options.tensor_parallel = (int32_t)args.get_int("--tensor-parallel", 1, 1, 64);
  choice_options.gpu_memory_utilization = args.get_float("--gpu-memory-utilization", 0.9);
  choice_options.cuda_graphs = !args.has("--no-cuda-graphs");  // --cuda-graphs (the default) is accepted
  choice_options.max_num_batched_tokens = 512;
  choice_options.max_model_len = model->max_model_len;
  choice_options.cpu = options;
  auto choice = choose_backend(file, choice_options);
  std::fprintf(stderr, "troupe: %s\n", choice.description.c_str());
  auto backend = choice.ranks.front();
  if (draft_file) {
    if (choice.is_cuda) throw error(error_code::unsupported, "--draft-model runs on the CPU only (use --device cpu)");
    const config defaults;  // serve's draft settings
    backend = with_draft_model(backend, draft_file, options, defaults.draft_vocab,
                               defaults.scheduling.draft_min_confidence);
  }
  const auto params = read_params(args, backend->config().vocab_size);
  caf::actor_system_config cfg;
  cfg.set("scheduler.max-threads", 1);
  caf::actor_system sys{cfg};
  engine_options eo;
  eo.scheduling.max_model_len = model->max_model_len;
  eo.scheduling.max_num_batched_tokens = 512;
  eo.scheduling.max_num_seqs = 1;
  eo.scheduling.max_batch_size = 1;
  eo.scheduling.speculative = parse_speculative_method(args.get_or("--speculative", draft_file ? "draft" : "off"));
  eo.scheduling.num_speculative_tokens = (int32_t)args.get_int("--num-speculative-tokens", 4, 1, 16);
  if (eo.scheduling.speculative != speculative_method::off && !backend->supports_speculation()) {
    throw error(error_code::unsupported, "--speculative: this backend does not verify proposed tokens (use --device cpu)");
  }
  eo.more_ranks.assign(choice.ranks.begin() + 1, choice.ranks.end());
  engine eng(sys, model, backend, eo);
  session s{eng, params};

  if (!chat) {
    std::fwrite(prompt->data(), 1, prompt->size(), stdout);
    request r;
    r.prompt = *prompt;
    s.answer(std::move(r));
    return 0;
  }
  std::vector<chat_message> conversation;
  if (auto system = args.get("--system")) conversation.push_back({"system", *system});
  auto turn = [&](const std::string& user) {
    conversation.push_back({"user", user});
    request r;
    r.messages = conversation;
    conversation.push_back({"assistant", s.answer(std::move(r))});
  };
  if (prompt) {
    turn(*prompt);
    return 0;
  }
  std::fprintf(stderr, "troupe chat with %s. Empty line or Ctrl-D ends.\n",
               model->name.empty() ? model_path->c_str() : model->name.c_str());
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
    }
  }
  return 0;
}

}  // namespace troupe::apps
