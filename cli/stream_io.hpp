// Opening what serve reads and join writes: files, block devices, stdin/stdout, a command.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include <sys/types.h>

#include <kaclone/relay.hpp>
#include <kaclone/result.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::cli {

struct opened_source {
    unique_fd owned;         // empty for stdin
    int fd = -1;             // borrowed from `owned` or 0
    std::uint64_t bytes = 0; // 0 when unknown (stdin, pipes)
};
// "-" is stdin; otherwise a regular file or a block device.
result<opened_source> open_source(const std::string& path);

// Where join stores the stream: a file, a block device, stdout, or a command's stdin.
class opened_sink {
public:
    // "-" is stdout; a path is created (truncated) when it is not a block device.
    static result<opened_sink> open_path(const std::string& path);
    // `sh -c command` with the stream on its stdin.
    static result<opened_sink> exec(const std::string& command);

    opened_sink(opened_sink&& other) noexcept
        : owned_(std::move(other.owned_)), sink_(other.sink_), child_(std::exchange(other.child_, -1)),
          command_(std::move(other.command_)) {}
    opened_sink& operator=(opened_sink&&) = delete;
    ~opened_sink();

    local_sink sink() const noexcept { return sink_; }
    // Closes the sink; for a command, waits for it and fails unless it exited 0.
    result<void> finish();

private:
    opened_sink() = default;
    unique_fd owned_;
    local_sink sink_;
    pid_t child_ = -1;
    std::string command_;
};

}  // namespace kaclone::cli
