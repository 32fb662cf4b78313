// `kaclone join`: a node's side of a session.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <sys/stat.h>

#include <kaclone/fixup.hpp>
#include <kaclone/session.hpp>

#include "clone_sink.hpp"
#include "commands.hpp"
#include "json.hpp"
#include "options.hpp"
#include "progress.hpp"
#include "relay_options.hpp"
#include "stream_io.hpp"

namespace kaclone::cli {
namespace {

struct join_options {
    std::string session = "default";
    std::string server;
    std::string sink;
    std::string exec;
    std::string disk;
    bool yes = false;
    std::string target = "/mnt/kaclone";
    std::string hostname;
    unsigned retries = 5;
    bool json = false;
    std::string key_file;
    relay_config relay;
};

void log_line(const std::string& line) { std::fprintf(stderr, "kaclone join: %s\n", line.c_str()); }

int run_join(const CLI::App& command, const join_options& opts) {
    if (opts.sink.empty() && opts.exec.empty() && opts.disk.empty())
        return usage_error(command, "--sink, --exec or --disk is required");
    if (const auto problem = relay_options_problem(opts.relay); !problem.empty()) return usage_error(command, problem);
    if (opts.json && opts.sink == "-")
        return usage_error(command, "--json prints on stdout, which --sink - already uses; store to a file or use --exec");
    if (!opts.hostname.empty() && !fixup::valid_hostname(opts.hostname))
        return usage_error(command, "--hostname: '" + opts.hostname + "' is not a valid host name");
    if (!opts.disk.empty() && !opts.yes)
        return usage_error(command, "--disk " + opts.disk + " is erased: confirm with --yes");
    struct stat sink_st {};
    const bool sink_device = opts.exec.empty() && !opts.sink.empty() && ::stat(opts.sink.c_str(), &sink_st) == 0 &&
                             S_ISBLK(sink_st.st_mode);
    if (sink_device && !opts.yes)
        return usage_error(command, "--sink " + opts.sink + " is a block device and is overwritten: confirm with --yes");
    if (opts.yes && opts.disk.empty() && !sink_device)
        return usage_error(command, "--yes confirms --disk, or a block device given as --sink");
    auto key = load_key_option(opts.key_file);
    if (!key) {
        log_line(key.error().message());
        return exit_failed;
    }
    // A directory is a tree's target: image::extract_tree on a thread, fed by a pipe.
    std::error_code dir_ec;
    const bool tree = opts.exec.empty() && std::filesystem::is_directory(opts.sink, dir_ec);
    std::optional<tree_sink> tree_target;
    std::optional<opened_sink> sink;
    std::optional<disk_sink> clone;
    node_status status;
    progress_line progress{"stored", 0};
    // Every line of this node's log goes to stderr and, for the server's logs, to `status`.
    const auto say = [&progress, &status](const std::string& line) {
        progress.clear();
        log_line(line);
        status.log(line);
    };
    if (!opts.disk.empty()) {
        const std::string target = std::filesystem::absolute(opts.target).lexically_normal().string();
        auto started = disk_sink::start({opts.disk, target, opts.hostname}, status, [&progress](const std::string& line) {
            progress.clear();
            log_line(line);
        });
        if (!started) {
            log_line(started.error().message());
            return exit_failed;
        }
        clone.emplace(*std::move(started));
    } else if (tree) {
        auto started = tree_sink::start(opts.sink, [](const std::string& line) { log_line(line); });
        if (!started) {
            log_line(started.error().message());
            return exit_failed;
        }
        tree_target.emplace(*std::move(started));
    } else if (opts.exec.empty()) {
        auto opened = opened_sink::open_path(opts.sink);  // checked now, emptied once the stream starts
        if (!opened) {
            log_line(opened.error().message());
            return exit_failed;
        }
        sink.emplace(*std::move(opened));
    }
    relay_stats stats;
    join_config config;
    config.session = opts.session;
    config.server = opts.server;
    config.retries = opts.retries;
    config.key = *key;
    if (clone) config.sink = clone->sink();
    else if (tree_target) config.sink = tree_target->sink();
    else if (sink) config.sink = sink->sink();
    config.open_sink = [&]() -> result<local_sink> {
        if (!opts.exec.empty()) {  // the command starts only when the stream does
            auto started = opened_sink::exec(opts.exec);
            if (!started) return std::move(started).error();
            sink.emplace(*std::move(started));
            return sink->sink();
        }
        if (sink)
            if (auto ok = sink->begin(); !ok) return std::move(ok).error();
        return config.sink;
    };
    if (clone) {
        config.status = &status;
        config.after_stream = [&clone] { return clone->finish(); };
    }
    config.relay = opts.relay;
    apply_test_faults(config.relay);
    config.on_tick = [&progress](const relay_stats& s) { progress.update(s.stored_bytes.load()); };
    config.log = say;
    config.on_event = [&opts, &clone](const session_event& e) {
        if (clone && e.what == session_event::kind::assigned) clone->set_node(e.node);
        if (opts.json) print_json_line(event_json(opts.session, e));
    };
    auto report = join_session(config, stats);
    progress.clear();
    image::extract_stats extracted;
    result<void> finished;
    if (tree_target) finished = tree_target->finish(extracted);
    else if (sink) finished = sink->finish();
    if (!finished && tree_target)
        finished = error{finished.error().code, "extracting into " + opts.sink + ": " + finished.error().where};
    if (!report || !finished) {
        if (sink) sink->discard_if_unused();
        clone.reset();  // unmounts what it mounted, and says so, before the reason
        // A command that died makes the stream fail with a broken pipe: its exit status is the reason.
        std::string why = !report ? report.error().message() : finished.error().message();
        if (!report && !finished) why += " (" + finished.error().message() + ")";
        log_line(why);
        if (opts.json) {
            json_object o = json_event(opts.session, "summary");
            o.add("ok", false).add("message", why);
            print_json_line(o);
        }
        return exit_failed;
    }
    const double secs = seconds(report->wall);
    if (opts.json) {
        json_object o = json_event(opts.session, "summary");
        o.add("ok", true).add("node", std::uint64_t{report->node}).add("parent", report->parent_address);
        o.add("bytes", report->stream.bytes).add("digest", report->stream.digest.hex()).add("seconds", secs);
        o.add("mb_s", secs > 0 ? static_cast<double>(report->stream.bytes) / secs / 1e6 : 0.0);
        o.add("peak_rss_mib", static_cast<double>(peak_rss_bytes()) / (1 << 20));
        if (tree_target) o.add("entries", extracted.entries).add("warnings", extracted.warnings);
        print_json_line(o);
    }
    if (!report->stream.zerocopy_refused.empty()) log_line(report->stream.zerocopy_refused);
    if (tree_target)
        std::fprintf(stderr, "kaclone join: extracted %llu entries (%llu warnings) into %s\n",
                     static_cast<unsigned long long>(extracted.entries), static_cast<unsigned long long>(extracted.warnings),
                     opts.sink.c_str());
    std::fprintf(stderr, "kaclone join: stored %llu bytes in %.2f s (%.1f MB/s), digest %s, peak RSS %.1f MiB\n",
                 static_cast<unsigned long long>(report->stream.bytes), secs,
                 secs > 0 ? static_cast<double>(report->stream.bytes) / secs / 1e6 : 0, report->stream.digest.hex().c_str(),
                 static_cast<double>(peak_rss_bytes()) / (1 << 20));
    return exit_ok;
}

}  // namespace

subcommand add_join(CLI::App& app) {
    auto opts = std::make_shared<join_options>();
    auto* cmd = app.add_subcommand("join", "Join a session as a node: receive, store and forward its stream");
    cmd->footer(
        "Finds the server of the session by UDP broadcast (or uses --server), receives the\n"
        "stream from its parent in the chain, verifies and stores it and forwards it to its child.\n"
        "Exits 0 once the stream is stored and verified and the server has released the node.\n"
        "With --disk the node becomes a clone of the golden node: it checks that the disk can take\n"
        "the golden layout, partitions and formats it, extracts every filesystem while it forwards\n"
        "the stream, runs the fixups (fstab UUIDs, identity, network, initramfs, bootloader, hooks;\n"
        "see `kaclone fixup --help`), unmounts, and reports each phase and its log to the server.\n\n"
        "Examples:\n"
        "  kaclone join --disk /dev/sda --yes                     become a clone of the golden node\n"
        "  kaclone join --sink image.raw --server 10.0.0.1        store a broadcast file\n"
        "  kaclone join --sink /srv/copy --server 10.0.0.1        extract a tree (serve --source DIR)\n"
        "  kaclone join --exec 'tar x -C /data'                   pipe the stream into a command");
    cmd->add_option("--session", opts->session, "Session name to join")->capture_default_str();
    add_server_option(*cmd, opts->server);
    cmd->add_option("--sink", opts->sink, "Store the stream in a file, block device or - (stdout), or extract a tree into a directory");
    cmd->add_option("--exec", opts->exec, "Pipe the stream into this shell command's stdin");
    cmd->add_option("--disk", opts->disk, "Lay out this disk and install the golden node's system on it");
    cmd->add_flag("--yes", opts->yes, "Confirm that --disk, or a block device as --sink, may be overwritten (required with those)");
    cmd->add_option("--target", opts->target, "With --disk: where the clone's filesystems are mounted while it is made")
        ->capture_default_str();
    cmd->add_option("--hostname", opts->hostname, "With --disk: the clone's host name (default: the server's --hostnames file, else the golden node's)");
    cmd->add_option("--retries", opts->retries, "Discovery attempts before giving up")->capture_default_str()->check(at_least_one());
    cmd->add_flag("--json", opts->json, "Print events as JSON lines on stdout (see README)");
    add_key_option(*cmd, opts->key_file);
    add_buffer_option(*cmd, opts->relay);
    cmd->get_option("--sink")->excludes(cmd->get_option("--exec"));
    cmd->get_option("--disk")->excludes(cmd->get_option("--sink"))->excludes(cmd->get_option("--exec"));
    cmd->get_option("--target")->needs(cmd->get_option("--disk"));
    cmd->get_option("--hostname")->needs(cmd->get_option("--disk"));
    return {cmd, [cmd, opts] { return run_join(*cmd, *opts); }};
}

}  // namespace kaclone::cli
