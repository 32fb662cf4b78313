// `kaclone serve`: the golden node's side of a session.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <kaclone/manifest.hpp>
#include <kaclone/session.hpp>
#include <kaclone/units.hpp>

#include "clone_source.hpp"
#include "commands.hpp"
#include "json.hpp"
#include "node_table.hpp"
#include "options.hpp"
#include "progress.hpp"
#include "relay_options.hpp"
#include "stream_io.hpp"

namespace kaclone::cli {
namespace {

struct serve_options {
    std::string session = "default";
    unsigned nodes = 0;
    std::string source;
    std::string disk;
    std::string desc;
    bool fill_last = false;
    std::string root = "/";
    std::vector<std::string> raw;
    std::vector<std::string> exclude_disks;
    std::string mbr;
    std::vector<std::string> mbr_file;  // DRIVE FILE
    std::string bootloader = "grub";
    std::string initrd_args;
    std::string hostnames;
    std::string logs;
    std::vector<std::string> excludes;
    std::uint16_t port = 0;
    unsigned min_nodes = 0;
    std::chrono::milliseconds wait{0};
    std::string order_file;
    unsigned arity = 1;
    std::chrono::milliseconds stagger{0};
    std::chrono::milliseconds stall_timeout{5000};
    unsigned allow_failures = 0;
    bool drop_slow = false;
    std::chrono::milliseconds slow_timeout{10000};
    bool json = false;
    std::string key_file;
    relay_config relay;
};

void log_line(const std::string& line) { std::fprintf(stderr, "kaclone serve: %s\n", line.c_str()); }

// Whether node `n` stored exactly the source's bytes, and if not, why (for both outputs).
bool stored_all(const node_report& n, const serve_report& report) {
    return n.reported && n.done.ok && n.done.digest == report.source.digest && n.done.stored_bytes == report.source.bytes;
}
std::string why_failed(const node_report& n) {
    if (!n.lost.empty()) return n.lost;  // the server's reason, with the offset it reached
    if (!n.reported) return "lost its control connection before reporting";
    if (!n.done.ok) return n.done.message;
    return "stored " + std::to_string(n.done.stored_bytes) + " bytes with digest " + n.done.digest.hex();
}

// What a node stored: its own final word, else the last progress the server heard.
std::uint64_t bytes_of(const node_report& n) { return n.reported ? n.done.stored_bytes : n.stored_bytes; }

// The table of every node and the summary line, on stdout. Returns how many nodes stored
// exactly the source's bytes.
unsigned print_report(const serve_report& report) {
    std::printf("%-16s %-15s %-15s %12s %9s %-8s %s\n", "NODE", "ADDRESS", "PARENT", "BYTES", "MB/S", "DIGEST", "RESULT");
    unsigned good = 0;
    std::string failures;
    for (const node_report& n : report.nodes) {
        const bool digest_ok = stored_all(n, report);
        // MISMATCH only for a node that says it stored the stream and stored other bytes; one
        // that failed (its disk, its command, its link) has no digest to compare.
        const char* digest = digest_ok ? "match" : n.reported && n.done.ok ? "MISMATCH" : "-";
        const double rate = n.done.seconds > 0 ? static_cast<double>(n.done.stored_bytes) / n.done.seconds / 1e6 : 0;
        std::printf("%-16s %-15s %-15s %12llu %9.1f %-8s %s\n", n.name.substr(0, 16).c_str(), n.address.c_str(),
                    n.parent_address.c_str(), static_cast<unsigned long long>(bytes_of(n)), rate,
                    digest, digest_ok ? "ok" : "failed");
        if (digest_ok) ++good;
        else
            failures += "  node " + std::to_string(n.node) + " (" + n.address + "): " + why_failed(n) + "\n";
    }
    const double wall = seconds(report.wall);
    std::printf("kaclone serve: %u of %zu nodes stored %llu bytes (digest %s) in %.2f s, %.1f MB/s; "
                "pipeline drained %.2f s after the source ended\n",
                good, report.nodes.size(), static_cast<unsigned long long>(report.source.bytes),
                report.source.digest.hex().c_str(), wall, wall > 0 ? static_cast<double>(report.source.bytes) / wall / 1e6 : 0,
                seconds(report.source.drain));
    if (!failures.empty()) std::printf("failed:\n%s", failures.c_str());
    std::fflush(stdout);
    return good;
}

// The summary as JSON: the same facts as the table and the summary line.
unsigned print_json_report(const std::string& session, const serve_report& report) {
    std::string failed = "[";
    unsigned good = 0;
    for (const node_report& n : report.nodes) {
        if (stored_all(n, report)) {
            ++good;
            continue;
        }
        json_object f;
        f.add("node", std::uint64_t{n.node}).add("address", n.address).add("bytes", bytes_of(n));
        f.add("message", why_failed(n));
        failed += (failed.size() > 1 ? "," : "") + f.str();
    }
    failed += "]";
    const double wall = seconds(report.wall);
    json_object o = json_event(session, "summary");
    o.add("nodes", std::uint64_t{report.nodes.size()}).add("ok", std::uint64_t{good}).add("bytes", report.source.bytes);
    o.add("digest", report.source.digest.hex()).add("seconds", wall);
    o.add("mb_s", wall > 0 ? static_cast<double>(report.source.bytes) / wall / 1e6 : 0.0);
    o.add("drain_seconds", seconds(report.source.drain)).add_raw("failed", failed);
    print_json_line(o);
    return good;
}

// A whole-machine clone's summary: each node's result (the table's rule, stored_all) and the
// time it spent in each phase, then the last log lines of every node that failed.
void print_phase_times(const serve_report& report) {
    using protocol::node_phase;
    const auto secs = [](const node_report& n, node_phase p) { return seconds(n.phase_time[static_cast<std::size_t>(p)]); };
    std::printf("%-4s %-15s %-7s %8s %8s %8s %8s %8s %8s\n", "NODE", "ADDRESS", "RESULT", "WAITING", "RECEIVE", "LAYOUT", "EXTRACT",
                "FIXUP", "TOTAL");
    for (const node_report& n : report.nodes) {
        double total = 0;
        for (const auto& t : n.phase_time) total += seconds(t);
        std::printf("%-4u %-15s %-7s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f\n", n.node, n.address.c_str(),
                    stored_all(n, report) ? "ok" : "failed", secs(n, node_phase::waiting), secs(n, node_phase::receiving),
                    secs(n, node_phase::layout), secs(n, node_phase::extracting), secs(n, node_phase::fixup), total);
    }
    for (const node_report& n : report.nodes) {
        if (stored_all(n, report) || n.last_lines.empty()) continue;
        std::printf("last lines of node %u (%s):\n", n.node, n.address.c_str());
        for (const auto& line : n.last_lines) std::printf("  %s\n", line.c_str());
    }
    std::fflush(stdout);
}

// The nodes' logs under --logs: DIR/NAME.log, or DIR/NAME-ADDRESS.log when several nodes
// share a host name. Names are fixed once every node is assigned (before any log line).
class node_logs {
public:
    explicit node_logs(std::string dir) : dir_(std::move(dir)) {}
    void assigned(std::uint32_t node, const std::string& name, const std::string& address) { nodes_[node] = {name, address}; }
    void write(const node_report& n, const std::string& line) {
        auto it = files_.find(n.node);
        if (it == files_.end()) {
            std::string file = n.name.empty() ? n.address : n.name;
            for (const auto& [other, who] : nodes_)
                if (other != n.node && who.first == n.name) file = n.name + "-" + n.address;
            it = files_.emplace(n.node, std::ofstream(dir_ + "/" + file + ".log", std::ios::app)).first;
        }
        it->second << line << '\n';
        it->second.flush();
    }

private:
    std::string dir_;
    std::map<std::uint32_t, std::pair<std::string, std::string>> nodes_;
    std::map<std::uint32_t, std::ofstream> files_;
};

// --order FILE: one host name or address per line; blank lines and # comments allowed.
result<std::vector<std::string>> read_order_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) return error{std::make_error_code(std::errc::no_such_file_or_directory), "--order " + path};
    std::vector<std::string> order;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (const auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        std::istringstream words(line);
        std::string word, extra;
        if (!(words >> word)) continue;
        if (words >> extra)
            return error{std::make_error_code(std::errc::invalid_argument),
                         path + ":" + std::to_string(number) + ": one host name or address per line, found '" + extra + "' after '" + word + "'"};
        order.push_back(word);
    }
    return order;
}

