// Options that serve and join share: the relay's buffer and forwarding mode.
#pragma once

#include <cctype>
#include <cstdlib>
#include <map>
#include <string>

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <kaclone/relay.hpp>
#include <kaclone/units.hpp>

#include "options.hpp"

namespace kaclone::cli {

inline constexpr std::uint64_t min_buffer_bytes = 4u << 20;

// --buffer, on serve and join: each node bounds its own memory.
inline void add_buffer_option(CLI::App& cmd, relay_config& relay) {
    add_bytes_option(cmd, "--buffer", relay.buffer_bytes, "Memory bound of this node's relay buffer (at least 4M)");
}

// --buffer and --relay-mode (serve only: the server tells every node the mode).
inline void add_relay_options(CLI::App& cmd, relay_config& relay) {
    add_buffer_option(cmd, relay);
    static const std::map<std::string, relay_mode> modes{{"splice", relay_mode::splice}, {"zerocopy", relay_mode::zerocopy}};
    cmd.add_option("--relay-mode", relay.mode,
                   "How relays forward: splice (pipes, no copy) or zerocopy (ring buffer + SEND_ZC); "
                   "set on serve, applies to every node")
        ->transform(
            [](std::string value) {
                std::string lower = value;
                for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                const auto found = modes.find(lower);
                if (found == modes.end()) throw CLI::ValidationError("'" + value + "' is not a relay mode (splice or zerocopy)");
                return std::to_string(static_cast<int>(found->second));
            },
            "splice|zerocopy")
        ->default_str("splice")
        ->option_text("splice|zerocopy (default: splice)");
}

// Test-only faults (see relay_config), from the environment: the tests' way in.
inline void apply_test_faults(relay_config& relay) {
    const auto from_env = [](const char* name, std::uint64_t& to) {
        if (const char* value = std::getenv(name)) to = std::strtoull(value, nullptr, 10);
    };
    from_env("KACLONE_FAULT_FLIP_BYTE", relay.fault_flip_byte);
    from_env("KACLONE_FAULT_FORGE_BYTE", relay.fault_forge_byte);
    from_env("KACLONE_FAULT_REFUSE_ZEROCOPY_AT", relay.fault_refuse_zerocopy_at);
}

// The reason the relay options cannot work, or "" when they can.
// A buffer larger than the machine's memory fails only once the stream starts (and costs the
// session a node): refused up front.
inline std::string relay_options_problem(const relay_config& relay) {
    if (relay.buffer_bytes < min_buffer_bytes) return "--buffer must be at least 4M";
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        const auto memory = static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(page);
        if (relay.buffer_bytes > memory / 2)
            return "--buffer " + format_bytes(relay.buffer_bytes) + " is more than half of this machine's memory (" +
                   format_bytes(memory) + ")";
    }
    return "";
}

}  // namespace kaclone::cli
