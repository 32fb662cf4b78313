// Flow analysis for the server: from every node's flow reports (relay_stats, once a second),
// which node holds the whole session back (--drop-slow) and which node is stuck although its
// parent has bytes for it (the data-stall rule). Pure functions over samples, no I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <vector>

namespace kaclone::flow {

using clock = std::chrono::steady_clock;

// A node's flow counters at one moment (its progress report; the server's: its relay_stats).
struct sample {
    clock::time_point at{};
    std::uint64_t stored = 0;        // stream bytes stored (the server: read from its source)
    std::uint64_t wire = 0;          // wire bytes taken in
    std::uint64_t held_ns = 0;       // time its intake waited for room, in all
    std::uint64_t sink_busy_ns = 0;  // time with a write to its sink in flight, in all
};

// What a window of samples says about a node.
struct rates {
    double seconds = 0;
    double stored_per_second = 0;
    double held_fraction = 0;  // of the window, the share its intake waited for room
    // Stored bytes per second that its sink was busy: what its sink can take. Unknown: the
    // sink was never busy (it is not what limits the node).
    std::optional<double> sink_capacity;
};

// The last samples of one node, covering at most `window` of time.
class history {
public:
    explicit history(clock::duration window = std::chrono::seconds(5)) : window_(window) {}
    void add(const sample& s);
    void clear() { samples_.clear(); }
    bool empty() const noexcept { return samples_.empty(); }
    const sample& newest() const { return samples_.back(); }
    // Over the window; none with fewer than two samples or less than half the window covered.
    std::optional<rates> over_window() const;

private:
    clock::duration window_;
    std::deque<sample> samples_;
};

// A node that holds the session back and what shows it.
struct slow_node {
    std::uint32_t node = 0;
    double stored_per_second = 0;
    double pace = 0;            // what the others could keep without it, bytes per second
    std::uint64_t behind = 0;   // stream bytes its parent stored that it has not
};

struct slow_rule {
    // The best the whole session did (every node storing), bytes per second: in a chain a
    // node slow from the first byte slows everyone from the first byte, so only what was seen
    // counts.
    double best_pace = 0;
    std::uint64_t min_behind = 0;  // a parent ahead by less is no jam (a part of a buffer)
    double factor = 4;
};

// The node that holds the whole session back, if one does, and stores at under 1/factor of
// the pace the others could keep.
//   Which node: the server's intake is held (over half the window: its retention is full),
//   and of all nodes its parent is the furthest ahead of it, by at least min_behind. Every
//   relay buffers ahead of a slower child (relay_config::buffer_ahead), so the bytes pile
//   up above the slow link or sink: a slow link leaves its receiver behind, a slow sink
//   its own node, and every node above is held only because of it.
//   The pace: the best pace, and no more than the median of what the other nodes' sinks take
//   now (when every disk slows down, on small files say, the pace does too and nobody is to
//   blame).
// Without the margin a chain of equal nodes would lose its slowest, then the next: that is
// pace, not a fault. `nodes[k]` is node k's history (nodes[0] the server's), `parent[k]` its
// parent, `live[k]` whether it can be blamed (not failed, still receiving).
std::optional<slow_node> find_slow(std::span<const history> nodes, std::span<const std::uint32_t> parent,
                                   const std::vector<bool>& live, const slow_rule& rule);

// Whom to fail for `slow`: the node, or its parent (not the server) when a child of that
// parent was dropped as too slow before: one child after the other slow from the same parent
// says that the link out of the parent is slow. `slow_children[k]`: node k's children dropped
// as too slow.
std::uint32_t to_blame(const slow_node& slow, std::span<const std::uint32_t> parent, std::span<const unsigned> slow_children);

// One node as the data-stall rule sees it.
struct progress_view {
    bool watched = false;             // live, receiving or extracting, has taken in bytes before
    bool held = false;                // its intake waits for room (it is not waiting for data)
    std::uint64_t wire = 0;           // wire bytes taken in
    clock::time_point changed{};      // its last progress (a byte taken in or stored, time spent held or
                                      // writing to its sink, a new parent)
    clock::time_point heard{};        // its last report
    clock::time_point behind_since{}; // since when its parent has had bytes it has not (note_behind)
};

// Keeps every node's behind_since: set when its parent first has taken in more than it, kept
// while that lasts, cleared when it has caught up. Call before find_stuck, with new reports.
void note_behind(std::span<progress_view> nodes, std::span<const std::uint32_t> parent, clock::time_point now);

// Nodes stuck for `timeout`: taking in nothing and storing nothing although they wait for
// data and their parent has had bytes they have not for all that time (not just the bytes in
// flight that every link has now and then); the parent is heard from and not stuck itself
// (a stuck or silent parent is the one to blame: only the top of a stuck run is returned).
// `nodes[0]` is the server, whose `changed` and `heard` are now.
std::vector<std::uint32_t> find_stuck(std::span<const progress_view> nodes, std::span<const std::uint32_t> parent,
                                      clock::time_point now, clock::duration timeout);

}  // namespace kaclone::flow
