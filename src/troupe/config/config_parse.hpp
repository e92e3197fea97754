// Reading a troupe::config from the command line (--flag value, --flag=value) and from a
// JSON config file (--config FILE, keys as in for_each_option); the command line wins.
#pragma once
#include <string>
#include <string_view>

#include "troupe/config/config.hpp"

namespace troupe {

// Parses argv[first..argc). Throws troupe::error(invalid_argument) naming the flag for an
// unknown flag, a missing value or a value of the wrong type. Does not validate().
config parse_config(int argc, char** argv, int first);

// Applies a JSON object of options to c. Throws troupe::error naming the key.
void apply_config_json(config& c, std::string_view json_text, const std::string& source);

// The --help text: every flag, its default and what it does.
std::string config_help();

}  // namespace troupe
