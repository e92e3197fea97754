// `troupe generate`: see generate.cpp.
#pragma once

namespace troupe::apps {
int run_generate(int argc, char** argv);
}
