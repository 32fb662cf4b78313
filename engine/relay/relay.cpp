// The data plane of one node on io_uring: receive, verify, store, forward, acknowledge.
//
// Every node runs one event loop on a thread of its own: it keeps at most one operation of
// each kind in flight (one send per socket, so bytes never reorder), submits whatever can go,
// waits for a completion and handles it. All memory an SQE points at lives in the node object
// until the CQE is reaped; on error or stop the loop cancels everything and reaps it all
// before the node (and its ring) goes away.
#include <kaclone/relay.hpp>

#include <algorithm>
#include <cstring>
#include <deque>
#include <optional>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kaclone/ring_buffer.hpp>

#include "../net/uring.hpp"

namespace kaclone {
namespace {

using protocol::frame_header_bytes;

// What a completion belongs to (its user_data).
enum class op : std::uint64_t {
    stop,         // read of the stop eventfd
    parent_in,    // recv from the parent (ring mode), or poll it for bytes (splice mode)
    child_out,    // send/send_zc ring -> child (ring mode), or poll it for room (splice mode)
    sink_write,   // write ring -> local sink
    source_read,  // read source -> ring
    ack_in,       // recv acks from the child
    ack_out,      // send an ack to the parent
    cancel,       // the cancel-all issued when stopping
};

constexpr std::size_t max_io_bytes = 4u << 20;  // per recv/send/write: large, so syscalls vanish
constexpr std::size_t hole_block_bytes = 4096;

// An operation that a signal interrupted (SIGSTOP/SIGCONT of the process, for one: io-wq
// workers then complete blocking splices with -ERESTARTSYS) did nothing and is submitted again.
bool interrupted(int res) noexcept {
    constexpr int erestartsys = 512, erestartnointr = 513, erestartnohand = 514;
    return res == -EINTR || res == -EAGAIN || res == -erestartsys || res == -erestartnointr || res == -erestartnohand;
}

bool all_zero(const std::byte* p, std::size_t n) noexcept {
    // memcmp against itself shifted by 1 byte: zero iff every byte equals the first, which is 0.
    return n == 0 || (p[0] == std::byte{0} && std::memcmp(p, p + 1, n - 1) == 0);
}

// State and mechanics shared by the source and the other nodes: the ring, the uring, counting
// of operations in flight, the stop eventfd, the child's acks and the error that ends the loop.
class node_base {
protected:
    // One child's data connection: its acks, and (ring mode) what has been sent to it.
    struct child_link {
        int fd = -1;
        std::size_t reader = 0;  // its ring reader (ring mode)
        std::array<std::byte, 64 * protocol::ack_bytes> ack_in{};
        std::size_t ack_in_fill = 0;
        bool ack_in_inflight = false;
        bool closed = false;
        std::uint64_t acked = 0;
        bool complete = false;
        bool send_inflight = false;
        std::uint64_t sent_pos = 0;
        std::deque<std::uint64_t> zc_pending;  // SEND_ZC: sent up to here, notification pending
    };

    node_base(net::uring uring, ring_buffer ring, const relay_config& config, relay_stats& stats,
              std::span<const int> child_fds, std::size_t first_child_reader)
        : uring_(std::move(uring)), ring_(std::move(ring)), config_(config), stats_(stats) {
        for (std::size_t i = 0; i < child_fds.size(); ++i) {
            children_.emplace_back();
            children_.back().fd = child_fds[i];
            children_.back().reader = first_child_reader + i;
        }
    }
    virtual ~node_base() = default;

    // user_data: the op in the low 32 bits, `index` (which child or splice round) in the high ones.
    void submit(io_uring_sqe* sqe, op kind, std::size_t index = 0) noexcept {
        io_uring_sqe_set_data64(sqe, static_cast<std::uint64_t>(kind) | (std::uint64_t{index} << 32));
        ++inflight_;
    }
    static op kind_of(const io_uring_cqe& cqe) noexcept { return static_cast<op>(cqe.user_data & 0xffffffffu); }
    static std::size_t index_of(const io_uring_cqe& cqe) noexcept { return static_cast<std::size_t>(cqe.user_data >> 32); }

