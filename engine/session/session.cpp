// serve_session and join_session: the control plane in Asio coroutines.
//
// Order of a session: nodes discover the server (UDP), open a control connection and say
// hello; the server waits for them (see wait_for_start), orders them and sends each
// its assignment (parent, children: a chain, or a K-ary tree with --arity). Every node first
// accepts its children's data connections (a leaf has none), then connects to its parent, so
// the tree is complete from the leaves up when the server's children connect and the stream
// starts. Nodes report progress once a second and done at the end; the server then releases
// them.
#include <kaclone/flow.hpp>
#include <kaclone/session.hpp>

#include <kaclone/topology.hpp>
#include <kaclone/units.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/local/datagram_protocol.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace kaclone {
namespace {

using asio::ip::tcp;
using asio::ip::udp;
using local_datagram = asio::local::datagram_protocol;
using namespace asio::experimental::awaitable_operators;
using clock = std::chrono::steady_clock;
inline constexpr auto use_result = asio::experimental::as_tuple(asio::use_awaitable);

const char* describe(session_errc e) noexcept {
    switch (e) {
        case session_errc::no_server: return "no server answered";
        case session_errc::refused: return "refused by the server";
        case session_errc::timeout: return "timed out";
        case session_errc::interrupted: return "stopped by a signal";
        case session_errc::declined: return "declined by the peer";
    }
    return "unknown session error";
}

error net_error(const std::error_code& ec, std::string where) { return error{ec, std::move(where)}; }
error session_error(session_errc e, std::string where) { return error{make_error_code(e), std::move(where)}; }

std::string endpoint_text(const tcp::endpoint& e) { return e.address().to_string() + ":" + std::to_string(e.port()); }

// A data connection leaves Asio once its handshake is done: released, it is no longer in the
// control plane's epoll set, which would otherwise wake the control thread at every packet
// and every ack that frees send space (thousands of times a second, for nothing: the data
// plane polls the connection on its own io_uring). The caller owns the descriptor.
result<unique_fd> hand_over(tcp::socket& socket, const std::string& peer) {
    asio::error_code ec;
    const int fd = socket.release(ec);
    if (ec) return net_error(ec, "hand the data connection of " + peer + " to the data plane");
    return unique_fd{fd};
}

// Reads one control message; `deadline` bounds the whole read, `max_body` its body.
asio::awaitable<result<protocol::message>> read_message(tcp::socket& socket, std::string peer, std::chrono::milliseconds deadline,
                                                        std::uint32_t max_body = protocol::max_message_body_bytes) {
    asio::steady_timer timer{socket.get_executor(), deadline};
    std::array<std::byte, protocol::message_header_bytes> header{};
    auto got = co_await (asio::async_read(socket, asio::buffer(header), use_result) || timer.async_wait(use_result));
    if (got.index() == 1) co_return session_error(session_errc::timeout, peer);
    if (auto [ec, n] = std::get<0>(got); ec) co_return net_error(ec, peer);
    auto h = protocol::decode_message_header(header, peer, max_body);
    if (!h) co_return std::move(h).error();
    std::vector<std::byte> body(h->body_bytes);  // bounded by max_body
    if (!body.empty()) {
        auto rest = co_await (asio::async_read(socket, asio::buffer(body), use_result) || timer.async_wait(use_result));
        if (rest.index() == 1) co_return session_error(session_errc::timeout, peer);
        if (auto [ec, n] = std::get<0>(rest); ec) co_return net_error(ec, peer);
    }
    co_return protocol::decode_message_body(*h, body, peer);
}

// g++ 12 mis-destroys temporaries with destructors inside co_await expressions, so callers
// pass a named message (never a temporary) and keep the result in a named variable.
// A peer that takes nothing for 10 s (stopped, gone without a reset) fails the write.
asio::awaitable<result<void>> write_message(tcp::socket& socket, const protocol::message& m, std::string peer) {
    const auto bytes = protocol::encode_message(m);
    asio::steady_timer timer{socket.get_executor(), std::chrono::seconds(10)};
    auto sent = co_await (asio::async_write(socket, asio::buffer(bytes), use_result) || timer.async_wait(use_result));
    if (sent.index() == 1) co_return session_error(session_errc::timeout, "send to " + peer);
    if (auto [ec, n] = std::get<0>(sent); ec) co_return net_error(ec, peer);
    co_return result<void>{};
}

constexpr std::chrono::milliseconds forever{std::chrono::hours(24 * 365)};

// Who proves what to whom (auth::prove's role), per connection kind.
namespace role {
constexpr std::string_view control_node = "control node", control_server = "control server";
constexpr std::string_view data_child = "data child", data_parent = "data parent";
}  // namespace role

// The verifier's side of the handshake: challenge the peer; with a key, check its proof for
// `peer_role` and prove ourselves as `own_role`. Without a key the challenge says so, the
// session runs open and the peer answers with an empty proof, or refuses (a peer with a key
// does not trust an open session): only then does it count, so that a node that will not stay
// never completes a session's count. A wrong proof is refused in words and returned as
// unauthenticated.
asio::awaitable<result<void>> demand_proof(tcp::socket& socket, const std::string& peer, const std::optional<auth::session_key>& key,
                                           const std::string& session, std::string_view peer_role, std::string_view own_role,
                                           std::chrono::milliseconds deadline) {
    protocol::challenge c;
    c.keyed = key.has_value();
    if (key) c.nonce = auth::random_nonce();
    const protocol::message challenge = c;
    auto sent = co_await write_message(socket, challenge, peer);
    if (!sent) co_return std::move(sent).error();
    auto m = co_await read_message(socket, peer, deadline);
    if (!m) co_return std::move(m).error();
    if (!key) {
        if (auto* r = std::get_if<protocol::refuse>(&*m)) co_return session_error(session_errc::declined, r->reason);
        if (!std::holds_alternative<protocol::proof>(*m))
            co_return error{make_error_code(protocol::errc::unknown_type), peer + ": expected the answer to the challenge"};
        co_return result<void>{};
    }
    const auto* p = std::get_if<protocol::proof>(&*m);
    if (p == nullptr || !auth::proofs_equal(p->mac, auth::prove(*key, peer_role, session, c.nonce, p->nonce))) {
        const protocol::message refused = protocol::refuse{"wrong key: no valid proof for the key of session '" + session + "'"};
        co_await write_message(socket, refused, peer);
        co_return error{make_error_code(protocol::errc::unauthenticated), peer + ": wrong key"};
    }
    const protocol::message mine = protocol::proof{c.nonce, auth::prove(*key, own_role, session, p->nonce, c.nonce)};
    auto proved = co_await write_message(socket, mine, peer);
    if (!proved) co_return std::move(proved).error();
    co_return result<void>{};
}

// The prover's side: answer the challenge with a proof as `own_role` and check the verifier's
// proof as `peer_role`. A node with a key never trusts a peer without one, and a node without
// a key is told that the session needs one.
asio::awaitable<result<void>> give_proof(tcp::socket& socket, const std::string& peer, const std::optional<auth::session_key>& key,
                                         const std::string& session, std::string_view own_role, std::string_view peer_role,
                                         std::chrono::milliseconds deadline) {
    auto m = co_await read_message(socket, peer, deadline);
    if (!m) co_return std::move(m).error();
    if (auto* r = std::get_if<protocol::refuse>(&*m)) co_return session_error(session_errc::refused, r->reason);
    const auto* c = std::get_if<protocol::challenge>(&*m);
    if (c == nullptr) co_return error{make_error_code(protocol::errc::unknown_type), peer + ": expected a challenge"};
    if (c->keyed && !key)
        co_return session_error(session_errc::refused, "session '" + session + "' needs a key: run with --key FILE");
    if (!c->keyed && key) {  // says in words why it does not take part
        const protocol::message declined = protocol::refuse{"it has --key and this side runs session '" + session + "' without one: not trusting it"};
        co_await write_message(socket, declined, peer);
        co_return error{make_error_code(protocol::errc::unauthenticated),
                        peer + " runs session '" + session + "' without a key, but this side has --key: not trusting it"};
    }
    if (!c->keyed) {  // open: an empty proof takes part
        const protocol::message taken = protocol::proof{};
        auto sent = co_await write_message(socket, taken, peer);
        co_return sent;
    }
    const auth::nonce own = auth::random_nonce();
    const protocol::message answer = protocol::proof{own, auth::prove(*key, own_role, session, c->nonce, own)};
    auto sent = co_await write_message(socket, answer, peer);
    if (!sent) co_return std::move(sent).error();
    auto back = co_await read_message(socket, peer, deadline);
    if (!back) co_return std::move(back).error();
    if (auto* r = std::get_if<protocol::refuse>(&*back)) co_return error{make_error_code(protocol::errc::unauthenticated), r->reason};
    const auto* p = std::get_if<protocol::proof>(&*back);
    if (p == nullptr || p->nonce != c->nonce || !auth::proofs_equal(p->mac, auth::prove(*key, peer_role, session, own, c->nonce)))
        co_return error{make_error_code(protocol::errc::unauthenticated), peer + " did not prove that it holds the session key"};
    co_return result<void>{};
}

// Work on a thread of its own (the data plane, a node's work after the stream); its result
// comes back into the io_context by asio::post, which also wakes whoever waits on `wake`.
template <class T>
struct background {
    explicit background(asio::io_context& io) : wake(io) {}
    ~background() {
        if (thread.joinable()) thread.join();
    }
    template <class Run>
    void start(asio::io_context& io, Run run) {
        thread = std::thread([this, &io, run = std::move(run)]() mutable {
            auto r = run();
            asio::post(io, [this, r = std::move(r)]() mutable {
                outcome = std::move(r);
                wake.cancel();
                if (on_done) on_done();
            });
        });
    }
    // Waits up to `period` (or until the work ends).
    asio::awaitable<void> wait(std::chrono::milliseconds period) {
        if (outcome) co_return;
        wake.expires_after(period);
        co_await wake.async_wait(use_result);
    }
    std::thread thread;
    asio::steady_timer wake;
    std::optional<result<T>> outcome;
    std::function<void()> on_done;  // on the io_context, once `outcome` is set
};
using data_plane = background<relay_result>;

std::string host_name() {
    std::array<char, 256> name{};
    if (::gethostname(name.data(), name.size() - 1) != 0) return "?";
    return name.data();
}

// ---------------------------------------------------------------- server

struct joined_node {
    tcp::socket control;
    std::string address;
    std::string name;
    std::uint16_t data_port;
};

// Several servers on one host all bind UDP port 7117, but the kernel hands a unicast datagram
// (`join --server HOST`) to only one of them. So every server also binds a local datagram
// socket named after its session, in the abstract namespace (scoped to the network namespace,
// gone with the process), and a server asked for a session it does not run passes the
// question on to that session's server there, with the asker's address in front.
std::string local_discovery_name(const std::string& session) { return std::string(1, '\0') + "kaclone-discovery/" + session; }

constexpr std::size_t forward_prefix_bytes = 6;  // asker's IPv4 address and port, big-endian

asio::awaitable<void> answer_ask(udp::socket& socket, const protocol::discovery& ask, const udp::endpoint& asker,
                                 const std::string& session, std::uint16_t control_port, const log_fn& log) {
    const std::string peer = asker.address().to_string() + ":" + std::to_string(asker.port());
    if (ask.version != protocol::version && log)
        log(peer + " asked for session '" + session + "' with protocol " + std::to_string(ask.version) +
            ", this server speaks " + std::to_string(protocol::version));
    const auto reply = protocol::encode_discovery({protocol::discovery::kind::answer, protocol::version, session, control_port});
    co_await socket.async_send_to(asio::buffer(reply), asker, use_result);
}

asio::awaitable<void> answer_discovery(udp::socket& socket, local_datagram::socket& local, std::string session,
                                       std::uint16_t control_port, log_fn log) {
    std::array<std::byte, 1500> datagram{};
    std::array<std::byte, forward_prefix_bytes + 1500> forward{};
    for (;;) {
        udp::endpoint from;
        auto [ec, n] = co_await socket.async_receive_from(asio::buffer(datagram), from, use_result);
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) continue;
        const std::string peer = from.address().to_string() + ":" + std::to_string(from.port());
        auto ask = protocol::decode_discovery(std::span(datagram.data(), n), peer);
        if (!ask || ask->what != protocol::discovery::kind::ask) {
            if (log) log("ignored a discovery datagram from " + peer + ": " + (ask ? "not a question" : ask.error().code.message()));
            continue;
        }
        if (ask->session == session) {
            co_await answer_ask(socket, *ask, from, session, control_port, log);
            continue;
        }
        if (!from.address().is_v4() || ask->session.size() > 80) continue;
        // Another session's: pass it on, in case that server runs here too (else nobody listens).
        const auto v4 = from.address().to_v4().to_bytes();
        std::memcpy(forward.data(), v4.data(), 4);
        forward[4] = std::byte(from.port() >> 8);
        forward[5] = std::byte(from.port() & 0xff);
        std::memcpy(forward.data() + forward_prefix_bytes, datagram.data(), n);
        asio::error_code ignored;
        local.send_to(asio::buffer(forward.data(), forward_prefix_bytes + n),
                      local_datagram::endpoint(local_discovery_name(ask->session)), 0, ignored);
    }
}

