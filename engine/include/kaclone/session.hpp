// The control plane: discovery, admission, topology, start, progress, completion, release.
// serve_session and join_session each run one io_context with Asio coroutines and start the
// data plane (relay.hpp) on a thread of its own once the chain is connected.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <kaclone/auth.hpp>
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

// What happened in a session, for scripts and dashboards (`--json`). Fields a kind does not
// use stay empty or 0.
struct session_event {
    enum class kind {
        joined,       // serve: a node joined (`count` so far); join: this node joined
        refused,      // serve: a connection was refused (`address`, `message` says why)
        started,      // serve: the session starts with `count` nodes (`message`: why now)
        assigned,     // a node's place: `node`, `address`, `parent_address`, `count` children
        progress,     // once a second: `bytes` acknowledged (serve) or stored (join)
        node_done,    // serve: node `node` stored `bytes` (`message`: digest hex)
        node_failed,  // serve: node `node` failed (`message` says why); join: this node failed
        released,     // node `node` was released and may exit
    };
    kind what;
    std::uint32_t node = 0;
    std::string name, address, parent_address;
    std::uint64_t bytes = 0;
    std::size_t count = 0;
    std::string message;
};
using event_fn = std::function<void(const session_event&)>;

struct serve_config {
    std::string session = "default";
    unsigned nodes = 1;
    std::uint16_t port = 0;  // control port, 0: any
    int source_fd = -1;      // borrowed, read to EOF
    std::uint64_t source_bytes = 0;  // 0 when unknown (stdin)
    relay_config relay;
    std::chrono::milliseconds admission_timeout{5000};  // per control connection's first message
    // Start early: once `wait` has passed since the server started and at least `min_nodes`
    // have joined (wait 0: only with all `nodes`, or when an operator sends go).
    unsigned min_nodes = 0;
    std::chrono::milliseconds wait{0};
    std::vector<std::string> order;  // nodes (address or host name) placed first, in this order
    unsigned arity = 1;  // children per node: 1 is a chain, K a K-ary tree (level by level)
    std::chrono::milliseconds stagger{0};  // between two nodes' releases
    // With a key every control and data connection proves it (HMAC-SHA256 challenge-response)
    // and every frame is tagged; without one the session runs open.
    std::optional<auth::session_key> key;
    tick_fn on_tick;
    log_fn log;
    event_fn on_event;
};

struct node_report {
    std::uint32_t node = 0;
    std::string name;
    std::string address;
    std::string parent_address;
    std::uint64_t stored_bytes = 0;  // from its last progress report
    bool reported = false;  // false: lost before it said done
    protocol::done done;
};

struct serve_report {
    relay_result source;
    std::vector<node_report> nodes;  // in session order
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
    std::optional<auth::session_key> key;  // required when the server has one, refused if not
    tick_fn on_tick;
    log_fn log;
    event_fn on_event;
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

struct go_config {
    std::string session = "default";
    std::string server;  // as in join_config
    unsigned retries = 5;
    std::optional<auth::session_key> key;
    log_fn log;
};
// Asks the waiting server of `session` to start now; returns how many nodes it starts with,
// or why it did not (refused: the reason from the server).
result<std::uint32_t> start_session(const go_config& config);

}  // namespace kaclone

template <>
struct std::is_error_code_enum<kaclone::session_errc> : std::true_type {};