    void fail(error e) {
        if (!error_) error_ = std::move(e);
    }
    void fail_sys(int negative_errno, std::string where) { fail(sys_error(-negative_errno, std::move(where))); }

    void start_stop_watch() {
        if (config_.stop_fd < 0) return;
        submit_read(config_.stop_fd, std::as_writable_bytes(std::span(&stop_value_, 1)), op::stop);
    }

    void submit_read(int fd, std::span<std::byte> into, op kind, std::uint64_t offset = ~0ull) {
        auto* sqe = uring_.sqe();
        io_uring_prep_read(sqe, fd, into.data(), static_cast<unsigned>(into.size()), offset);
        submit(sqe, kind);
    }

    bool has_children() const noexcept { return !children_.empty(); }
    // What every child's subtree holds, and whether all of them verified the end.
    std::uint64_t children_acked() const noexcept {
        std::uint64_t least = ~0ull;
        for (const auto& c : children_) least = std::min(least, c.acked);
        return least;
    }
    bool children_complete() const noexcept {
        return std::all_of(children_.begin(), children_.end(), [](const child_link& c) { return c.complete; });
    }
    std::string child_name(std::size_t i) const {
        return children_.size() == 1 ? "the child" : "child " + std::to_string(i + 1) + " of " + std::to_string(children_.size());
    }

    // Child acks: one recv in flight per child; completes whole 16-byte acks as they arrive.
    void maybe_receive_acks() {
        for (std::size_t i = 0; i < children_.size(); ++i) {
            child_link& c = children_[i];
            if (c.ack_in_inflight || c.closed) continue;
            auto* sqe = uring_.sqe();
            io_uring_prep_recv(sqe, c.fd, c.ack_in.data() + c.ack_in_fill, c.ack_in.size() - c.ack_in_fill, 0);
            submit(sqe, op::ack_in, i);
            c.ack_in_inflight = true;
        }
    }
    void on_ack_in(int res, std::size_t i) {
        child_link& c = children_[i];
        c.ack_in_inflight = false;
        if (interrupted(res)) return;
        if (res < 0) return fail_sys(res, "receive acknowledgements from " + child_name(i));
        if (res == 0) {
            c.closed = true;
            if (!c.complete) fail(error{std::make_error_code(std::errc::connection_reset),
                                        child_name(i) + " closed the data connection at offset " + std::to_string(c.acked) +
                                            " before the end"});
            return;
        }
        c.ack_in_fill += static_cast<std::size_t>(res);
        std::size_t used = 0;
        for (; c.ack_in_fill - used >= protocol::ack_bytes; used += protocol::ack_bytes) {
            auto a = protocol::decode_ack(std::span<const std::byte, protocol::ack_bytes>(c.ack_in.data() + used, protocol::ack_bytes),
                                          "acknowledgement from " + child_name(i));
            if (!a) return fail(std::move(a).error());
            c.acked = std::max(c.acked, a->offset);
            c.complete = c.complete || a->complete;
        }
        std::memmove(c.ack_in.data(), c.ack_in.data() + used, c.ack_in_fill - used);
        c.ack_in_fill -= used;
        on_child_ack();
    }
    virtual void on_child_ack() {}