// Questions another server on this host passed on (see local_discovery_name).
asio::awaitable<void> answer_forwarded(udp::socket& socket, local_datagram::socket& local, std::string session,
                                       std::uint16_t control_port, log_fn log) {
    std::array<std::byte, forward_prefix_bytes + 1500> datagram{};
    for (;;) {
        auto [ec, n] = co_await local.async_receive(asio::buffer(datagram), use_result);
        if (ec == asio::error::operation_aborted) co_return;
        if (ec || n < forward_prefix_bytes) continue;
        asio::ip::address_v4::bytes_type v4{};
        std::memcpy(v4.data(), datagram.data(), 4);
        const auto port = static_cast<std::uint16_t>((std::to_integer<unsigned>(datagram[4]) << 8) | std::to_integer<unsigned>(datagram[5]));
        const udp::endpoint asker{asio::ip::address_v4(v4), port};
        auto ask = protocol::decode_discovery(std::span(datagram.data() + forward_prefix_bytes, n - forward_prefix_bytes), "a local server");
        if (!ask || ask->what != protocol::discovery::kind::ask || ask->session != session) continue;
        co_await answer_ask(socket, *ask, asker, session, control_port, log);
    }
}

// Connections on one port that are still to say who they are, oldest first. Past `limit` the
// oldest is cut off (closed: its handshake ends at once), so that a flood of silent
// connections cannot keep the nodes out; told in one log line per 10 s.
struct first_words {
    static constexpr std::size_t limit = 64;
    struct pending {
        std::shared_ptr<tcp::socket> socket;
        bool spoke = false;  // past its first words (or cut off): never cut off for room
    };
    using place = std::list<pending>::iterator;
    place add(tcp::socket socket, const log_fn& log, std::string_view port) {
        if (open.size() >= limit) {
            const auto oldest = std::find_if(open.begin(), open.end(), [](const pending& p) { return !p.spoke; });
            if (oldest != open.end()) {
                asio::error_code ignored;
                oldest->socket->close(ignored);
                oldest->spoke = true;
                ++cut_off;
            }
            if (log && cut_off > 0 && clock::now() - cut_told >= std::chrono::seconds(10)) {
                log(std::string(port) + ": " + std::to_string(limit) + " connections are still to say who they are; cut off " +
                    std::to_string(cut_off) + " of them, the oldest first");
                cut_off = 0;
                cut_told = clock::now();
            }
        }
        open.push_back({std::make_shared<tcp::socket>(std::move(socket)), false});
        return std::prev(open.end());
    }
    static bool cut(const error& e) { return e.code == asio::error::operation_aborted; }
    std::list<pending> open;
    std::size_t cut_off = 0;  // since the last log line about it
    clock::time_point cut_told{};
};

// Who has joined, and whether the session may start. Lives outside the io_context's
// coroutines (serve_session), which all borrow it; every change wakes `wake`.
struct admission {
    explicit admission(asio::io_context& io) : wake(io) {}
    void changed() { wake.cancel(); }

    std::vector<joined_node> joined;
    std::string go_from;    // the operator who sent go, once one did
    bool started = false;
    first_words greeting;  // connections whose first message is still awaited
    asio::steady_timer wake;
    const std::vector<node_report>* nodes = nullptr;  // serve()'s, once the session runs
    bool finishing = false;  // the stream has ended; the nodes finish and report
};

// The answer to `kaclone status`: the joined nodes before the start, the session's after.
protocol::status_answer status_of(const serve_config& config, const admission& state) {
    protocol::status_answer a;
    a.expected_bytes = config.expected_bytes != 0 ? config.expected_bytes : config.source_bytes;
    // Rows up to what the answer may carry (max_status_body_bytes, less room for the state);
    // the rest are counted in the state line.
    std::size_t left_out = 0, bytes = 0;
    const auto add = [&](protocol::status_row row) {
        const std::size_t row_bytes = 4 + 1 + 8 + 8 + 4 * 2 + std::min<std::size_t>(row.name.size(), 4096) + row.address.size() +
                                      row.parent_address.size() + row.detail.size();
        if (bytes + row_bytes > protocol::max_status_body_bytes - 8192 || a.rows.size() == 65535) {
            ++left_out;
            return;
        }
        bytes += row_bytes;
        a.rows.push_back(std::move(row));
    };
    const auto left_out_text = [&] {
        return left_out == 0 ? std::string() : " (" + std::to_string(left_out) + " nodes left out of this answer: too many to send)";
    };
    if (state.nodes == nullptr) {
        for (const auto& n : state.joined) {
            protocol::status_row row;
            row.name = n.name;
            row.address = n.address;
            add(std::move(row));
        }
        a.state = "waiting for nodes: " + std::to_string(state.joined.size()) + " of " + std::to_string(config.nodes) + " joined" +
                  left_out_text();
        return a;
    }
    std::size_t finished = 0;
    for (const auto& n : *state.nodes) {
        if (n.phase == protocol::node_phase::done || n.phase == protocol::node_phase::failed) ++finished;
        add({n.node, n.name, n.address, n.parent_address, n.phase, n.stored_bytes, n.bytes_per_second, n.detail.substr(0, 200)});
    }
    a.state = std::string(state.finishing ? "stream ended, nodes finishing" : "running") + ": " + std::to_string(finished) +
              " of " + std::to_string(state.nodes->size()) + " nodes finished" + left_out_text();
    return a;
}

void emit(const serve_config& config, session_event e) {
    if (config.on_event) config.on_event(e);
}

// Why a peer failed demand_proof, for the log line that names it.
std::string failed_proof(const error& e) {
    return e.code == protocol::errc::unauthenticated ? "wrong key (authentication failed)" : e.message();
}

// An operator's question (`what`: go, status) about session `asked`: "" when it may be
// answered, else why not. The peer is told: a refuse for another session (in `answer`), or
// demand_proof's own answer when it does not prove the key.
asio::awaitable<std::string> check_operator(tcp::socket& socket, const std::string& peer, const serve_config& config,
                                            const std::string& asked, const char* what, std::optional<protocol::message>& answer) {
    if (asked != config.session) {
        std::string refusal = "this server runs session '" + config.session + "', not '" + asked + "'";
        answer = protocol::refuse{refusal};
        co_return refusal;
    }
    auto proved = co_await demand_proof(socket, peer, config.key, config.session, role::control_node, role::control_server,
                                        config.admission_timeout);
    if (!proved) co_return std::string(what) + ": " + failed_proof(proved.error());
    co_return std::string();
}

// Reads the first message of one control connection and acts on it: a hello joins (before
// the start) or is refused; a go starts the session. Anything else is refused with one log
// line naming the peer; the session goes on undisturbed.
asio::awaitable<void> greet(first_words::place me, const serve_config& config, admission& state) {
    const std::shared_ptr<tcp::socket> held = me->socket;
    tcp::socket& socket = *held;
    asio::error_code ec;
    const auto remote = socket.remote_endpoint(ec);
    const std::string peer = ec ? "?" : endpoint_text(remote);
    auto m = co_await read_message(socket, peer, config.admission_timeout);
    state.greeting.open.erase(me);
    if (!m && first_words::cut(m.error())) co_return;  // cut off for room: told in one line
    std::string refusal;
    std::optional<protocol::message> answer;
    if (!m) {
        refusal = m.error().code.message();  // its `where` is the peer, named in the log line
        // Only a peer that speaks our framing can read a refusal in words.
        if (m.error().code == protocol::errc::version_mismatch) answer = protocol::refuse{refusal};
    } else if (auto* h = std::get_if<protocol::hello>(&*m)) {
        // Why a node of this session cannot join now ("" if it can).
        const auto closed = [&]() -> std::string {
            if (state.started) {
                std::string was;
                if (state.nodes != nullptr)
                    for (const auto& n : *state.nodes)
                        if (n.address == remote.address().to_string() && n.phase == protocol::node_phase::failed)
                            was = " (node " + std::to_string(n.node) + " at " + n.address + " failed in it: " + n.detail + ")";
                return "session '" + config.session + "' is already running with " + std::to_string(state.nodes ? state.nodes->size() : state.joined.size()) +
                       " nodes; a node cannot join a running session" + was;
            }
            if (state.joined.size() >= config.nodes)
                return "session '" + config.session + "' already has its " + std::to_string(config.nodes) + " nodes";
            return "";
        };
        refusal = h->session != config.session ? "this server runs session '" + config.session + "', not '" + h->session + "'"
                                               : closed();
        if (refusal.empty()) {
            auto proved = co_await demand_proof(socket, peer, config.key, config.session, role::control_node,
                                                role::control_server, config.admission_timeout);
            if (!proved && proved.error().code == session_errc::declined) {  // it would not take part
                if (config.log) config.log(peer + " did not join: " + proved.error().where);
                emit(config, {session_event::kind::refused, 0, "", peer, "", 0, 0, proved.error().where});
                co_return;
            }
            if (!proved) refusal = failed_proof(proved.error());  // demand_proof told the peer
            else refusal = closed();  // it may have started while we waited for the proof
            if (!refusal.empty() && proved) answer = protocol::refuse{refusal};
        } else {
            answer = protocol::refuse{refusal};
        }
        if (refusal.empty()) {
            const std::string address = remote.address().to_string();
            state.joined.push_back({std::move(socket), address, h->node_name, h->data_port});
            if (config.log) config.log("node " + address + " (" + h->node_name + ") joined, " +
                                       std::to_string(state.joined.size()) + " of " + std::to_string(config.nodes));
            emit(config, {session_event::kind::joined, 0, h->node_name, address, "", 0, state.joined.size(), ""});
            state.changed();
            co_return;
        }
    } else if (auto* g = std::get_if<protocol::go>(&*m)) {
        refusal = co_await check_operator(socket, peer, config, g->session, "go", answer);
        if (refusal.empty()) {
            protocol::go_answer a;
            if (state.started) a.reason = "session '" + config.session + "' is already running";
            else if (state.joined.empty()) a.reason = "no node has joined session '" + config.session + "' yet";
            else {
                a.ok = true;
                a.nodes = static_cast<std::uint32_t>(state.joined.size());
                state.go_from = peer;
                state.changed();
            }
            if (!a.ok) refusal = "go: " + a.reason;
            answer = a;
        }
    } else if (auto* q = std::get_if<protocol::status_ask>(&*m)) {
        refusal = co_await check_operator(socket, peer, config, q->session, "status", answer);
        if (refusal.empty()) answer = status_of(config, state);
    } else {
        refusal = "expected hello, go or status";
    }
    if (!refusal.empty()) {
        if (config.log) config.log("refused " + peer + ": " + refusal);
        emit(config, {session_event::kind::refused, 0, "", peer, "", 0, 0, refusal});
    }
    if (answer) {
        const protocol::message reply = *answer;
        co_await write_message(socket, reply, peer);
    }
}

