// A CAF application that embeds troupe: it loads a model into its own actor system, and one
// of its actors talks to the engine through the typed actor interface, printing the answer
// as it streams in.
//
//   usage: embed_in_caf_app MODEL.gguf "question"
#include <caf/all.hpp>

#include <cstdio>
#include <iostream>

#include "troupe/actors/engine.hpp"
#include "troupe/cpu/cpu_backend.hpp"

using namespace troupe;

// The application's actor: asks one question, prints deltas, quits when the answer ends.
caf::behavior asker(caf::event_based_actor* self, engine_actor eng, std::string question) {
  auto req = std::make_shared<request>();
  req->id = "q1";
  req->messages = {{"user", std::move(question)}};
  req->params.temperature = 0.0f;
  req->params.max_tokens = 64;
  self->send(eng, atoms::submit_atom::value, request_ptr(std::move(req)), caf::actor_cast<caf::actor>(self));
  return {
      [=](atoms::event_atom, const request_event_ptr& m) {
        if (auto d = std::get_if<delta_event>(&m->event)) {
          std::cout << d->text << std::flush;
        } else if (auto done = std::get_if<done_event>(&m->event)) {
          std::cout << "\n[" << done->usage.completion_tokens << " tokens, finish: " << to_string(done->reason)
                    << "]\n";
          self->quit();
        } else if (auto err = std::get_if<error_event>(&m->event)) {
          std::cout << "\n[error " << to_string(err->code) << ": " << err->message << "]\n";
          self->quit();
        }
      },
  };
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.gguf \"question\"\n", argv[0]);
    return 2;
  }
  try {
    auto file = std::make_shared<const gguf::file>(gguf::file::open(argv[1]));
    auto model = model_bundle::load(file, 2048);
    cpu::cpu_backend_options o;
    o.num_blocks = 256;
    o.eog_ids = model->tok.eog_ids();
    auto backend = std::make_shared<cpu::cpu_backend>(file, o);
    caf::actor_system_config cfg;
    caf::actor_system sys{cfg};
    engine eng(sys, model, backend, {});
    auto app = sys.spawn(asker, eng.actor(), std::string(argv[2]));
    caf::scoped_actor waiter{sys};
    waiter->wait_for(app);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_in_caf_app: %s\n", e.what());
    return 1;
  }
}
