// Opening what serve reads and join writes: files, block devices, stdin/stdout, a command.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/types.h>

#include <kaclone/image.hpp>
#include <kaclone/relay.hpp>
#include <kaclone/result.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::cli {

struct opened_source {
    unique_fd owned;         // empty for stdin
    int fd = -1;             // borrowed from `owned` or 0
    std::uint64_t bytes = 0; // 0 when unknown (stdin, pipes)
};
// "-" is stdin; otherwise a regular file or a block device (a directory is a tree_source's).
result<opened_source> open_source(const std::string& path);

// Where join stores the stream: a file, a block device, stdout, or a command's stdin.
class opened_sink {
public:
    // "-" is stdout; a path is created when it does not exist, and left as it is until
    // begin(). A block device is opened exclusively: one that is mounted, swap, or held (md,
    // LVM) is refused, and so is the device of the running /.
    static result<opened_sink> open_path(const std::string& path);
    // `sh -c command` with the stream on its stdin.
    static result<opened_sink> exec(const std::string& command);

    opened_sink(opened_sink&& other) noexcept
        : owned_(std::move(other.owned_)), sink_(other.sink_), child_(std::exchange(other.child_, -1)),
          command_(std::move(other.command_)), path_(std::move(other.path_)), created_(other.created_) {}
    opened_sink& operator=(opened_sink&&) = delete;
    ~opened_sink();

    local_sink sink() const noexcept { return sink_; }
    // The stream starts (the node is assigned): a regular file is emptied now, so that a
    // session that never starts leaves it as it was.
    result<void> begin();
    // Closes the sink; for a command, waits for it and fails unless it exited 0.
    result<void> finish();
    // The join failed: a file that open_path created and nothing was written to is removed.
    void discard_if_unused();

private:
    opened_sink() = default;
    unique_fd owned_;
    local_sink sink_;
    pid_t child_ = -1;
    std::string command_;
    std::string path_;
    bool created_ = false;
};

// serve --source DIR: image::write_tree runs on a thread of its own into a pipe whose read end
// is the relay's source, so the relay reads a tree like any other stream.
class tree_source {
public:
    // Starts streaming `root` (without the content of `excludes`); `log` gets one line per
    // skipped socket, excluded directory, mount point not crossed, or warning, from the thread.
    static result<tree_source> start(const std::filesystem::path& root, std::vector<std::filesystem::path> excludes,
                                     image::log_fn log);

    tree_source(tree_source&&) noexcept = default;
    tree_source& operator=(tree_source&&) = delete;
    ~tree_source();

    // The pipe's read end, for the relay (borrowed, open until finish()).
    int fd() const noexcept { return read_.get(); }
    // Closes the read end (a writer still running then fails with EPIPE instead of blocking),
    // waits for the thread and returns what it sent, or why it stopped.
    result<image::write_stats> finish();

private:
    tree_source() = default;
    struct shared {
        image::write_options options;
        image::write_stats stats;
        result<void> outcome;
    };
    std::unique_ptr<shared> state_;  // written by the thread until it is joined
    unique_fd read_;
    std::thread thread_;
};

// join --sink DIR: the relay writes into a pipe whose read end feeds image::extract_tree on a
// thread of its own.
class tree_sink {
public:
    // `target` must be an existing directory. `log` gets one line per refused or failed entry
    // and per warning, from the thread.
    static result<tree_sink> start(const std::filesystem::path& target, image::log_fn log);

    tree_sink(tree_sink&&) noexcept = default;
    tree_sink& operator=(tree_sink&&) = delete;
    ~tree_sink();

    // The pipe's write end as a sequential sink for the relay (borrowed, open until finish()).
    local_sink sink() const noexcept { return {write_.get(), sink_kind::sequential}; }
    // Closes the write end (end of stream), waits for the extraction and returns its counts;
    // on failure the error, with the counts in `stats`.
    result<void> finish(image::extract_stats& stats);

private:
    tree_sink() = default;
    struct shared {
        image::extract_options options;
        image::extract_stats stats;
        result<void> outcome;
    };
    std::unique_ptr<shared> state_;
    unique_fd write_;
    std::thread thread_;
};

}  // namespace kaclone::cli