// Accepts control connections for the whole session, each greeted on its own, so a silent
// or slow peer holds up nobody (first_words bounds how many wait for their first message).
asio::awaitable<void> accept_control(tcp::acceptor& acceptor, const serve_config& config, admission& state) {
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_result);
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
        if (ec) continue;  // e.g. the peer reset before we accepted, or out of fds for a moment
        const auto me = state.greeting.add(std::move(socket), config.log, "control port");
        asio::co_spawn(acceptor.get_executor(), greet(me, config, state), asio::detached);
    }
}

// Whether the node at the other end of a joined node's control connection has closed or reset
// it (the node was stopped, or it refused this server after joining: a key it does not hold).
bool peer_left(tcp::socket& control) {
    tcp_info info{};
    socklen_t size = sizeof info;
    if (::getsockopt(control.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &size) != 0) return true;
    return info.tcpi_state != TCP_ESTABLISHED;
}

// Joined nodes that left before the start are no longer counted (a node restarted from the
// same address joins again); each is told in one log line.
void forget_left(const serve_config& config, admission& state) {
    for (auto n = state.joined.begin(); n != state.joined.end();) {
        if (!peer_left(n->control)) {
            ++n;
            continue;
        }
        const joined_node gone = std::move(*n);
        n = state.joined.erase(n);
        if (config.log)
            config.log("node " + gone.address + " (" + gone.name + ") left before the start; " + std::to_string(state.joined.size()) +
                       " of " + std::to_string(config.nodes) + " joined");
        emit(config, {session_event::kind::left, 0, gone.name, gone.address, "", 0, state.joined.size(), ""});
    }
}

// Waits until the session may start: all nodes joined, an operator's go, or the --wait
// deadline with at least --min nodes. Returns why, in words.
asio::awaitable<std::string> wait_for_start(const serve_config& config, admission& state, clock::time_point began) {
    const bool early = config.wait.count() > 0;
    const unsigned min_nodes = std::max(config.min_nodes, 1u);
    const auto deadline = early ? began + config.wait : clock::time_point::max();
    bool told = false;
    for (;;) {
        forget_left(config, state);
        if (state.joined.size() >= config.nodes) co_return "all " + std::to_string(config.nodes) + " nodes joined";
        if (!state.go_from.empty() && state.joined.empty() && config.log) {
            config.log("kaclone go from " + state.go_from + ": every node that had joined has left; waiting for nodes");
            state.go_from.clear();
        }
        if (!state.go_from.empty()) co_return "kaclone go from " + state.go_from;
        if (early && clock::now() >= deadline) {
            if (state.joined.size() >= min_nodes)
                co_return "the --wait deadline passed with " + std::to_string(state.joined.size()) + " of " +
                    std::to_string(config.nodes) + " nodes (--min " + std::to_string(min_nodes) + ")";
            if (!told && config.log)
                config.log("the --wait deadline passed with " + std::to_string(state.joined.size()) + " nodes; starting as soon as " +
                           std::to_string(min_nodes) + " (--min) have joined");
            told = true;
        }
        // Woken by a join or a go, and once a second to see who left.
        state.wake.expires_at(std::min(clock::now() < deadline ? deadline : clock::time_point::max(),
                                       clock::now() + std::chrono::seconds(1)));
        co_await state.wake.async_wait(use_result);
    }
}

// Who may connect as a child now, and where an accepted child goes. Shared by the server
// (its own children) and every node; changes as failed nodes' children move.
struct child_door {
    std::map<std::uint32_t, std::string> expected;  // node -> the only address it may come from
    relay_control* control = nullptr;                // the data plane it is handed to
    std::vector<unique_fd> sockets;                   // accepted: open until the session ends
};

// What a data acceptor's handshakes share: the door they lead to, and the handshakes still in
// flight, oldest first. Owned by the accept loop and by every handshake, so that whichever
// coroutine frame goes last (also when the io_context is torn down) frees it.
struct data_handshakes {
    data_handshakes(tcp::acceptor& a, const std::string& s, const std::optional<auth::session_key>& k, child_door& d, const log_fn& l)
        : acceptor(a), session(s), key(k), door(d), log(l), idle(a.get_executor()) {}
    tcp::acceptor& acceptor;
    const std::string& session;
    const std::optional<auth::session_key>& key;
    child_door& door;
    const log_fn& log;
    first_words waiting;  // every handshake in flight (spoke: named itself an expected child)
    asio::steady_timer idle;  // woken when a handshake ends
};

// One data connection's handshake: an expected child that proves the key is handed to the
// data plane with where it resumes; anyone else is refused with one log line. 5 s per answer.
asio::awaitable<void> admit_child(std::shared_ptr<data_handshakes> hs, first_words::place me, tcp::endpoint remote) {
    struct leave {  // on every way out, also when the frame is destroyed unresumed
        std::shared_ptr<data_handshakes> hs;
        first_words::place me;
        ~leave() {
            hs->waiting.open.erase(me);
            hs->idle.cancel();
        }
    } guard{hs, me};
    tcp::socket& socket = *me->socket;
    const auto closed = [&hs] { return !hs->acceptor.is_open(); };
    const std::string peer = endpoint_text(remote);
    auto m = co_await read_message(socket, peer, std::chrono::seconds(5));
    if (closed()) co_return;
    const auto* hello = m ? std::get_if<protocol::data_hello>(&*m) : nullptr;
    std::string refusal;
    if (hello == nullptr) {
        refusal = m ? "expected a data hello" : m.error().code.message();
    } else {
        const auto slot = hs->door.expected.find(hello->node);
        if (hello->session != hs->session || slot == hs->door.expected.end() || slot->second != remote.address().to_string())
            refusal = "not an assigned child that is still to connect";
    }
    if (!refusal.empty()) {
        if (hs->log && (m || !first_words::cut(m.error()))) hs->log("refused data connection from " + peer + ": " + refusal);
        const protocol::message refused = protocol::data_accept{false, refusal};
        if (m) co_await write_message(socket, refused, peer);
        co_return;
    }
    me->spoke = true;
    auto proved = co_await demand_proof(socket, peer, hs->key, hs->session, role::data_child, role::data_parent, std::chrono::seconds(5));
    if (closed()) co_return;
    if (!proved) {
        if (hs->log) hs->log("refused data connection from " + peer + ": " + failed_proof(proved.error()));
        co_return;  // demand_proof told the peer
    }
    const protocol::message welcome = protocol::data_accept{true, ""};
    auto w = co_await write_message(socket, welcome, peer);
    if (closed() || !w || !hs->door.expected.contains(hello->node)) co_return;  // gone meanwhile (it failed)
    asio::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto fd = hand_over(socket, peer);
    if (!fd) {
        if (hs->log) hs->log(fd.error().message());
        co_return;
    }
    hs->door.expected.erase(hello->node);
    hs->door.sockets.push_back(*std::move(fd));
    hs->door.control->attach_child({hello->node, hs->door.sockets.back().get(), hello->resume_offset, hello->acked, hello->complete});
}

// Accepts data connections for the whole session (until the acceptor is closed), each
// handshake on its own, so that a silent or slow peer holds up nobody (first_words bounds how
// many have not named themselves). Returns once every handshake has ended: they are cut short
// when the acceptor closes.
asio::awaitable<void> accept_data(tcp::acceptor& acceptor, const std::string& session, const std::optional<auth::session_key>& key,
                                  child_door& door, const log_fn& log) {
    auto hs = std::make_shared<data_handshakes>(acceptor, session, key, door, log);
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_result);
        if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
        if (ec) continue;  // e.g. the peer reset before we accepted, or out of fds for a moment
        asio::error_code gone;
        const auto remote = socket.remote_endpoint(gone);
        if (gone) continue;  // reset before we looked
        const auto me = hs->waiting.add(std::move(socket), log, "data port");
        asio::co_spawn(acceptor.get_executor(), admit_child(hs, me, remote), asio::detached);
    }
    for (auto& p : hs->waiting.open) {
        asio::error_code ignored;
        p.socket->close(ignored);
    }
    while (!hs->waiting.open.empty()) {
        hs->idle.expires_at(clock::time_point::max());
        co_await hs->idle.async_wait(use_result);
    }
}

// How many nodes' report readers have ended (done received or connection lost); each end
// wakes `wake`, so the server waits for reports without polling.
struct report_tally {
    explicit report_tally(asio::io_context& io) : wake(io) {}
    std::size_t settled = 0;
    asio::steady_timer wake;
};

// Moves a node to phase `what`, adding the time it spent in the one it leaves.
void enter_phase(const serve_config& config, node_report& report, protocol::node_phase what, std::string detail) {
    const auto now = clock::now();
    if (report.phase_since != clock::time_point{})
        report.phase_time[static_cast<std::size_t>(report.phase)] += now - report.phase_since;
    report.phase_since = now;
    const bool changed = report.phase != what || report.detail != detail;
    report.phase = what;
    report.detail = std::move(detail);
    if (changed)
        emit(config, {session_event::kind::phase, report.node, report.name, report.address, report.parent_address,
                      report.stored_bytes, 0, std::string(protocol::phase_name(what)), report.detail});
}

// A node's log line: kept (the last 20) and handed to the caller (for --logs).
void keep_line(const serve_config& config, node_report& report, const std::string& line) {
    if (config.on_node_log) config.on_node_log(report, line);
    report.last_lines.push_back(line);
    if (report.last_lines.size() > 20) report.last_lines.pop_front();
}

// The server's side of healing: who is whose parent now, who failed, and what must be told to
// whom. When a node fails, its children move to its parent (the nearest live ancestor, as a
// failed parent's children moved to it before) and resume there from the byte they have; the
// parent is told to expect them in the failed node's place. Lives in serve(), borrowed by the
// report readers.
struct healing {
    const serve_config& config;
    std::vector<joined_node>& nodes;  // node k is nodes[k - 1]
    serve_report& report;
    child_door& door;        // the server's own children
    relay_control& source;   // the server's data plane
    std::string server_address;
    std::uint16_t server_port = 0;
    std::function<void()> wake;  // the main loop: messages are waiting
    std::vector<std::uint32_t> parent;                // by node; [0] unused
    std::vector<std::vector<std::uint32_t>> children; // [0]: the server's
    std::vector<bool> failed;
    std::deque<std::pair<std::uint32_t, protocol::message>> outbox;  // to node k, in order
    bool stream_done = false;  // the source's stream is complete everywhere: nothing to heal

    std::string name_of(std::uint32_t k) const {
        return k == 0 ? "the server" : "node " + std::to_string(k) + " (" + nodes[k - 1].address + ")";
    }

    // Node k failed (once: later reasons are ignored): report it, cut it off, heal around it.
    void fail(std::uint32_t k, const std::string& why) {
        node_report& r = report.nodes[k - 1];
        if (failed[k] || r.phase == protocol::node_phase::done) return;
        failed[k] = true;
        r.lost = why + " (at offset " + std::to_string(r.stored_bytes) + ")";
        r.bytes_per_second = 0;
        enter_phase(config, r, protocol::node_phase::failed, r.lost);
        emit(config, {session_event::kind::node_failed, r.node, r.name, r.address, r.parent_address, r.stored_bytes, 0, r.lost});
        // Told why (a stopped node reads it when it continues), then cut off: its reader ends.
        outbox.emplace_back(k, protocol::refuse{"dropped from session '" + config.session + "': " + r.lost});
        const std::uint32_t up = parent[k];
        auto& siblings = children[up];
        const auto at = std::find(siblings.begin(), siblings.end(), k);
        const std::vector<std::uint32_t> orphans = std::exchange(children[k], {});
        if (at != siblings.end()) siblings.insert(siblings.erase(at), orphans.begin(), orphans.end());
        for (const std::uint32_t o : orphans) {
            parent[o] = up;
            restart_flow(o);
        }
        std::string moved;
        for (const std::uint32_t o : orphans) moved += (moved.empty() ? "" : ", ") + std::to_string(o);
        if (config.log)
            config.log(name_of(k) + " failed: " + r.lost +
                       (orphans.empty() || stream_done ? "" : "; node " + moved + " now resume" + (orphans.size() == 1 ? "s" : "") +
                                                                   " from " + name_of(up)));
        if (stream_done) return;
        take_place(k, up, orphans);
    }

