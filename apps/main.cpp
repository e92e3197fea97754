// The `troupe` command line: info | generate | serve | worker | doctor.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "troupe/model/error.hpp"
#include "apps/doctor.hpp"
#include "apps/generate.hpp"
#include "apps/serve.hpp"
#include "apps/worker.hpp"
#include "troupe/model/gguf.hpp"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: troupe <command> [options]\n"
               "  info MODEL            print GGUF metadata and the tensor table\n"
               "  generate --model M    generate text (troupe generate --help)\n"
               "  serve --model M       serve HTTP, WebSocket and the chat page (troupe serve --help)\n"
               "  worker --model M      one engine replica behind `serve --replica` (troupe worker --help)\n"
               "  doctor URL...         what limits a running troupe server or fleet (troupe doctor --help)\n");
  return 2;
}

int run_info(int argc, char** argv) {
  if (argc < 3) return usage();
  const auto file = troupe::gguf::file::open(argv[2]);
  std::fputs(file.describe().c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  try {
    if (std::strcmp(argv[1], "info") == 0) return run_info(argc, argv);
    if (std::strcmp(argv[1], "generate") == 0) return troupe::apps::run_generate(argc, argv);
    if (std::strcmp(argv[1], "serve") == 0) return troupe::apps::run_serve(argc, argv);
    if (std::strcmp(argv[1], "worker") == 0) return troupe::apps::run_worker(argc, argv);
    if (std::strcmp(argv[1], "doctor") == 0) return troupe::apps::run_doctor(argc, argv);
    return usage();
  } catch (const troupe::error& e) {
    std::fprintf(stderr, "troupe: %s: %s\n", troupe::to_string(e.code()), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "troupe: %s\n", e.what());
    return 1;
  }
}