    // Ring -> every child, one send in flight per child; each child's bytes stay reserved (its
    // reader) until sent, and with SEND_ZC until the kernel's notification says it no longer
    // needs them.
    void maybe_forward(bool zerocopy) {
        const std::uint64_t end = ring_.write_position();
        for (std::size_t i = 0; i < children_.size(); ++i) {
            child_link& c = children_[i];
            if (c.send_inflight || c.sent_pos == end) continue;
            const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(end - c.sent_pos, max_io_bytes));
            const auto bytes = ring_.at(c.sent_pos, n);
            auto* sqe = uring_.sqe();
            if (zerocopy && zerocopy_works_) io_uring_prep_send_zc(sqe, c.fd, bytes.data(), n, MSG_NOSIGNAL, 0);
            else io_uring_prep_send(sqe, c.fd, bytes.data(), n, MSG_NOSIGNAL);
            submit(sqe, op::child_out, i);
            c.send_inflight = true;
        }
    }
    void on_forward(const io_uring_cqe& cqe, std::size_t i) {
        child_link& c = children_[i];
        if (cqe.flags & IORING_CQE_F_NOTIF) {  // the kernel is done with the oldest zc send
            KACLONE_ASSERT(!c.zc_pending.empty());
            ring_.consume(c.reader, static_cast<std::size_t>(c.zc_pending.front() - ring_.read_position(c.reader)));
            c.zc_pending.pop_front();
            return;
        }
        c.send_inflight = false;
        if (interrupted(cqe.res)) return;
        if ((cqe.res == -EINVAL || cqe.res == -EOPNOTSUPP) && zerocopy_works_) {
            zerocopy_works_ = false;  // kernel or socket without SEND_ZC: plain send from now on
            return;
        }
        if (cqe.res <= 0) return fail_sys(cqe.res == 0 ? -EPIPE : cqe.res, "send to " + child_name(i));
        c.sent_pos += static_cast<std::uint64_t>(cqe.res);
        if (cqe.flags & IORING_CQE_F_MORE) {
            ++inflight_;  // the notification is still to come
            c.zc_pending.push_back(c.sent_pos);
        } else if (c.zc_pending.empty()) {
            ring_.consume(c.reader, static_cast<std::size_t>(c.sent_pos - ring_.read_position(c.reader)));
        } else {
            c.zc_pending.push_back(c.sent_pos);  // keep the order behind earlier notifications
        }
    }

    // Stops everything in flight and reaps every completion, so no SQE outlives its memory.
    // After an error the parent side is shut down both ways (also waking splices blocked in
    // io-wq); the child only gets our end of stream, so it still verifies every byte we
    // forwarded and reports a bad frame itself instead of a reset. After success only the
    // receive side is shut: that ends a receive still waiting for bytes after the end frame.
    void drain(int parent_fd) {
        if (inflight_ == 0) return;
        if (parent_fd >= 0) ::shutdown(parent_fd, error_ ? SHUT_RDWR : SHUT_RD);
        if (error_)
            for (const auto& c : children_) ::shutdown(c.fd, SHUT_WR);
        auto* sqe = uring_.sqe();
        io_uring_prep_cancel(sqe, nullptr, IORING_ASYNC_CANCEL_ANY);
        submit(sqe, op::cancel);
        while (inflight_ > 0) {
            if (uring_.submit_and_wait() < 0) break;
            reap([this](const io_uring_cqe& cqe) {
                if (kind_of(cqe) == op::child_out && (cqe.flags & IORING_CQE_F_MORE)) ++inflight_;
            });
        }
    }

    // Handles every completion that is ready.
    template <class Handler>
    void reap(Handler&& handle) {
        io_uring_cqe* cqe = nullptr;
        unsigned head = 0, seen = 0;
        io_uring_for_each_cqe(uring_.get(), head, cqe) {
            ++seen;
            --inflight_;
            handle(*cqe);
        }
        io_uring_cq_advance(uring_.get(), seen);
    }

    void on_stop() { fail(error{std::make_error_code(std::errc::operation_canceled), "data plane stopped"}); }

    net::uring uring_;
    ring_buffer ring_;
    const relay_config& config_;
    relay_stats& stats_;
    std::vector<child_link> children_;
    unsigned inflight_ = 0;
    std::optional<error> error_;
    std::uint64_t stop_value_ = 0;
    bool zerocopy_works_ = true;
};

// ---------------------------------------------------------------- source

class source_node : node_base {
public:
    // Ring readers: one per child (what it was sent), then the retention (what all acked).
    source_node(net::uring uring, ring_buffer ring, int source_fd, std::span<const int> child_fds,
                const relay_config& config, relay_stats& stats)
        : node_base(std::move(uring), std::move(ring), config, stats, child_fds, 0),
          source_fd_(source_fd), retain_reader_(child_fds.size()) {}

