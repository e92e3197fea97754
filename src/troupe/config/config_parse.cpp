// The command-line and config-file readers, both driven by for_each_option so that a new
// knob needs one line in config.hpp and nothing here.
#include "troupe/config/config_parse.hpp"

#include <simdjson.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <fstream>
#include <optional>
#include <sstream>

#include "troupe/model/error.hpp"

namespace troupe {
namespace {

[[noreturn]] void reject(const std::string& message) { throw error(error_code::invalid_argument, message); }

std::string flag_of(std::string_view name) {
  std::string flag = "--";
  for (char ch : name) flag += ch == '_' ? '-' : ch;
  return flag;
}

// The option's name from "--max-num-seqs" or "max-num-seqs" or "max_num_seqs".
std::string key_of(std::string_view text) {
  if (text.substr(0, 2) == "--") text.remove_prefix(2);
  std::string key;
  for (char ch : text) key += ch == '-' ? '_' : ch;
  return key;
}

void set_value(const std::string& where, std::string_view text, std::string& field) { (void)where; field = text; }

void set_value(const std::string& where, std::string_view text, bool& field) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") {
    field = true;
  } else if (text == "false" || text == "0" || text == "no" || text == "off") {
    field = false;
  } else {
    reject(where + " takes true or false, got \"" + std::string(text) + "\"");
  }
}

template <class Int>
void set_int(const std::string& where, std::string_view text, Int& field) {
  Int value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range) reject(where + " is out of range: " + std::string(text));
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    reject(where + " takes an integer, got \"" + std::string(text) + "\"");
  }
  field = value;
}
void set_value(const std::string& where, std::string_view text, int32_t& field) { set_int(where, text, field); }
void set_value(const std::string& where, std::string_view text, int64_t& field) { set_int(where, text, field); }

void set_value(const std::string& where, std::string_view text, double& field) {
  const std::string copy(text);
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(copy.c_str(), &end);
  if (copy.empty() || end != copy.c_str() + copy.size() || errno == ERANGE || !std::isfinite(value)) {
    reject(where + " takes a number, got \"" + copy + "\"");
  }
  field = value;
}

// Finds the option called key and hands its field to f; false when there is none.
template <class F>
bool with_option(config& c, const std::string& key, F&& f) {
  bool found = false;
  for_each_option(c, [&](const char* name, const char*, auto& field) {
    if (!found && key == name) {
      found = true;
      f(field);
    }
  });
  return found;
}

template <class T>
constexpr bool is_bool_field = std::is_same_v<std::remove_reference_t<T>, bool>;

void apply_config_file(config& c, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) reject("--config: cannot open " + path);
  std::stringstream text;
  text << in.rdbuf();
  apply_config_json(c, text.str(), path);
}

}  // namespace

void apply_config_json(config& c, std::string_view json_text, const std::string& source) {
  simdjson::ondemand::parser parser;
  const simdjson::padded_string padded(json_text);
  try {
    simdjson::ondemand::document doc = parser.iterate(padded);
    simdjson::ondemand::object object = doc.get_object();
    for (auto member : object) {
      const std::string key(std::string_view(member.unescaped_key()));
      simdjson::ondemand::value value = member.value();
      const std::string where = source + ": " + key;
      const bool found = with_option(c, key_of(key), [&](auto& field) {
        using field_type = std::remove_reference_t<decltype(field)>;
        if constexpr (std::is_same_v<field_type, std::string>) {
          if (value.type() != simdjson::ondemand::json_type::string) reject(where + " must be a string");
          field = std::string(std::string_view(value.get_string()));
        } else if constexpr (std::is_same_v<field_type, bool>) {
          if (value.type() != simdjson::ondemand::json_type::boolean) reject(where + " must be true or false");
          field = bool(value.get_bool());
        } else {
          if (value.type() != simdjson::ondemand::json_type::number) reject(where + " must be a number");
          set_value(where, std::string_view(value.raw_json_token()), field);
        }
      });
      if (!found) reject(source + ": unknown key \"" + key + "\"");
    }
  } catch (const simdjson::simdjson_error& e) {
    reject(source + ": not a JSON object of options (" + e.what() + ")");
  }
}

config parse_config(int argc, char** argv, int first) {
  config c;
  // The file first, so that flags override it.
  for (int i = first; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--config") {
      if (i + 1 >= argc) reject("--config needs a file");
      apply_config_file(c, argv[i + 1]);
    } else if (arg.substr(0, 9) == "--config=") {
      apply_config_file(c, std::string(arg.substr(9)));
    }
  }
  for (int i = first; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.substr(0, 2) != "--") reject("unexpected argument \"" + std::string(arg) + "\" (options start with --)");
    if (arg == "--config") {
      ++i;
      continue;
    }
    if (arg.substr(0, 9) == "--config=") continue;
    std::optional<std::string_view> inline_value;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    std::string key = key_of(arg);
    bool negated = false;
    if (!inline_value && key.rfind("no_", 0) == 0) {
      bool is_bool = false;
      if (with_option(c, key.substr(3), [&](auto& field) { is_bool = is_bool_field<decltype(field)>; }) && is_bool) {
        negated = true;
        key = key.substr(3);
      }
    }
    const std::string flag(arg);
    const bool found = with_option(c, key, [&](auto& field) {
      if constexpr (is_bool_field<decltype(field)>) {
        if (negated) {
          field = false;
        } else if (inline_value) {
          set_value(flag, *inline_value, field);
        } else {
          field = true;
        }
      } else {
        if (inline_value) {
          set_value(flag, *inline_value, field);
        } else {
          if (i + 1 >= argc) reject(flag + " needs a value");
          set_value(flag, argv[++i], field);
        }
      }
    });
    if (!found) reject("unknown option " + flag + " (troupe serve --help lists them)");
  }
  return c;
}

std::string config_help() {
  std::string out;
  const config defaults;
  for_each_option(defaults, [&](const char* name, const char* help, const auto& field) {
    using field_type = std::remove_cvref_t<decltype(field)>;
    std::string line = "  " + flag_of(name);
    if constexpr (!std::is_same_v<field_type, bool>) line += " VALUE";
    if (line.size() < 34) line.resize(34, ' ');
    line += help;
    if constexpr (std::is_same_v<field_type, std::string>) {
      if (!field.empty()) line += " [" + field + "]";
    } else if constexpr (std::is_same_v<field_type, bool>) {
      line += field ? " [on; --no-" + flag_of(name).substr(2) + " turns it off]" : " [off]";
    } else if constexpr (std::is_same_v<field_type, double>) {
      std::ostringstream number;
      number << field;
      line += " [" + number.str() + "]";
    } else {
      line += " [" + std::to_string(field) + "]";
    }
    out += line + "\n";
  });
  out += "  --config FILE                   a JSON object of these options (keys with _), overridden by flags\n";
  return out;
}

}  // namespace troupe
