// A CAF application with an LLM engine inside: its own actor system, troupe's options on
// its own command line and INI file (--troupe.model=M.gguf, [troupe] max-num-seqs=8), one
// call to start the engine, and an actor that talks to it by messages. It streams one
// completion to stdout, cancels a second one after its first tokens, and exits cleanly.
//
//   usage: embed_demo --troupe.model=MODEL.gguf [--troupe.threads=N ...] [--prompt=TEXT]
#include <caf/all.hpp>
#include <caf/config_option_adder.hpp>

#include <cstdio>
#include <iostream>
#include <string>

#include "troupe/actors/type_ids.hpp"
#include "troupe/config/caf_options.hpp"
#include "troupe/embed/engine_factory.hpp"

namespace {

// The host's config: its own options plus troupe's (in the "troupe" group).
struct host_config : caf::actor_system_config {
  troupe::config engine_settings;
  std::string prompt = "Once upon a time";
  host_config() {
    troupe::add_caf_options(custom_options_, engine_settings);
    caf::config_option_adder{custom_options_, "global"}.add(prompt, "prompt", "the prompt to complete");
    troupe::add_message_types(*this);
  }
};

struct outcome {
  bool streamed_done = false;     // the first request ended with done
  int num_streamed_tokens = 0;
  bool second_cancelled = false;  // the second ended with done(cancelled)
};

troupe::request completion(std::string id, std::string prompt, int32_t max_tokens) {
  troupe::request r;
  r.id = std::move(id);
  r.prompt = std::move(prompt);
  r.params.temperature = 0.0f;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

// The application's actor: streams "story" to stdout; cancels "long" once it has output;
// quits when both have ended.
caf::behavior host(caf::event_based_actor* self, troupe::engine_actor eng, std::string prompt,
                   std::shared_ptr<outcome> result) {
  auto listener = caf::actor_cast<troupe::event_listener>(self);
  self->send(eng, troupe::atoms::submit_atom::value, completion("story", prompt, 24), listener);
  self->send(eng, troupe::atoms::submit_atom::value, completion("long", prompt, 200), listener);
  auto num_ended = std::make_shared<int>(0);
  return {
      [=](troupe::atoms::event_atom, const troupe::request_event_message& m) {
        const bool is_story = m.request_id == "story";
        if (auto d = std::get_if<troupe::delta_event>(&m.event)) {
          if (is_story) {
            std::cout << d->text << std::flush;
            result->num_streamed_tokens += static_cast<int>(d->token_ids.size());
          } else if (!d->token_ids.empty()) {
            self->send(eng, troupe::atoms::cancel_atom::value, std::string("long"));
          }
        } else if (auto done = std::get_if<troupe::done_event>(&m.event)) {
          if (is_story) {
            result->streamed_done = true;
            std::cout << "\n[story: " << done->usage.completion_tokens << " tokens, "
                      << troupe::to_string(done->reason) << "]\n";
          } else {
            result->second_cancelled = done->reason == troupe::request_finish_reason::cancelled;
            std::cout << "[long: " << done->usage.completion_tokens << " tokens, "
                      << troupe::to_string(done->reason) << "]\n";
          }
          if (++*num_ended == 2) self->quit();
        } else if (auto err = std::get_if<troupe::error_event>(&m.event)) {
          std::cout << "\n[" << m.request_id << ": error " << troupe::to_string(err->code) << ": " << err->message
                    << "]\n";
          if (++*num_ended == 2) self->quit();
        }
      },
  };
}

}  // namespace

int main(int argc, char** argv) {
  host_config cfg;
  if (auto err = cfg.parse(argc, argv)) {
    std::fprintf(stderr, "embed_demo: %s\n", caf::to_string(err).c_str());
    return 2;
  }
  if (cfg.cli_helptext_printed) return 0;
  auto result = std::make_shared<outcome>();
  try {
    caf::actor_system sys{cfg};
    auto eng = troupe::spawn_engine(sys, cfg.engine_settings);
    auto app = sys.spawn(host, eng, cfg.prompt, result);
    caf::scoped_actor waiter{sys};
    waiter->wait_for(app);
    // Stops the engine; the actor system then shuts down with nothing left running.
    waiter->send_exit(eng, caf::exit_reason::user_shutdown);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_demo: %s\n", e.what());
    return 1;
  }
  const bool ok = result->streamed_done && result->num_streamed_tokens > 0 && result->second_cancelled;
  std::printf("embed_demo: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
