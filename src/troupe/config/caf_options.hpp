// A host CAF application sets troupe's options through its own actor_system_config: the
// options join the "troupe" group (--troupe.max-num-seqs=64 on its command line,
// [troupe] max-num-seqs=64 in its caf-application.ini) and CAF writes them into the
// config given here when it parses.
#pragma once
#include <caf/config_option_set.hpp>

#include "troupe/config/config.hpp"

namespace troupe {

// Binds every option to a field of target, which must outlive the parse. Called from the
// constructor of the application's actor_system_config subclass, which alone can reach
// its custom_options_:  add_caf_options(custom_options_, troupe_settings);
void add_caf_options(caf::config_option_set& options, config& target);

}  // namespace troupe
