// The data plane of one node on io_uring: receive, verify, store, forward, acknowledge, and
// keep what the subtree has not acknowledged, so that the children of a failed node can
// resume here.
//
// Every node runs one event loop on a thread of its own: it keeps at most one operation of
// each kind in flight per connection (one send per socket, so bytes never reorder), submits
// whatever can go, waits for a completion and handles it. All memory an SQE points at lives
// in the node object until the CQE is reaped; on error or stop the loop cancels everything
// and reaps it all before the node (and its ring) goes away.
//
// Positions: the ring's positions are wire positions. Every node commits every byte it
// receives, frames included, and forwards the same bytes, so "wire byte W" means the same on
// every node of the session: a node whose parent failed resumes at the wire byte it has.
#include <kaclone/relay.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <list>
#include <optional>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kaclone/ring_buffer.hpp>

#include "../net/uring.hpp"

namespace kaclone {

// ---------------------------------------------------------------- relay_control

result<std::unique_ptr<relay_control>> relay_control::create() {
    const int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) return last_sys_error("create the data plane's wake eventfd");
    return std::unique_ptr<relay_control>(new relay_control(unique_fd{fd}));
}

void relay_control::push(command c) {
    {
        const std::lock_guard lock{mutex_};
        pending_.push_back(std::move(c));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_.get(), &one, sizeof one);  // only fails if 2^64 - 1 are pending
}

void relay_control::attach_child(child c) { push(c); }
void relay_control::replace_child(std::uint32_t lost, std::vector<std::uint32_t> instead) { push(replace{lost, std::move(instead)}); }
void relay_control::attach_parent(int fd) { push(parent{fd}); }
void relay_control::detach_parent() { push(parent{-1}); }
void relay_control::stop() { push(halt{}); }
void relay_control::on_event(event_fn fn) {
    const std::lock_guard lock{mutex_};
    on_event_ = std::move(fn);
}

std::vector<relay_control::command> relay_control::take() {
    const std::lock_guard lock{mutex_};
    return std::exchange(pending_, {});
}

void relay_control::emit(const relay_event& e) const {
    event_fn fn;
    {
        const std::lock_guard lock{mutex_};
        fn = on_event_;
    }
    if (fn) fn(e);
}

