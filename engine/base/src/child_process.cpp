// read_all, reap_child, exit_problem, output_tail.
#include <kaclone/child_process.hpp>

#include <array>
#include <cerrno>

#include <sys/wait.h>
#include <unistd.h>

namespace kaclone {

std::string read_all(int fd, const std::function<void(std::string_view)>& on_chunk) {
    std::string output;
    std::array<char, 4096> buf{};
    for (;;) {
        const ssize_t n = ::read(fd, buf.data(), buf.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        const std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
        output += chunk;
        if (on_chunk) on_chunk(chunk);
    }
    return output;
}

int reap_child(pid_t pid) noexcept {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

std::string exit_problem(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status) == 0 ? "" : "exit status " + std::to_string(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
    return "wait status " + std::to_string(status);
}

std::string output_tail(std::string output, std::size_t max_bytes) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return output.size() > max_bytes ? output.substr(output.size() - max_bytes) : output;
}

}  // namespace kaclone
