// join --disk: lay out, extract, fix up, unmount (see clone_sink.hpp).
#include "clone_sink.hpp"

#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kaclone/bundle.hpp>
#include <kaclone/desc.hpp>
#include <kaclone/desc_derive.hpp>
#include <kaclone/fixup.hpp>
#include <kaclone/layout.hpp>
#include <kaclone/layout_apply.hpp>
#include <kaclone/manifest.hpp>
#include <kaclone/units.hpp>

#include "fixup_steps.hpp"

namespace kaclone::cli {

struct disk_sink::shared {
    disk_sink_options options;
    node_status* status = nullptr;
    image::log_fn say;
    std::atomic<std::uint32_t> node{0};
    std::atomic<bool> abandoned{false};  // the join stopped: a stream cut short is no news
    unique_fd read;
    // Set by the thread, read after it is joined.
    std::optional<error> failure;
    manifest::manifest manifest;
    std::optional<layout::plan> plan;  // once the disk is laid out (its filesystems are mounted)

    void log(const std::string& line) {
        if (say) say(line);
        status->log(line);
    }
    void phase(protocol::node_phase what, std::string detail) { status->set_phase(what, std::move(detail)); }
    void receive();
    result<void> lay_out();
    result<void> extract(const manifest::stream_entry& e, image::bundle_reader& in);
    result<void> fix_up();
};

namespace {

error failed_because(std::string what) { return error{std::make_error_code(std::errc::io_error), std::move(what)}; }

std::string inside(const std::string& target, const std::string& mount) { return mount == "/" ? target : target + mount; }


}  // namespace

result<void> disk_sink::shared::lay_out() {
    auto file = desc::parse(manifest.desc, "the server's description");
    if (!file) return std::move(file).error();
    auto disk = layout::probe_disk(options.disk);
    if (!disk) return std::move(disk).error();
    auto p = layout::make_plan(*file, disk->facts, "the server's description");
    if (!p) return std::move(p).error();
    std::istringstream table(layout::format_plan(*p));
    for (std::string line; std::getline(table, line);) log("layout: " + line);
    // The data must fit where the plan puts it on this disk (percentages and fill differ from
    // node to node): checked before anything is written.
    for (const auto& e : manifest.streams) {
        const bool tree = e.kind == manifest::stream_kind::tree;
        if (!tree && e.kind != manifest::stream_kind::raw) continue;  // the boot code has no partition
        // A tree with excludes sends less than was in use, by an amount not known here.
        const std::uint64_t need = tree ? (e.excludes.empty() ? e.estimate : 0) : e.bytes;
        const auto at = std::find_if(p->partitions.begin(), p->partitions.end(), [&](const layout::planned_partition& q) {
            return tree ? q.mount == e.mount : std::to_string(q.number) == e.partition;
        });
        if (at == p->partitions.end() || at->size_bytes >= need) continue;
        const std::string what = tree ? "the golden " + e.mount + " has " + format_bytes(need) + " in use"
                                      : "the golden partition " + e.partition + " is " + format_bytes(need);
        return failed_because("the server's description:" + std::to_string(at->line) + ": partition " + std::to_string(at->number) +
                              " is " + format_bytes(at->size_bytes) + " on " + options.disk + ", but " + what +
                              ": it cannot fit (nothing was written)");
    }
    layout::apply_options o;
    o.desc_name = "the server's description";
    o.target = options.target;
    if (const char* path = std::getenv("PATH")) o.path_env = path;
    o.log = [this](const std::string& line) { log("layout: " + line); };
    if (auto ok = layout::apply(*p, o); !ok) return ok;
    plan = *std::move(p);
    return {};
}

result<void> disk_sink::shared::extract(const manifest::stream_entry& e, image::bundle_reader& in) {
    const std::string of = " (stream " + std::to_string(e.id) + " of " + std::to_string(manifest.streams.size()) + ")";
    if (e.kind == manifest::stream_kind::boot_code) {
        phase(protocol::node_phase::extracting, "boot code" + of);
        auto code = in.read_all(e.id, image::mbr_boot_code_bytes + 1);
        if (!code) return std::move(code).error();
        unique_fd drive{::open(options.disk.c_str(), O_WRONLY | O_CLOEXEC)};
        if (!drive) return last_sys_error("open " + options.disk + " for the boot code");
        if (auto ok = image::write_mbr(drive.get(), std::as_bytes(std::span(code->data(), code->size()))); !ok) return ok;
        log("boot code: wrote " + std::to_string(code->size()) + " bytes to " + options.disk + " (partition table kept)");
        return {};
    }
    // Trees and raw partitions: the stream goes through a pipe to a thread that writes it.
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return last_sys_error("pipe for stream " + std::to_string(e.id));
    unique_fd pipe_read{p[0]}, pipe_write{p[1]};
    static_cast<void>(::fcntl(pipe_write.get(), F_SETPIPE_SZ, 1 << 20));
    result<void> written;
    std::string summary;
    std::thread writer;
    if (e.kind == manifest::stream_kind::tree) {
        phase(protocol::node_phase::extracting, e.mount + of);
        const std::string dir = inside(options.target, e.mount);
        writer = std::thread([&, dir] {
            image::extract_options eo;
            eo.log = [this](const std::string& line) { log("extract: " + line); };
            image::extract_stats stats;
            written = image::extract_tree(pipe_read.get(), dir, eo, stats);
            summary = "extracted " + e.mount + ": " + std::to_string(stats.entries) + " entries, " +
                      std::to_string(stats.data_bytes) + " bytes of data, " + std::to_string(stats.warnings) + " warnings";
            pipe_read.reset();
        });
    } else {
        int number = 0;
        const auto parsed = std::from_chars(e.partition.data(), e.partition.data() + e.partition.size(), number);
        if (parsed.ec != std::errc{} || parsed.ptr != e.partition.data() + e.partition.size() || number < 1 || number > 128)
            return failed_because("stream " + std::to_string(e.id) + ": partition '" + e.partition + "' in the server's manifest is not a partition number");
        const std::string part_node = "/dev/" + desc::partition_name(std::filesystem::path(options.disk).filename().string(), number);
        phase(protocol::node_phase::extracting, "partition " + e.partition + of);
        unique_fd part{::open(part_node.c_str(), O_WRONLY | O_CLOEXEC)};
        if (!part) return last_sys_error("open " + part_node + " for partition " + e.partition);
        writer = std::thread([&, part_node, part = std::move(part)] {
            auto copied = image::copy_raw(pipe_read.get(), part.get(), image::zero_blocks::hole);
            if (!copied) written = copied.error();
            else summary = "wrote partition " + e.partition + " (" + part_node + "): " + std::to_string(copied->bytes) + " bytes, " +
                           std::to_string(copied->zero_blocks) + " zero blocks";
            pipe_read.reset();
        });
    }
    auto pumped = in.pump(e.id, pipe_write.get());
    pipe_write.reset();
    writer.join();
    if (!pumped) {
        static_cast<void>(in.skip(e.id));
        if (!written) return error{written.error().code, "stream " + std::to_string(e.id) + ": " + written.error().where};
        return std::move(pumped).error();
    }
    if (!written) return error{written.error().code, "stream " + std::to_string(e.id) + ": " + written.error().where};
    log(summary);
    return {};
}

void disk_sink::shared::receive() {
    image::bundle_reader in{read.get()};
    auto run = [&]() -> result<void> {
        if (auto ok = in.start(); !ok) return ok;
        auto text = in.read_all(0, 1u << 20);
        if (!text) return std::move(text).error();
        auto m = manifest::decode(*text, "the server's manifest");
        if (!m) return std::move(m).error();
        manifest = *std::move(m);
        log("manifest: " + std::to_string(manifest.streams.size()) + " streams");
        phase(protocol::node_phase::layout, options.disk);
        if (auto ok = lay_out(); !ok) return ok;
        for (const auto& e : manifest.streams)
            if (auto ok = extract(e, in); !ok) return ok;
        return {};
    };
    if (auto ok = run(); !ok) {
        failure = ok.error();
        if (node == 0 || abandoned) return;  // never assigned (the join failed before its session started), or stopped
        log("failed: " + ok.error().message());
        phase(protocol::node_phase::failed, ok.error().message());
    }
    in.drain();  // the rest (after a failure) is read and dropped: the children still get it
}

result<disk_sink> disk_sink::start(const disk_sink_options& options, node_status& status, image::log_fn say) {
    auto disk = layout::probe_disk(options.disk);  // a whole block device, or refused now
    if (!disk) return std::move(disk).error();
    // The checks of a layout that need no plan, before the node joins: a partition, a disk
    // that is mounted, swap, held, or holds the running / (once the golden layout is known it
    // is checked again, with its filesystems).
    layout::plan bare;
    bare.disk = disk->facts;
    if (auto ok = layout::check(bare, {}); !ok) return std::move(ok).error();
    // The target is made only when the layout mounts below it: a join that never starts
    // leaves nothing behind.
    std::error_code ec;
    if (std::filesystem::exists(options.target, ec) && std::filesystem::equivalent(options.target, "/", ec))
        return error{std::make_error_code(std::errc::invalid_argument), "--target " + options.target + " is the running system's root"};
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return last_sys_error("pipe for the clone");
    disk_sink sink;
    sink.state_ = std::make_unique<shared>();
    sink.state_->options = options;
    sink.state_->status = &status;
    sink.state_->say = std::move(say);
    sink.state_->read = unique_fd{fds[0]};
    sink.write_ = unique_fd{fds[1]};
    static_cast<void>(::fcntl(sink.write_.get(), F_SETPIPE_SZ, 1 << 20));
    sink.thread_ = std::thread([state = sink.state_.get()] { state->receive(); });
    return sink;
}

disk_sink::disk_sink(disk_sink&&) noexcept = default;

void disk_sink::set_node(std::uint32_t node) noexcept { state_->node = node; }

void disk_sink::unmount_all() {
    if (!state_->plan) return;
    auto order = layout::mount_order(*state_->plan);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        const std::string dir = inside(state_->options.target, (*it)->mount);
        if (::umount2(dir.c_str(), 0) != 0 && ::umount2(dir.c_str(), MNT_DETACH) != 0)
            state_->log("unmount " + dir + ": " + std::strerror(errno));
    }
    state_->plan.reset();
}

