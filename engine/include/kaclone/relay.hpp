// The data plane: a source node reads, frames and sends a stream; every other node receives
// it, verifies and stores it, forwards it to its child and acknowledges it to its parent.
// Each runs on a thread of its own with its own io_uring; the control plane talks to it only
// through relay_stats (atomics, read-only for it) and the stop eventfd.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <kaclone/auth.hpp>
#include <kaclone/protocol.hpp>
#include <kaclone/result.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone {

// How a relay forwards to its child. Both keep payload out of user-space copies on the forward
// path; which is faster depends on the NIC and kernel: bench/RESULTS.md has the figures.
enum class relay_mode : std::uint8_t {
    splice = 0,    // socket -> pipe (splice), tee into a second pipe -> child socket (splice):
                   // pages move, no copy; the first pipe is read for the local copy (a pipe
                   // sink gets the pages too, teed into a stage of pipes, once verified)
    zerocopy = 1,  // socket -> ring buffer (the local copy), ring -> child with SEND_ZC
};

enum class sink_kind : std::uint8_t {
    regular_file,  // written at stream offsets; whole zero blocks become holes
    block_device,  // written at stream offsets, every byte
    sequential,    // a pipe, a terminal, a command's stdin: written in order
};

struct local_sink {
    int fd = -1;  // borrowed: owned by the caller, open until run_relay returns
    sink_kind kind = sink_kind::sequential;
};

struct relay_config {
    std::uint64_t buffer_bytes = 64u << 20;
    relay_mode mode = relay_mode::splice;
    std::uint32_t frame_payload_bytes = protocol::default_frame_payload_bytes;  // source only
    // Test-only fault: the source flips the payload byte at this stream offset after computing
    // its frame's checksum (env KACLONE_FAULT_FLIP_BYTE).
    std::uint64_t fault_flip_byte = std::numeric_limits<std::uint64_t>::max();
    // Test-only fault: the source flips the payload byte at this stream offset after tagging
    // its frame and then writes the checksum of the altered payload, as someone rewriting
    // bytes on the wire would: only a session key's tag catches it (env KACLONE_FAULT_FORGE_BYTE).
    std::uint64_t fault_forge_byte = std::numeric_limits<std::uint64_t>::max();
    // Test-only fault: zerocopy mode, every SEND_ZC to a child from this wire position on is
    // made with flags the kernel refuses, as a kernel or socket without SEND_ZC would (env
    // KACLONE_FAULT_REFUSE_ZEROCOPY_AT, serve and join).
    std::uint64_t fault_refuse_zerocopy_at = std::numeric_limits<std::uint64_t>::max();
    // Sessions with a key: the source tags every frame, every node verifies every tag (and
    // refuses untagged frames). Borrowed; must outlive run_source/run_relay. Null: open session.
    const auth::frame_signer* signer = nullptr;
    // Splice mode: a child whose forward pipe was full and has not been empty since, for
    // 100 ms, is sent from the ring (until it catches up), so that this node takes in at its
    // own link's pace and its one buffer, not the pipe, absorbs the difference. The server
    // asks for it with --drop-slow: then a node whose own link is slow is not held back by its
    // children and can be told from one that is. Costs a copy per byte to such a child while
    // it is behind.
    bool buffer_ahead = false;
};

// Counters the data plane updates and the control plane reads (progress, status).
struct relay_stats {
    std::atomic<std::uint64_t> stored_bytes{0};    // verified and written to the local sink (source: read)
    std::atomic<std::uint64_t> acked_bytes{0};     // acknowledged by the whole subtree
    // Source: bytes held for replay because not every node below has them yet; when it nears
    // --buffer, the slowest subtree holds everyone back.
    std::atomic<std::uint64_t> retained_bytes{0};

    // Flow: what holds the stream back, for the server's --drop-slow and stall rules (a node
    // reports these once a second). Times are steady-clock nanoseconds.
    std::atomic<std::uint64_t> intake_wire_bytes{0};  // wire bytes taken into the ring (source: framed)
    std::atomic<std::uint64_t> held_ns{0};            // time the intake waited for room in a full ring (ended holds)
    std::atomic<std::uint64_t> held_since_ns{0};      // start of the hold in progress; 0: none
    std::atomic<std::uint64_t> sink_busy_ns{0};       // time with a write to the local sink in flight (ended writes)
    std::atomic<std::uint64_t> sink_write_since_ns{0};  // start of the write in flight; 0: none
    // Splice mode with a pipe for a sink: payload spliced to it from the received pages (the
    // rest was written from the ring: while the sink was slow, or in zerocopy mode).
    std::atomic<std::uint64_t> sink_spliced_bytes{0};
};

