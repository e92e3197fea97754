// add_caf_options: one opt_group entry per for_each_option field, named with '-'.
#include "troupe/config/caf_options.hpp"

#include <caf/config_option_adder.hpp>

#include <cstring>
#include <string>
#include <type_traits>

namespace troupe {

void add_caf_options(caf::config_option_set& options, config& target) {
  caf::config_option_adder group{options, "troupe"};
  for_each_option(target, [&](const char* name, const char* help, auto& field) {
    std::string dashed = name;
    for (char& ch : dashed) {
      if (ch == '_') ch = '-';
    }
    group.add(field, caf::string_view{dashed.data(), dashed.size()}, caf::string_view{help, std::strlen(help)});
    if constexpr (std::is_same_v<std::remove_reference_t<decltype(field)>, bool>) {
      // CAF's command line takes a bool flag only as a switch that sets it; the no- form
      // turns a default-on option off (an INI file can say name=false directly).
      const std::string negated = "no-" + dashed;
      group.add_neg(field, caf::string_view{negated.data(), negated.size()}, caf::string_view{help, std::strlen(help)});
    }
  });
}

}  // namespace troupe
