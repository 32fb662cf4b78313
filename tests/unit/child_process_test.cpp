// read_all, reap_child, exit_problem, output_tail (kaclone/child_process.hpp).
#include <kaclone/child_process.hpp>

#include <csignal>

#include <unistd.h>

#include <gtest/gtest.h>

namespace kaclone {
namespace {

// Forks a child that writes `text` to a pipe and exits with `code` (or raises `sig`).
pid_t child_writing(int& read_fd, const char* text, int code, int sig = 0) {
    int fds[2];
    if (::pipe(fds) != 0) return -1;
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        (void)!::write(fds[1], text, std::char_traits<char>::length(text));
        if (sig != 0) ::raise(sig);
        ::_exit(code);
    }
    ::close(fds[1]);
    read_fd = fds[0];
    return pid;
}

TEST(ChildProcess, CleanExitIsNoProblemAndItsOutputIsRead) {
    int fd = -1;
    const pid_t pid = child_writing(fd, "line 1\nline 2\n", 0);
    ASSERT_GT(pid, 0);
    std::string chunks;

    const std::string output = read_all(fd, [&](std::string_view c) { chunks += c; });
    const std::string problem = exit_problem(reap_child(pid));
    ::close(fd);

    EXPECT_EQ(output, "line 1\nline 2\n");
    EXPECT_EQ(chunks, output);
    EXPECT_EQ(problem, "");
}

TEST(ChildProcess, ExitStatusAndSignalAreNamed) {
    int fd = -1;
    const pid_t failing = child_writing(fd, "", 3);
    ASSERT_GT(failing, 0);
    read_all(fd);
    ::close(fd);
    const pid_t killed = child_writing(fd, "", 0, SIGKILL);
    ASSERT_GT(killed, 0);
    read_all(fd);
    ::close(fd);

    EXPECT_EQ(exit_problem(reap_child(failing)), "exit status 3");
    EXPECT_EQ(exit_problem(reap_child(killed)), "signal 9");
}

TEST(ChildProcess, OutputTailKeepsTheEndWithoutTrailingNewlines) {
    EXPECT_EQ(output_tail("abcdef\n\n", 4), "cdef");
    EXPECT_EQ(output_tail("ok\n"), "ok");
    EXPECT_EQ(output_tail(""), "");
}

}  // namespace
}  // namespace kaclone