    // `movers` take the place of `lost` below `up` and resume there from the byte they have:
    // the parent is told first, so that it expects them when they connect.
    void take_place(std::uint32_t lost, std::uint32_t up, const std::vector<std::uint32_t>& movers) {
        if (up == 0) {
            door.expected.erase(lost);
            for (const std::uint32_t o : movers) door.expected[o] = nodes[o - 1].address;
            source.replace_child(lost, movers);
        } else {
            protocol::adopt place{lost, {}};
            for (const std::uint32_t o : movers) place.children.push_back({o, nodes[o - 1].address});
            outbox.emplace_back(up, std::move(place));
        }
        for (const std::uint32_t o : movers) {
            report.nodes[o - 1].parent_address = up == 0 ? server_address : nodes[up - 1].address;
            protocol::reparent move{up, report.nodes[o - 1].parent_address, up == 0 ? server_port : nodes[up - 1].data_port};
            outbox.emplace_back(o, std::move(move));
        }
        if (wake) wake();
    }

    // The data connection from parent[k] to k broke while both live: k reconnects to the same
    // parent and resumes at the byte it has (its parent keeps what k's subtree has not
    // acknowledged). Three times per node; a link that keeps breaking fails k.
    std::vector<unsigned> relinks;  // by node
    void relink(std::uint32_t k, const std::string& why) {
        if (failed[k] || stream_done || report.nodes[k - 1].phase == protocol::node_phase::done) return;
        const std::uint32_t up = parent[k];
        if (++relinks[k] > 3) return fail(k, "its data connection to " + name_of(up) + " broke " + std::to_string(relinks[k]) + " times: " + why);
        if (config.log)
            config.log("the data connection from " + name_of(up) + " to " + name_of(k) + " broke (" + why + "); node " +
                       std::to_string(k) + " reconnects to " + (up == 0 ? "it" : "node " + std::to_string(up)) + " and resumes where it is");
        restart_flow(k);
        relinked_at[k] = clock::now();
        take_place(k, up, {k});
    }

    // A node's report that its data connection to `about` broke: believed when `about` is its
    // parent or child now (a report about a node that already moved away is late news), and
    // acted on after a grace of 1 s, so that a node that failed on its own says why first (a
    // dead one loses its control connection at once). When both ends report the same link, or
    // the parent is the server (which is not lost: it is here), the link broke, not a node;
    // a report from one end only waits 3 s for the other's.
    struct suspicion {
        std::uint32_t node;      // the one accused
        std::uint32_t reporter;  // its parent or child
        clock::time_point since;
        std::string why;         // the reporter's words
    };
    std::vector<suspicion> suspects;
    void neighbour_lost(std::uint32_t reporter, const protocol::peer_lost& p) {
        if (p.node >= parent.size() || failed[p.node]) return;
        const auto& mine = children[reporter];
        if (parent[reporter] != p.node && std::find(mine.begin(), mine.end(), p.node) == mine.end()) return;
        suspects.push_back({p.node, reporter, clock::now(), p.reason});
    }
    void judge_suspects() {
        const auto now = clock::now();
        const std::vector<suspicion> all = std::exchange(suspects, {});
        for (const auto& s : all) {
            if (now - s.since < std::chrono::seconds(1)) {
                suspects.push_back(s);
                continue;
            }
            // A failed reporter's word counts no more (it may have failed for its own reasons),
            // nor news of a link that is gone: an end failed or moved, or it was relinked after
            // the report came.
            if (failed[s.reporter] || failed[s.node]) continue;
            const bool up_lost = parent[s.reporter] == s.node;
            const std::uint32_t child = up_lost ? s.reporter : s.node, up = up_lost ? s.node : s.reporter;
            if (parent[child] != up || s.since < relinked_at[child]) continue;
            const bool mutual = std::any_of(all.begin(), all.end(), [&](const suspicion& t) {
                return t.node == s.reporter && t.reporter == s.node;
            });
            // One end only so far: the other may report late (a busy node), up to 3 s.
            if (!mutual && up != 0 && now - s.since < std::chrono::seconds(3)) {
                suspects.push_back(s);
                continue;
            }
            if (up == 0 || mutual) relink(child, name_of(s.reporter) + " says: " + s.why);
            else fail(s.node, name_of(s.reporter) + " lost its data connection to it: " + s.why);
        }
    }
    std::vector<clock::time_point> relinked_at;  // by node

    // Flow, by node ([0]: the server): the last seconds of reports (--drop-slow) and the last
    // progress (the data-stall rule); since when a node has been the one holding everyone back.
    std::vector<flow::history> flows;
    std::vector<flow::progress_view> views;
    std::vector<clock::time_point> slow_since;
    std::vector<unsigned> slow_children;  // by node: children dropped as too slow
    flow::history paced;   // what every node stored (the server's acknowledged bytes)
    double best_pace = 0;  // the best 5 s of it, bytes per second

    void observe(std::uint32_t k, const protocol::progress& p) {
        const auto now = clock::now();
        flow::progress_view& v = views[k];
        // A held node waits for room, a node writing to its sink for its disk, not for data:
        // their clocks restart too.
        if (flows[k].empty()) {
            v.changed = now;
        } else {
            const flow::sample& last = flows[k].newest();
            if (last.wire != p.intake_wire_bytes || last.stored != p.stored_bytes || last.sink_busy_ns != p.sink_busy_ns || p.held)
                v.changed = now;
        }
        v.heard = now;
        v.wire = p.intake_wire_bytes;
        v.held = p.held;
        flows[k].add(sample_of(p, now));
    }
    // A node with a new parent starts over: what it did before says nothing about the new link.
    void restart_flow(std::uint32_t k) {
        flows[k].clear();
        views[k].changed = clock::now();
        slow_since[k] = {};
    }
    static flow::sample sample_of(const protocol::progress& p, clock::time_point at) {
        return {at, p.stored_bytes, p.intake_wire_bytes, p.held_ns, p.sink_busy_ns};
    }
};

// Reads a node's control messages until its done (or the connection ends). Borrows all four
// from serve(), which waits for every reader to end before it returns.
asio::awaitable<void> collect_reports(tcp::socket& control, node_report& report, report_tally& tally, healing& heal,
                                      clock::time_point& last_heard) {
    const serve_config& config = heal.config;
    clock::time_point sampled = clock::now();
    std::uint64_t sampled_bytes = 0;
    for (;;) {
        auto m = co_await read_message(control, report.address, forever);
        if (!m) {  // lost before done: reported stays false
            heal.fail(report.node, "lost its control connection: " + m.error().message());
            break;
        }
        last_heard = clock::now();
        if (auto* p = std::get_if<protocol::progress>(&*m)) {
            report.stored_bytes = p->stored_bytes;
            heal.observe(report.node, *p);
            const auto now = clock::now();
            const double dt = std::chrono::duration<double>(now - sampled).count();
            if (dt >= 0.5) {
                report.bytes_per_second =
                    p->stored_bytes >= sampled_bytes ? static_cast<std::uint64_t>(static_cast<double>(p->stored_bytes - sampled_bytes) / dt) : 0;
                sampled = now;
                sampled_bytes = p->stored_bytes;
            }
        } else if (auto* ph = std::get_if<protocol::phase>(&*m)) {
            if (ph->what != protocol::node_phase::done && ph->what != protocol::node_phase::failed)
                enter_phase(config, report, ph->what, ph->detail);
        } else if (auto* lines = std::get_if<protocol::log_lines>(&*m)) {
            for (const auto& line : lines->lines) keep_line(config, report, line);
        } else if (auto* lost = std::get_if<protocol::peer_lost>(&*m)) {
            heal.neighbour_lost(report.node, *lost);
        } else if (auto* d = std::get_if<protocol::done>(&*m)) {
            report.done = *d;
            report.reported = true;
            report.stored_bytes = d->stored_bytes;
            report.bytes_per_second = 0;
            if (!d->ok) {
                heal.fail(report.node, d->message);
                break;
            }
            enter_phase(config, report, protocol::node_phase::done, "");
            emit(config, {session_event::kind::node_done, report.node, report.name, report.address, report.parent_address,
                          d->stored_bytes, 0, d->digest.hex()});
            break;
        }
    }
    ++tally.settled;
    tally.wake.cancel();
}

// Waits until `count` report readers have ended or `deadline` passes.
asio::awaitable<void> wait_for_reports(report_tally& tally, std::size_t count, clock::time_point deadline) {
    while (tally.settled < count && clock::now() < deadline) {
        tally.wake.expires_at(deadline);
        co_await tally.wake.async_wait(use_result);
    }
}

// The server's heartbeat to every live node from `first` on (a node that hears nothing for
// 15 s gives up).
void queue_heartbeats(healing& heal, const relay_stats& stats, std::uint32_t first = 1) {
    for (std::uint32_t k = first; k <= heal.nodes.size(); ++k)
        if (!heal.failed[k]) heal.outbox.emplace_back(k, protocol::progress{stats.acked_bytes.load()});
}

// Sends what healing queued for the nodes, in order; a node that failed meanwhile is skipped.
asio::awaitable<void> send_queued(healing& heal) {
    while (!heal.outbox.empty()) {
        auto [k, m] = std::move(heal.outbox.front());
        heal.outbox.pop_front();
        const bool cut = std::holds_alternative<protocol::refuse>(m);
        if (heal.failed[k] && !cut) continue;
        joined_node& n = heal.nodes[k - 1];
        co_await write_message(n.control, m, n.address);
        asio::error_code ignored;
        if (cut) n.control.shutdown(tcp::socket::shutdown_both, ignored);
    }
}

std::string seconds_text(clock::duration d) {
    std::array<char, 32> text{};
    std::snprintf(text.data(), text.size(), "%.1f s", std::chrono::duration<double>(d).count());
    return text.data();
}

std::string rate_text(double bytes_per_second) {
    std::array<char, 32> text{};
    std::snprintf(text.data(), text.size(), "%.1f MB/s", bytes_per_second / 1e6);
    return text.data();
}

// Nodes that are failed by what the server sees: silence on the control connection (a
// stopped process, a host or link down: heartbeats are once a second).
void check_stalls(healing& heal, const std::vector<clock::time_point>& heard) {
    const serve_config& config = heal.config;
    const auto now = clock::now();
    for (std::uint32_t k = 1; k <= heal.nodes.size(); ++k) {
        const auto& r = heal.report.nodes[k - 1];
        if (heal.failed[k] || r.phase == protocol::node_phase::done || now - heard[k - 1] < config.stall_timeout) continue;
        heal.fail(k, "no word from it for " + seconds_text(config.stall_timeout) + " (stopped, or its host or link is down; --stall-timeout)");
    }
}

// What a node reports of its data plane's flow (relay_stats), holds in progress included.
protocol::progress progress_of(const relay_stats& stats) {
    const std::uint64_t since = stats.held_since_ns.load(std::memory_order_relaxed);
    const std::uint64_t held = stats.held_ns.load(std::memory_order_relaxed);
    const std::uint64_t now = flow_clock_ns();
    protocol::progress p;
    p.stored_bytes = stats.stored_bytes.load(std::memory_order_relaxed);
    p.intake_wire_bytes = stats.intake_wire_bytes.load(std::memory_order_relaxed);
    p.held_ns = held + (since != 0 && now > since ? now - since : 0);
    const std::uint64_t writing = stats.sink_write_since_ns.load(std::memory_order_relaxed);
    p.sink_busy_ns = stats.sink_busy_ns.load(std::memory_order_relaxed) + (writing != 0 && now > writing ? now - writing : 0);
    p.held = since != 0;
    return p;
}

