// The data plane: a source node reads, frames and sends a stream; every other node receives
// it, verifies and stores it, forwards it to its child and acknowledges it to its parent.
// Each runs on a thread of its own with its own io_uring; the control plane talks to it only
// through relay_stats (atomics, read-only for it) and the stop eventfd.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <span>
#include <string>

#include <kaclone/auth.hpp>
#include <kaclone/protocol.hpp>
#include <kaclone/result.hpp>

namespace kaclone {

// How a relay forwards to its child. Both keep payload out of user-space copies on the forward
// path; which is faster depends on the NIC and kernel: bench/RESULTS.md has the figures.
enum class relay_mode : std::uint8_t {
    splice = 0,    // socket -> pipe (splice), tee into a second pipe -> child socket (splice):
                   // pages move, no copy; the first pipe is read for the local copy
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
    int stop_fd = -1;  // eventfd: a write makes the data plane stop with errc::operation_canceled
    // Test-only fault: the source flips the payload byte at this stream offset after computing
    // its frame's checksum (env KACLONE_FAULT_FLIP_BYTE).
    std::uint64_t fault_flip_byte = std::numeric_limits<std::uint64_t>::max();
    // Test-only fault: the source flips the payload byte at this stream offset after tagging
    // its frame and then writes the checksum of the altered payload, as someone rewriting
    // bytes on the wire would: only a session key's tag catches it (env KACLONE_FAULT_FORGE_BYTE).
    std::uint64_t fault_forge_byte = std::numeric_limits<std::uint64_t>::max();
    // Sessions with a key: the source tags every frame, every node verifies every tag (and
    // refuses untagged frames). Borrowed; must outlive run_source/run_relay. Null: open session.
    const auth::frame_signer* signer = nullptr;
};

// Counters the data plane updates and the control plane reads (progress, status).
struct relay_stats {
    std::atomic<std::uint64_t> stored_bytes{0};    // verified and written to the local sink
    std::atomic<std::uint64_t> acked_bytes{0};     // acknowledged by the whole subtree
};

struct relay_result {
    std::uint64_t bytes = 0;  // stream bytes
    protocol::stream_digest digest;
    std::chrono::steady_clock::duration drain{};  // source: from its EOF to the final ack
};

// Source node: reads `source_fd` to EOF, sends it framed to every one of `child_fds` (one in
// a chain, up to K in a K-ary tree) and keeps every byte until all children acknowledged it
// for their whole subtrees. Returns once they have acknowledged the complete stream.
// Blocking. Errors name the operation and the peer. The fds stay the caller's.
result<relay_result> run_source(int source_fd, std::span<const int> child_fds, const relay_config& config,
                                relay_stats& stats);

// Any other node: receives from `parent_fd`, verifies every frame, stores the payload into
// `sink`, forwards every byte to each of `child_fds` (none for a leaf) and acknowledges to the
// parent what it and its subtree stored. Returns once the stream is complete and verified here
// and below. With one child in splice mode the bytes to the child never enter user space.
result<relay_result> run_relay(int parent_fd, std::span<const int> child_fds, local_sink sink,
                               const relay_config& config, relay_stats& stats);

}  // namespace kaclone
