// serve --disk: the golden node's side of a whole-machine clone. prepare() reads the golden
// disk and its mounts and builds the manifest (refusing what would give a broken clone before
// any node is touched); start() writes the bundle (manifest, then every stream) into a pipe
// that the relay sends.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <kaclone/image.hpp>
#include <kaclone/manifest.hpp>
#include <kaclone/result.hpp>
#include <kaclone/unique_fd.hpp>

namespace kaclone::cli {

struct disk_source_options {
    std::string session;
    std::string disk;  // "sda" or "/dev/sda" (or a disk image file)
    std::string root = "/";  // where the golden system's root filesystem is mounted
    std::string desc_file;   // "": derived from the disk
    bool fill_last = false;  // derived: the last partition of each table takes the rest of each node's disk
    std::vector<std::string> excludes;  // directories as the golden system sees them ("/tmp")
    std::vector<std::string> raw;       // partitions sent byte for byte: "3", "sda3", "/dev/sda3"
    std::vector<std::string> exclude_disks;  // other disks of the golden node, named not to be sent
    std::string mbr_drive;              // --mbr: boot code read from this drive
    std::string mbr_file;               // --mbr-file: boot code read from this 446-byte file
    std::string bootloader = "grub";
    std::string initrd_args;
    std::string hostnames_file;
};

class disk_source {
public:
    // Everything that can be checked before the session: the disk and its description, every
    // filesystem of the disk mounted below `root` (one not mounted and not --raw is refused),
    // the excludes (each inside one of them), --raw partitions (not mounted), boot code (446
    // bytes), the hostnames file (parsed, errors name FILE:LINE). `log` gets the description's
    // notes and one line per stream.
    static result<disk_source> prepare(const disk_source_options& options, const image::log_fn& log);

    disk_source(disk_source&&) noexcept = default;
    disk_source& operator=(disk_source&&) = delete;
    ~disk_source();

    const manifest::manifest& content() const noexcept { return state_->manifest; }
    // The bytes the streams are expected to take (used space of the trees, raw sizes), for
    // percentages; the bundle is somewhat larger (tar headers).
    std::uint64_t expected_bytes() const noexcept { return expected_; }

    // Starts writing the bundle on a thread of its own; fd() is then the pipe's read end.
    result<void> start(const image::log_fn& log);
    int fd() const noexcept { return read_.get(); }
    // Closes the read end, waits for the thread, and says whether the whole bundle was written.
    result<void> finish();

private:
    disk_source() = default;
    struct shared {
        manifest::manifest manifest;
        std::vector<std::string> tree_roots;  // per stream: the directory it is read from
        std::vector<std::string> raw_nodes;   // per stream: the partition it is read from
        std::vector<std::vector<std::string>> tree_excludes;  // per stream, as host paths
        image::mbr_boot_code boot_code{};
        result<void> outcome;
        image::log_fn log;
    };
    std::unique_ptr<shared> state_;
    std::uint64_t expected_ = 0;
    unique_fd read_;
    std::thread thread_;
};

// "/dev/sda" for "sda"; a path stays as it is.
std::string disk_path(const std::string& disk);

}  // namespace kaclone::cli
