// The `kaclone` executable: parses the command line, runs the chosen subcommand, maps the
// outcome to the exit code (0 ok, 1 failed, 2 usage). The only place that catches exceptions.
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.hpp"

namespace kaclone::cli {

int usage_error(const CLI::App& command, const std::string& reason) {
    std::fprintf(stderr, "kaclone %s: %s\nRun 'kaclone %s --help' for usage.\n", command.get_name().c_str(),
                 reason.c_str(), command.get_name().c_str());
    return exit_usage;
}

namespace {

// "kaclone" or "kaclone serve": the deepest subcommand the parse reached, for error hints.
std::string command_path(CLI::App& app) {
    std::string path = app.get_name();
    for (CLI::App* sub = &app; !sub->get_subcommands().empty();) {
        sub = sub->get_subcommands().front();
        path += " " + sub->get_name();
    }
    return path;
}

int main_impl(int argc, char** argv) {
    CLI::App app{"kaclone: clone one Linux machine onto many, over a chain of TCP connections",
                 "kaclone"};
    app.footer(
        "Golden node:   kaclone serve --nodes 40 --disk sda\n"
        "Each node:     kaclone join --disk /dev/sda --yes\n"
        "Run `kaclone COMMAND --help` for the options of a command.");
    app.set_version_flag("--version", KACLONE_VERSION);
    app.require_subcommand(1);
    app.get_formatter()->column_width(34);

    const std::vector<subcommand> commands{add_serve(app),  add_join(app),   add_go(app),
                                           add_status(app), add_desc(app),   add_layout(app),
                                           add_fixup(app),  add_version(app)};
    if (argc <= 1) {
        std::fputs(app.help().c_str(), stderr);
        return exit_usage;
    }
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
        return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
        return app.exit(e);
    } catch (const CLI::ParseError& e) {
        if (app.get_subcommands().empty() && argv[1][0] != '-') {
            std::fprintf(stderr,
                         "kaclone: unknown command '%s'\nRun 'kaclone --help' for the commands.\n",
                         argv[1]);
            return exit_usage;
        }
        const std::string path = command_path(app);
        std::fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", path.c_str(), e.what(),
                     path.c_str());
        return exit_usage;
    }
    for (const subcommand& command : commands)
        if (command.app->parsed()) return command.run();
    return exit_usage;  // unreachable: require_subcommand(1) made the parse fail
}

}  // namespace
}  // namespace kaclone::cli

int main(int argc, char** argv) {
    // Peers and --exec commands that go away are errors reported where they happen (EPIPE),
    // never a silent death by SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    try {
        return kaclone::cli::main_impl(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "kaclone: internal error: %s\n", e.what());
        return kaclone::cli::exit_failed;
    }
}