// Nodes that are failed by their flow: one that reports but is stuck (no data although its
// parent has some for it), and with --drop-slow the one that holds everyone back.
void check_flow(healing& heal, const relay_stats& stats) {
    using protocol::node_phase;
    const serve_config& config = heal.config;
    const auto now = clock::now();
    heal.flows[0].add(healing::sample_of(progress_of(stats), now));
    heal.views[0] = {true, false, stats.intake_wire_bytes.load(std::memory_order_relaxed), now, now};
    heal.paced.add({now, stats.acked_bytes.load(std::memory_order_relaxed)});
    if (const auto r = heal.paced.over_window()) heal.best_pace = std::max(heal.best_pace, r->stored_per_second);
    const std::size_t n = heal.nodes.size();
    std::vector<bool> live(n + 1, true);
    for (std::uint32_t k = 1; k <= n; ++k) {
        const node_phase ph = heal.report.nodes[k - 1].phase;
        live[k] = !heal.failed[k] && ph != node_phase::done && ph != node_phase::failed && ph != node_phase::fixup;
        flow::progress_view& v = heal.views[k];
        v.watched = live[k] && (ph == node_phase::receiving || ph == node_phase::extracting) && v.wire > 0;
    }
    flow::note_behind(heal.views, heal.parent, now);
    for (const std::uint32_t k : flow::find_stuck(heal.views, heal.parent, now, config.stall_timeout))
        heal.fail(k, "took in no data for " + seconds_text(now - std::max(heal.views[k].changed, heal.views[k].behind_since)) +
                         " although " + heal.name_of(heal.parent[k]) + " has bytes for it (its data connection or data plane is stuck; --stall-timeout)");
    if (!config.drop_slow) return;
    const flow::slow_rule rule{heal.best_pace, config.relay.buffer_bytes / 4, config.slow_factor};
    const auto slow = flow::find_slow(heal.flows, heal.parent, live, rule);
    for (std::uint32_t k = 1; k <= n; ++k)
        if (!slow || slow->node != k) heal.slow_since[k] = {};
    if (!slow) return;
    auto& since = heal.slow_since[slow->node];
    if (since == clock::time_point{}) since = now;
    if (now - since < config.slow_timeout) return;
    const std::string why = "held the session back for " + seconds_text(now - since) + ", storing " +
                            rate_text(slow->stored_per_second) + " where the others kept up to " + rate_text(slow->pace) +
                            " (--drop-slow)";
    const std::uint32_t up = heal.parent[slow->node];
    if (const std::uint32_t k = flow::to_blame(*slow, heal.parent, heal.slow_children); k != slow->node) {
        heal.fail(k, "too slow: its children were slow one after the other, the link out of it is: " + heal.name_of(slow->node) +
                         " " + why);
        return;
    }
    if (up != 0) ++heal.slow_children[up];
    heal.fail(slow->node, "too slow: " + why);
}

// SIGINT and SIGTERM. The first stops the session the way a failure does (`act`, which
// changes as it goes): a node before its stream at once, with nothing written, and after it
// with its data plane stopped, the server told why and the caller cleaning up (unmounting,
// removing what it created); the server drops every node that is not done, saying why. The
// handler is then removed, so that a second signal kills at once.
// Declared before the io_context: coroutine frames that the io_context destroys unresumed
// may still touch it (serve's frame clears `act` on its way out).
struct interruption {
    std::optional<error> why;
    std::function<void(const error&)> act;
};


// Nodes the session will not run with are told why; a message this small goes into the
// socket's buffer at once (this runs in a signal's handler, which does not wait).
void refuse_now(std::vector<joined_node>& nodes, const std::string& why) {
    const auto refusal = protocol::encode_message(protocol::refuse{why});
    for (auto& n : nodes) {
        asio::error_code ignored;
        asio::write(n.control, asio::buffer(refusal), ignored);
    }
}

asio::awaitable<result<serve_report>> serve(asio::io_context& io, tcp::acceptor& control, tcp::acceptor& data,
                                            const serve_config& config, admission& state, relay_stats& stats, interruption& stop) {
    struct forget_act {  // what the signal does borrows this frame's locals
        interruption& stop;
        ~forget_act() { stop.act = {}; }
    } forget{stop};
    asio::co_spawn(io, accept_control(control, config, state), asio::detached);
    const std::string why = co_await wait_for_start(config, state, clock::now());
    state.started = true;
    std::vector<joined_node> nodes;
    {
        std::vector<std::string> addresses, names;
        for (const auto& n : state.joined) {
            addresses.push_back(n.address);
            names.push_back(n.name);
        }
        for (std::size_t i : order_nodes(addresses, names, config.order)) nodes.push_back(std::move(state.joined[i]));
    }
    if (config.log) config.log("starting with " + std::to_string(nodes.size()) + " nodes: " + why);
    // Until the stream runs, a signal tells the nodes why and ends the session here.
    stop.act = [&io, &nodes](const error& signal) {
        refuse_now(nodes, "serve was stopped (" + signal.where + ") before the stream started");
        io.stop();
    };
    emit(config, {session_event::kind::started, 0, "", "", "", 0, nodes.size(), why});
    const auto plan = plan_tree(nodes.size(), config.arity);
    const std::string server_address = nodes[0].control.local_endpoint().address().to_string();
    const auto address_of = [&](std::size_t slot) { return slot == 0 ? server_address : nodes[slot - 1].address; };

    // Sessions with a key tag every frame under a key that is new for this stream.
    std::optional<auth::frame_signer> signer;
    protocol::assign base;
    if (config.key) {
        base.stream_nonce = auth::random_nonce();
        signer.emplace(*config.key, base.stream_nonce);
    }
    relay_config source_relay = config.relay;
    source_relay.signer = signer ? &*signer : nullptr;
    auto source_control = relay_control::create();
    if (!source_control) co_return std::move(source_control).error();

    serve_report report;
    report_tally tally{io};
    child_door door;
    door.control = source_control->get();
    data_plane plane{io};
    healing heal{config, nodes, report, door, **source_control, server_address, data.local_endpoint().port(),
                 [&plane] { plane.wake.cancel(); }, {}, {}, {}, {}, false, {}, {}, {}, {}, {}, {}, {}, flow::history{}, 0};
    heal.parent.assign(nodes.size() + 1, 0);
    heal.children.assign(nodes.size() + 1, {});
    heal.failed.assign(nodes.size() + 1, false);
    heal.flows.assign(nodes.size() + 1, flow::history{});
    heal.views.assign(nodes.size() + 1, {});
    heal.slow_since.assign(nodes.size() + 1, {});
    heal.slow_children.assign(nodes.size() + 1, 0);
    heal.relinks.assign(nodes.size() + 1, 0);
    heal.relinked_at.assign(nodes.size() + 1, {});
    for (std::size_t slot = 0; slot <= nodes.size(); ++slot) {
        heal.parent[slot] = static_cast<std::uint32_t>(plan[slot].parent);
        for (std::size_t child : plan[slot].children) heal.children[slot].push_back(static_cast<std::uint32_t>(child));
    }
    // The server's children are let in from now on: a node assigned early may connect while
    // the others are still being told (a slow one can hold this loop for seconds).
    std::vector<std::uint32_t> firsts;
    for (std::size_t child : plan[0].children) {
        firsts.push_back(static_cast<std::uint32_t>(child));
        door.expected[static_cast<std::uint32_t>(child)] = nodes[child - 1].address;
    }
    asio::co_spawn(io, accept_data(data, config.session, config.key, door, config.log), asio::detached);
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        protocol::assign a = base;
        a.node = static_cast<std::uint32_t>(i + 1);
        const std::size_t parent = plan[i + 1].parent;
        a.parent_node = static_cast<std::uint32_t>(parent);
        a.parent_address = address_of(parent);
        a.parent_port = parent == 0 ? data.local_endpoint().port() : nodes[parent - 1].data_port;
        for (std::size_t child : plan[i + 1].children)
            a.children.push_back({static_cast<std::uint32_t>(child), nodes[child - 1].address});
        a.stream_bytes = config.source_bytes;
        a.relay_mode = static_cast<std::uint8_t>(config.relay.mode);
        a.buffer_ahead = config.drop_slow;
        node_report r;
        r.node = a.node;
        r.name = nodes[i].name;
        r.address = nodes[i].address;
        r.parent_address = a.parent_address;
        r.phase_since = clock::now();
        report.nodes.push_back(std::move(r));
        const protocol::message assignment = a;
        // A node lost before the start fails like any other (below, once every reader runs).
        (void)co_await write_message(nodes[i].control, assignment, nodes[i].address);
        emit(config, {session_event::kind::assigned, a.node, nodes[i].name, nodes[i].address, a.parent_address, 0,
                      a.children.size(), ""});
    }
    state.nodes = &report.nodes;
    std::vector<clock::time_point> heard(nodes.size(), clock::now());
    for (std::size_t i = 0; i < nodes.size(); ++i)
        asio::co_spawn(io, collect_reports(nodes[i].control, report.nodes[i], tally, heal, heard[i]), asio::detached);

    if (config.log)
        config.log((config.arity <= 1 ? "chain of " : std::to_string(config.arity) + "-ary tree of ") + std::to_string(nodes.size()) +
                   " nodes assigned, streaming");

    const auto started = clock::now();
    for (auto& r : report.nodes)
        if (r.phase == protocol::node_phase::waiting) enter_phase(config, r, protocol::node_phase::receiving, "");
    plane.start(io, [&config, &source_relay, &stats, &firsts, &source_control] {
        return run_source(config.source_fd, firsts, source_relay, stats, **source_control);
    });
    stop.act = [&source_control](const error&) { (*source_control)->stop(); };  // every node is then dropped, below
    auto next_check = clock::now() + std::chrono::seconds(1);
    while (!plane.outcome) {
        if (heal.outbox.empty())
            co_await plane.wait(std::chrono::milliseconds(std::max<long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                            next_check - clock::now()).count())));
        co_await send_queued(heal);
        if (plane.outcome) break;
        if (clock::now() < next_check) continue;
        next_check = clock::now() + std::chrono::milliseconds(500);
        heal.judge_suspects();
        check_stalls(heal, heard);
        check_flow(heal, stats);
        queue_heartbeats(heal, stats);
        co_await send_queued(heal);
        if (config.on_tick) config.on_tick(stats);
        if (config.on_nodes) config.on_nodes(report.nodes);
        emit(config, {session_event::kind::progress, 0, "", "", "", stats.acked_bytes.load(), nodes.size(), ""});
    }
    heal.stream_done = true;
    data.close();  // no more children: the accept loop ends
    if (!*plane.outcome) {
        // The stream stopped: the nodes will see their connections close and report.
        if (config.log && !stop.why) config.log("stream failed: " + plane.outcome->error().message());
        for (auto& c : door.sockets) c.reset();
        // A node whose parent is this server would wait for bytes that never come: every node
        // not done yet is told why and dropped, so that both sides end now.
        const std::string reason = stop.why ? "serve was interrupted (" + stop.why->message() + ")" : "the server's stream failed";
        for (std::uint32_t k = 1; k <= nodes.size(); ++k) heal.fail(k, reason);
        co_await send_queued(heal);
    } else {
        report.source = **plane.outcome;
    }
    // Interrupted from now on, every node that is not done is dropped at once.
    stop.act = [&heal, &nodes, &tally](const error& signal) {
        for (std::uint32_t k = 1; k <= nodes.size(); ++k) heal.fail(k, "serve was interrupted (" + signal.message() + ")");
        tally.wake.cancel();
    };
    // Every node reports done (or loses its connection) after the stream ends; one that says
    // nothing for report_silence is given up (its reader then ends).
    state.finishing = true;
    for (auto& h : heard) h = std::max(h, clock::now());
    while (tally.settled < nodes.size()) {
        tally.wake.expires_after(std::chrono::seconds(1));
        co_await tally.wake.async_wait(use_result);
        const auto now = clock::now();
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            if (now - heard[i] < config.report_silence) continue;
            heal.fail(static_cast<std::uint32_t>(i + 1),
                      "said nothing for " + std::to_string(config.report_silence.count() / 1000) + " s after the stream ended");
        }
        queue_heartbeats(heal, stats);
        co_await send_queued(heal);
        if (config.on_nodes) config.on_nodes(report.nodes);
    }
    report.wall = clock::now() - started;
    // Late nodes are refused until here; now nobody is let in any more.
    control.close();
    const protocol::message release = protocol::release{};
    asio::steady_timer spacing{io};
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        if (heal.failed[i + 1]) continue;
        if (i > 0 && config.stagger.count() > 0 && !stop.why) {
            // The nodes still waiting hear from the server every second meanwhile: a node
            // gives up on a server that is silent for 15 s, and a long --stagger is not that.
            // Interrupted, the rest are released at once (they are done).
            const auto until = clock::now() + config.stagger;
            while (clock::now() < until && !stop.why) {
                spacing.expires_at(std::min(until, clock::now() + std::chrono::seconds(1)));
                co_await spacing.async_wait(use_result);
                queue_heartbeats(heal, stats, static_cast<std::uint32_t>(i + 1));  // the released ones are closed
                co_await send_queued(heal);
            }
        }
        co_await write_message(nodes[i].control, release, nodes[i].address);
        nodes[i].control.close();
        emit(config, {session_event::kind::released, report.nodes[i].node, nodes[i].name, nodes[i].address, "", 0, 0, ""});
    }
    for (auto& n : nodes) n.control.close();
    // Closing ends every reader still waiting; they borrow `nodes`, `report`, `heal` and `tally`.
    co_await wait_for_reports(tally, nodes.size(), clock::time_point::max());
    co_return report;
}