    result<relay_result> run() {
        start_stop_watch();
        while (!error_ && !(end_committed_ && children_complete())) {
            maybe_read_source();
            maybe_forward(config_.mode == relay_mode::zerocopy);
            maybe_receive_acks();
            if (const int rc = uring_.submit_and_wait(); rc < 0) fail_sys(rc, "io_uring wait");
            reap([this](const io_uring_cqe& cqe) { handle(cqe); });
        }
        drain(-1);
        if (error_) return *error_;
        return relay_result{offset_, digest_.digest(), std::chrono::steady_clock::now() - eof_at_};
    }

private:
    struct frame_end {
        std::uint64_t ring_end;
        std::uint64_t stream_end;
        bool is_end;
    };

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
        submit_read(source_fd_, frame.subspan(frame_header_bytes + fill_, config_.frame_payload_bytes - fill_),
                    op::source_read);
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
        digest_.update(payload);
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

    // Retention: frames leave the ring once the whole subtree acknowledged them.
    void on_child_ack() override {
        const std::uint64_t acked = children_acked();
        const bool complete = children_complete();
        std::uint64_t release_to = ring_.read_position(retain_reader_);
        while (!frames_.empty() && frames_.front().stream_end <= acked && (!frames_.front().is_end || complete)) {
            release_to = frames_.front().ring_end;
            frames_.pop_front();
        }
        ring_.consume(retain_reader_, static_cast<std::size_t>(release_to - ring_.read_position(retain_reader_)));
        stats_.acked_bytes.store(acked, std::memory_order_relaxed);
    }

    void handle(const io_uring_cqe& cqe) {
        switch (kind_of(cqe)) {
            case op::source_read: return on_source_read(cqe.res);
            case op::child_out: return on_forward(cqe, index_of(cqe));
            case op::ack_in: return on_ack_in(cqe.res, index_of(cqe));
            case op::stop: return on_stop();
            default: return;
        }
    }

    int source_fd_;
    std::size_t retain_reader_;
    bool read_inflight_ = false;
    bool frame_open_ = false;
    bool eof_ = false;
    bool end_committed_ = false;
    std::size_t fill_ = 0;
    std::uint64_t offset_ = 0;
    std::chrono::steady_clock::time_point eof_at_{};
    std::deque<frame_end> frames_;
    protocol::digest_state digest_;
};

// ---------------------------------------------------------------- relay / leaf

// splice mode's two pipes (see relay_node::pump_splice): parent -> `in` -> tee -> `forward`
// -> child; what was teed is read from `in` into the ring for the frame check and the sink.
struct splice_pipes {
    net::pipe_pair in, forward;
};

class relay_node : node_base {
public:
    relay_node(net::uring uring, ring_buffer ring, std::optional<splice_pipes> pipes, int parent_fd,
               std::span<const int> child_fds, local_sink sink, const relay_config& config, relay_stats& stats)
        : node_base(std::move(uring), std::move(ring), config, stats, child_fds, store_reader + 1),
          pipes_(std::move(pipes)), parent_fd_(parent_fd), sink_(sink) {}

