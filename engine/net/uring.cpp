// uring and pipe_pair.
#include "uring.hpp"

#include <fcntl.h>
#include <unistd.h>

namespace kaclone::net {

result<uring> uring::create(unsigned entries) {
    uring r;
    const int rc = io_uring_queue_init(entries, &r.ring_, 0);
    if (rc < 0) return sys_error(-rc, "io_uring_queue_init");
    r.live_ = true;
    return r;
}

io_uring_sqe* uring::sqe() noexcept {
    io_uring_sqe* s = io_uring_get_sqe(&ring_);
    while (s == nullptr) {
        io_uring_submit(&ring_);
        s = io_uring_get_sqe(&ring_);
    }
    return s;
}

int uring::submit_and_wait() noexcept {
    int rc;
    do rc = io_uring_submit_and_wait(&ring_, 1);
    while (rc == -EINTR);
    return rc < 0 ? rc : 0;
}

int uring::submit_and_wait_for(std::chrono::milliseconds timeout) noexcept {
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    __kernel_timespec ts{.tv_sec = secs.count(), .tv_nsec = std::chrono::nanoseconds(timeout - secs).count()};
    io_uring_cqe* cqe = nullptr;
    int rc;
    do rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    while (rc == -EINTR);
    return rc < 0 ? rc : 0;
}

result<pipe_pair> pipe_pair::create(std::size_t capacity_bytes) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return last_sys_error("pipe2");
    pipe_pair p;
    p.read_.reset(fds[0]);
    p.write_.reset(fds[1]);
    // Root may exceed /proc/sys/fs/pipe-max-size; others get what the kernel allows.
    const int got = ::fcntl(fds[1], F_SETPIPE_SZ, static_cast<int>(capacity_bytes));
    p.capacity_ = got > 0 ? static_cast<std::size_t>(got) : static_cast<std::size_t>(::fcntl(fds[1], F_GETPIPE_SZ));
    return p;
}

}  // namespace kaclone::net
