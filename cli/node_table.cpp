// The node table (see node_table.hpp).
#include "node_table.hpp"

#include <cstdio>

#include <unistd.h>

namespace kaclone::cli {

protocol::status_row row_of(const node_report& n) {
    return {n.node, n.name, n.address, n.parent_address, n.phase, n.stored_bytes, n.bytes_per_second, n.detail};
}

std::vector<std::string> format_node_table(const std::vector<protocol::status_row>& rows, std::uint64_t expected_bytes) {
    std::vector<std::string> lines;
    char line[512];
    std::snprintf(line, sizeof line, "%-4s %-16s %-15s %-15s %-10s %4s %8s  %s", "NODE", "NAME", "ADDRESS", "PARENT", "PHASE", "%",
                  "MB/S", "DETAIL");
    lines.emplace_back(line);
    for (const auto& r : rows) {
        std::string percent = "-";
        if (r.what == protocol::node_phase::done) percent = "100";
        else if (expected_bytes > 0)
            percent = std::to_string(std::min<std::uint64_t>(99, r.stored_bytes * 100 / expected_bytes));
        const std::string node = r.node == 0 ? "-" : std::to_string(r.node);
        std::snprintf(line, sizeof line, "%-4s %-16.16s %-15s %-15s %-10s %4s %8.1f  %s", node.c_str(), r.name.c_str(),
                      r.address.c_str(), r.parent_address.empty() ? "-" : r.parent_address.c_str(),
                      std::string(protocol::phase_name(r.what)).c_str(), percent.c_str(),
                      static_cast<double>(r.bytes_per_second) / 1e6, r.detail.substr(0, 60).c_str());
        lines.emplace_back(line);
    }
    return lines;
}

live_table::live_table() : tty_(::isatty(2) == 1) {}

void live_table::show(const std::vector<std::string>& lines) {
    if (!tty_) return;
    clear();
    for (const auto& l : lines) std::fprintf(stderr, "%s\033[K\n", l.c_str());
    shown_ = lines.size();
    std::fflush(stderr);
}

void live_table::clear() {
    if (shown_ == 0) return;
    std::fprintf(stderr, "\033[%zuA\033[J", shown_);
    shown_ = 0;
}

}  // namespace kaclone::cli