    result<relay_result> run() {
        start_stop_watch();
        while (!error_ && !finished()) {
            if (pipes_) {
                pump_splice();
            } else {
                maybe_receive();
                maybe_forward(config_.mode == relay_mode::zerocopy);
            }
            maybe_write_sink();
            maybe_receive_acks();
            maybe_send_ack();
            if (error_) break;  // pump_splice() fails synchronously: nothing more would complete
            if (const int rc = uring_.submit_and_wait(); rc < 0) fail_sys(rc, "io_uring wait");
            reap([this](const io_uring_cqe& cqe) { handle(cqe); });
        }
        drain(parent_fd_);
        if (error_) return *error_;
        if (sink_.kind == sink_kind::regular_file && ::ftruncate(sink_.fd, static_cast<off_t>(total_)) != 0)
            return last_sys_error("set the size of the sink file");
        return relay_result{total_, digest_.digest(), {}};
    }

private:
    static constexpr std::size_t store_reader = 0;  // then one reader per child in ring mode

    // A verified frame waiting to be written: payload [pos, pos + len) of the ring at stream
    // `offset`; the ring is released up to `ring_end` (its header included) once written.
    struct frame_job {
        std::uint64_t pos, len, offset, ring_end;
        std::uint64_t done = 0;
    };

    bool finished() const noexcept {
        return end_verified_ && jobs_.empty() && !write_inflight_ && children_complete() &&
               (sent_complete_ || parent_gone_) && !ack_out_inflight_;
    }

    // zerocopy mode and leaves: parent -> ring.
    void maybe_receive() {
        if (receive_inflight_ || end_verified_ || parent_eof_) return;
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
        if (res < 0) return fail_sys(res, "receive from the parent");
        if (res == 0) return on_parent_eof();
        ring_.commit(static_cast<std::size_t>(res));
        parse();
    }

    void on_parent_eof() {
        parent_eof_ = true;
        if (!end_verified_)
            fail(error{std::make_error_code(std::errc::connection_reset),
                       "parent closed the data connection at offset " + std::to_string(next_offset_) + " before the end of the stream"});
    }

    // splice mode, driven from this thread with non-blocking splice, tee and read: io_uring
    // only says when the parent has bytes or the child has room (one-shot polls), so no
    // operation waits in an io-wq worker (four thread hand-offs per round before) and no pipe
    // is ever held by a splice blocked on a socket.
    //   in:   parent -> in pipe, only when the in pipe is empty, at most what the ring can take;
    //   step: tee the in pipe -> forward pipe (appended behind what the child still has to
    //         get), then read exactly the teed bytes from the in pipe into the ring;
    //   out:  forward pipe -> child.
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
        if (parent_wants_poll_ && !parent_poll_inflight_) arm_poll(parent_fd_, POLLIN, op::parent_in, parent_poll_inflight_);
        if (child_wants_poll_ && !child_poll_inflight_) arm_poll(children_[0].fd, POLLOUT, op::child_out, child_poll_inflight_);
    }

    void arm_poll(int fd, unsigned events, op kind, bool& inflight) {
        auto* sqe = uring_.sqe();
        io_uring_prep_poll_add(sqe, fd, events);
        submit(sqe, kind);
        inflight = true;
    }

    void on_poll(int res, bool& inflight, bool& wants) {
        inflight = false;
        if (res < 0 && !interrupted(res) && res != -ECANCELED) return fail_sys(res, "poll a data connection");
        wants = false;  // ready (or interrupted): pump_splice() tries again and re-arms if need be
    }

    // True when bytes moved; EAGAIN: wait for the child's POLLOUT.
    bool splice_out() {
        if (forward_bytes_ == 0 || child_wants_poll_) return false;
        const ssize_t n = ::splice(pipes_->forward.read_end(), nullptr, children_[0].fd, nullptr, forward_bytes_,
                                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
            forward_bytes_ -= static_cast<std::size_t>(n);
            return true;
        }
        if (n < 0 && errno == EAGAIN) child_wants_poll_ = true;
        else if (n == 0 || errno != EINTR) fail_sys(n == 0 ? -EPIPE : -errno, "send to the child");
        return false;
    }

