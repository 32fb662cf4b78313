// Finishing a child process that kaclone started (mkfs, a chroot command, --exec): collecting
// its output, reaping it and saying in words how it ended.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include <sys/types.h>

namespace kaclone {

// Reads `fd` (the child's stdout/stderr pipe, its write end closed here) until end of file and
// returns everything; `on_chunk`, when set, sees each piece as it arrives (for live logs).
std::string read_all(int fd, const std::function<void(std::string_view)>& on_chunk = {});

// Waits for `pid` (again after EINTR) and returns its wait status.
int reap_child(pid_t pid) noexcept;

// "" when `status` is a clean exit 0, else "exit status N" or "signal N".
std::string exit_problem(int status);

// The last `max_bytes` of `output` without trailing newlines: what to quote of a failed
// command's output in an error.
std::string output_tail(std::string output, std::size_t max_bytes = 600);

}  // namespace kaclone