// Steady-clock nanoseconds, the time base of relay_stats.
std::uint64_t flow_clock_ns() noexcept;

struct relay_result {
    std::uint64_t bytes = 0;  // stream bytes
    protocol::stream_digest digest;
    std::chrono::steady_clock::duration drain{};  // source: from its EOF to the final ack
    std::string zerocopy_refused;  // zerocopy mode: why and where it fell back to plain sends ("" if not)
};

// What the data plane tells the control plane while it runs (called on the data plane's
// thread; the callee only hands it over).
struct relay_event {
    enum class kind {
        child_lost,       // the data connection to child `node` broke before the end
        parent_detached,  // no parent now (it broke, or detach_parent): resume at `wire`
    };
    kind what;
    std::uint32_t node = 0;    // child_lost: which child
    std::uint64_t offset = 0;  // child_lost: what it had acknowledged; parent_detached: stored here
    std::uint64_t wire = 0;    // parent_detached: wire bytes (frames included) received so far
    std::uint64_t acked = 0;   // parent_detached: what this node and its subtree hold
    std::string reason;
    // parent_detached: the answer to detach_parent (one per call, also when the connection had
    // broken by itself meanwhile); false: it broke by itself, nobody asked.
    bool requested = false;
};

// The control plane's hold on a running data plane: data connections come and go while the
// stream flows (children connect when they are ready; a failed node's children move to its
// nearest live ancestor and resume there). Commands are queued and wake the data plane; every
// method is thread-safe. The fds stay the caller's and must stay open until the data plane
// returns (it only shuts down the ones it gives up).
class relay_control {
public:
    static result<std::unique_ptr<relay_control>> create();

    // A child's data connection, accepted and authenticated: send it the stream from wire byte
    // `resume` on; `acked` and `complete` are what it said it holds (data_hello).
    struct child {
        std::uint32_t node = 0;
        int fd = -1;
        std::uint64_t resume = 0;
        std::uint64_t acked = 0;
        bool complete = false;
    };
    void attach_child(child c);
    // Child `lost` failed; `instead` (its children) will connect in its place. Until they do,
    // everything they may still need is kept.
    void replace_child(std::uint32_t lost, std::vector<std::uint32_t> instead);
    // The parent's data connection (the first, or a new one after detach_parent).
    void attach_parent(int fd);
    // Stop using the parent's connection (it failed); answered by a parent_detached event.
    void detach_parent();
    // Make the data plane return with errc::operation_canceled.
    void stop();

    using event_fn = std::function<void(const relay_event&)>;
    void on_event(event_fn fn);  // set before the data plane runs

    // The data plane's side.
    struct replace {
        std::uint32_t lost;
        std::vector<std::uint32_t> instead;
    };
    struct parent {
        int fd;  // -1: detach
    };
    struct halt {};
    using command = std::variant<child, replace, parent, halt>;
    int wake_fd() const noexcept { return wake_.get(); }
    std::vector<command> take();
    void emit(const relay_event& e) const;

private:
    explicit relay_control(unique_fd wake) : wake_(std::move(wake)) {}
    void push(command c);
    unique_fd wake_;
    mutable std::mutex mutex_;
    std::vector<command> pending_;
    event_fn on_event_;
};

// Source node: reads `source_fd` to EOF and sends it framed to its children (`children`: their
// node numbers; each attaches through `control` when it connects, one in a chain, up to K in a
// K-ary tree). Keeps every byte until all children acknowledged it for their whole subtrees,
// so a child that resumes after a failure finds it. Returns once every child that is still
// there has acknowledged the complete stream. Blocking. The fds stay the caller's.
result<relay_result> run_source(int source_fd, std::span<const std::uint32_t> children, const relay_config& config,
                                relay_stats& stats, relay_control& control);

// Any other node: receives from the parent that `control` attaches, verifies every frame,
// stores the payload into `sink`, forwards every byte to each child and acknowledges to the
// parent what it and its subtree stored. Keeps what its subtree has not acknowledged, so the
// children of a failed child can resume here. Returns once the stream is complete and verified
// here and below. With one child in splice mode the bytes to the child never enter user space.
result<relay_result> run_relay(std::span<const std::uint32_t> children, local_sink sink, const relay_config& config,
                               relay_stats& stats, relay_control& control);

}  // namespace kaclone