namespace {

using protocol::frame_header_bytes;

// What a completion belongs to (its user_data).
enum class op : std::uint64_t {
    wake,         // read of the control's eventfd: commands are waiting
    parent_in,    // recv from the parent (ring mode), or poll it for bytes (splice mode)
    child_out,    // send/send_zc ring -> child
    child_poll,   // splice mode: poll the piped child for room
    sink_write,   // write ring -> local sink
    sink_poll,    // splice mode, a pipe sink: poll it for room
    source_read,  // read source -> ring
    ack_in,       // recv acks from a child
    ack_out,      // send an ack to the parent
    cancel,       // the cancel-all issued when stopping
};

constexpr std::size_t max_io_bytes = 4u << 20;  // per recv/send/write: large, so syscalls vanish
// Received bytes are read from a pipe (splice mode) and hashed in parts of this size: each part
// is still in the cache (L2) when it is hashed, where a whole frame has mostly left it.
constexpr std::size_t hash_part_bytes = 128u << 10;
constexpr std::size_t hole_block_bytes = 4096;

// An operation that a signal interrupted (SIGSTOP/SIGCONT of the process, for one: io-wq
// workers then complete blocking splices with -ERESTARTSYS) did nothing and is submitted again.
bool interrupted(int res) noexcept {
    constexpr int erestartsys = 512, erestartnointr = 513, erestartnohand = 514;
    return res == -EINTR || res == -EAGAIN || res == -erestartsys || res == -erestartnointr || res == -erestartnohand;
}

// A pipe we were handed (`tar c ... | kaclone serve --source -`, a sink into a pipeline or
// --exec) holds 64 KiB by default: its writer and reader then wake each other every 64 KiB.
// 1 MiB cuts those round trips 16x; best effort, as a pipe we do not own may refuse it. False
// if `fd` is no pipe.
bool grow_if_pipe(int fd) noexcept {
    struct stat st{};
    if (::fstat(fd, &st) != 0 || !S_ISFIFO(st.st_mode)) return false;
    (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
    return true;
}

bool all_zero(const std::byte* p, std::size_t n) noexcept {
    // memcmp against itself shifted by 1 byte: zero iff every byte equals the first, which is 0.
    return n == 0 || (p[0] == std::byte{0} && std::memcmp(p, p + 1, n - 1) == 0);
}

std::string errno_text(int negative_errno) { return std::make_error_code(static_cast<std::errc>(-negative_errno)).message(); }

// Every data connection is used non-blocking, whatever the caller left set: splice mode calls
// splice itself (tcp_splice_read takes its wait from the socket's O_NONBLOCK, not from
// SPLICE_F_NONBLOCK), and io_uring's recv and send arm a poll either way.
result<void> set_nonblocking(int fd) {
    const int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return last_sys_error("make a data connection non-blocking");
    return {};
}

// State and mechanics shared by the source and the other nodes: the ring, the uring, counting
// of operations in flight, the commands of the control plane, the children (their acks, what
// was sent to each, who replaced whom), the retention and the error that ends the loop.
class node_base {
protected:
    // One child's place. `pending`: expected, not connected yet (at the start, or the child of
    // a failed child); `live`: connected; `lost`: its connection broke, the control plane is
    // told and its replacement awaited; `gone`: replaced, kept only until nothing of it is in
    // flight. Pending and lost places hold the retention at what they acknowledged.
    struct child_link {
        enum class state : std::uint8_t { pending, live, lost, gone };
        std::uint32_t node = 0;
        std::uint32_t serial = 0;  // tags its completions (user_data)
        state st = state::pending;
        int fd = -1;
        std::optional<std::size_t> reader;  // its ring reader while it is sent from the ring
        bool piped = false;                 // splice mode: fed from the forward pipe
        bool wants_poll = false, poll_inflight = false;
        std::array<std::byte, 64 * protocol::ack_bytes> ack_in{};
        std::size_t ack_in_fill = 0;
        bool ack_in_inflight = false;
        bool closed = false;  // its end of the connection is closed (after complete)
        std::uint64_t acked = 0;
        bool complete = false;
        bool send_inflight = false;
        std::uint64_t sent_pos = 0;  // wire position handed to its socket (or its pipe)
        // Sends whose bytes are not released yet, in order: sent up to `upto`; `held` while the
        // kernel's SEND_ZC notification for send `seq` is still to come. A plain send (SEND_ZC
        // refused, or zerocopy off) queues behind held ones with held false: it releases with
        // them. Notifications are matched by `seq`: they come when the kernel frees the last
        // buffer of a send, which need not be in the order of the sends.
        struct sent_mark {
            std::uint64_t upto;
            bool held;
            std::uint32_t seq;
        };
        std::deque<sent_mark> zc_pending;
        std::uint32_t send_seq = 0;  // of the send in flight (user_data bits 8-31, so < 2^24)
        bool holds() const noexcept { return st != state::gone; }
    };

    // A frame in the ring, until the whole subtree acknowledged it.
    struct frame_end {
        std::uint64_t ring_end;
        std::uint64_t stream_end;
        bool is_end;
    };

    node_base(net::uring uring, ring_buffer ring, const relay_config& config, relay_stats& stats, relay_control& control,
              std::span<const std::uint32_t> children, std::size_t retain_reader)
        : uring_(std::move(uring)), ring_(std::move(ring)), config_(config), stats_(stats), control_(control),
          retain_reader_(retain_reader) {
        for (const std::uint32_t node : children) add_pending(node, 0);
    }
    virtual ~node_base() = default;

    // user_data: the op in the low 8 bits, `seq` (a child's send) in bits 8-31, `tag` (a
    // child's serial) in the high 32.
    static constexpr std::uint32_t seq_mask = 0xffffff;
    void submit(io_uring_sqe* sqe, op kind, std::uint32_t tag = 0, std::uint32_t seq = 0) noexcept {
        io_uring_sqe_set_data64(sqe, static_cast<std::uint64_t>(kind) | (std::uint64_t{seq & seq_mask} << 8) | (std::uint64_t{tag} << 32));
        ++inflight_;
    }
    static op kind_of(const io_uring_cqe& cqe) noexcept { return static_cast<op>(cqe.user_data & 0xffu); }
    static std::uint32_t seq_of(const io_uring_cqe& cqe) noexcept { return static_cast<std::uint32_t>(cqe.user_data >> 8) & seq_mask; }
    static std::uint32_t tag_of(const io_uring_cqe& cqe) noexcept { return static_cast<std::uint32_t>(cqe.user_data >> 32); }

    void fail(error e) {
        if (!error_) error_ = std::move(e);
    }
    void fail_sys(int negative_errno, std::string where) { fail(sys_error(-negative_errno, std::move(where))); }

    // ---- commands of the control plane

    void watch_commands() {
        if (wake_inflight_) return;
        auto* sqe = uring_.sqe();
        io_uring_prep_read(sqe, control_.wake_fd(), &wake_value_, sizeof wake_value_, ~0ull);
        submit(sqe, op::wake);
        wake_inflight_ = true;
    }
    void on_wake(int res) {
        wake_inflight_ = false;
        if (res < 0 && !interrupted(res)) fail_sys(res, "read the data plane's wake eventfd");
    }
    void apply_commands() {
        for (auto& c : control_.take()) {
            if (auto* child = std::get_if<relay_control::child>(&c)) attach_child(*child);
            else if (auto* r = std::get_if<relay_control::replace>(&c)) replace_child(r->lost, r->instead);
            else if (auto* p = std::get_if<relay_control::parent>(&c)) on_parent_command(p->fd);
            else fail(error{std::make_error_code(std::errc::operation_canceled), "data plane stopped"});
        }
    }
    virtual void on_parent_command(int fd) = 0;
    virtual void unpipe(child_link&) {}

    // ---- children

    child_link& add_pending(std::uint32_t node, std::uint64_t acked) {
        children_.emplace_back();
        child_link& c = children_.back();
        c.node = node;
        c.serial = ++last_serial_;
        c.acked = acked;
        return c;
    }
    child_link* link_of(std::uint32_t serial) noexcept {
        for (auto& c : children_)
            if (c.serial == serial) return &c;
        return nullptr;
    }
    child_link* place_of(std::uint32_t node) noexcept {
        for (auto& c : children_)
            if (c.node == node && c.holds()) return &c;
        return nullptr;
    }
    std::string child_name(const child_link& c) const { return "child node " + std::to_string(c.node); }

    void attach_child(const relay_control::child& a) {
        child_link* c = place_of(a.node);
        if (c != nullptr && c->st == child_link::state::live) drop(*c);  // a new connection of the same child
        if (c == nullptr || c->st != child_link::state::pending) c = &add_pending(a.node, 0);
        c->fd = a.fd;
        c->acked = std::max(c->acked, a.acked);
        c->st = child_link::state::live;
        if (a.complete) {  // it has everything already: nothing is sent, no ack follows
            c->complete = true;
            c->closed = true;
            c->sent_pos = ring_.write_position();
            return;
        }
        if (a.resume > ring_.write_position() || a.resume < ring_.read_position(retain_reader_))
            return lose(*c, "it resumes at wire byte " + std::to_string(a.resume) + ", and this node holds bytes " +
                                std::to_string(ring_.read_position(retain_reader_)) + " to " + std::to_string(ring_.write_position()));
        if (auto ok = set_nonblocking(a.fd); !ok) return lose(*c, ok.error().message());
        c->sent_pos = a.resume;
        c->reader = ring_.add_reader(a.resume);
    }

    // The failed child's place goes to its children, which hold at least what it acknowledged.
    void replace_child(std::uint32_t lost, const std::vector<std::uint32_t>& instead) {
        std::uint64_t acked = 0;
        if (child_link* c = place_of(lost)) {
            acked = c->acked;
            drop(*c);
        }
        for (const std::uint32_t node : instead) add_pending(node, acked);
    }

    // Stops using a child's connection: shut down (its operations complete), its ring reader
    // released; the place is gone.
    void drop(child_link& c) {
        if (c.fd >= 0 && c.st == child_link::state::live) ::shutdown(c.fd, SHUT_RDWR);
        if (c.reader) ring_.remove_reader(*c.reader);
        c.reader.reset();
        if (c.piped) unpipe(c);
        c.st = child_link::state::gone;
    }

    // A live child's connection broke: its place keeps what it acknowledged until the control
    // plane (told here) replaces it.
    void lose(child_link& c, std::string why) {
        if (c.st != child_link::state::live) return;
        ::shutdown(c.fd, SHUT_RDWR);
        if (c.reader) ring_.remove_reader(*c.reader);
        c.reader.reset();
        if (c.piped) unpipe(c);
        c.st = child_link::state::lost;
        control_.emit({relay_event::kind::child_lost, c.node, c.acked, 0, 0, child_name(c) + ": " + why});
    }

    // Places that are gone and have nothing in flight any more.
    void forget_gone() {
        std::erase_if(children_, [](const child_link& c) {
            return c.st == child_link::state::gone && !c.ack_in_inflight && !c.send_inflight && !c.poll_inflight;
        });
    }

    // What every child's subtree holds (lost and pending places count with what they held),
    // and whether all of them verified the end.
    std::uint64_t children_acked() const noexcept {
        std::uint64_t least = ~0ull;
        for (const auto& c : children_)
            if (c.holds()) least = std::min(least, c.acked);
        return least;
    }
    bool children_complete() const noexcept {
        return std::all_of(children_.begin(), children_.end(), [](const child_link& c) { return !c.holds() || c.complete; });
    }

    // Child acks: one recv in flight per live child; completes whole 16-byte acks as they arrive.
    void maybe_receive_acks() {
        for (auto& c : children_) {
            if (c.st != child_link::state::live || c.ack_in_inflight || c.closed) continue;
            auto* sqe = uring_.sqe();
            io_uring_prep_recv(sqe, c.fd, c.ack_in.data() + c.ack_in_fill, c.ack_in.size() - c.ack_in_fill, 0);
            submit(sqe, op::ack_in, c.serial);
            c.ack_in_inflight = true;
        }
    }
    void on_ack_in(int res, child_link& c) {
        c.ack_in_inflight = false;
        if (c.st != child_link::state::live || interrupted(res)) return;
        if (res < 0) return lose(c, "receive its acknowledgements: " + errno_text(res));
        if (res == 0) {
            c.closed = true;
            if (!c.complete) lose(c, "closed the data connection at offset " + std::to_string(c.acked) + " before the end");
            return;
        }
        c.ack_in_fill += static_cast<std::size_t>(res);
        std::size_t used = 0;
        for (; c.ack_in_fill - used >= protocol::ack_bytes; used += protocol::ack_bytes) {
            auto a = protocol::decode_ack(std::span<const std::byte, protocol::ack_bytes>(c.ack_in.data() + used, protocol::ack_bytes),
                                          "acknowledgement from " + child_name(c));
            if (!a) return lose(c, a.error().message());
            c.acked = std::max(c.acked, a->offset);
            c.complete = c.complete || a->complete;
        }
        std::memmove(c.ack_in.data(), c.ack_in.data() + used, c.ack_in_fill - used);
        c.ack_in_fill -= used;
    }

    // Ring -> every live child that is not fed from the pipe, one send in flight per child;
    // each child's bytes stay reserved (its reader) until sent, and with SEND_ZC until the
    // kernel's notification says it no longer needs them.
    void maybe_forward(bool zerocopy) {
        const std::uint64_t end = ring_.write_position();
        for (auto& c : children_) {
            if (c.st != child_link::state::live || c.piped || c.complete || c.send_inflight || c.sent_pos == end) continue;
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(end - c.sent_pos, max_io_bytes));
            const auto bytes = ring_.at(c.sent_pos, n);
            auto* sqe = uring_.sqe();
            if (zerocopy && zerocopy_refused_.empty()) {
                io_uring_prep_send_zc(sqe, c.fd, bytes.data(), n, MSG_NOSIGNAL, 0);
                // Test-only fault: flags no kernel knows, so that it refuses the send (EINVAL).
                if (c.sent_pos >= config_.fault_refuse_zerocopy_at) sqe->ioprio = 0x8000;
            } else {
                io_uring_prep_send(sqe, c.fd, bytes.data(), n, MSG_NOSIGNAL);
            }
            c.send_seq = (c.send_seq + 1) & seq_mask;
            submit(sqe, op::child_out, c.serial, c.send_seq);
            c.send_inflight = true;
        }
    }
    // Gives the ring back what the child's sends no longer need, up to the oldest still held.
    void release_sent(child_link& c) {
        while (!c.zc_pending.empty() && !c.zc_pending.front().held) {
            if (c.reader) ring_.consume(*c.reader, static_cast<std::size_t>(c.zc_pending.front().upto - ring_.read_position(*c.reader)));
            c.zc_pending.pop_front();
        }
    }
    void on_forward(const io_uring_cqe& cqe, child_link& c) {
        if (cqe.flags & IORING_CQE_F_NOTIF) {  // the kernel is done with send seq_of(cqe)
            const auto done = std::find_if(c.zc_pending.begin(), c.zc_pending.end(),
                                           [seq = seq_of(cqe)](const auto& m) { return m.held && m.seq == seq; });
            if (done == c.zc_pending.end()) return;  // a place given up meanwhile
            done->held = false;
            return release_sent(c);
        }
        c.send_inflight = false;
        const bool notification_follows = cqe.flags & IORING_CQE_F_MORE;
        if (notification_follows) expect_notification();
        if (c.st != child_link::state::live) {
            c.zc_pending.clear();  // its reader is gone: the notifications release nothing
            return;
        }
        if (cqe.res > 0) c.sent_pos += static_cast<std::uint64_t>(cqe.res);
        c.zc_pending.push_back({c.sent_pos, notification_follows, c.send_seq});
        release_sent(c);
        if (cqe.res > 0 || interrupted(cqe.res)) return;
        if ((cqe.res == -EINVAL || cqe.res == -EOPNOTSUPP) && zerocopy_refused_.empty()) {
            // A kernel or socket without SEND_ZC: plain sends from now on.
            zerocopy_refused_ = "the kernel refused SEND_ZC to " + child_name(c) + " at wire byte " + std::to_string(c.sent_pos) +
                                " (" + errno_text(cqe.res) + "): plain sends from there";
            return;
        }
        lose(c, "send to it: " + errno_text(cqe.res == 0 ? -EPIPE : cqe.res));
    }

    // ---- flow: how long the intake waited for room in the ring, and for whom (relay_stats)

    // Only this thread writes relay_stats: its relaxed loads are its own values.
    void track_intake(bool held) noexcept {
        stats_.intake_wire_bytes.store(ring_.write_position(), std::memory_order_relaxed);
        const std::uint64_t since = stats_.held_since_ns.load(std::memory_order_relaxed);
        if (held == (since != 0)) return;
        const std::uint64_t now = flow_clock_ns();
        if (!held) stats_.held_ns.fetch_add(now - since, std::memory_order_relaxed);
        stats_.held_since_ns.store(held ? now : 0, std::memory_order_relaxed);
    }

    // ---- retention

    // Frames leave the ring once every place below acknowledged them (the end frame: once
    // every place verified it).
    void release_retained() {
        const std::uint64_t acked = children_acked();
        const bool complete = children_complete();
        std::uint64_t release_to = ring_.read_position(retain_reader_);
        while (!frames_.empty() && frames_.front().stream_end <= acked && (!frames_.front().is_end || complete)) {
            release_to = frames_.front().ring_end;
            frames_.pop_front();
        }
        ring_.consume(retain_reader_, static_cast<std::size_t>(release_to - ring_.read_position(retain_reader_)));
    }

    // Stops everything in flight and reaps every completion, so no SQE outlives its memory.
    // After an error the parent side is shut down both ways (also waking splices blocked in
    // io-wq); the children only get our end of stream, so each still verifies every byte we
    // forwarded and reports a bad frame itself instead of a reset. After success only the
    // receive side is shut: that ends a receive still waiting for bytes after the end frame.
    void drain(int parent_fd) {
        if (inflight_ == 0) return;
        if (parent_fd >= 0) ::shutdown(parent_fd, error_ ? SHUT_RDWR : SHUT_RD);
        if (error_)
            for (const auto& c : children_)
                if (c.st == child_link::state::live) ::shutdown(c.fd, SHUT_WR);
        const std::uint64_t one = 1;  // completes the read of the wake eventfd, if one is in flight
        [[maybe_unused]] const ssize_t woke = ::write(control_.wake_fd(), &one, sizeof one);
        auto* sqe = uring_.sqe();
        io_uring_prep_cancel(sqe, nullptr, IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
        submit(sqe, op::cancel);
        bool reset = false;
        while (inflight_ > 0) {
            // Once only SEND_ZC notifications are left they come as the children's TCP
            // acknowledgements free the bytes. A child that stopped reading (frozen, or failed
            // with its socket still open) frees none: after `notification_linger` without one
            // its connection is reset, which purges the bytes and so posts the notifications.
            const int rc = inflight_ > notifications_ ? uring_.submit_and_wait() : uring_.submit_and_wait_for(notification_linger);
            if (rc == -ETIME && !reset) {
                reset = true;
                for (const auto& c : children_) disconnect(c.fd);
                continue;
            }
            // After a reset the kernel still holds what it did not free: those pages are pinned,
            // so giving up the wait frees nothing it still reads.
            if (rc < 0) break;
            reap([this](const io_uring_cqe& cqe) {
                if (kind_of(cqe) == op::child_out && (cqe.flags & IORING_CQE_F_MORE)) expect_notification();
            });
        }
    }
    static constexpr std::chrono::milliseconds notification_linger{2000};
    // Resets a TCP connection from our side (AF_UNSPEC: tcp_disconnect), dropping what it queued.
    static void disconnect(int fd) noexcept {
        if (fd < 0) return;
        const sockaddr unspec{.sa_family = AF_UNSPEC, .sa_data = {}};
        [[maybe_unused]] const int rc = ::connect(fd, &unspec, sizeof unspec);
    }
    void expect_notification() noexcept {
        ++inflight_;
        ++notifications_;
    }

    // Handles every completion that is ready.
    template <class Handler>
    void reap(Handler&& handle) {
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0, seen = 0;
        io_uring_for_each_cqe(uring_.get(), head, cqe) {
            ++seen;
            --inflight_;
            if (cqe->flags & IORING_CQE_F_NOTIF) --notifications_;
            handle(*cqe);
        }
        io_uring_cq_advance(uring_.get(), seen);
    }

    // The completions both kinds of node share; false if `cqe` is not one of them.
    bool handle_common(const io_uring_cqe& cqe) {
        switch (kind_of(cqe)) {
            case op::wake: on_wake(cqe.res); return true;
            case op::child_out:
                if (child_link* c = link_of(tag_of(cqe))) on_forward(cqe, *c);
                else if (cqe.flags & IORING_CQE_F_MORE) expect_notification();
                return true;
            case op::ack_in:
                if (child_link* c = link_of(tag_of(cqe))) on_ack_in(cqe.res, *c);
                return true;
            default: return false;
        }
    }

    net::uring uring_;
    ring_buffer ring_;
    const relay_config& config_;
    relay_stats& stats_;
    relay_control& control_;
    std::list<child_link> children_;  // a list: SQEs point into its elements, which never move
    std::uint32_t last_serial_ = 0;
    std::size_t retain_reader_;
    std::deque<frame_end> frames_;
    unsigned inflight_ = 0;
    unsigned notifications_ = 0;  // of inflight_: SEND_ZC notifications still to come
    std::optional<error> error_;
    std::uint64_t wake_value_ = 0;
    bool wake_inflight_ = false;
    std::string zerocopy_refused_;  // why SEND_ZC is not used any more ("" while it works)
};

// ---------------------------------------------------------------- source

class source_node : node_base {
public:
    // Ring reader 0 is the retention (what all acked); each child adds its own when it connects.
    source_node(net::uring uring, ring_buffer ring, int source_fd, std::span<const std::uint32_t> children,
                const relay_config& config, relay_stats& stats, relay_control& control)
        : node_base(std::move(uring), std::move(ring), config, stats, control, children, 0), source_fd_(source_fd) {}

    result<relay_result> run() {
        while (!error_) {
            apply_commands();
            release_retained();
            forget_gone();
            if (error_ || (end_committed_ && children_complete())) break;
            maybe_read_source();
            track_intake(!read_inflight_ && !end_committed_);  // no read: no room for a frame
            maybe_forward(config_.mode == relay_mode::zerocopy);
            maybe_receive_acks();
            watch_commands();
            publish();
            if (end_committed_ && children_complete()) continue;  // nothing more would complete
            if (const int rc = uring_.submit_and_wait(); rc < 0) fail_sys(rc, "io_uring wait");
            reap([this](const io_uring_cqe& cqe) { handle(cqe); });
        }
        drain(-1);
        if (error_) return *error_;
        publish();
        return relay_result{offset_, digest_.digest(), std::chrono::steady_clock::now() - eof_at_, zerocopy_refused_};
    }

private:
    void on_parent_command(int) override {}  // the source has no parent

    void publish() {
        stats_.acked_bytes.store(std::min(children_acked(), offset_), std::memory_order_relaxed);
        stats_.retained_bytes.store(ring_.write_position() - ring_.read_position(retain_reader_), std::memory_order_relaxed);
    }

    void maybe_read_source() {
        if (read_inflight_ || end_committed_) return;
        const std::size_t frame_bytes = frame_header_bytes + config_.frame_payload_bytes + tag_bytes();
        if (eof_) {  // the end frame still needs room
            const std::size_t end_bytes = frame_header_bytes + protocol::end_payload_bytes + tag_bytes();
            if (ring_.writable(end_bytes).size() >= end_bytes) commit_end_frame();
            return;
        }
        if (!frame_open_) {
            if (ring_.writable(frame_bytes).size() < frame_bytes) return;  // wait for acks/sends
            frame_open_ = true;
            fill_ = 0;
        }
        const auto frame = ring_.writable(frame_bytes);
        auto* sqe = uring_.sqe();
        const auto into = frame.subspan(frame_header_bytes + fill_, config_.frame_payload_bytes - fill_);
        io_uring_prep_read(sqe, source_fd_, into.data(), static_cast<unsigned>(into.size()), ~0ull);
        submit(sqe, op::source_read);
        read_inflight_ = true;
    }

    void on_source_read(int res) {
        read_inflight_ = false;
        if (interrupted(res)) return;
        if (res < 0) return fail_sys(res, "read the source");
        if (res == 0) {
            eof_ = true;
            eof_at_ = std::chrono::steady_clock::now();
            if (fill_ > 0) commit_data_frame();
            frame_open_ = false;
            return;
        }
        fill_ += static_cast<std::size_t>(res);
        if (fill_ == config_.frame_payload_bytes) {
            commit_data_frame();
            frame_open_ = false;
        }
    }

    std::size_t tag_bytes() const noexcept { return config_.signer ? protocol::frame_tag_bytes : 0; }

    // Header, then (sessions with a key) the tag over header and payload after the payload.
    void seal(std::span<std::byte> frame, protocol::frame_header h) {
        h.tagged = config_.signer != nullptr;
        protocol::encode_frame_header(h, frame.first<frame_header_bytes>());
        if (!config_.signer) return;
        const auto payload = frame.subspan(frame_header_bytes, h.payload_bytes);
        const auto t = config_.signer->sign(h.offset, frame.first(frame_header_bytes), payload);
        std::memcpy(frame.data() + frame_header_bytes + h.payload_bytes, t.data(), t.size());
    }

    void commit_data_frame() {
        const auto frame = ring_.writable(frame_header_bytes + fill_ + tag_bytes());
        const auto payload = frame.subspan(frame_header_bytes, fill_);
        protocol::frame_header h{protocol::frame_type::data, 0, static_cast<std::uint32_t>(fill_), offset_,
                                 protocol::payload_checksum(payload)};
        digest_.add_frame(offset_, h.payload_bytes, h.checksum);
        seal(frame, h);
        if (config_.fault_flip_byte >= offset_ && config_.fault_flip_byte < offset_ + fill_)
            payload[config_.fault_flip_byte - offset_] ^= std::byte{0x5a};  // test-only fault
        if (config_.fault_forge_byte >= offset_ && config_.fault_forge_byte < offset_ + fill_) {  // test-only fault
            payload[config_.fault_forge_byte - offset_] ^= std::byte{0x5a};
            h.checksum = protocol::payload_checksum(payload);
            h.tagged = config_.signer != nullptr;
            protocol::encode_frame_header(h, frame.first<frame_header_bytes>());
        }
        ring_.commit(frame.size());
        offset_ += fill_;
        frames_.push_back({ring_.write_position(), offset_, false});
        stats_.stored_bytes.store(offset_, std::memory_order_relaxed);
    }

    void commit_end_frame() {
        const auto frame = ring_.writable(frame_header_bytes + protocol::end_payload_bytes + tag_bytes());
        const auto payload = frame.subspan<frame_header_bytes, protocol::end_payload_bytes>();
        protocol::encode_end_payload({offset_, digest_.digest()}, payload);
        protocol::frame_header h{protocol::frame_type::end, 0, protocol::end_payload_bytes, offset_,
                                 protocol::payload_checksum(payload)};
        seal(frame, h);
        ring_.commit(frame.size());
        frames_.push_back({ring_.write_position(), offset_, true});
        end_committed_ = true;
    }

    void handle(const io_uring_cqe& cqe) {
        if (handle_common(cqe)) return;
        if (kind_of(cqe) == op::source_read) on_source_read(cqe.res);
    }

    int source_fd_;
    bool read_inflight_ = false;
    bool frame_open_ = false;
    bool eof_ = false;
    bool end_committed_ = false;
    std::size_t fill_ = 0;
    std::uint64_t offset_ = 0;
    std::chrono::steady_clock::time_point eof_at_{};
    protocol::digest_state digest_;
};

// ---------------------------------------------------------------- relay / leaf

constexpr std::size_t pipe_bytes = 1u << 20;

// What a pipe sink is still to get, held as the received pages themselves: runs of the wire,
// oldest first, each in a pipe of its own (a run longer than a pipe holds goes on in the
// next). A pipe counts 256 buffers of any fill, about 1 MiB of received pages, and a frame is
// held whole until it is verified, with the sink some frames behind: so one pipe per MiB of
// `limit` bytes held at most. What arrives while the stage is full is in the ring only, and
// goes to the sink from there.
class sink_stage {
public:
    // A quarter of --buffer, at most 16 MiB: enough on this project's benchmarks for nearly
    // every byte to be spliced while the sink keeps up (bench/RESULTS.md).
    static std::uint64_t limit_for(std::uint64_t buffer_bytes) noexcept { return std::min<std::uint64_t>(buffer_bytes / 4, 16u << 20); }

    static result<sink_stage> create(std::uint64_t limit) {
        sink_stage s;
        s.limit_ = limit;
        const std::size_t count = std::max<std::size_t>(2, static_cast<std::size_t>((limit + pipe_bytes - 1) / pipe_bytes));
        for (std::size_t i = 0; i < count; ++i) {
            auto p = net::pipe_pair::create(pipe_bytes);
            if (!p) return std::move(p).error();
            s.pipes_.push_back(*std::move(p));
        }
        return s;
    }

    bool empty() const noexcept { return parts_.empty(); }
    // The oldest run's part: wire bytes [front_lo, front_hi). Only when not empty.
    std::uint64_t front_lo() const noexcept { return parts_.front().lo; }
    std::uint64_t front_hi() const noexcept { return parts_.front().hi; }

    // Tees up to `n` bytes from the head of pipe `from`, wire position `at`: behind the newest
    // run if it ends there, else as a new run. Bytes teed (0: no room), or -errno.
    ssize_t append(int from, std::uint64_t at, std::size_t n) {
        if (held_ >= limit_) return 0;
        n = static_cast<std::size_t>(std::min<std::uint64_t>(n, limit_ - held_));
        for (;;) {
            if (parts_.empty() || parts_.back().full || parts_.back().hi != at) {
                if (parts_.size() == pipes_.size()) return 0;
                parts_.push_back({parts_.empty() ? 0 : (parts_.back().pipe + 1) % pipes_.size(), at, at, false});
            }
            part& back = parts_.back();
            const ssize_t teed = ::tee(from, pipes_[back.pipe].write_end(), n, SPLICE_F_NONBLOCK);
            if (teed > 0) {
                back.hi += static_cast<std::uint64_t>(teed);
                held_ += static_cast<std::uint64_t>(teed);
                return teed;
            }
            const int e = teed == 0 ? EIO : errno;
            if (back.lo == back.hi) {  // it took nothing: no room for these pages, the part goes again
                parts_.pop_back();
                return e == EAGAIN ? 0 : -e;
            }
            if (e != EAGAIN) return -e;
            back.full = true;  // the next pipe takes what follows
        }
    }

    // Splices up to `n` bytes from the front into pipe `to`, without waiting: bytes, or -errno.
    ssize_t splice_to(int to, std::size_t n) {
        const part& front = parts_.front();
        const ssize_t moved = ::splice(pipes_[front.pipe].read_end(), nullptr, to, nullptr,
                                       static_cast<std::size_t>(std::min<std::uint64_t>(n, front.hi - front.lo)),
                                       SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (moved < 0) return -errno;
        consumed(static_cast<std::uint64_t>(moved));
        return moved;
    }

    // Reads off and forgets up to `n` bytes from the front (a frame header, a tag; at most
    // 256 bytes a call): bytes, or -errno.
    ssize_t drop(std::size_t n) {
        std::array<std::byte, 256> scratch;
        const part& front = parts_.front();
        const ssize_t got = ::read(pipes_[front.pipe].read_end(), scratch.data(),
                                   static_cast<std::size_t>(std::min<std::uint64_t>({n, front.hi - front.lo, scratch.size()})));
        if (got < 0) return -errno;
        if (got == 0) return -EPIPE;
        consumed(static_cast<std::uint64_t>(got));
        return got;
    }

private:
    struct part {
        std::size_t pipe;
        std::uint64_t lo, hi;  // the wire bytes in that pipe
        bool full;             // it took no more: the run goes on in the next pipe
    };
    void consumed(std::uint64_t n) noexcept {
        held_ -= n;
        if ((parts_.front().lo += n) == parts_.front().hi) parts_.pop_front();
    }

    std::vector<net::pipe_pair> pipes_;
    // Oldest first, in pipes that follow each other round the vector (all others are empty,
    // so with no part any pipe can take the first).
    std::deque<part> parts_;
    std::uint64_t limit_ = 0, held_ = 0;
};

// splice mode's pipes (see relay_node::pump_splice): parent -> `in` -> tee -> `forward` ->
// child; what was teed is read from `in` into the ring for the frame check and the retention.
// With a pipe for a sink, `in` is also teed to the stage, and verified payload goes from
// there to the sink by splice: the sink gets the received pages, not a copy of the ring.
struct splice_pipes {
    net::pipe_pair in, forward;
    std::optional<sink_stage> stage;
};

class relay_node : node_base {
public:
    // Ring reader 0 is the store (what the sink wrote), reader 1 the retention.
    relay_node(net::uring uring, ring_buffer ring, std::optional<splice_pipes> pipes, std::span<const std::uint32_t> children,
               local_sink sink, const relay_config& config, relay_stats& stats, relay_control& control)
        : node_base(std::move(uring), std::move(ring), config, stats, control, children, retain_reader),
          pipes_(std::move(pipes)), sink_(sink) {}

    result<relay_result> run() {
        while (!error_) {
            apply_commands();
            release_retained();
            forget_gone();
            if (error_ || finished()) break;
            if (pipes_) pump_splice();
            else maybe_receive();
            track_intake(intake_held());
            maybe_forward(config_.mode == relay_mode::zerocopy);
            maybe_write_sink();
            maybe_receive_acks();
            maybe_send_ack();
            check_detached();
            watch_commands();
            if (error_) break;  // pump_splice() fails synchronously: nothing more would complete
            if (finished()) continue;
            if (const int rc = uring_.submit_and_wait(); rc < 0) fail_sys(rc, "io_uring wait");
            reap([this](const io_uring_cqe& cqe) { handle(cqe); });
        }
        drain(parent_ == parent_state::none ? -1 : parent_fd_);
        if (error_) return *error_;
        if (sink_.kind == sink_kind::regular_file && ::ftruncate(sink_.fd, static_cast<off_t>(total_)) != 0)
            return last_sys_error("set the size of the sink file");
        return relay_result{total_, digest_.digest(), {}, zerocopy_refused_};
    }

private:
    static constexpr std::size_t store_reader = 0, retain_reader = 1;

    // none: no parent (before the first, or after one failed): waiting for attach_parent;
    // detaching: given up, waiting for its operations in flight to end.
    enum class parent_state : std::uint8_t { none, attached, detaching };

    // A verified frame waiting to be written: payload [pos, pos + len) of the ring at stream
    // `offset`; the ring is released up to `ring_end` (its header included) once written.
    struct frame_job {
        std::uint64_t pos, len, offset, ring_end;
        std::uint64_t done = 0;
    };

    // The parent has bytes for this node, which waits for room (its ring, or in splice mode
    // the child's pipe) instead of for them.
    bool intake_held() const noexcept {
        if (parent_ != parent_state::attached || end_verified_ || parent_eof_) return false;
        return pipes_ ? !parent_wants_poll_ && !parent_poll_inflight_ : !receive_inflight_;
    }

    bool finished() const noexcept {
        return end_verified_ && jobs_.empty() && !write_inflight_ && !sink_poll_inflight_ && children_complete() && !ack_out_inflight_ &&
               (sent_complete_ || parent_ == parent_state::none);
    }

    // ---- the parent

    void on_parent_command(int fd) override {
        if (fd < 0 || parent_ != parent_state::none)
            detach_requested_ = true;  // the next parent_detached answers it, whatever ended the connection
        if (fd < 0) {  // detach
            if (parent_ == parent_state::attached) begin_detach("the server gave this node a new parent");
            else if (parent_ == parent_state::none) announce_detached("the server gave this node a new parent");
            return;
        }
        if (parent_ == parent_state::none) return attach_parent(fd);
        next_parent_fd_ = fd;  // once the current one is detached
        begin_detach("the server gave this node a new parent");
    }

    void attach_parent(int fd) {
        if (auto ok = set_nonblocking(fd); !ok) return fail(std::move(ok).error());
        parent_fd_ = fd;
        rcvlowat_ = 1;  // the socket's default
        parent_ = parent_state::attached;
        parent_eof_ = false;
        parent_wants_poll_ = false;
        sent_ack_ = ~0ull;  // tell the new parent at once what this subtree holds
        sent_complete_ = false;
    }

    // The parent's connection is given up: nothing new goes on it; what is in flight ends
    // (the shutdown makes it end) and what was received is kept, then check_detached().
    void begin_detach(std::string why) {
        if (parent_ != parent_state::attached) return;
        parent_ = parent_state::detaching;
        detach_reason_ = std::move(why);
        ::shutdown(parent_fd_, SHUT_RDWR);
        parent_wants_poll_ = false;
    }

    void check_detached() {
        if (parent_ != parent_state::detaching || receive_inflight_ || parent_poll_inflight_ || ack_out_inflight_ || in_bytes_ > 0)
            return;
        parent_ = parent_state::none;
        parent_fd_ = -1;
        announce_detached(detach_reason_);
        if (next_parent_fd_ >= 0) attach_parent(std::exchange(next_parent_fd_, -1));
    }

    void announce_detached(const std::string& why) {
        control_.emit({relay_event::kind::parent_detached, 0, stored_, ring_.write_position(), std::min(stored_, children_acked()), why,
                       std::exchange(detach_requested_, false)});
    }

    // zerocopy mode and leaves: parent -> ring.
    void maybe_receive() {
        if (parent_ != parent_state::attached || receive_inflight_ || end_verified_ || parent_eof_) return;
        const auto into = ring_.writable(max_io_bytes);
        if (into.empty()) return;
        auto* sqe = uring_.sqe();
        io_uring_prep_recv(sqe, parent_fd_, into.data(), into.size(), 0);
        submit(sqe, op::parent_in);
        receive_inflight_ = true;
    }

    void on_parent_in(int res) {
        receive_inflight_ = false;
        if (interrupted(res)) return;  // nothing was received: submitted again
        if (res < 0) return begin_detach("receive from the parent: " + errno_text(res));
        if (res == 0) return on_parent_eof();
        ring_.commit(static_cast<std::size_t>(res));  // also while detaching: these bytes were received
        parse();
    }

    void on_parent_eof() {
        parent_eof_ = true;
        if (!end_verified_)
            begin_detach("the parent closed the data connection at offset " + std::to_string(next_offset_) +
                         " before the end of the stream");
    }

    // ---- splice mode
    //
    // Driven from this thread with non-blocking splice, tee and read: io_uring only says when
    // the parent has bytes or the child has room (one-shot polls), so no operation waits in
    // an io-wq worker and no pipe is ever held by a splice blocked on a socket.
    //   in:   parent -> in pipe, only when the in pipe is empty, at most what the ring can take;
    //   step: tee the in pipe -> forward pipe (appended behind what the child still has to
    //         get), then read exactly the teed bytes from the in pipe into the ring;
    //   out:  forward pipe -> child.
    // The tee runs only while the one child has every byte before it (a child that resumes,
    // or the children of a tree, are sent from the ring instead, like zerocopy mode).
    // A slow sink fills the ring, so nothing more is taken from the parent and TCP pushes
    // back; a slow child fills the forward pipe, tee stops, the in pipe stays full: the same.
    void pump_splice() {
        for (bool moved = true; moved && !error_;) {
            const bool out = splice_out();
            const bool step = tee_and_read();
            const bool in = splice_in();
            moved = out || step || in;
        }
        if (error_) return;
        if (parent_wants_poll_ && !parent_poll_inflight_ && parent_ == parent_state::attached) {
            batch_intake();
            auto* sqe = uring_.sqe();
            io_uring_prep_poll_add(sqe, parent_fd_, POLLIN);
            submit(sqe, op::parent_in);
            parent_poll_inflight_ = true;
        }
        if (child_link* c = piped(); c != nullptr && c->wants_poll && !c->poll_inflight) {
            auto* sqe = uring_.sqe();
            io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
            submit(sqe, op::child_poll, c->serial);
            c->poll_inflight = true;
        }
    }

    child_link* piped() noexcept {
        for (auto& c : children_)
            if (c.piped) return &c;
        return nullptr;
    }

    // The only child, live and sent everything before the in pipe's bytes: fed from the pipe now.
    child_link* pipe_caught_up() {
        child_link* only = nullptr;
        for (auto& c : children_) {
            if (!c.holds()) continue;
            if (only != nullptr) return nullptr;
            only = &c;
        }
        if (only == nullptr || only->st != child_link::state::live || only->complete || only->send_inflight ||
            !only->zc_pending.empty() || only->sent_pos != ring_.write_position() || forward_bytes_ != 0)
            return nullptr;
        if (only->reader) ring_.remove_reader(*only->reader);
        only->reader.reset();
        only->piped = true;
        return only;
    }

    // A piped child is given up: what its pipe still holds is not for anyone else.
    void unpipe(child_link& c) override {
        c.piped = false;
        c.wants_poll = false;
        pipe_full_since_ = 0;
        if (forward_bytes_ == 0) return;
        auto fresh = net::pipe_pair::create(pipe_bytes);
        if (!fresh) return fail(std::move(fresh).error());
        pipes_->forward = *std::move(fresh);
        forward_bytes_ = 0;
    }

    void on_child_poll(int res, child_link& c) {
        c.poll_inflight = false;
        if (c.st != child_link::state::live) return;
        if (res < 0 && !interrupted(res) && res != -ECANCELED) return lose(c, "poll its connection: " + errno_text(res));
        c.wants_poll = false;  // ready (or interrupted): pump_splice() tries again and re-arms if need be
    }

    void on_parent_poll(int res) {
        parent_poll_inflight_ = false;
        if (parent_ != parent_state::attached) return;
        if (res < 0 && !interrupted(res) && res != -ECANCELED) return begin_detach("poll the parent's connection: " + errno_text(res));
        parent_wants_poll_ = false;
    }

    // True when bytes moved; EAGAIN: wait for the child's POLLOUT.
    bool splice_out() {
        child_link* c = piped();
        if (c == nullptr || forward_bytes_ == 0 || c->wants_poll) return false;
        const ssize_t n = ::splice(pipes_->forward.read_end(), nullptr, c->fd, nullptr, forward_bytes_, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            forward_bytes_ -= static_cast<std::size_t>(n);
            if (forward_bytes_ == 0) {
                pipe_full_since_ = 0;              // it keeps up
                if (c->reader) c->piped = false;  // buffered ahead: the ring sends it from now on
            }
            return true;
        }
        if (n < 0 && errno == EAGAIN) c->wants_poll = true;
        else if (n == 0 || errno != EINTR) lose(*c, "send to it: " + errno_text(n == 0 ? -EPIPE : -errno));
        return false;
    }

    bool tee_and_read() {
        if (in_bytes_ == 0) return false;
        child_link* c = piped();
        if (c != nullptr && c->reader) c = nullptr;  // buffered ahead: its pipe drains, the ring takes what comes
        else if (c == nullptr) c = pipe_caught_up();
        std::size_t take = in_bytes_;
        if (c != nullptr) {
            const ssize_t teed = ::tee(pipes_->in.read_end(), pipes_->forward.write_end(), in_bytes_, SPLICE_F_NONBLOCK);
            if (teed <= 0) {
                if (teed == 0 || (errno != EAGAIN && errno != EINTR))
                    fail_sys(teed == 0 ? -EIO : -errno, "tee the received bytes to the child's pipe");
                // EAGAIN: the forward pipe is full until the child takes more
                if (!config_.buffer_ahead || errno != EAGAIN) return false;
                const std::uint64_t now = flow_clock_ns();
                if (pipe_full_since_ == 0) pipe_full_since_ = now;
                if (now - pipe_full_since_ < buffer_ahead_after_ns) return false;
                c->reader = ring_.add_reader(c->sent_pos);  // from here on it is sent from the ring
                pipe_full_since_ = 0;
                return true;
            }
            take = static_cast<std::size_t>(teed);
            forward_bytes_ += take;
            c->sent_pos += take;
        }
        // Read into the ring; with a pipe sink, each part is first teed to its stage, as much
        // as it takes (a slow sink leaves no room: those bytes go to the sink from the ring).
        for (std::size_t left = take; left > 0 && !error_;) {
            std::size_t part = left;
            if (pipes_->stage) {
                const ssize_t staged = pipes_->stage->append(pipes_->in.read_end(), ring_.write_position(), left);
                if (staged < 0 && staged != -EINTR) fail_sys(static_cast<int>(staged), "tee the received bytes to the sink's pipe");
                if (staged > 0) part = static_cast<std::size_t>(staged);
            }
            while (part > 0 && !error_) {
                const auto into = ring_.writable(std::min(part, hash_part_bytes));
                const ssize_t n = ::read(pipes_->in.read_end(), into.data(), into.size());
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) {
                    fail_sys(n == 0 ? -EPIPE : -errno, "read the received bytes from the pipe");
                    break;
                }
                ring_.commit(static_cast<std::size_t>(n));
                part -= static_cast<std::size_t>(n);
                left -= static_cast<std::size_t>(n);
                in_bytes_ -= static_cast<std::size_t>(n);
                parse();  // hashes what was just read, while it is in the cache
            }
        }
        return !error_;
    }

    // Drops from the stage what the sink does not get (frame headers and tags) up to wire
    // position `to`: the next payload's. What follows the last one stays in it to the end.
    void stage_drop(std::uint64_t to) {
        sink_stage& stage = *pipes_->stage;
        while (!stage.empty() && stage.front_lo() < to && !error_) {
            const ssize_t got = stage.drop(static_cast<std::size_t>(std::min(to, stage.front_hi()) - stage.front_lo()));
            if (got < 0 && got != -EINTR) fail_sys(static_cast<int>(got), "read the sink's pipe");
        }
    }

    // The parent's socket wakes this node once it holds what completes the frame being
    // received, or batch_bytes, whichever is less (SO_RCVLOWAT): on a link slower than this
    // node, bytes then come in batches instead of one round of polls and calls per packet.
    // Never more than the frame needs, so the end of the stream never waits.
    void batch_intake() {
        const std::uint64_t available = ring_.write_position() - parse_pos_;
        std::uint64_t missing = 1;
        if (head_ && head_->frame_bytes() > available) missing = head_->frame_bytes() - available;
        else if (!head_ && available < frame_header_bytes) missing = frame_header_bytes - available;
        const int lowat = static_cast<int>(std::min<std::uint64_t>(missing, batch_bytes));
        if (lowat == rcvlowat_) return;
        if (::setsockopt(parent_fd_, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat) == 0) rcvlowat_ = lowat;
    }

    bool splice_in() {
        if (parent_ != parent_state::attached || in_bytes_ > 0 || parent_wants_poll_ || parent_eof_ || end_verified_) return false;
        // All that comes in must fit the ring when it is read; less than 64 KiB of room is
        // not worth the syscalls: the sink frees more first.
        const std::size_t cap = pipes_->in.capacity();
        const std::size_t room = ring_.writable(cap).size();
        if (room < std::min<std::size_t>(64 << 10, cap)) return false;
        const ssize_t n = ::splice(parent_fd_, nullptr, pipes_->in.write_end(), nullptr, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            in_bytes_ = static_cast<std::size_t>(n);
            return true;
        }
        if (n == 0) on_parent_eof();
        else if (errno == EAGAIN) parent_wants_poll_ = true;
        else if (errno != EINTR) begin_detach("receive from the parent: " + errno_text(-errno));
        return false;
    }

    // ---- frames and the sink

    std::string place() const { return "stream 0 at offset " + std::to_string(next_offset_); }

    // The header of the frame at parse_pos_, once all of it is in: decoded and checked (it must
    // fit the ring and be the next offset) into head_. False: not in yet, or failed.
    bool take_header(std::uint64_t available) {
        if (available < frame_header_bytes) return false;
        if (end_verified_) {
            fail(error{make_error_code(protocol::errc::bad_field), "data after the end of the stream"});
            return false;
        }
        auto h = protocol::decode_frame_header(ring_.at(parse_pos_, frame_header_bytes).first<frame_header_bytes>(), place());
        if (!h) {
            fail(std::move(h).error());
            return false;
        }
        if (h->tagged != (config_.signer != nullptr)) {
            fail(error{make_error_code(protocol::errc::unauthenticated),
                       place() + (h->tagged ? ": a tagged frame on a session without a key" : ": an untagged frame on a session with a key")});
            return false;
        }
        if (h->frame_bytes() > ring_.capacity() / 2) {
            fail(error{make_error_code(protocol::errc::oversized),
                       place() + ": frame of " + std::to_string(h->frame_bytes()) + " bytes does not fit --buffer"});
            return false;
        }
        if (h->offset != next_offset_) {
            fail(error{make_error_code(protocol::errc::bad_field), place() + ": frame claims offset " + std::to_string(h->offset)});
            return false;
        }
        head_ = *h;
        hasher_.reset();
        hashed_ = 0;
        return true;
    }

    // Verifies every complete frame after parse_pos_ and queues its payload for the sink. The
    // frame being received has its header checked once, as soon as it is in, and its payload
    // hashed as far as it has come: called after every read, so each part is hashed while it
    // is still in the cache.
    void parse() {
        while (!error_) {
            const std::uint64_t available = ring_.write_position() - parse_pos_;
            if (!head_ && !take_header(available)) return;
            const protocol::frame_header& h = *head_;
            const std::uint64_t arrived = std::min<std::uint64_t>(available - frame_header_bytes, h.payload_bytes);
            if (arrived > hashed_) {
                hasher_.add(ring_.at(parse_pos_ + frame_header_bytes + hashed_, arrived - hashed_));
                hashed_ = arrived;
            }
            const std::uint64_t frame_bytes = h.frame_bytes();
            if (available < frame_bytes) return;
            const auto payload = ring_.at(parse_pos_ + frame_header_bytes, h.payload_bytes);
            if (hasher_.checksum() != h.checksum) return fail(error{make_error_code(protocol::errc::bad_checksum), place()});
            if (config_.signer &&
                !config_.signer->verify(h.offset, ring_.at(parse_pos_, frame_header_bytes), payload,
                                        ring_.at(parse_pos_ + frame_header_bytes + h.payload_bytes, protocol::frame_tag_bytes)
                                            .first<protocol::frame_tag_bytes>()))
                return fail(error{make_error_code(protocol::errc::bad_tag), place()});
            const std::uint64_t ring_end = parse_pos_ + frame_bytes;
            if (h.type == protocol::frame_type::data) {
                digest_.add_frame(h.offset, h.payload_bytes, h.checksum);  // verified above
                jobs_.push_back({parse_pos_ + frame_header_bytes, h.payload_bytes, next_offset_, ring_end});
                next_offset_ += h.payload_bytes;
                frames_.push_back({ring_end, next_offset_, false});
            } else {
                const auto end = protocol::decode_end_payload(payload.first<protocol::end_payload_bytes>());
                if (end.total_bytes != next_offset_)
                    return fail(error{make_error_code(protocol::errc::bad_field),
                                      place() + ": the stream ends at " + std::to_string(end.total_bytes)});
                if (end.digest != digest_.digest())
                    return fail(error{make_error_code(protocol::errc::bad_checksum),
                                      place() + ": stream digest " + digest_.digest().hex() + ", the source's is " + end.digest.hex()});
                jobs_.push_back({ring_end, 0, next_offset_, ring_end});
                frames_.push_back({ring_end, next_offset_, true});
                total_ = next_offset_;
                end_verified_ = true;
            }
            head_.reset();
            parse_pos_ = ring_end;
        }
    }

    // Next run of the front job to write: [start, start + len) of its payload. Regular files
    // skip whole zero blocks (holes); len 0 means the job is complete.
    std::pair<std::uint64_t, std::uint64_t> next_run(frame_job& job) const noexcept {
        if (sink_.kind != sink_kind::regular_file)
            return {job.done, std::min<std::uint64_t>(job.len - job.done, max_io_bytes)};
        auto block_end = [&](std::uint64_t at) {
            const std::uint64_t file_pos = job.offset + at;
            return std::min(job.len, at + (hole_block_bytes - file_pos % hole_block_bytes));
        };
        auto zero_block = [&](std::uint64_t at) {
            const std::size_t n = static_cast<std::size_t>(block_end(at) - at);
            return all_zero(ring_.at(job.pos + at, n).data(), n);
        };
        std::uint64_t at = job.done;
        while (at < job.len && zero_block(at)) at = block_end(at);
        job.done = at;
        std::uint64_t end = at;
        while (end < job.len && end - at < max_io_bytes && !zero_block(end)) end = block_end(end);
        return {at, end - at};
    }

    void maybe_write_sink() {
        while (!write_inflight_ && !sink_poll_inflight_ && !jobs_.empty() && !error_) {
            frame_job& job = jobs_.front();
            auto [start, len] = next_run(job);
            if (len == 0) {
                complete_job();
                continue;
            }
            if (pipes_ && pipes_->stage) {
                const sink_stage& stage = *pipes_->stage;
                const std::uint64_t at = job.pos + start;
                stage_drop(at);
                if (!stage.empty() && stage.front_lo() == at) {
                    splice_sink(job, std::min(len, stage.front_hi() - at));
                    continue;
                }
                if (!stage.empty()) len = std::min(len, stage.front_lo() - at);  // up to the stage's oldest run
            }
            const auto bytes = ring_.at(job.pos + start, static_cast<std::size_t>(len));
            const std::uint64_t offset = sink_.kind == sink_kind::sequential ? ~0ull : job.offset + start;
            auto* sqe = uring_.sqe();
            io_uring_prep_write(sqe, sink_.fd, bytes.data(), static_cast<unsigned>(len), offset);
            submit(sqe, op::sink_write);
            write_inflight_ = true;
            stats_.sink_write_since_ns.store(flow_clock_ns(), std::memory_order_relaxed);
        }
    }

    void on_sink_write(int res) {
        write_inflight_ = false;
        stats_.sink_busy_ns.fetch_add(flow_clock_ns() - stats_.sink_write_since_ns.exchange(0, std::memory_order_relaxed),
                                      std::memory_order_relaxed);
        if (interrupted(res)) return;  // maybe_write_sink() writes the same run again
        if (res <= 0) return fail_sys(res == 0 ? -EIO : res, "write the local sink at offset " +
                                                             std::to_string(jobs_.front().offset + jobs_.front().done));
        jobs_.front().done += static_cast<std::uint64_t>(res);
    }

    // Stage -> sink, without waiting: EAGAIN arms a poll for room in the sink's pipe.
    void splice_sink(frame_job& job, std::uint64_t len) {
        const ssize_t n = pipes_->stage->splice_to(sink_.fd, static_cast<std::size_t>(len));
        if (n > 0) {
            job.done += static_cast<std::uint64_t>(n);
            stats_.sink_spliced_bytes.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
            return;
        }
        if (n == -EINTR) return;
        if (n == -EAGAIN) {
            auto* sqe = uring_.sqe();
            io_uring_prep_poll_add(sqe, sink_.fd, POLLOUT);
            submit(sqe, op::sink_poll);
            sink_poll_inflight_ = true;
            stats_.sink_write_since_ns.store(flow_clock_ns(), std::memory_order_relaxed);
            return;
        }
        fail_sys(n == 0 ? -EIO : static_cast<int>(n), "write the local sink at offset " + std::to_string(job.offset + job.done));
    }

    void on_sink_poll(int res) {
        sink_poll_inflight_ = false;
        stats_.sink_busy_ns.fetch_add(flow_clock_ns() - stats_.sink_write_since_ns.exchange(0, std::memory_order_relaxed),
                                      std::memory_order_relaxed);
        // ready, or its reader is gone (POLLERR): the next splice says which
        if (res < 0 && !interrupted(res) && res != -ECANCELED) fail_sys(res, "poll the local sink");
    }

    void complete_job() {
        const frame_job job = jobs_.front();
        jobs_.pop_front();
        ring_.consume(store_reader, static_cast<std::size_t>(job.ring_end - ring_.read_position(store_reader)));
        stored_ = job.offset + job.len;
        stats_.stored_bytes.store(stored_, std::memory_order_relaxed);
    }

    // ---- acknowledgements

    // What this node and its subtree hold, up to the parent; one ack in flight.
    void maybe_send_ack() {
        if (parent_ != parent_state::attached || ack_out_inflight_ || sent_complete_) return;
        const std::uint64_t offset = std::min(stored_, children_acked());
        const bool complete = end_verified_ && jobs_.empty() && !write_inflight_ && children_complete();
        if (offset == sent_ack_ && !complete) return;
        protocol::encode_ack({offset, complete}, std::span<std::byte, protocol::ack_bytes>(ack_out_));
        auto* sqe = uring_.sqe();
        io_uring_prep_send(sqe, parent_fd_, ack_out_.data(), ack_out_.size(), MSG_NOSIGNAL);
        submit(sqe, op::ack_out);
        ack_out_inflight_ = true;
        sent_ack_ = offset;
        sending_complete_ = complete;
        stats_.acked_bytes.store(offset, std::memory_order_relaxed);
    }

    void on_ack_out(int res) {
        ack_out_inflight_ = false;
        if (parent_ != parent_state::attached) return;
        if (interrupted(res)) {
            sent_ack_ = ~0ull;  // not sent: maybe_send_ack() sends the current state again
            return;
        }
        // The parent went away: what it sent is still to be received and verified here.
        if (res < 0) return begin_detach("send an acknowledgement to the parent: " + errno_text(res));
        if (static_cast<std::size_t>(res) != protocol::ack_bytes)
            return fail(error{std::make_error_code(std::errc::io_error), "short acknowledgement send"});
        sent_complete_ = sending_complete_;
    }

    void handle(const io_uring_cqe& cqe) {
        if (handle_common(cqe)) return;
        switch (kind_of(cqe)) {
            case op::parent_in: return pipes_ ? on_parent_poll(cqe.res) : on_parent_in(cqe.res);
            case op::child_poll:
                if (child_link* c = link_of(tag_of(cqe))) on_child_poll(cqe.res, *c);
                return;
            case op::sink_write: return on_sink_write(cqe.res);
            case op::sink_poll: return on_sink_poll(cqe.res);
            case op::ack_out: return on_ack_out(cqe.res);
            default: return;
        }
    }

    std::optional<splice_pipes> pipes_;  // splice mode with one child only
    local_sink sink_;
    parent_state parent_ = parent_state::none;
    int parent_fd_ = -1;
    int next_parent_fd_ = -1;
    std::string detach_reason_;
    bool detach_requested_ = false;  // the control plane asked for the detach in progress (or the next)
    std::size_t in_bytes_ = 0;       // splice mode: in the in pipe, not teed yet
    std::size_t forward_bytes_ = 0;  // splice mode: in the forward pipe, not sent to the child yet
    bool parent_wants_poll_ = false, parent_poll_inflight_ = false;
    static constexpr std::uint64_t batch_bytes = 256u << 10;
    int rcvlowat_ = 1;  // SO_RCVLOWAT of the parent's socket
    // buffer_ahead: since the piped child's pipe was first full and has not been empty again
    std::uint64_t pipe_full_since_ = 0;
    static constexpr std::uint64_t buffer_ahead_after_ns = 100'000'000;
    bool receive_inflight_ = false;
    bool parent_eof_ = false;

    std::uint64_t parse_pos_ = 0;
    std::optional<protocol::frame_header> head_;  // of the frame at parse_pos_, once checked
    protocol::payload_hasher hasher_;              // its payload's first hashed_ bytes
    std::uint64_t hashed_ = 0;
    std::uint64_t next_offset_ = 0;
    std::uint64_t total_ = 0;
    bool end_verified_ = false;
    protocol::digest_state digest_;

    std::deque<frame_job> jobs_;
    bool write_inflight_ = false;
    bool sink_poll_inflight_ = false;
    std::uint64_t stored_ = 0;

    std::array<std::byte, protocol::ack_bytes> ack_out_{};
    bool ack_out_inflight_ = false;
    std::uint64_t sent_ack_ = 0;
    bool sending_complete_ = false;
    bool sent_complete_ = false;
};

constexpr unsigned ring_entries = 64;

}  // namespace

std::uint64_t flow_clock_ns() noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

result<relay_result> run_source(int source_fd, std::span<const std::uint32_t> children, const relay_config& config,
                                relay_stats& stats, relay_control& control) {
    auto uring = net::uring::create(ring_entries);
    if (!uring) return std::move(uring).error();
    const std::size_t frame_bytes = frame_header_bytes + config.frame_payload_bytes + protocol::frame_tag_bytes;
    auto ring = ring_buffer::create(config.buffer_bytes, 1, std::max(config.buffer_bytes / 4, frame_bytes));
    if (!ring) return std::move(ring).error();
    if (ring->capacity() < 2 * frame_bytes)
        return error{make_error_code(kaclone::errc::out_of_range), "--buffer must hold two frames"};
    grow_if_pipe(source_fd);
    source_node node{*std::move(uring), *std::move(ring), source_fd, children, config, stats, control};
    return node.run();
}

result<relay_result> run_relay(std::span<const std::uint32_t> children, local_sink sink, const relay_config& config,
                               relay_stats& stats, relay_control& control) {
    auto uring = net::uring::create(ring_entries);
    if (!uring) return std::move(uring).error();
    // Splice mode forwards to one child through pipes, and receives through them also where a
    // pipe sink can take the received pages (a leaf, a tree); several children (a tree) or
    // zerocopy mode send from the ring.
    auto ring = ring_buffer::create(config.buffer_bytes, 2, config.buffer_bytes / 4);
    if (!ring) return std::move(ring).error();
    const bool pipe_sink = sink.kind == sink_kind::sequential && grow_if_pipe(sink.fd);
    std::optional<splice_pipes> pipes;
    if (config.mode == relay_mode::splice && (children.size() == 1 || pipe_sink)) {
        auto in = net::pipe_pair::create(pipe_bytes);
        if (!in) return std::move(in).error();
        auto forward = net::pipe_pair::create(pipe_bytes);
        if (!forward) return std::move(forward).error();
        pipes = splice_pipes{*std::move(in), *std::move(forward), std::nullopt};
        if (pipe_sink) {
            auto stage = sink_stage::create(sink_stage::limit_for(config.buffer_bytes));
            if (!stage) return std::move(stage).error();
            pipes->stage = *std::move(stage);
        }
    }
    relay_node node{*std::move(uring), *std::move(ring), std::move(pipes), children, sink, config, stats, control};
    return node.run();
}

}  // namespace kaclone
