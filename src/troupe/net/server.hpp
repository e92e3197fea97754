// The front door: a Beast listener on host:port with io_threads Asio threads, serving
// HTTP (OpenAI API, health, metrics, the chat page) and WebSockets over one engine.
//
//   listener ──accept──► http_session ──upgrade /v1/ws──► ws_session
//                            │ submit / cancel                │
//                            ▼                                ▼
//                        engine_bridge ──► engine (actors) ──► events posted back to the session's strand
#pragma once
#include <memory>
#include <thread>
#include <vector>

#include "troupe/net/server_state.hpp"

namespace troupe::net {

class server {
 public:
  server(engine_bridge& bridge, server_options options);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  // Binds and starts the io threads. Throws troupe::error naming the address when it
  // cannot listen there.
  void start();
  // The port bound (the real one when options.port was 0).
  uint16_t port() const { return port_; }
  // Stops accepting new connections (open ones keep being served).
  void stop_accepting();
  // Closes every connection and joins the io threads; engine events that arrive from then
  // on are dropped (session_gate).
  void stop();

  const server_state& state() const { return *state_; }

 private:
  struct io;
  std::shared_ptr<server_state> state_;
  std::unique_ptr<io> io_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;
};

}  // namespace troupe::net
