// `kaclone go`: an operator starts a waiting session now (the old `ka-d-client -g`).
#include <memory>
#include <string>

#include "commands.hpp"

namespace kaclone::cli {
namespace {

struct go_options {
    std::string session = "default";
    std::string server;
};

int run_go(const CLI::App& command, const go_options&) { return not_built_yet(command); }

}  // namespace

subcommand add_go(CLI::App& app) {
    auto opts = std::make_shared<go_options>();
    auto* cmd = app.add_subcommand("go", "Start a waiting session now, with the nodes that have joined so far");
    cmd->footer("Example:\n  kaclone go --session lab3");
    cmd->add_option("--session", opts->session, "Session to start")->capture_default_str();
    cmd->add_option("--server", opts->server, "Server HOST[:PORT]; skips the broadcast discovery");
    return {cmd, [cmd, opts] { return run_go(*cmd, *opts); }};
}

}  // namespace kaclone::cli