template <class T>
asio::awaitable<void> store_outcome(asio::awaitable<result<T>> task, std::optional<result<T>>* outcome) {
    *outcome = co_await std::move(task);
}

// Runs `task` on `io` until it completes, or until someone stops `io` (then: nothing).
template <class T>
std::optional<result<T>> run_until_stopped(asio::io_context& io, asio::awaitable<result<T>> task) {
    std::optional<result<T>> outcome;
    asio::co_spawn(io, store_outcome(std::move(task), &outcome), [&io](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);  // a bug: only cli/main.cpp catches
        io.stop();
    });
    io.run();
    return outcome;
}

// Runs `task` on `io` with SIGINT and SIGTERM handled by `stop`: the result of `task`, or the
// signal when `stop.act` stopped `io` before `task` completed.
template <class T>
result<T> run_interruptible(asio::io_context& io, interruption& stop, const log_fn& log, asio::awaitable<result<T>> task) {
    asio::signal_set signals{io, SIGINT, SIGTERM};
    signals.async_wait([&signals, &stop, log](const asio::error_code& ec, int number) {
        if (ec) return;
        stop.why = session_error(session_errc::interrupted, number == SIGINT ? "SIGINT" : "SIGTERM");
        asio::error_code ignored;
        signals.clear(ignored);
        if (log) log(stop.why->where + ": stopping (a second signal kills at once)");
        if (stop.act) stop.act(*stop.why);
    });
    auto outcome = run_until_stopped(io, std::move(task));
    if (!outcome) return *stop.why;
    return *std::move(outcome);
}

// Runs `task` to completion on `io` and returns its result.
template <class T>
result<T> run_to_completion(asio::io_context& io, asio::awaitable<result<T>> task) {
    auto outcome = run_until_stopped(io, std::move(task));
    KACLONE_ASSERT(outcome.has_value());
    return *std::move(outcome);
}

// ---------------------------------------------------------------- node

struct broadcast_target {
    std::string interface;
    udp::endpoint endpoint;
};

// Where to ask: the broadcast address of every IPv4 interface that is up, and loopback
// (a server on this very host).
std::vector<broadcast_target> broadcast_targets() {
    std::vector<broadcast_target> targets;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) == 0) {
        for (ifaddrs* i = list; i != nullptr; i = i->ifa_next) {
            if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
            if ((i->ifa_flags & IFF_BROADCAST) && i->ifa_broadaddr != nullptr) {
                const auto* b = reinterpret_cast<const sockaddr_in*>(i->ifa_broadaddr);
                targets.push_back({i->ifa_name, {asio::ip::address_v4(ntohl(b->sin_addr.s_addr)), protocol::discovery_port}});
            }
        }
        ::freeifaddrs(list);
    }
    targets.push_back({"lo", {asio::ip::address_v4::loopback(), protocol::discovery_port}});
    return targets;
}

}  // namespace

result<server_address> parse_server(std::string_view text) {
    const auto bad = [&](const std::string& why) {
        return error{std::make_error_code(std::errc::invalid_argument), "--server '" + std::string(text) + "': " + why};
    };
    server_address out;
    std::string_view port;
    bool has_port = false;
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string_view::npos) return bad("no ']' after the IPv6 address");
        out.host = std::string(text.substr(1, close - 1));
        const std::string_view rest = text.substr(close + 1);
        if (!rest.empty() && !rest.starts_with(':')) return bad("expected :PORT after ']'");
        has_port = !rest.empty();
        if (has_port) port = rest.substr(1);
    } else if (const auto colon = text.find(':'); colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
        out.host = std::string(text.substr(0, colon));
        port = text.substr(colon + 1);
        has_port = true;
    } else {
        out.host = std::string(text);  // a name, an IPv4 address, or a bare IPv6 address
    }
    if (out.host.empty()) return bad("no host (expected HOST or HOST:PORT)");
    if (has_port) {
        const auto value = parse_whole(port, 1, 65535);
        if (!value) return bad("port '" + std::string(port) + "' is not a number 1..65535");
        out.port = static_cast<std::uint16_t>(*value);
    }
    return out;
}

namespace {

// Where and how to find a session's server (join and go alike).
struct find_config {
    const std::string& session;
    const std::string& server;
    unsigned retries;
    const log_fn& log;
};

asio::awaitable<result<tcp::endpoint>> discover(asio::io_context& io, find_config config) {
    std::string host;
    if (!config.server.empty()) {
        auto parsed = parse_server(config.server);
        if (!parsed) co_return std::move(parsed).error();
        host = parsed->host;
        if (parsed->port) {  // --server HOST:PORT: no discovery at all
            tcp::resolver resolver{io};
            auto [ec, found] = co_await resolver.async_resolve(host, std::to_string(*parsed->port), use_result);
            if (ec || found.empty()) co_return net_error(ec, "resolve --server " + config.server);
            co_return found.begin()->endpoint();
        }
    }
    std::vector<broadcast_target> targets;
    if (!host.empty()) {
        udp::resolver resolver{io};
        const std::string port = std::to_string(protocol::discovery_port);
        auto [ec, found] = co_await resolver.async_resolve(udp::v4(), host, port, use_result);
        if (ec || found.empty()) co_return net_error(ec, "resolve --server " + host);
        targets.push_back({host, found.begin()->endpoint()});
    } else {
        targets = broadcast_targets();
    }
    udp::socket socket{io, udp::endpoint{udp::v4(), 0}};
    socket.set_option(asio::socket_base::broadcast(true));
    const auto ask = protocol::encode_discovery({protocol::discovery::kind::ask, protocol::version, config.session, 0});
    std::array<std::byte, 1500> datagram{};
    auto wait = std::chrono::milliseconds(500);
    for (unsigned attempt = 1; attempt <= config.retries; ++attempt) {
        for (const auto& t : targets) co_await socket.async_send_to(asio::buffer(ask), t.endpoint, use_result);
        asio::steady_timer timer{io, wait};
        for (;;) {
            udp::endpoint from;
            auto got = co_await (socket.async_receive_from(asio::buffer(datagram), from, use_result) || timer.async_wait(use_result));
            if (got.index() == 1) break;
            auto [ec, n] = std::get<0>(got);
            if (ec) break;
            auto answer = protocol::decode_discovery(std::span(datagram.data(), n), from.address().to_string());
            if (!answer || answer->what != protocol::discovery::kind::answer || answer->session != config.session) continue;
            if (answer->version != protocol::version)
                co_return error{make_error_code(protocol::errc::version_mismatch),
                                "the server of session '" + config.session + "' at " + from.address().to_string() +
                                    " speaks protocol " + std::to_string(answer->version) + ", this kaclone speaks " +
                                    std::to_string(protocol::version)};
            co_return tcp::endpoint{from.address(), answer->control_port};
        }
        if (config.log && attempt < config.retries)
            config.log("no answer for session '" + config.session + "' yet (attempt " + std::to_string(attempt) + " of " +
                       std::to_string(config.retries) + ")");
        wait = std::min(wait * 2, std::chrono::milliseconds(4000));
    }
    std::string asked;
    for (const auto& t : targets) {
        const std::string address = t.endpoint.address().to_string();
        asked += (asked.empty() ? "" : ", ") + (t.interface == address ? address : t.interface + " " + address);
    }
    co_return session_error(session_errc::no_server, "no server for session '" + config.session + "' answered after " +
                                                         std::to_string(config.retries) + (config.retries == 1 ? " attempt" : " attempts") + " (asked " + asked + ")");
}

// Where a node takes its stream from: its parent now (node 0 is the server).
struct parent_target {
    std::uint32_t node = 0;
    std::string address;
    std::uint16_t port = 0;
};

// A data connection to `to`, accepted there: says who this node is and where it resumes
// (`hello`), proves the key, reads the answer. 3 s to connect, 5 s per answer: a parent that
// does not answer is failed by the server meanwhile and this node moved on.
asio::awaitable<result<tcp::socket>> connect_parent(asio::io_context& io, const parent_target& to, const protocol::data_hello& hello,
                                                    const std::optional<auth::session_key>& key) {
    asio::error_code bad;
    const auto address = asio::ip::make_address(to.address, bad);
    if (bad) co_return net_error(bad, "parent address " + to.address);
    const tcp::endpoint parent{address, to.port};
    const std::string peer = "parent " + endpoint_text(parent);
    tcp::socket socket{io};
    asio::steady_timer timer{io, std::chrono::seconds(3)};
    auto got = co_await (socket.async_connect(parent, use_result) || timer.async_wait(use_result));
    if (got.index() == 1) co_return session_error(session_errc::timeout, "connect to " + peer);
    if (auto [ec] = std::get<0>(got); ec) co_return net_error(ec, "connect to " + peer);
    const std::string session = hello.session;
    const protocol::message said = hello;
    auto w = co_await write_message(socket, said, peer);
    if (!w) co_return std::move(w).error();
    auto proved = co_await give_proof(socket, peer, key, session, role::data_child, role::data_parent, std::chrono::seconds(5));
    if (!proved && proved.error().code == protocol::errc::unknown_type)
        co_return session_error(session_errc::refused, peer + " refused this node as its child (not expecting it yet)");
    if (!proved) co_return std::move(proved).error();
    auto m = co_await read_message(socket, peer, std::chrono::seconds(5));
    if (!m) co_return std::move(m).error();
    const auto* accept = std::get_if<protocol::data_accept>(&*m);
    if (accept == nullptr || !accept->ok)
        co_return session_error(session_errc::refused, peer + ": " + (accept ? accept->reason : "unexpected answer"));
    socket.set_option(tcp::no_delay(true), bad);
    co_return std::move(socket);
}

// The session's server, found (discover) and connected to on its control port within 10 s.
struct server_link {
    tcp::socket control;
    std::string text;  // "server HOST:PORT", for messages
};

asio::awaitable<result<server_link>> reach_server(asio::io_context& io, find_config config) {
    auto server = co_await discover(io, config);
    if (!server) co_return std::move(server).error();
    server_link link{tcp::socket{io}, "server " + endpoint_text(*server)};
    asio::steady_timer timer{io, std::chrono::seconds(10)};
    auto got = co_await (link.control.async_connect(*server, use_result) || timer.async_wait(use_result));
    if (got.index() == 1) co_return session_error(session_errc::timeout, "connect to " + link.text);
    if (auto [ec] = std::get<0>(got); ec) co_return net_error(ec, "connect to " + link.text);
    co_return std::move(link);
}

// Sends what `status` gathered since the last call, in order: log lines (in messages of at
// most max_log_bytes, a line cut at 4000 bytes) and phase changes.
asio::awaitable<void> send_status(tcp::socket& control, node_status* status, const std::string& server_text) {
    if (status == nullptr) co_return;
    protocol::log_lines batch;
    std::size_t batch_bytes = 0;
    auto flush = [&]() -> asio::awaitable<void> {
        if (batch.lines.empty()) co_return;
        const protocol::message m = std::move(batch);
        batch = {};
        batch_bytes = 0;
        co_await write_message(control, m, server_text);
    };
    for (auto& e : status->take()) {
        if (auto* line = std::get_if<std::string>(&e)) {
            if (line->size() > 4000) line->resize(4000);
            if (batch_bytes + line->size() + 2 > protocol::max_log_bytes || batch.lines.size() == 1000) co_await flush();
            batch_bytes += line->size() + 2;
            batch.lines.push_back(std::move(*line));
        } else {
            co_await flush();
            const protocol::message m = std::get<protocol::phase>(std::move(e));
            co_await write_message(control, m, server_text);
        }
    }
    co_await flush();
}

// A node's running session, shared by its coroutines (each holds it) and the data plane's
// events (posted into the io_context).
struct node_run : std::enable_shared_from_this<node_run> {
    node_run(asio::io_context& io, tcp::socket server) : control(std::move(server)), data(io, tcp::endpoint{tcp::v4(), 0}), wake(io) {}
    // Something below changed: the main loop looks at once.
    void poke() {
        dirty = true;
        wake.cancel();
    }

