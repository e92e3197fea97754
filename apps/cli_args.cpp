#include "apps/cli_args.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "troupe/config/config_parse.hpp"
#include "troupe/model/error.hpp"

namespace troupe::apps {

cli_args::cli_args(int argc, char** argv, int first, const std::set<std::string>& value_flags,
                   const std::set<std::string>& switches) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.size() < 2 || arg[0] != '-') {
      positional_.push_back(arg);
      continue;
    }
    std::optional<std::string> inline_value;
    if (const auto eq = arg.find('='); eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (switches.count(arg)) {
      if (inline_value) throw error(error_code::invalid_argument, arg + " takes no value");
      switches_.insert(arg);
    } else if (value_flags.count(arg)) {
      if (inline_value) {
        values_[arg] = *inline_value;
      } else {
        if (i + 1 >= argc) throw error(error_code::invalid_argument, arg + " needs a value");
        values_[arg] = argv[++i];
      }
    } else {
      throw error(error_code::invalid_argument, "unknown option " + arg);
    }
  }
}

bool cli_args::has(const std::string& flag) const { return switches_.count(flag) || values_.count(flag); }

std::optional<std::string> cli_args::get(const std::string& flag) const {
  const auto it = values_.find(flag);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string cli_args::get_or(const std::string& flag, const std::string& fallback) const {
  return get(flag).value_or(fallback);
}

int64_t cli_args::get_int(const std::string& flag, int64_t fallback, int64_t min, int64_t max) const {
  const auto v = get(flag);
  if (!v) return fallback;
  int64_t out = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size()) {
    throw error(error_code::invalid_argument, flag + " expects an integer, got '" + *v + "'");
  }
  if (out < min || out > max) {
    throw error(error_code::invalid_argument, flag + " must be in [" + std::to_string(min) + ", " +
                                                  std::to_string(max) + "], got " + *v);
  }
  return out;
}

double cli_args::get_float(const std::string& flag, double fallback) const {
  const auto v = get(flag);
  if (!v) return fallback;
  char* end = nullptr;
  const double out = std::strtod(v->c_str(), &end);
  if (v->empty() || *end != '\0' || !std::isfinite(out)) {
    throw error(error_code::invalid_argument, flag + " expects a number, got '" + *v + "'");
  }
  return out;
}

uint64_t cli_args::get_u64(const std::string& flag, uint64_t fallback) const {
  const auto v = get(flag);
  if (!v) return fallback;
  uint64_t out = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size()) {
    throw error(error_code::invalid_argument, flag + " expects a non-negative integer, got '" + *v + "'");
  }
  return out;
}

bool print_help_if_asked(int argc, char** argv, int first, const char* usage) {
  for (int i = first; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--help" || std::string_view(argv[i]) == "-h") {
      std::fputs(usage, stdout);
      std::fputs(config_help().c_str(), stdout);
      return true;
    }
  }
  return false;
}

}  // namespace troupe::apps
