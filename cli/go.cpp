// `kaclone go`: an operator starts a waiting session now (the old `ka-d-client -g`).
#include <cstdio>
#include <memory>
#include <string>

#include <kaclone/session.hpp>

#include "commands.hpp"
#include "options.hpp"

namespace kaclone::cli {
namespace {

struct go_options {
    std::string session = "default";
    std::string server;
    unsigned retries = 5;
    std::string key_file;
};

void log_line(const std::string& line) { std::fprintf(stderr, "kaclone go: %s\n", line.c_str()); }

int run_go(const go_options& opts) {
    go_config config;
    config.session = opts.session;
    config.server = opts.server;
    config.retries = opts.retries;
    config.log = log_line;
    auto key = load_key_option(opts.key_file);
    if (!key) {
        log_line(key.error().message());
        return exit_failed;
    }
    config.key = *key;
    auto started = start_session(config);
    if (!started) {
        log_line(started.error().message());
        return exit_failed;
    }
    log_line("session '" + opts.session + "' starts with " + std::to_string(*started) + " nodes");
    return exit_ok;
}

}  // namespace

subcommand add_go(CLI::App& app) {
    auto opts = std::make_shared<go_options>();
    auto* cmd = app.add_subcommand("go", "Start a waiting session now, with the nodes that have joined so far");
    cmd->footer("Example:\n  kaclone go --session lab3");
    cmd->add_option("--session", opts->session, "Session to start")->capture_default_str();
    add_server_option(*cmd, opts->server);
    cmd->add_option("--retries", opts->retries, "Discovery attempts before giving up")->capture_default_str()->check(at_least_one());
    add_key_option(*cmd, opts->key_file);
    return {cmd, [opts] { return run_go(*opts); }};
}

}  // namespace kaclone::cli