    bool tee_and_read() {
        if (in_bytes_ == 0) return false;
        const ssize_t teed = ::tee(pipes_->in.read_end(), pipes_->forward.write_end(), in_bytes_, SPLICE_F_NONBLOCK);
        if (teed <= 0) {
            if (teed == 0 || (errno != EAGAIN && errno != EINTR))
                fail_sys(teed == 0 ? -EIO : -errno, "tee the received bytes to the child's pipe");
            return false;  // EAGAIN: the forward pipe is full until the child takes more
        }
        forward_bytes_ += static_cast<std::size_t>(teed);
        for (std::size_t left = static_cast<std::size_t>(teed); left > 0;) {
            const auto into = ring_.writable(left);
            const ssize_t n = ::read(pipes_->in.read_end(), into.data(), into.size());
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                fail_sys(n == 0 ? -EPIPE : -errno, "read the received bytes from the pipe");
                return false;
            }
            ring_.commit(static_cast<std::size_t>(n));
            left -= static_cast<std::size_t>(n);
            in_bytes_ -= static_cast<std::size_t>(n);
        }
        parse();
        return true;
    }

    bool splice_in() {
        if (in_bytes_ > 0 || parent_wants_poll_ || parent_eof_ || end_verified_) return false;
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
        else if (errno != EINTR) fail_sys(-errno, "receive from the parent");
        return false;
    }


    std::string place() const { return "stream 0 at offset " + std::to_string(next_offset_); }

    // Verifies every complete frame after parse_pos_ and queues its payload for the sink.
    void parse() {
        while (!error_) {
            const std::uint64_t available = ring_.write_position() - parse_pos_;
            if (available < frame_header_bytes) return;
            if (end_verified_) return fail(error{make_error_code(protocol::errc::bad_field), "data after the end of the stream"});
            auto h = protocol::decode_frame_header(ring_.at(parse_pos_, frame_header_bytes).first<frame_header_bytes>(), place());
            if (!h) return fail(std::move(h).error());
            if (h->tagged != (config_.signer != nullptr))
                return fail(error{make_error_code(protocol::errc::unauthenticated),
                                  place() + (h->tagged ? ": a tagged frame on a session without a key"
                                                       : ": an untagged frame on a session with a key")});
            const std::uint64_t frame_bytes = h->frame_bytes();
            if (frame_bytes > ring_.capacity() / 2)
                return fail(error{make_error_code(protocol::errc::oversized),
                                  place() + ": frame of " + std::to_string(frame_bytes) + " bytes does not fit --buffer"});
            if (available < frame_bytes) return;
            if (h->offset != next_offset_)
                return fail(error{make_error_code(protocol::errc::bad_field),
                                  place() + ": frame claims offset " + std::to_string(h->offset)});
            const auto payload = ring_.at(parse_pos_ + frame_header_bytes, h->payload_bytes);
            if (protocol::payload_checksum(payload) != h->checksum)
                return fail(error{make_error_code(protocol::errc::bad_checksum), place()});
            if (config_.signer &&
                !config_.signer->verify(h->offset, ring_.at(parse_pos_, frame_header_bytes), payload,
                                        ring_.at(parse_pos_ + frame_header_bytes + h->payload_bytes, protocol::frame_tag_bytes)
                                            .first<protocol::frame_tag_bytes>()))
                return fail(error{make_error_code(protocol::errc::bad_tag), place()});
            const std::uint64_t ring_end = parse_pos_ + frame_bytes;
            if (h->type == protocol::frame_type::data) {
                digest_.update(payload);
                jobs_.push_back({parse_pos_ + frame_header_bytes, h->payload_bytes, next_offset_, ring_end});
                next_offset_ += h->payload_bytes;
            } else {
                const auto end = protocol::decode_end_payload(payload.first<protocol::end_payload_bytes>());
                if (end.total_bytes != next_offset_)
                    return fail(error{make_error_code(protocol::errc::bad_field),
                                      place() + ": the stream ends at " + std::to_string(end.total_bytes)});
                if (end.digest != digest_.digest())
                    return fail(error{make_error_code(protocol::errc::bad_checksum),
                                      place() + ": stream digest " + digest_.digest().hex() + ", the source's is " + end.digest.hex()});
                jobs_.push_back({ring_end, 0, next_offset_, ring_end});
                total_ = next_offset_;
                end_verified_ = true;
            }
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
        while (!write_inflight_ && !jobs_.empty()) {
            frame_job& job = jobs_.front();
            const auto [start, len] = next_run(job);
            if (len == 0) {
                complete_job();
                continue;
            }
            const auto bytes = ring_.at(job.pos + start, static_cast<std::size_t>(len));
            const std::uint64_t offset = sink_.kind == sink_kind::sequential ? ~0ull : job.offset + start;
            auto* sqe = uring_.sqe();
            io_uring_prep_write(sqe, sink_.fd, bytes.data(), static_cast<unsigned>(len), offset);
            submit(sqe, op::sink_write);
            write_inflight_ = true;
        }
    }

    void on_sink_write(int res) {
        write_inflight_ = false;
        if (interrupted(res)) return;  // maybe_write_sink() writes the same run again
        if (res <= 0) return fail_sys(res == 0 ? -EIO : res, "write the local sink at offset " +
                                                             std::to_string(jobs_.front().offset + jobs_.front().done));
        jobs_.front().done += static_cast<std::uint64_t>(res);
    }

    void complete_job() {
        const frame_job job = jobs_.front();
        jobs_.pop_front();
        ring_.consume(store_reader, static_cast<std::size_t>(job.ring_end - ring_.read_position(store_reader)));
        stored_ = job.offset + job.len;
        stats_.stored_bytes.store(stored_, std::memory_order_relaxed);
    }

    // What this node and its subtree hold, up to the parent; one ack in flight.
    void maybe_send_ack() {
        if (ack_out_inflight_ || sent_complete_ || parent_gone_) return;
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
        if (interrupted(res)) {
            sent_ack_ = ~0ull;  // not sent: maybe_send_ack() sends the current state again
            return;
        }
        if (res == -EPIPE || res == -ECONNRESET) {
            // The parent went away: what it sent is still to be received and verified here,
            // and the receive path reports how the stream ended.
            parent_gone_ = true;
            return;
        }
        if (res < 0) return fail_sys(res, "send an acknowledgement to the parent");
        if (static_cast<std::size_t>(res) != protocol::ack_bytes)
            return fail(error{std::make_error_code(std::errc::io_error), "short acknowledgement send"});
        sent_complete_ = sending_complete_;
    }

    void handle(const io_uring_cqe& cqe) {
        const std::size_t index = index_of(cqe);
        switch (kind_of(cqe)) {
            case op::parent_in:
                return pipes_ ? on_poll(cqe.res, parent_poll_inflight_, parent_wants_poll_) : on_parent_in(cqe.res);
            case op::child_out:
                return pipes_ ? on_poll(cqe.res, child_poll_inflight_, child_wants_poll_) : on_forward(cqe, index);
            case op::sink_write: return on_sink_write(cqe.res);
            case op::ack_in: return on_ack_in(cqe.res, index);
            case op::ack_out: return on_ack_out(cqe.res);
            case op::stop: return on_stop();
            default: return;
        }
    }

    std::optional<splice_pipes> pipes_;  // splice mode (one child) only
    int parent_fd_;
    local_sink sink_;
    std::size_t in_bytes_ = 0;       // splice mode: in the in pipe, not teed yet
    std::size_t forward_bytes_ = 0;  // splice mode: in the forward pipe, not sent to the child yet
    bool parent_wants_poll_ = false, parent_poll_inflight_ = false;
    bool child_wants_poll_ = false, child_poll_inflight_ = false;
    bool receive_inflight_ = false;
    bool parent_eof_ = false;

    std::uint64_t parse_pos_ = 0;
    std::uint64_t next_offset_ = 0;
    std::uint64_t total_ = 0;
    bool end_verified_ = false;
    protocol::digest_state digest_;

    std::deque<frame_job> jobs_;
    bool write_inflight_ = false;
    std::uint64_t stored_ = 0;

    std::array<std::byte, protocol::ack_bytes> ack_out_{};
    bool ack_out_inflight_ = false;
    std::uint64_t sent_ack_ = 0;
    bool sending_complete_ = false;
    bool sent_complete_ = false;
    bool parent_gone_ = false;  // acks can no longer be sent
};

