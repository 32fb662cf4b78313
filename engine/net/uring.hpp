// uring: the one owner of an io_uring instance, and pipe_pair, the owner of a pipe. Internal
// to the engine: only the relay's data plane uses them.
#pragma once

#include <chrono>
#include <cstdint>

#include <liburing.h>

#include <kaclone/result.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::net {

// Move-only owner of an io_uring. Whatever an SQE points at must stay alive until its CQE has
// been reaped, also after a cancel (a cancel is one more SQE, not a free).
class uring {
public:
    static result<uring> create(unsigned entries);

    uring(uring&& other) noexcept : ring_(other.ring_), live_(std::exchange(other.live_, false)) {}
    uring& operator=(uring&&) = delete;
    uring(const uring&) = delete;
    uring& operator=(const uring&) = delete;
    ~uring() {
        if (live_) io_uring_queue_exit(&ring_);
    }

    // A free SQE, submitting the queued ones first when the queue is full. Never null.
    io_uring_sqe* sqe() noexcept;
    // Submits queued SQEs and waits for at least one CQE; a negative errno value on failure.
    int submit_and_wait() noexcept;
    // The same, waiting at most `timeout`: -ETIME when no CQE came in that time.
    int submit_and_wait_for(std::chrono::milliseconds timeout) noexcept;
    io_uring* get() noexcept { return &ring_; }

private:
    uring() noexcept = default;
    io_uring ring_{};
    bool live_ = false;
};

// A pipe whose capacity is set with F_SETPIPE_SZ; used to splice and tee between sockets.
class pipe_pair {
public:
    static result<pipe_pair> create(std::size_t capacity_bytes);
    int read_end() const noexcept { return read_.get(); }    // borrowed, still owned here
    int write_end() const noexcept { return write_.get(); }  // borrowed, still owned here
    std::size_t capacity() const noexcept { return capacity_; }

private:
    unique_fd read_, write_;
    std::size_t capacity_ = 0;
};

}  // namespace kaclone::net
