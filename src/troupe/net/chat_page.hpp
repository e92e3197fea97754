// The chat page served at GET /: net/static/chat.html, embedded in the binary at build
// time by net/chat_page.cmake so the server needs no files beside it.
#pragma once

#include <string_view>

namespace troupe::net {

// The page's bytes (UTF-8 HTML with its CSS and JavaScript inline), valid for the
// program's lifetime. Safe to call from any thread.
std::string_view chat_page_html();

}  // namespace troupe::net