int run_serve(const CLI::App& command, const serve_options& opts) {
    if (opts.nodes == 0) return usage_error(command, "--nodes is required");
    if (opts.source.empty() && opts.disk.empty()) return usage_error(command, "--source or --disk is required");
    if (const auto problem = relay_options_problem(opts.relay); !problem.empty()) return usage_error(command, problem);
    if (opts.stall_timeout < std::chrono::seconds(2))
        return usage_error(command, "--stall-timeout must be at least 2s: nodes report once a second");
    if (opts.slow_timeout < std::chrono::seconds(3))
        return usage_error(command, "--slow-timeout must be at least 3s: it is judged on 5 s of reports");
    if (opts.min_nodes > opts.nodes) return usage_error(command, "--min must not exceed --nodes");
    // A directory is a tree: image::write_tree on a thread, into a pipe the relay reads.
    std::error_code dir_ec;
    const bool tree = opts.disk.empty() && std::filesystem::is_directory(opts.source, dir_ec);
    if (!opts.excludes.empty() && opts.disk.empty() && !tree)
        return usage_error(command, "--exclude needs --disk or a directory --source");
    if (!opts.mbr_file.empty() && disk_path(opts.mbr_file[0]) != disk_path(opts.disk))
        return usage_error(command, "--mbr-file " + opts.mbr_file[0] + ": the boot code is written to the clones of --disk " +
                                        opts.disk + ", give that drive");
    std::vector<std::string> order;
    if (!opts.order_file.empty()) {
        auto read = read_order_file(opts.order_file);
        if (!read) {
            log_line(read.error().message());
            return exit_failed;
        }
        order = *std::move(read);
    }
    auto key = load_key_option(opts.key_file);
    if (!key) {
        log_line(key.error().message());
        return exit_failed;
    }
    std::optional<tree_source> tree_stream;
    std::optional<disk_source> clone;
    std::optional<node_logs> logs;
    opened_source source_file;
    if (!opts.disk.empty()) {
        disk_source_options o;
        o.session = opts.session;
        o.disk = opts.disk;
        o.root = opts.root;
        o.desc_file = opts.desc;
        o.fill_last = opts.fill_last;
        o.excludes = opts.excludes;
        o.raw = opts.raw;
        o.exclude_disks = opts.exclude_disks;
        o.mbr_drive = opts.mbr;
        if (!opts.mbr_file.empty()) o.mbr_file = opts.mbr_file[1];
        o.bootloader = opts.bootloader;
        o.initrd_args = opts.initrd_args;
        o.hostnames_file = opts.hostnames;
        auto prepared = disk_source::prepare(o, log_line);
        if (!prepared) {
            log_line(prepared.error().message());
            return exit_failed;
        }
        clone.emplace(*std::move(prepared));
        const std::string dir = opts.logs.empty() ? "/var/log/kaclone/" + opts.session : opts.logs;
        std::error_code ec;
        std::filesystem::create_directories(dir, ec);
        if (ec) {
            log_line("--logs " + dir + ": " + ec.message());
            return exit_failed;
        }
        std::ofstream(dir + "/manifest") << manifest::encode(clone->content());
        log_line("nodes' logs go to " + dir);
        logs.emplace(dir);
        if (auto ok = clone->start(log_line); !ok) {
            log_line(ok.error().message());
            return exit_failed;
        }
        source_file.fd = clone->fd();
    } else if (tree) {
        // A bad --exclude would fail the stream once every node has joined: refused now.
        if (auto ok = image::check_excludes(opts.source, {opts.excludes.begin(), opts.excludes.end()}); !ok) {
            log_line("--exclude " + ok.error().message() + "; refused before any node was touched");
            return exit_failed;
        }
        auto started = tree_source::start(opts.source, {opts.excludes.begin(), opts.excludes.end()},
                                          [](const std::string& line) { log_line(line); });
        if (!started) {
            log_line(started.error().message());
            return exit_failed;
        }
        tree_stream.emplace(*std::move(started));
        source_file.fd = tree_stream->fd();
    } else {
        auto opened = open_source(opts.source);
        if (!opened) {
            log_line(opened.error().message());
            return exit_failed;
        }
        source_file = *std::move(opened);
    }
    relay_stats stats;
    progress_line progress{"stored on every node:", source_file.bytes};
    serve_config config;
    config.session = opts.session;
    config.nodes = opts.nodes;
    config.port = opts.port;
    config.min_nodes = opts.min_nodes;
    config.wait = opts.wait;
    config.order = std::move(order);
    config.arity = opts.arity;
    config.stagger = opts.stagger;
    config.stall_timeout = opts.stall_timeout;
    config.drop_slow = opts.drop_slow;
    config.slow_timeout = opts.slow_timeout;
    config.key = *key;
    config.source_fd = source_file.fd;
    config.source_bytes = source_file.bytes;
    config.expected_bytes = clone ? clone->expected_bytes() : 0;
    config.relay = opts.relay;
    apply_test_faults(config.relay);
    live_table view;
    if (clone) {
        // The live view: a row per node, redrawn once a second (a terminal only).
        config.on_nodes = [&view, &config](const std::vector<node_report>& nodes) {
            std::vector<protocol::status_row> rows;
            for (const auto& n : nodes) rows.push_back(row_of(n));
            view.show(format_node_table(rows, config.expected_bytes));
        };
        config.on_node_log = [&logs](const node_report& n, const std::string& line) { logs->write(n, line); };
    } else {
        config.on_tick = [&progress](const relay_stats& s) { progress.update(s.acked_bytes.load()); };
    }
    config.log = [&progress, &view](const std::string& line) {
        progress.clear();
        view.clear();
        log_line(line);
    };
    config.on_event = [&opts, &logs](const session_event& e) {
        if (logs && e.what == session_event::kind::assigned) logs->assigned(e.node, e.name, e.address);
        if (opts.json) print_json_line(event_json(opts.session, e));
    };
    auto report = serve_session(config, stats);
    progress.clear();
    view.clear();
    // The bundle's writer: whether it sent every filesystem whole.
    bool clone_ok = true;
    if (clone) {
        if (auto sent = clone->finish(); !sent) {
            log_line("sending " + disk_path(opts.disk) + ": " + sent.error().message());
            clone_ok = false;
        }
    }
    // The tree's writer: what it sent, or why the stream it produced is not the whole tree.
    bool tree_ok = true;
    if (tree_stream) {
        auto sent = tree_stream->finish();
        if (!sent) {
            log_line("sending " + opts.source + ": " + sent.error().message());
            tree_ok = false;
        } else {
            log_line("sent " + std::to_string(sent->entries) + " entries (" + std::to_string(sent->warnings) + " warnings, " +
                     std::to_string(sent->sockets_skipped) + " sockets skipped, " + std::to_string(sent->excluded_dirs) +
                     " excluded directories, " + std::to_string(sent->mounts_not_crossed) + " mount points not crossed)");
        }
    }
    if (!report) {
        log_line(report.error().message());
        return exit_failed;
    }
    const unsigned good = opts.json ? print_json_report(opts.session, *report) : print_report(*report);
    if (clone && !opts.json) print_phase_times(*report);
    if (!report->source.zerocopy_refused.empty()) log_line(report->source.zerocopy_refused);
    const std::size_t failed = report->nodes.size() - good;
    const bool nodes_ok = failed <= opts.allow_failures;
    if (failed > 0 && nodes_ok)
        log_line(std::to_string(failed) + " of " + std::to_string(report->nodes.size()) + " nodes failed; --allow-failures " +
                 std::to_string(opts.allow_failures) + " accepts that");
    return nodes_ok && tree_ok && clone_ok ? exit_ok : exit_failed;
}

}  // namespace

