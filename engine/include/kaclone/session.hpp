// The control plane: discovery, admission, topology, start, progress, completion, release.
// serve_session and join_session each run one io_context with Asio coroutines and start the
// data plane (relay.hpp) on a thread of its own once the chain is connected.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <kaclone/protocol.hpp>
#include <kaclone/relay.hpp>
#include <kaclone/result.hpp>

namespace kaclone {

enum class session_errc {
    no_server = 1,    // discovery: no server of the session answered
    refused,          // the server refused this node (the reason is in `where`)
    timeout,          // a peer did not answer before its deadline
};
const std::error_category& session_category() noexcept;
std::error_code make_error_code(session_errc e) noexcept;

// Called once a second while the stream flows, on the session's thread; for progress lines.
using tick_fn = std::function<void(const relay_stats&)>;
// One line for the operator (stderr in the CLI).
using log_fn = std::function<void(const std::string&)>;

struct serve_config {
    std::string session = "default";
    unsigned nodes = 1;
    std::uint16_t port = 0;  // control port, 0: any
    int source_fd = -1;      // borrowed, read to EOF
    std::uint64_t source_bytes = 0;  // 0 when unknown (stdin)
    relay_config relay;
    std::chrono::milliseconds admission_timeout{5000};  // per control connection's hello
    tick_fn on_tick;
    log_fn log;
};

struct node_report {
    std::uint32_t node = 0;
    std::string name;
    std::string address;
    std::string parent_address;
    bool reported = false;  // false: lost before it said done
    protocol::done done;
};

struct serve_report {
    relay_result source;
    std::vector<node_report> nodes;  // in chain order
    std::chrono::steady_clock::duration wall{};  // from the start of the stream to the last done
};

// Waits for `nodes` nodes, streams the source down the chain and collects every node's
// report. Errors only when the session could not run at all; node failures are in the report.
result<serve_report> serve_session(const serve_config& config, relay_stats& stats);

struct join_config {
    std::string session = "default";
    std::string server;  // "", "HOST" (ask it by unicast) or "HOST:PORT" (its control port)
    unsigned retries = 5;
    local_sink sink;
    relay_config relay;
    tick_fn on_tick;
    log_fn log;
};

struct join_report {
    relay_result stream;
    std::uint32_t node = 0;
    std::string parent_address;
    std::chrono::steady_clock::duration wall{};
};

// Finds the server, joins, receives, stores and forwards the stream, reports and waits for
// the release.
result<join_report> join_session(const join_config& config, relay_stats& stats);

}  // namespace kaclone

template <>
struct std::is_error_code_enum<kaclone::session_errc> : std::true_type {};