    tcp::socket control;  // to the server
    tcp::acceptor data;   // for children
    asio::steady_timer wake;
    bool dirty = false;
    child_door door;
    std::unique_ptr<relay_control> relay;
    std::deque<relay_event> events;          // from the data plane, not handled yet
    std::optional<parent_target> moved_to;   // the parent to take the stream from next
    std::optional<result<tcp::socket>> connected;  // a parent connection attempt's outcome
    bool connecting = false;
    parent_target trying;   // the parent of that attempt
    unsigned attempts = 0;  // in a row to `trying`
    clock::time_point retry_at{};
    bool attached = false;         // the data plane has a parent connection
    bool detach_asked = false;     // and was asked to give it up
    std::uint32_t parent_node = 0;
    std::string parent_address;  // "" before the first
    relay_event resume_at{relay_event::kind::parent_detached, 0, 0, 0, 0, ""};  // where the stream resumes (wire, acked)
    std::vector<unique_fd> parents;  // every parent connection: open until the session ends
    bool released = false;
    bool server_gone = false;
    std::string dropped;  // the server's reason when it cut this node off
    std::optional<error> gave_up;  // why this node stopped on its own (it reports it)
    bool blamed_parent = false;    // reported a parent it could not reach, and reached none since
    clock::time_point server_heard = clock::now();  // the server says something every second

    // A server not heard for 15 s is gone for this node (its host, or this node's link, is
    // down: no reset ever comes): the node stops and fails.
    void check_server() {
        if (released || server_gone || clock::now() - server_heard < std::chrono::seconds(15)) return;
        server_gone = true;
        if (dropped.empty()) dropped = "no word from the server for 15 s (its host or this node's link is down)";
        relay->stop();
    }
    void give_up(error why) {
        if (gave_up || !dropped.empty()) return;
        gave_up = std::move(why);
        relay->stop();
    }
};

// Reads the server's messages for the whole session: a new parent, the children of a failed
// child, the release; a refusal (the server dropped this node) or a lost connection stops the
// data plane.
asio::awaitable<void> read_server(std::shared_ptr<node_run> run, std::string server_text) {
    for (;;) {
        auto m = co_await read_message(run->control, server_text, forever);
        if (!m) {
            run->server_gone = true;
            if (!run->released && run->dropped.empty()) {
                run->dropped = "lost the control connection to the " + server_text + ": " + m.error().message();
                run->relay->stop();
            }
            break;
        }
        run->server_heard = clock::now();
        if (auto* r = std::get_if<protocol::reparent>(&*m)) {
            run->moved_to = parent_target{r->parent_node, r->parent_address, r->parent_port};
        } else if (auto* a = std::get_if<protocol::adopt>(&*m)) {
            run->door.expected.erase(a->lost);
            std::vector<std::uint32_t> ids;
            for (const auto& c : a->children) {
                run->door.expected[c.node] = c.address;
                ids.push_back(c.node);
            }
            run->relay->replace_child(a->lost, std::move(ids));
        } else if (std::holds_alternative<protocol::release>(*m)) {
            run->released = true;
        } else if (auto* refused = std::get_if<protocol::refuse>(&*m)) {
            run->dropped = "the server dropped this node from the session: " + refused->reason;
            run->relay->stop();
        }
        run->poke();
    }
    run->poke();
}

asio::awaitable<void> try_parent(std::shared_ptr<node_run> run, asio::io_context& io, parent_target to, protocol::data_hello hello,
                                 const std::optional<auth::session_key>& key) {
    auto got = co_await connect_parent(io, to, hello, key);
    run->connected.emplace(std::move(got));
    run->poke();
}

asio::awaitable<void> accept_children(std::shared_ptr<node_run> run, const std::string& session,
                                      const std::optional<auth::session_key>& key, log_fn log) {
    co_await accept_data(run->data, session, key, run->door, log);
}

// The node's side of healing, each time something changed: the data plane's events become
// reports to the server; a new parent is connected once the data plane has given up the old
// one (resuming at the wire byte it has); after the stream (`stream_over`) a new parent is
// only told that this subtree is complete. Returns messages for the server.
std::vector<protocol::message> tend_parent(node_run& run, asio::io_context& io, const join_config& config, std::uint32_t node,
                                           bool stream_over, bool stream_ok) {
    run.check_server();
    std::vector<protocol::message> out;
    for (const relay_event& e : std::exchange(run.events, {})) {
        if (e.what == relay_event::kind::child_lost) {
            out.push_back(protocol::peer_lost{e.node, e.offset, e.reason});
            continue;
        }
        run.attached = false;
        run.resume_at = e;
        // Reported only when it broke by itself while this node was not moving away: after a
        // detach_parent the parent may be a new one already, which is not to be blamed.
        if (e.requested) run.detach_asked = false;
        else if (!run.detach_asked) out.push_back(protocol::peer_lost{run.parent_node, e.offset, e.reason});
    }
    if (run.connected) {
        auto got = std::move(*run.connected);
        run.connected.reset();
        run.connecting = false;
        if (!got && !run.moved_to) {
            // A new parent may not have been told to expect this node yet: try again, about
            // once a second, before reporting it.
            if (++run.attempts < 5) {
                run.moved_to = run.trying;
                run.retry_at = clock::now() + std::chrono::milliseconds(500);
            } else if (run.parent_node != 0 && !run.blamed_parent) {
                // Its parent is failed and this node moves on to the next one up. Once only: a
                // node that cannot reach a second parent either (nor ever the server) is the
                // one cut off, and fails itself rather than take its ancestors down one by one.
                run.blamed_parent = true;
                out.push_back(protocol::peer_lost{run.parent_node, run.resume_at.offset, got.error().message()});
            } else {
                run.give_up(error{got.error().code, "no data connection to " +
                                                        (run.parent_node == 0 ? std::string("the server")
                                                                              : "parent node " + std::to_string(run.parent_node)) +
                                                        " after 5 attempts (" + got.error().where + ")"});
            }
        } else if (got && !run.moved_to) {  // else a newer parent is to be used: this one is dropped
            run.attempts = 0;
            run.blamed_parent = false;  // reached: a later parent it cannot reach is news again
            auto fd = hand_over(*got, run.parent_address);
            if (!fd) out.push_back(protocol::peer_lost{run.parent_node, run.resume_at.offset, fd.error().message()});
            else {
                run.parents.push_back(*std::move(fd));
                if (!stream_over) {
                    run.relay->attach_parent(run.parents.back().get());
                    run.attached = true;
                }
            }
        }
    }
    if (run.moved_to && !run.connecting && !(stream_over && !stream_ok) && clock::now() >= run.retry_at) {
        if (run.attached && !stream_over) {
            if (!run.detach_asked) run.relay->detach_parent();  // answered by parent_detached
            run.detach_asked = true;
        } else {
            const parent_target to = *std::move(run.moved_to);
            run.moved_to.reset();
            if (to.address != run.trying.address || to.port != run.trying.port) run.attempts = 0;
            run.trying = to;
            if (config.log && !run.parent_address.empty() && run.attempts == 0)
                config.log((to.address == run.parent_address ? "the data connection to parent " + run.parent_address + " broke; "
                                                             : "parent " + run.parent_address + " failed; ") +
                           (stream_over ? "telling " + to.address + " that this node has the whole stream"
                                        : "resuming from " + to.address + " at wire byte " + std::to_string(run.resume_at.wire)));
            run.parent_node = to.node;
            run.parent_address = to.address;
            protocol::data_hello hello{config.session, node, run.resume_at.wire, run.resume_at.acked, stream_over};
            run.connecting = true;
            asio::co_spawn(io, try_parent(run.shared_from_this(), io, to, std::move(hello), config.key), asio::detached);
        }
    }
    return out;
}

// Sends `messages` and the progress heartbeat (once a second, also while the node works
// after the stream: the server fails a node that stays silent) and the status.
// g++ 12: callers pass named variables (no temporaries in the co_await expression).
asio::awaitable<void> report_to_server(node_run& run, const join_config& config, const relay_stats& stats,
                                       const std::vector<protocol::message>& messages, const std::string& server_text) {
    for (const auto& m : messages) co_await write_message(run.control, m, server_text);
    const protocol::message progress = progress_of(stats);
    co_await write_message(run.control, progress, server_text);
    co_await send_status(run.control, config.status, server_text);
}

asio::awaitable<result<join_report>> join(asio::io_context& io, const join_config& config, relay_stats& stats, interruption& stop) {
    auto link = co_await reach_server(io, {config.session, config.server, config.retries, config.log});
    if (!link) co_return std::move(link).error();
    const std::string server_text = link->text;
    auto run = std::make_shared<node_run>(io, std::move(link->control));
    tcp::socket& control = run->control;
    const protocol::message hello = protocol::hello{config.session, host_name(), run->data.local_endpoint().port()};
    auto said = co_await write_message(control, hello, server_text);
    if (!said) co_return std::move(said).error();
    auto proved = co_await give_proof(control, server_text, config.key, config.session, role::control_node, role::control_server,
                                      std::chrono::seconds(10));
    if (!proved) co_return std::move(proved).error();
    if (config.log) config.log("joined session '" + config.session + "' at " + server_text + ", waiting for the start");
    co_await send_status(control, config.status, server_text);

    auto m = co_await read_message(control, server_text, forever);
    if (!m && m.error().code == asio::error::eof)
        co_return error{m.error().code, server_text + " closed the connection before the session started"};
    if (!m) co_return std::move(m).error();
    if (auto* r = std::get_if<protocol::refuse>(&*m)) co_return session_error(session_errc::refused, r->reason);
    const auto* a = std::get_if<protocol::assign>(&*m);
    if (a == nullptr) co_return error{make_error_code(protocol::errc::unknown_type), server_text + ": expected an assignment"};
    const protocol::assign assignment = *a;
    if (assignment.relay_mode > static_cast<std::uint8_t>(relay_mode::zerocopy))
        co_return error{make_error_code(protocol::errc::bad_field),
                        server_text + ": unknown relay mode " + std::to_string(assignment.relay_mode) + " in the assignment"};
    if (config.on_event)
        config.on_event({session_event::kind::assigned, assignment.node, host_name(), "", assignment.parent_address, 0,
                         assignment.children.size(), ""});
    local_sink sink = config.sink;
    if (config.open_sink) {
        auto opened = config.open_sink();
        if (!opened) co_return std::move(opened).error();
        sink = *opened;
    }

    auto relay_control = relay_control::create();
    if (!relay_control) co_return std::move(relay_control).error();
    run->relay = *std::move(relay_control);
    run->relay->on_event([&io, weak = std::weak_ptr<node_run>(run)](const relay_event& e) {
        asio::post(io, [weak, e] {
            if (auto r = weak.lock()) {
                r->events.push_back(e);
                r->poke();
            }
        });
    });
    run->door.control = run->relay.get();
    stop.act = [weak = std::weak_ptr<node_run>(run)](const error& why) {
        if (auto r = weak.lock()) {
            r->give_up(why);
            r->poke();
        }
    };
    std::vector<std::uint32_t> children;
    for (const auto& c : assignment.children) {
        run->door.expected[c.node] = c.address;
        children.push_back(c.node);
    }
    run->moved_to = parent_target{assignment.parent_node, assignment.parent_address, assignment.parent_port};
    asio::co_spawn(io, accept_children(run, config.session, config.key, config.log), asio::detached);
    asio::co_spawn(io, read_server(run, server_text), asio::detached);

    relay_config relay = config.relay;
    relay.mode = static_cast<relay_mode>(assignment.relay_mode);
    relay.buffer_ahead = assignment.buffer_ahead;
    std::optional<auth::frame_signer> signer;
    if (config.key) signer.emplace(*config.key, assignment.stream_nonce);
    relay.signer = signer ? &*signer : nullptr;
    const auto started = clock::now();
    data_plane plane{io};
    // A phase or log line set by the node's work is sent at once, not at the next tick.
    if (config.status != nullptr) config.status->on_change([&io, weak = std::weak_ptr<node_run>(run)] {
        asio::post(io, [weak] {
            if (auto r = weak.lock()) r->poke();
        });
    });
    plane.start(io, [&, relay, children, sink] { return run_relay(children, sink, relay, stats, *run->relay); });
    plane.on_done = [&run] { run->poke(); };
    // Waits up to 1 s for something to change.
    const auto pause = [&run]() -> asio::awaitable<void> {
        if (std::exchange(run->dirty, false)) co_return;
        run->wake.expires_after(std::chrono::seconds(1));
        co_await run->wake.async_wait(use_result);
        run->dirty = false;
    };
    run->poke();  // connect to the parent at once
    auto last_beat = clock::now();
    while (!plane.outcome) {
        co_await pause();
        if (plane.outcome) break;
        auto out = tend_parent(*run, io, config, assignment.node, false, false);
        if (out.empty() && clock::now() - last_beat < std::chrono::milliseconds(900)) {
            co_await send_status(control, config.status, server_text);
            continue;
        }
        last_beat = clock::now();
        if (config.on_tick) config.on_tick(stats);
        if (config.on_event)
            config.on_event({session_event::kind::progress, assignment.node, "", "", "", stats.stored_bytes.load(), 0, ""});
        co_await report_to_server(*run, config, stats, out, server_text);
    }
    const bool stream_ok = plane.outcome->has_value();
    // Stopped by give_up (not by a failure of its own): the reason is give_up's.
    const bool stopped = !stream_ok && plane.outcome->error().code == std::errc::operation_canceled;
    const std::optional<error> gave_up = stopped ? run->gave_up : std::nullopt;
    // The node's own work after the stream (extraction's end, fixups); it keeps reporting.
    std::optional<error> after_failed;
    if (stream_ok && config.after_stream) {
        background<void> after{io};
        after.on_done = [&run] { run->poke(); };
        after.start(io, [&config] { return config.after_stream(); });
        while (!after.outcome) {
            co_await pause();
            auto out = tend_parent(*run, io, config, assignment.node, true, true);
            co_await report_to_server(*run, config, stats, out, server_text);
        }
        if (!*after.outcome) after_failed = after.outcome->error();
    }
    if (config.status != nullptr) config.status->on_change({});
    const auto wall = clock::now() - started;
    protocol::done d;
    d.ok = stream_ok && !after_failed && !gave_up;
    d.seconds = std::chrono::duration<double>(wall).count();
    if (d.ok) {
        d.stored_bytes = (*plane.outcome)->bytes;
        d.digest = (*plane.outcome)->digest;
    } else {
        d.stored_bytes = stats.stored_bytes.load();
        // The data plane's own error, unless it only stopped because the server dropped this
        // node or the node gave up.
        d.message = after_failed                       ? after_failed->message()
                    : gave_up                          ? gave_up->message()
                    : stopped && !run->dropped.empty() ? run->dropped
                                                       : plane.outcome->error().message();
    }
    auto out = tend_parent(*run, io, config, assignment.node, true, d.ok);
    // A server that dropped this node, or is gone, reads nothing more: no report is sent (a
    // write into a connection the server has closed could wait for its 10 s timeout).
    if (run->dropped.empty() && !run->server_gone) {
        co_await report_to_server(*run, config, stats, out, server_text);
        const protocol::message done_message = d;
        co_await write_message(control, done_message, server_text);
    }
    std::optional<error> failure;
    if (after_failed) failure = *std::move(after_failed);
    else if (gave_up) failure = *gave_up;
    else if (stopped && !run->dropped.empty()) failure = session_error(session_errc::refused, run->dropped);
    else if (!d.ok) failure = std::move(*plane.outcome).error();
    // Until the release (the server closes the connection after it) this node may still be
    // given a new parent, to tell it that this subtree has everything.
    while (!failure && !run->released && !run->server_gone && !run->gave_up) {
        co_await pause();
        (void)tend_parent(*run, io, config, assignment.node, true, true);
    }
    // A signal after the stream (during the node's own work, which ends first, or while it
    // waits for the release): the node has reported what it did, and stops now.
    if (!failure && !run->released && run->gave_up) failure = *run->gave_up;
    asio::error_code ignored;
    run->data.close(ignored);
    run->control.close(ignored);
    if (failure) co_return *std::move(failure);
    if (!run->released) co_return session_error(session_errc::refused, run->dropped.empty() ? "the server went away before the release" : run->dropped);
    if (config.on_event) config.on_event({session_event::kind::released, assignment.node, "", "", "", 0, 0, ""});
    co_return join_report{**plane.outcome, assignment.node, assignment.parent_address, wall};
}

// An operator's question (go, status) and the server's answer: connect, ask, prove the key,
// read one message. A refusal is an error with the server's reason.
asio::awaitable<result<protocol::message>> ask_server(asio::io_context& io, const go_config& config, protocol::message question) {
    auto link = co_await reach_server(io, {config.session, config.server, config.retries, config.log});
    if (!link) co_return std::move(link).error();
    tcp::socket& control = link->control;
    const std::string server_text = link->text;
    auto said = co_await write_message(control, question, server_text);
    if (!said) co_return std::move(said).error();
    auto proved = co_await give_proof(control, server_text, config.key, config.session, role::control_node, role::control_server,
                                      std::chrono::seconds(10));
    if (!proved) co_return std::move(proved).error();
    // The one answer that may be large: a status (the server it came from proved the key, or
    // the session is open); every other read holds the peer to max_message_body_bytes.
    auto m = co_await read_message(control, server_text, std::chrono::seconds(10), protocol::max_status_body_bytes);
    if (!m) co_return std::move(m).error();
    if (auto* r = std::get_if<protocol::refuse>(&*m)) co_return session_error(session_errc::refused, r->reason);
    co_return std::move(*m);
}

asio::awaitable<result<std::uint32_t>> go(asio::io_context& io, const go_config& config) {
    protocol::message question = protocol::go{config.session};  // g++ 12: no temporaries in co_await
    auto m = co_await ask_server(io, config, std::move(question));
    if (!m) co_return std::move(m).error();
    const auto* a = std::get_if<protocol::go_answer>(&*m);
    if (a == nullptr) co_return error{make_error_code(protocol::errc::unknown_type), "the server did not answer go"};
    if (!a->ok) co_return session_error(session_errc::refused, a->reason);
    co_return a->nodes;
}

asio::awaitable<result<protocol::status_answer>> status(asio::io_context& io, const go_config& config) {
    protocol::message question = protocol::status_ask{config.session};  // g++ 12: no temporaries in co_await
    auto m = co_await ask_server(io, config, std::move(question));
    if (!m) co_return std::move(m).error();
    auto* a = std::get_if<protocol::status_answer>(&*m);
    if (a == nullptr) co_return error{make_error_code(protocol::errc::unknown_type), "the server did not answer the status question"};
    co_return std::move(*a);
}

}  // namespace

