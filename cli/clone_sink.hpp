// join --disk: a node's side of a whole-machine clone. The relay writes the session's bundle
// into a pipe; a thread reads the manifest, lays the disk out (refusing before it writes when
// the disk cannot take the layout), and extracts each stream into its place while the relay
// goes on forwarding. finish() then syncs, runs the fixups and unmounts. A failure is
// reported as the node's phase at once, and the rest of the bundle is still read, so the
// node's children keep receiving.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <kaclone/image.hpp>
#include <kaclone/relay.hpp>
#include <kaclone/result.hpp>
#include <kaclone/session.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::cli {

struct disk_sink_options {
    std::string disk;      // the node's disk ("/dev/sdb"), erased
    std::string target;    // where the clone's filesystems are mounted while it is made
    std::string hostname;  // "": the manifest's hostnames file decides, else the clone keeps its
};

class disk_sink {
public:
    // Checks that `options.disk` is a whole block device and starts the reading thread. `say`
    // gets every line of the node's log (it also goes to `status`), from any thread.
    static result<disk_sink> start(const disk_sink_options& options, node_status& status, image::log_fn say);

    disk_sink(disk_sink&&) noexcept;
    disk_sink& operator=(disk_sink&&) = delete;
    ~disk_sink();

    // The pipe's write end as the relay's local sink (borrowed, open until finish()).
    local_sink sink() const noexcept { return {write_.get(), sink_kind::sequential}; }
    // This node's number in the session (NODE_INDEX for hooks without a hostnames file).
    void set_node(std::uint32_t node) noexcept;
    // After the stream: waits for the extraction, syncs, runs the fixups, unmounts. The error
    // of the first thing that failed.
    result<void> finish();

private:
    disk_sink() = default;
    struct shared;
    void unmount_all();
    std::unique_ptr<shared> state_;
    unique_fd write_;
    std::thread thread_;
    bool finished_ = false;
};

}  // namespace kaclone::cli
