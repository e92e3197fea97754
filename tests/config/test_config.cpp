// troupe::config: flags, the config file, CAF options and validation messages.
#include <doctest/doctest.h>

#include <caf/all.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "troupe/config/caf_options.hpp"
#include "troupe/config/config_parse.hpp"
#include "troupe/model/error.hpp"

namespace {

troupe::config parse(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return troupe::parse_config(static_cast<int>(argv.size()), argv.data(), 0);
}

std::string parse_error(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const troupe::error& e) {
    return e.what();
  }
  return "";
}

std::string validate_error(const troupe::config& c) {
  try {
    c.validate();
  } catch (const troupe::error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("flags take a separate value or an = value and leave every other default") {
  const auto c = parse({"--model", "m.gguf", "--max-num-seqs=7", "--port", "0", "--swap-space", "1.5"});
  CHECK(c.model == "m.gguf");
  CHECK(c.scheduling.max_num_seqs == 7);
  CHECK(c.port == 0);
  CHECK(c.swap_space == doctest::Approx(1.5));
  CHECK(c.host == "127.0.0.1");
  CHECK(c.scheduling.max_num_batched_tokens == troupe::scheduler_config{}.max_num_batched_tokens);
}

TEST_CASE("boolean flags are switches with a --no- form and an = form") {
  CHECK(parse({}).cuda_graphs);  // on by default
  CHECK_FALSE(parse({"--no-cuda-graphs"}).cuda_graphs);
  CHECK_FALSE(parse({"--no-enable-prefix-caching"}).enable_prefix_caching);
  CHECK_FALSE(parse({"--enable-chunked-prefill=false"}).scheduling.enable_chunked_prefill);
}

TEST_CASE("an unknown flag, a missing value or a wrong type names the flag") {
  CHECK(parse_error({"--max-num-sequences", "3"}).find("--max-num-sequences") != std::string::npos);
  CHECK(parse_error({"--port"}).find("--port needs a value") != std::string::npos);
  CHECK(parse_error({"--port", "http"}).find("--port takes an integer") != std::string::npos);
  CHECK(parse_error({"--cuda-graphs=maybe"}).find("--cuda-graphs takes true or false") != std::string::npos);
  CHECK(parse_error({"stray"}).find("unexpected argument") != std::string::npos);
}

TEST_CASE("a config file sets options and flags override it") {
  const auto path = std::filesystem::temp_directory_path() / "troupe_test_config.json";
  {
    std::ofstream out(path);
    out << R"({"model": "from-file.gguf", "max_num_seqs": 5, "port": 9000, "enable_prefix_caching": false})";
  }
  const auto c = parse({"--config", path.string(), "--port", "9001"});
  CHECK(c.model == "from-file.gguf");
  CHECK(c.scheduling.max_num_seqs == 5);
  CHECK(c.port == 9001);
  CHECK_FALSE(c.enable_prefix_caching);
  std::filesystem::remove(path);
}

TEST_CASE("a config file with an unknown key or a wrong type names the key") {
  troupe::config c;
  CHECK_THROWS_WITH_AS(troupe::apply_config_json(c, R"({"max_num_seq": 5})", "f.json"),
                       doctest::Contains("unknown key \"max_num_seq\""), troupe::error);
  CHECK_THROWS_WITH_AS(troupe::apply_config_json(c, R"({"port": "80"})", "f.json"),
                       doctest::Contains("f.json: port must be a number"), troupe::error);
  CHECK_THROWS_AS(troupe::apply_config_json(c, R"([1,2])", "f.json"), troupe::error);
}

TEST_CASE("validate names the flag and what is allowed") {
  auto c = parse({"--model", "m.gguf"});
  CHECK(validate_error(c).empty());
  c.port = 70000;
  CHECK(validate_error(c).find("--port must be in [0, 65535]") != std::string::npos);
  c = parse({"--model", "m.gguf", "--max-num-seqs", "0"});
  CHECK(validate_error(c).find("--max-num-seqs must be >= 1") != std::string::npos);
  c = parse({"--model", "m.gguf", "--device", "tpu"});
  CHECK(validate_error(c).find("--device must be auto, cpu or cuda") != std::string::npos);
  CHECK(validate_error(troupe::config{}).find("--model is required") != std::string::npos);
}

TEST_CASE("--kv-cache-dtype takes f16, q8_0 or q4_0 and refuses anything else by name") {
  CHECK(parse({"--model", "m.gguf"}).kv_cache_dtype == "f16");
  for (const char* dtype : {"f16", "q8_0", "q4_0"}) {
    CHECK(validate_error(parse({"--model", "m.gguf", "--kv-cache-dtype", dtype})).empty());
  }
  for (const char* dtype : {"fp8", "Q8_0", "q4_1", ""}) {
    CAPTURE(dtype);
    CHECK(validate_error(parse({"--model", "m.gguf", "--kv-cache-dtype", dtype}))
              .find("--kv-cache-dtype must be f16, q8_0 or q4_0, got '" + std::string(dtype) + "'") !=
          std::string::npos);
  }
}

TEST_CASE("the help text lists every flag with its default") {
  const std::string help = troupe::config_help();
  CHECK(help.find("--max-num-seqs VALUE") != std::string::npos);
  CHECK(help.find("[64]") != std::string::npos);
  CHECK(help.find("--enable-prefix-caching") != std::string::npos);
}

namespace {
struct host_config : caf::actor_system_config {
  troupe::config troupe_settings;
  host_config() { troupe::add_caf_options(custom_options_, troupe_settings); }
};
}  // namespace

TEST_CASE("a host CAF application sets the options through its actor_system_config") {
  host_config cfg;
  std::vector<std::string> args = {"app", "--troupe.max-num-seqs=9", "--troupe.model=x.gguf",
                                   "--troupe.no-enable-prefix-caching", "--troupe.no-cuda-graphs"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  const auto err = cfg.parse(static_cast<int>(argv.size()), argv.data());
  REQUIRE_FALSE(err);
  CHECK(cfg.troupe_settings.scheduling.max_num_seqs == 9);
  CHECK(cfg.troupe_settings.model == "x.gguf");
  CHECK_FALSE(cfg.troupe_settings.enable_prefix_caching);
  CHECK_FALSE(cfg.troupe_settings.cuda_graphs);
}
