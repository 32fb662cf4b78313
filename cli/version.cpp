// `kaclone version`: what this executable is, for bug reports.
#include <cstdio>

#include <sys/utsname.h>

#include <kaclone/protocol.hpp>

#include "commands.hpp"

namespace kaclone::cli {

subcommand add_version(CLI::App& app) {
    auto* cmd = app.add_subcommand("version", "Print kaclone's version, its protocol version, the compiler and the running kernel");
    return {cmd, [] {
                utsname host{};
                ::uname(&host);
                // Nodes and server must speak the same protocol version.
                std::printf("kaclone %s\nprotocol %u\nbuilt with g++ %s\nkernel %s %s\n", KACLONE_VERSION,
                            unsigned{protocol::version}, __VERSION__, host.release, host.machine);
                return exit_ok;
            }};
}

}  // namespace kaclone::cli
