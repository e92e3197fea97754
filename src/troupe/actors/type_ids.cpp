#include "troupe/actors/type_ids.hpp"

namespace troupe {

namespace {

// "troupe: context_overflow (prompt is 300 tokens; ...)". CAF 0.17.6's templated
// add_error_category<T> does not compile (its renderer has the wrong signature), so the
// renderer is written out here.
template <class Code>
caf::actor_system_config::error_renderer renderer_of(const char* category) {
  return [category](uint8_t code, caf::atom_value, const caf::message& context) {
    std::string out = category;
    out += ": ";
    out += to_string(static_cast<Code>(code - 1));  // troupe's codes cross as enumerator + 1
    if (context.match_elements<std::string>()) {
      out += " (";
      out += context.get_as<std::string>(0);
      out += ")";
    }
    return out;
  };
}

}  // namespace

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::troupe>();
  cfg.add_error_category(caf::atom("troupe"), renderer_of<error_code>("troupe"));
  cfg.add_error_category(caf::atom("request"), renderer_of<request_error_code>("request"));
}

}  // namespace troupe
