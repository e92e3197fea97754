// A small command-line reader for the `troupe` subcommands: --flag value, --flag=value and
// boolean switches; every value is checked and an error names the flag.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace troupe::apps {

class cli_args {
 public:
  // value_flags take a value; switches do not. Aliases like "-n" are listed as flags too.
  cli_args(int argc, char** argv, int first, const std::set<std::string>& value_flags,
           const std::set<std::string>& switches);

  bool has(const std::string& flag) const;
  std::optional<std::string> get(const std::string& flag) const;
  std::string get_or(const std::string& flag, const std::string& fallback) const;
  int64_t get_int(const std::string& flag, int64_t fallback, int64_t min, int64_t max) const;
  double get_float(const std::string& flag, double fallback) const;
  uint64_t get_u64(const std::string& flag, uint64_t fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> switches_;
  std::vector<std::string> positional_;
};

// `--help` or `-h` among argv[first..]: prints usage, then the engine options' help, to
// stdout and returns true (the command then exits 0).
bool print_help_if_asked(int argc, char** argv, int first, const char* usage);

}  // namespace troupe::apps
