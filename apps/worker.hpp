// `troupe worker`: one engine replica for a `troupe serve --replica` router, over CAF's
// middleman, until SIGINT or SIGTERM (then it drains).
#pragma once

namespace troupe::apps {

int run_worker(int argc, char** argv);

}  // namespace troupe::apps
