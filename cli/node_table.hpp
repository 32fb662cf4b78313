// The table of a session's nodes: serve's live view (redrawn on a terminal once a second) and
// `kaclone status`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <kaclone/protocol.hpp>
#include <kaclone/session.hpp>

namespace kaclone::cli {

// A node's row as the server knows it.
protocol::status_row row_of(const node_report& n);

// The heading and one line per node: NODE NAME ADDRESS PARENT PHASE % MB/S DETAIL. The
// percentage is stored bytes of `expected_bytes` (99 at most until the node is done; "-" when
// the expectation is unknown).
std::vector<std::string> format_node_table(const std::vector<protocol::status_row>& rows, std::uint64_t expected_bytes);

// Redraws a block of lines in place on stderr when it is a terminal; silent otherwise.
class live_table {
public:
    live_table();
    ~live_table() { clear(); }
    void show(const std::vector<std::string>& lines);
    void clear();  // before other output, so it does not mix with the table

private:
    bool tty_;
    std::size_t shown_ = 0;
};

}  // namespace kaclone::cli
