// unique_fd: ownership, moves, release and open_fd errors.
#include <kaclone/unique_fd.hpp>

#include <cerrno>

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

namespace kaclone {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

TEST(UniqueFd, DefaultIsEmpty) {
    const unique_fd fd;

    EXPECT_FALSE(fd);
    EXPECT_EQ(fd.get(), -1);
}

TEST(UniqueFd, ClosesWhenDestroyed) {
    int raw = -1;
    {
        auto fd = open_fd("/dev/null", O_RDONLY);
        ASSERT_TRUE(fd.has_value()) << fd.error().message();
        raw = fd->get();
        EXPECT_TRUE(is_open(raw));
    }

    EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, MoveTransfersOwnership) {
    auto opened = open_fd("/dev/null", O_RDONLY);
    ASSERT_TRUE(opened.has_value());
    unique_fd a = *std::move(opened);
    const int raw = a.get();

    unique_fd b = std::move(a);

    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(is_open(raw));
}

TEST(UniqueFd, MoveAssignClosesPrevious) {
    auto first = open_fd("/dev/null", O_RDONLY);
    auto second = open_fd("/dev/null", O_RDONLY);
    ASSERT_TRUE(first && second);
    unique_fd a = *std::move(first);
    const int old_raw = a.get();

    a = *std::move(second);

    EXPECT_FALSE(is_open(old_raw));
    EXPECT_TRUE(is_open(a.get()));
}

TEST(UniqueFd, ReleaseGivesUpOwnership) {
    auto fd = open_fd("/dev/null", O_RDONLY);
    ASSERT_TRUE(fd.has_value());

    const int raw = fd->release();
    fd->reset();

    EXPECT_TRUE(is_open(raw));
    ::close(raw);
}

TEST(UniqueFd, OpenIsCloseOnExec) {
    auto fd = open_fd("/dev/null", O_RDONLY);
    ASSERT_TRUE(fd.has_value());

    EXPECT_EQ(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
}

TEST(OpenFd, ErrorNamesThePath) {
    const auto fd = open_fd("/nonexistent/kaclone", O_RDONLY);

    ASSERT_FALSE(fd.has_value());
    EXPECT_EQ(fd.error().code, std::error_code(ENOENT, std::system_category()));
    EXPECT_EQ(fd.error().where, "open /nonexistent/kaclone");
}

}  // namespace
}  // namespace kaclone
