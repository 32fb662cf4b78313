// The control plane: discovery, admission, topology, start, progress, completion, release.
// serve_session and join_session each run one io_context with Asio coroutines and start the
// data plane (relay.hpp) on a thread of its own once the chain is connected.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <variant>
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
    interrupted,      // SIGINT or SIGTERM (which one is in `where`)
    declined,         // the peer would not take part (its reason is in `where`)
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
        phase,        // serve: node `node` entered phase `message` ("extracting"), `detail` says more
        left,         // serve: a joined node left before the start (`count` still joined)
    };
    kind what;
    std::uint32_t node = 0;
    std::string name, address, parent_address;
    std::uint64_t bytes = 0;
    std::size_t count = 0;
    std::string message;
    std::string detail = {};
};
using event_fn = std::function<void(const session_event&)>;

struct node_report;

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
    // Once the stream has ended, a node that says nothing (no progress, phase or log) for this
    // long is failed: its work after the stream (extraction, fixups) has hung.
    std::chrono::milliseconds report_silence{30000};
    // While the stream flows, a node that says nothing for this long (its heartbeat is once a
    // second) is failed: stopped, or its host or link is down. Its children move to its parent.
    std::chrono::milliseconds stall_timeout{5000};
    // The same for a node that reports but takes in and stores nothing for that long although
    // its parent has bytes for it: its data connection or data plane is stuck.
    // --drop-slow: a node that held the whole session back for slow_timeout, storing at less
    // than 1/slow_factor of the best pace the session kept (flow::find_slow), is failed (its
    // children move on to its parent) so that the others keep their pace. Without it:
    // backpressure.
    bool drop_slow = false;
    std::chrono::milliseconds slow_timeout{10000};
    double slow_factor = 4;
    // What each node is expected to store, for `kaclone status` percentages (0: unknown).
    std::uint64_t expected_bytes = 0;
    // With a key every control and data connection proves it (HMAC-SHA256 challenge-response)
    // and every frame is tagged; without one the session runs open.
    std::optional<auth::session_key> key;
    tick_fn on_tick;
    log_fn log;
    event_fn on_event;
    // Every line of a node's log as it arrives (for --logs), and once a second the state of
    // every node (for a live view); both on the session's thread.
    std::function<void(const node_report&, const std::string&)> on_node_log;
    std::function<void(const std::vector<node_report>&)> on_nodes;
};

struct node_report {
    std::uint32_t node = 0;
    std::string name;
    std::string address;
    std::string parent_address;
    std::uint64_t stored_bytes = 0;  // from its last progress report
    bool reported = false;  // false: lost before it said done
    protocol::done done;
    // What it does now (its own phase reports, else what the server knows), since when, and
    // how long it spent in each phase so far (indexed by node_phase).
    protocol::node_phase phase = protocol::node_phase::waiting;
    std::string detail = {};
    std::chrono::steady_clock::time_point phase_since{};
    std::array<std::chrono::steady_clock::duration, protocol::node_phase_count> phase_time{};
    std::uint64_t bytes_per_second = 0;  // between its last two progress reports
    std::deque<std::string> last_lines;  // the last lines of its log (at most 20)
    std::string lost;                    // why the server gave up on it, when it did
};

struct serve_report {
    relay_result source;
    std::vector<node_report> nodes;  // in session order
    std::chrono::steady_clock::duration wall{};  // from the start of the stream to the last done
};

// Waits for `nodes` nodes, streams the source down the chain and collects every node's
// report. Errors only when the session could not run at all; node failures are in the report.
result<serve_report> serve_session(const serve_config& config, relay_stats& stats);

// A node's phase and log lines, set from any thread by whatever does the node's work and
// sent to the server by join_session (about once a second, and before its done). Lines
// logged before the session reaches the server are kept and sent once it has.
class node_status {
public:
    void set_phase(protocol::node_phase what, std::string detail);
    void log(std::string line);
    // What was set since the last take, in order: log lines and phase changes.
    using entry = std::variant<std::string, protocol::phase>;
    std::vector<entry> take();
    // Called (from the setting thread) when something is set and nothing was waiting: the
    // session uses it to send at once. Set by join_session.
    void on_change(std::function<void()> wake);

private:
    void add(entry e);
    std::mutex mutex_;
    std::vector<entry> pending_;
    std::function<void()> wake_;
};

// A --server value: "HOST" (its discovery port is asked), "HOST:PORT" (its control port),
// "[IPV6]" or "[IPV6]:PORT"; a bare IPv6 address is a HOST. HOST is a name or an address.
struct server_address {
    std::string host;
    std::optional<std::uint16_t> port;
};
// The error (invalid_argument) says what is wrong with which part, in `where`.
result<server_address> parse_server(std::string_view text);

struct join_config {
    std::string session = "default";
    std::string server;  // "", "HOST" (ask it by unicast) or "HOST:PORT" (its control port)
    unsigned retries = 5;
    local_sink sink;
    // Called once the node is assigned, right before its stream starts; what it returns
    // replaces `sink`, so a session that never starts leaves the sink untouched (a command
    // is started, a file emptied, only then). May be empty.
    std::function<result<local_sink>()> open_sink;
    relay_config relay;
    std::optional<auth::session_key> key;  // required when the server has one, refused if not
    tick_fn on_tick;
    log_fn log;
    event_fn on_event;
    node_status* status = nullptr;  // borrowed; phases and log lines for the server, may be null
    // Runs on a thread of its own once the stream is stored (and forwarded to the children);
    // the node reports done only after it, and its error fails the node. May be empty.
    std::function<result<void>()> after_stream;
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

// Asks the server of `config.session` how the session goes (`kaclone status`).
result<protocol::status_answer> session_status(const go_config& config);

}  // namespace kaclone

template <>
struct std::is_error_code_enum<kaclone::session_errc> : std::true_type {};