subcommand add_serve(CLI::App& app) {
    auto opts = std::make_shared<serve_options>();
    auto* cmd = app.add_subcommand("serve", "Stream this machine (or a file, device or tree) to the nodes of a session");
    cmd->footer(
        "Waits until --nodes nodes have joined, arranges them in a chain (or with --arity a tree)\n"
        "of TCP connections and streams down it; every node stores the stream and forwards it.\n"
        "Prints one row per node at the end and exits 0 only when every node stored exactly the\n"
        "source's bytes (or, with --allow-failures K, at most K nodes did not).\n\n"
        "A node that dies, stalls past --stall-timeout or loses its link is reported failed with\n"
        "the offset it reached; its children resume from its parent (the nearest live node above\n"
        "it, or the server) at the byte they have, and the others finish undisturbed. A slow node\n"
        "slows everyone (one bounded buffer per node); with --drop-slow a node that holds the\n"
        "session back at under a quarter of the best pace the session kept is dropped instead.\n\n"
        "Examples:\n"
        "  kaclone serve --nodes 40 --disk sda --exclude /tmp     clone this machine\n"
        "  kaclone serve --nodes 8 --source image.raw             broadcast a file or device\n"
        "  tar c /data | kaclone serve --nodes 8 --source -       broadcast stdin\n"
        "  kaclone serve --nodes 8 --source /srv --exclude cache  send a tree (join --sink DIR)\n"
        "  kaclone serve --nodes 40 --min 30 --wait 5m --source image.raw\n"
        "                      start after 5 minutes if 30 of 40 nodes are there (or on `kaclone go`)");
    cmd->add_option("--session", opts->session, "Session name; nodes join by this name")->capture_default_str();
    cmd->add_option("--nodes", opts->nodes, "Number of nodes to wait for before starting")->check(at_least_one());
    cmd->add_option("--source", opts->source, "Send a file, block device, - (stdin) or a directory tree (one filesystem)");
    cmd->add_option("--disk", opts->disk, "Clone this disk's partition layout and filesystems (e.g. sda)");
    cmd->add_option("--desc", opts->desc, "Partition description file (default: derived from --disk)");
    cmd->add_flag("--fill-last", opts->fill_last,
                  "With --disk: the last partition of each table takes the rest of each node's disk (a larger disk "
                  "gets its space; the golden's sizes otherwise)");
    cmd->add_option("--exclude", opts->excludes,
                    "Do not send this directory's content, only the directory itself (repeatable; with --disk as the golden "
                    "system sees it, e.g. /tmp; relative to a directory --source)");
    cmd->add_option("--root", opts->root, "With --disk: where the golden system's root filesystem is mounted")->capture_default_str();
    cmd->add_option("--raw", opts->raw, "With --disk: send this partition byte for byte (number, sda3 or /dev/sda3; repeatable)");
    cmd->add_option("--exclude-disk", opts->exclude_disks,
                    "With --disk: another disk of this machine not to send (none is: only --disk's filesystems are "
                    "sent, never those of other disks mounted below --root; repeatable)");
    auto* mbr = cmd->add_option("--mbr", opts->mbr, "With --disk: send the boot code (first 446 bytes) of this drive");
    cmd->add_option("--mbr-file", opts->mbr_file, "With --disk: send the boot code in FILE (exactly 446 bytes) for DRIVE")
        ->expected(2)
        ->type_name("DRIVE FILE")
        ->excludes(mbr);
    cmd->add_option("--bootloader", opts->bootloader, "With --disk: grub, or none to leave the clones' boot loader alone")
        ->check(CLI::IsMember({"grub", "none"}))
        ->capture_default_str();
    cmd->add_option("--initrd-args", opts->initrd_args, "With --disk: extra arguments for the clones' initramfs tool");
    cmd->add_option("--hostnames", opts->hostnames, "With --disk: file of `MAC-or-IP name` lines naming the clones")
        ->check(CLI::ExistingFile);
    cmd->add_option("--logs", opts->logs, "With --disk: keep every node's log here (default /var/log/kaclone/SESSION)");
    cmd->add_option("--port", opts->port, "Control port (default: chosen automatically)")
        ->check(whole_number(1, 65535, "a port 1..65535", "PORT"));
    cmd->add_option("--min", opts->min_nodes, "With --wait: start at the deadline if at least this many nodes joined")
        ->check(at_least_one());
    add_duration_option(*cmd, "--wait", opts->wait,
                        "Start this long after the server started, with the nodes joined by then (at least --min, default 1)");
    cmd->add_option("--order", opts->order_file,
                    "File with one host name or address per line: the chain's order (others follow by address)")
        ->check(CLI::ExistingFile);
    cmd->add_option("--arity", opts->arity,
                    "Children per node: 1 is a chain (default), K a K-ary tree filled level by level (the server "
                    "sends to K nodes, each of them to K more, ...)")
        ->capture_default_str()
        ->check(CLI::Range(1, 64));
    add_duration_option(*cmd, "--stagger", opts->stagger, "Time between two nodes' releases (spreads their reboots)");
    add_duration_option(*cmd, "--stall-timeout", opts->stall_timeout,
                        "Fail a node that says nothing for this long while the stream flows (default 5s); its children "
                        "move on to its parent");
    cmd->add_flag("--drop-slow", opts->drop_slow,
                  "Fail a node that holds the whole session back for --slow-timeout, storing at under 1/4 of the best pace "
                  "the session kept, so that the others keep their pace (default: everyone slows down; see README)");
    add_duration_option(*cmd, "--slow-timeout", opts->slow_timeout,
                        "How long a node must hold the session back before --drop-slow drops it (default 10s)");
    cmd->add_option("--allow-failures", opts->allow_failures, "Exit 0 even if up to K nodes failed (default 0)")
        ->type_name("K");

    cmd->add_flag("--json", opts->json, "Print events as JSON lines on stdout instead of the table (see README)");
    add_key_option(*cmd, opts->key_file);
    add_relay_options(*cmd, opts->relay);
    cmd->get_option("--source")->excludes(cmd->get_option("--disk"));
    // Only a disk clone has a layout to describe; --exclude also works with a directory --source.
    cmd->get_option("--fill-last")->excludes(cmd->get_option("--desc"));
    for (const char* name : {"--desc", "--fill-last", "--root", "--raw", "--exclude-disk", "--mbr", "--mbr-file", "--bootloader", "--initrd-args", "--hostnames", "--logs"})
        cmd->get_option(name)->needs(cmd->get_option("--disk"));
    cmd->get_option("--min")->needs(cmd->get_option("--wait"));
    return {cmd, [cmd, opts] { return run_serve(*cmd, *opts); }};
}

}  // namespace kaclone::cli
