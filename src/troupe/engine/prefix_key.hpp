// The prefix key of a request: a hash of its start, which the replica router routes on and
// each replica reports in its prefix digest (docs/scale-out.md), so both compute it alike.
#pragma once
#include <cstddef>
#include <cstdint>

#include "troupe/engine/request.hpp"

namespace troupe {

// How many characters of a prompt (or of the serialized chat) the prefix key covers.
inline constexpr size_t prefix_key_chars = 256;

// A hash of the request's start: the first prefix_key_chars characters of its prompt, of
// its chat messages (role and content, in order), or of its token ids. Requests that share
// that much share a key, and their prompt KV is likely in the same replica's prefix cache.
uint64_t prefix_key(const request& req);

}  // namespace troupe