disk_sink::~disk_sink() {
    if (!state_ || finished_) return;
    state_->abandoned = true;
    write_.reset();
    if (thread_.joinable()) thread_.join();
    if (!state_->plan) return;
    unmount_all();
    state_->log("stopped before the clone was complete: everything unmounted, " + state_->options.disk + " holds no usable clone");
}

result<void> disk_sink::shared::fix_up() {
    phase(protocol::node_phase::fixup, "");
    ::sync();
    fixup::facts facts;
    facts.target = options.target;
    facts.disk = options.disk;
    auto probe = fixup::probe_disk(options.disk, options.target);
    if (!probe) return std::move(probe).error();
    facts.filesystems = probe->filesystems;
    facts.table = probe->table;
    facts.active_partitions = probe->active_partitions;
    // The golden filesystems' UUIDs name the new filesystem at the same mount point.
    for (const auto& e : manifest.streams) {
        if (e.uuid.empty() || e.mount.empty()) continue;
        for (const auto& f : facts.filesystems)
            if (f.mount == e.mount && !f.uuid.empty()) facts.old_to_new["UUID=" + e.uuid] = f.uuid;
    }
    facts.bootloader = manifest.fixup.bootloader;
    facts.initrd_args = split_words(manifest.fixup.initrd_args);
    facts.hostname = options.hostname;
    if (node != 0) facts.node_index = static_cast<int>(node);
    if (facts.hostname.empty() && !manifest.hostnames.empty()) {
        auto entry = name_from_hostnames(manifest.hostnames, "the server's hostnames file", facts);
        if (!entry) return std::move(entry).error();
        log("fixup: hostname " + entry->name + " (hostnames line " + std::to_string(entry->line) + ", " + entry->address + ")");
    }
    fixup_run run;
    run.say = [this](const std::string& line) { log("fixup: " + line); };
    run.complain = [this](const std::string& line) { log("fixup failed: " + line); };
    const auto failures = run_fixup_steps(facts, run);
    ::sync();
    if (!failures.empty()) return failed_because("fixups: " + failed_steps_text(failures));
    return {};
}

result<void> disk_sink::finish() {
    finished_ = true;
    write_.reset();  // the end of the bundle for the reading thread
    if (thread_.joinable()) thread_.join();
    auto fixed = state_->failure ? result<void>(*state_->failure) : state_->fix_up();
    unmount_all();
    if (fixed) state_->log("done: " + state_->options.disk + " holds the clone; everything unmounted");
    return fixed;
}

}  // namespace kaclone::cli