void node_status::set_phase(protocol::node_phase what, std::string detail) { add(protocol::phase{what, std::move(detail)}); }
void node_status::log(std::string line) { add(std::move(line)); }
void node_status::add(entry e) {
    std::function<void()> wake;
    {
        const std::lock_guard lock{mutex_};
        if (pending_.empty()) wake = wake_;
        pending_.push_back(std::move(e));
    }
    if (wake) wake();
}
std::vector<node_status::entry> node_status::take() {
    const std::lock_guard lock{mutex_};
    return std::exchange(pending_, {});
}
void node_status::on_change(std::function<void()> wake) {
    const std::lock_guard lock{mutex_};
    wake_ = std::move(wake);
}

const std::error_category& session_category() noexcept {
    static const enum_category<session_errc> instance{"kaclone.session", describe};
    return instance;
}
std::error_code make_error_code(session_errc e) noexcept { return {static_cast<int>(e), session_category()}; }

result<serve_report> serve_session(const serve_config& config, relay_stats& stats) {
    interruption stop;
    asio::io_context io;
    asio::error_code ec;
    tcp::acceptor control{io};
    control.open(tcp::v4());
    control.set_option(tcp::acceptor::reuse_address(true));
    control.bind({tcp::v4(), config.port}, ec);
    if (ec) return net_error(ec, "listen on control port " + std::to_string(config.port));
    control.listen();
    tcp::acceptor data{io, tcp::endpoint{tcp::v4(), 0}};
    local_datagram::socket local{io};
    local.open();
    if (config.session.size() <= 80) {
        local.bind(local_datagram::endpoint(local_discovery_name(config.session)), ec);
        if (ec == asio::error::address_in_use)
            return error{ec, "session '" + config.session + "' is already being served on this host"};
    }
    udp::socket discovery{io};
    discovery.open(udp::v4());
    discovery.set_option(udp::socket::reuse_address(true));
    discovery.bind({udp::v4(), protocol::discovery_port}, ec);
    if (ec) return net_error(ec, "listen for discovery on UDP port " + std::to_string(protocol::discovery_port));
    if (!config.key && config.log)
        config.log("session '" + config.session + "' runs without a key: any host on this network can join it, start it or "
                   "read its stream (use --key FILE)");
    if (config.log)
        config.log("session '" + config.session + "' waiting for " + std::to_string(config.nodes) +
                   " nodes (control port " + std::to_string(control.local_endpoint().port()) + ")");
    const std::uint16_t control_port = control.local_endpoint().port();
    asio::co_spawn(io, answer_discovery(discovery, local, config.session, control_port, config.log), asio::detached);
    asio::co_spawn(io, answer_forwarded(discovery, local, config.session, control_port, config.log), asio::detached);
    admission state{io};
    // Until serve() has assigned the nodes: the joined ones are told why, and the session ends here.
    stop.act = [&io, &state](const error& why) {
        refuse_now(state.joined, "serve was stopped (" + why.where + ") before the session started");
        io.stop();
    };
    return run_interruptible(io, stop, config.log, serve(io, control, data, config, state, stats, stop));
}

result<join_report> join_session(const join_config& config, relay_stats& stats) {
    interruption stop;
    asio::io_context io;
    stop.act = [&io](const error&) { io.stop(); };  // until join() has a stream to stop
    return run_interruptible(io, stop, config.log, join(io, config, stats, stop));
}

result<std::uint32_t> start_session(const go_config& config) {
    asio::io_context io;
    return run_to_completion(io, go(io, config));
}

result<protocol::status_answer> session_status(const go_config& config) {
    asio::io_context io;
    return run_to_completion(io, status(io, config));
}

}  // namespace kaclone
