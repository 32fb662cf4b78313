// unique_fd: the one owner of a file descriptor; closes it when it goes.
#pragma once

#include <filesystem>
#include <utility>

#include <sys/types.h>

#include <kaclone/result.hpp>

namespace kaclone {

// Move-only owner of one file descriptor (or of none: -1). Others borrow the `int` from get()
// and must not close it.
class unique_fd {
public:
    unique_fd() noexcept = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other) reset(other.release());
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }

    // The descriptor, still owned here (-1 when empty).
    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }

    // Gives up ownership: the caller now owns the returned descriptor.
    [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

    // Closes the current descriptor (if any) and owns `fd` instead. A close error is ignored:
    // Linux releases the descriptor even then, and retrying could close someone else's.
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

// open(2) with O_CLOEXEC added; the error names the path.
result<unique_fd> open_fd(const std::filesystem::path& path, int flags, mode_t mode = 0);

}  // namespace kaclone
