// `troupe serve`: the engine behind the front door, until SIGINT or SIGTERM.
#pragma once

namespace troupe::apps {

int run_serve(int argc, char** argv);

}  // namespace troupe::apps
