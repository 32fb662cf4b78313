// `kaclone status`: the table of a running session, from any shell.
#include <cstdio>
#include <memory>
#include <string>

#include <kaclone/session.hpp>

#include "commands.hpp"
#include "json.hpp"
#include "node_table.hpp"
#include "options.hpp"

namespace kaclone::cli {
namespace {

struct status_options {
    std::string session = "default";
    std::string server;
    unsigned retries = 5;
    std::string key_file;
    bool json = false;
};

void log_line(const std::string& line) { std::fprintf(stderr, "kaclone status: %s\n", line.c_str()); }

int run_status(const status_options& opts) {
    auto key = load_key_option(opts.key_file);
    if (!key) {
        log_line(key.error().message());
        return exit_failed;
    }
    go_config config;
    config.session = opts.session;
    config.server = opts.server;
    config.retries = opts.retries;
    config.key = *key;
    auto answer = session_status(config);
    if (!answer) {
        log_line(answer.error().message());
        return exit_failed;
    }
    if (opts.json) {
        for (const auto& r : answer->rows) {
            json_object o = json_event(opts.session, "node");
            o.add("node", std::uint64_t{r.node}).add("name", r.name).add("address", r.address).add("parent", r.parent_address);
            o.add("phase", std::string(protocol::phase_name(r.what))).add("bytes", r.stored_bytes);
            o.add("bytes_per_second", r.bytes_per_second).add("detail", r.detail);
            print_json_line(o);
        }
        json_object o = json_event(opts.session, "status");
        o.add("state", answer->state).add("expected_bytes", answer->expected_bytes).add("nodes", std::uint64_t{answer->rows.size()});
        print_json_line(o);
        return exit_ok;
    }
    std::printf("session '%s': %s\n", opts.session.c_str(), answer->state.c_str());
    for (const auto& line : format_node_table(answer->rows, answer->expected_bytes)) std::printf("%s\n", line.c_str());
    return exit_ok;
}

}  // namespace

subcommand add_status(CLI::App& app) {
    auto opts = std::make_shared<status_options>();
    auto* cmd = app.add_subcommand("status", "Show every node of a running session: phase, bytes, throughput, parent, errors");
    cmd->footer(
        "Asks the server of the session (found by broadcast, or --server) for its table: before\n"
        "the start the nodes that joined, then one row per node with its phase (waiting, layout,\n"
        "receiving, extracting, fixup, done, failed), percent, MB/s, parent and what it does or\n"
        "why it failed. With a session key it must be given here too.\n\n"
        "Example:\n  kaclone status --session lab3");
    cmd->add_option("--session", opts->session, "Session to show")->capture_default_str();
    add_server_option(*cmd, opts->server);
    cmd->add_option("--retries", opts->retries, "Discovery attempts before giving up")->capture_default_str()->check(at_least_one());
    cmd->add_flag("--json", opts->json, "One JSON line per node, then a status line");
    add_key_option(*cmd, opts->key_file);
    return {cmd, [opts] { return run_status(*opts); }};
}

}  // namespace kaclone::cli