constexpr unsigned ring_entries = 64;

// Every data connection is used non-blocking, whatever the caller left set: splice mode calls
// splice itself (tcp_splice_read takes its wait from the socket's O_NONBLOCK, not from
// SPLICE_F_NONBLOCK), and io_uring's recv and send arm a poll either way.
result<void> set_nonblocking(std::span<const int> fds) {
    for (const int fd : fds) {
        const int flags = ::fcntl(fd, F_GETFL);
        if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) return last_sys_error("make a data connection non-blocking");
    }
    return {};
}

}  // namespace

result<relay_result> run_source(int source_fd, std::span<const int> child_fds, const relay_config& config,
                                relay_stats& stats) {
    auto uring = net::uring::create(ring_entries);
    if (!uring) return std::move(uring).error();
    const std::size_t frame_bytes = frame_header_bytes + config.frame_payload_bytes + protocol::frame_tag_bytes;
    auto ring = ring_buffer::create(config.buffer_bytes, child_fds.size() + 1, std::max(config.buffer_bytes / 4, frame_bytes));
    if (!ring) return std::move(ring).error();
    if (ring->capacity() < 2 * frame_bytes)
        return error{make_error_code(kaclone::errc::out_of_range), "--buffer must hold two frames"};
    if (auto ok = set_nonblocking(child_fds); !ok) return std::move(ok).error();
    source_node node{*std::move(uring), *std::move(ring), source_fd, child_fds, config, stats};
    return node.run();
}

