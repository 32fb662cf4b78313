// Sources and sinks of the plain-data mode of serve and join.
#include "stream_io.hpp"

#include <cerrno>
#include <utility>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kaclone/child_process.hpp>

namespace kaclone::cli {

result<opened_source> open_source(const std::string& path) {
    opened_source s;
    if (path == "-") {
        s.fd = 0;
        return s;
    }
    auto fd = open_fd(path, O_RDONLY);
    if (!fd) return std::move(fd).error();
    struct stat st {};
    if (::fstat(fd->get(), &st) != 0) return last_sys_error("stat " + path);
    if (S_ISDIR(st.st_mode))
        return error{std::make_error_code(std::errc::is_a_directory),
                     path + " (a directory is streamed by tree_source, not opened)"};
    if (S_ISREG(st.st_mode)) s.bytes = static_cast<std::uint64_t>(st.st_size);
    if (S_ISBLK(st.st_mode) && ::ioctl(fd->get(), BLKGETSIZE64, &s.bytes) != 0) return last_sys_error("size of " + path);
    s.fd = fd->get();
    s.owned = *std::move(fd);
    return s;
}

result<opened_sink> opened_sink::open_path(const std::string& path) {
    opened_sink s;
    if (path == "-") {
        s.sink_ = {1, sink_kind::sequential};
        return s;
    }
    struct stat st {};
    const bool exists = ::stat(path.c_str(), &st) == 0;
    const bool is_device = exists && S_ISBLK(st.st_mode);
    // O_EXCL on a block device: the kernel refuses it while the device, or a partition of
    // it, is mounted, swap, or held by md, LVM or another exclusive opener (the running / too).
    auto fd = open_fd(path, is_device ? O_WRONLY | O_EXCL : O_WRONLY | O_CREAT, 0644);
    if (!fd) {
        if (is_device && fd.error().code == std::errc::device_or_resource_busy)
            return error{fd.error().code, path + " is in use (mounted, swap, or held by md, LVM or another program); nothing was written"};
        return std::move(fd).error();
    }
    if (::fstat(fd->get(), &st) != 0) return last_sys_error("stat " + path);
    const sink_kind kind = S_ISBLK(st.st_mode) ? sink_kind::block_device
                           : S_ISREG(st.st_mode) ? sink_kind::regular_file
                                                 : sink_kind::sequential;
    s.sink_ = {fd->get(), kind};
    s.owned_ = *std::move(fd);
    s.path_ = path;
    s.created_ = !exists;
    return s;
}

result<void> opened_sink::begin() {
    if (sink_.kind == sink_kind::regular_file && ::ftruncate(sink_.fd, 0) != 0) return last_sys_error("empty " + path_);
    return {};
}

void opened_sink::discard_if_unused() {
    struct stat st {};
    if (created_ && sink_.kind == sink_kind::regular_file && ::stat(path_.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        st.st_size == 0)
        static_cast<void>(::unlink(path_.c_str()));
}

result<opened_sink> opened_sink::exec(const std::string& command) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return last_sys_error("pipe for --exec");
    unique_fd read_end{fds[0]}, write_end{fds[1]};
    const pid_t pid = ::fork();
    if (pid < 0) return last_sys_error("fork for --exec");
    if (pid == 0) {
        ::dup2(read_end.get(), 0);  // dup2 clears O_CLOEXEC on the copy
        ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
        ::_exit(127);
    }
    opened_sink s;
    s.owned_ = std::move(write_end);
    s.sink_ = {s.owned_.get(), sink_kind::sequential};
    s.child_ = pid;
    s.command_ = command;
    return s;
}

opened_sink::~opened_sink() {
    if (child_ > 0) static_cast<void>(finish());
}

result<void> opened_sink::finish() {
    owned_.reset();  // end of stream for a command
    if (child_ <= 0) return {};
    const std::string how = exit_problem(reap_child(child_));
    child_ = -1;
    if (how.empty()) return {};
    return error{std::make_error_code(std::errc::io_error), "--exec '" + command_ + "' ended with " + how};
}

namespace {

// A pipe with room for 1 MiB, so the writer thread and the relay do not wait on each other
// for every 64 KiB (the default). The size is a wish: an unprivileged limit just keeps 64 KiB.
result<std::pair<unique_fd, unique_fd>> make_pipe(const char* what) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return last_sys_error(std::string("pipe for ") + what);
    unique_fd read_end{fds[0]}, write_end{fds[1]};
    static_cast<void>(::fcntl(write_end.get(), F_SETPIPE_SZ, 1 << 20));
    return std::pair{std::move(read_end), std::move(write_end)};
}

}  // namespace

result<tree_source> tree_source::start(const std::filesystem::path& root, std::vector<std::filesystem::path> excludes,
                                       image::log_fn log) {
    auto ends = make_pipe("the tree");
    if (!ends) return std::move(ends).error();
    tree_source s;
    s.state_ = std::make_unique<shared>();
    s.state_->options.excludes = std::move(excludes);
    s.state_->options.log = std::move(log);
    s.read_ = std::move(ends->first);
    // The thread owns the write end: closing it when write_tree returns is the end of stream.
    s.thread_ = std::thread([state = s.state_.get(), root, write_end = std::move(ends->second)]() mutable {
        state->outcome = image::write_tree(root, state->options, write_end.get(), state->stats);
        write_end.reset();
    });
    return s;
}

tree_source::~tree_source() {
    if (thread_.joinable()) static_cast<void>(finish());
}

result<image::write_stats> tree_source::finish() {
    read_.reset();
    if (thread_.joinable()) thread_.join();
    if (!state_->outcome) return state_->outcome.error();
    return state_->stats;
}

result<tree_sink> tree_sink::start(const std::filesystem::path& target, image::log_fn log) {
    std::error_code ec;
    if (!std::filesystem::is_directory(target, ec))
        return error{image::make_error_code(image::errc::not_a_directory), target.string()};
    auto ends = make_pipe("the tree");
    if (!ends) return std::move(ends).error();
    tree_sink s;
    s.state_ = std::make_unique<shared>();
    s.state_->options.log = std::move(log);
    s.write_ = std::move(ends->second);
    // extract_tree reads to the end of the pipe even after an error, so the relay never blocks
    // on a sink that stopped reading.
    s.thread_ = std::thread([state = s.state_.get(), target, read_end = std::move(ends->first)]() mutable {
        state->outcome = image::extract_tree(read_end.get(), target, state->options, state->stats);
        read_end.reset();
    });
    return s;
}

tree_sink::~tree_sink() {
    image::extract_stats ignored;
    if (thread_.joinable()) static_cast<void>(finish(ignored));
}

result<void> tree_sink::finish(image::extract_stats& stats) {
    write_.reset();
    if (thread_.joinable()) thread_.join();
    stats = state_->stats;
    return state_->outcome;
}

}  // namespace kaclone::cli