result<relay_result> run_relay(int parent_fd, std::span<const int> child_fds, local_sink sink, const relay_config& config,
                               relay_stats& stats) {
    auto uring = net::uring::create(ring_entries);
    if (!uring) return std::move(uring).error();
    // Splice mode forwards to one child without the ring; several children (a tree) or
    // zerocopy mode send from the ring, one reader per child.
    const bool splicing = child_fds.size() == 1 && config.mode == relay_mode::splice;
    const std::size_t readers = 1 + (splicing ? 0 : child_fds.size());
    auto ring = ring_buffer::create(config.buffer_bytes, readers, config.buffer_bytes / 4);
    if (!ring) return std::move(ring).error();
    std::optional<splice_pipes> pipes;
    if (splicing) {
        constexpr std::size_t pipe_bytes = 1u << 20;
        auto in = net::pipe_pair::create(pipe_bytes);
        if (!in) return std::move(in).error();
        auto forward = net::pipe_pair::create(pipe_bytes);
        if (!forward) return std::move(forward).error();
        pipes = splice_pipes{*std::move(in), *std::move(forward)};
    }
    if (sink.kind == sink_kind::sequential) {
        // A pipe sink (stdout into a pipeline, --exec) holds 64 KiB by default: writer and
        // reader then wake each other every 64 KiB. A larger pipe cuts those round trips 16x;
        // best effort, as a pipe we do not own may refuse it.
        struct stat st{};
        if (::fstat(sink.fd, &st) == 0 && S_ISFIFO(st.st_mode)) (void)::fcntl(sink.fd, F_SETPIPE_SZ, 1 << 20);
    }
    if (auto ok = set_nonblocking(child_fds); !ok) return std::move(ok).error();
    if (auto ok = set_nonblocking(std::span(&parent_fd, 1)); !ok) return std::move(ok).error();
    relay_node node{*std::move(uring), *std::move(ring), std::move(pipes), parent_fd, child_fds, sink, config, stats};
    return node.run();
}

}  // namespace kaclone
