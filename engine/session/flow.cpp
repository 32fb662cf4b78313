// The server's flow analysis: --drop-slow's culprit and the data-stall rule.
#include <kaclone/flow.hpp>

#include <algorithm>

namespace kaclone::flow {

namespace {

double seconds_of(clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Counters only grow; a report that went backwards (a new parent, a restarted count) reads as 0.
double grew(std::uint64_t from, std::uint64_t to) { return to > from ? static_cast<double>(to - from) : 0.0; }

}  // namespace

void history::add(const sample& s) {
    samples_.push_back(s);
    while (samples_.size() > 2 && s.at - samples_[1].at >= window_) samples_.pop_front();
}

std::optional<rates> history::over_window() const {
    if (samples_.size() < 2) return std::nullopt;
    const sample& a = samples_.front();
    const sample& b = samples_.back();
    const double t = seconds_of(b.at - a.at);
    if (t <= 0 || t < seconds_of(window_) / 2) return std::nullopt;
    rates r;
    r.seconds = t;
    r.stored_per_second = grew(a.stored, b.stored) / t;
    r.held_fraction = std::min(t, grew(a.held_ns, b.held_ns) / 1e9) / t;
    if (const double busy = grew(a.sink_busy_ns, b.sink_busy_ns) / 1e9; busy >= 0.001)
        r.sink_capacity = grew(a.stored, b.stored) / busy;
    return r;
}

std::optional<slow_node> find_slow(std::span<const history> nodes, std::span<const std::uint32_t> parent,
                                   const std::vector<bool>& live, const slow_rule& rule) {
    const auto rates_of = [&](std::uint32_t k) { return nodes[k].empty() ? std::nullopt : nodes[k].over_window(); };
    const auto server = rates_of(0);
    if (!server || server->held_fraction <= 0.5) return std::nullopt;
    std::optional<slow_node> worst;
    for (std::uint32_t c = 1; c < nodes.size(); ++c) {
        const std::uint32_t p = parent[c];
        if (!live[c] || nodes[c].empty() || (p != 0 && !live[p]) || nodes[p].empty()) continue;
        const std::uint64_t ahead = nodes[p].newest().stored, here = nodes[c].newest().stored;
        const std::uint64_t behind = ahead > here ? ahead - here : 0;
        if (behind < rule.min_behind || (worst && behind <= worst->behind)) continue;
        const auto mine = rates_of(c);
        if (mine) worst = slow_node{c, mine->stored_per_second, rule.best_pace, behind};
    }
    if (!worst) return std::nullopt;
    // What the others' sinks take now (the median of those that were busy): when every disk
    // slows down (small files), so does the pace, and nobody is to blame.
    std::vector<double> sinks;
    for (std::uint32_t k = 1; k < nodes.size(); ++k)
        if (const auto r = rates_of(k); k != worst->node && live[k] && r && r->sink_capacity) sinks.push_back(*r->sink_capacity);
    if (!sinks.empty()) {
        std::nth_element(sinks.begin(), sinks.begin() + static_cast<std::ptrdiff_t>(sinks.size() / 2), sinks.end());
        worst->pace = std::min(worst->pace, sinks[sinks.size() / 2]);
    }
    if (!(worst->stored_per_second * rule.factor < worst->pace)) return std::nullopt;
    return worst;
}

std::uint32_t to_blame(const slow_node& slow, std::span<const std::uint32_t> parent, std::span<const unsigned> slow_children) {
    const std::uint32_t up = parent[slow.node];
    return up != 0 && slow_children[up] > 0 ? up : slow.node;
}

void note_behind(std::span<progress_view> nodes, std::span<const std::uint32_t> parent, clock::time_point now) {
    for (std::uint32_t k = 1; k < nodes.size(); ++k) {
        if (nodes[parent[k]].wire <= nodes[k].wire) nodes[k].behind_since = {};
        else if (nodes[k].behind_since == clock::time_point{}) nodes[k].behind_since = now;
    }
}

std::vector<std::uint32_t> find_stuck(std::span<const progress_view> nodes, std::span<const std::uint32_t> parent,
                                      clock::time_point now, clock::duration timeout) {
    const auto heard_lately = [&](std::uint32_t k) { return k == 0 || now - nodes[k].heard < std::chrono::seconds(2); };
    const auto stuck = [&](std::uint32_t k) {
        if (k == 0) return false;
        const progress_view& n = nodes[k];
        if (!n.watched || n.held || now - n.changed < timeout) return false;
        const std::uint32_t p = parent[k];
        return heard_lately(p) && nodes[p].wire > n.wire && n.behind_since != clock::time_point{} && now - n.behind_since >= timeout;
    };
    std::vector<std::uint32_t> out;
    for (std::uint32_t k = 1; k < nodes.size(); ++k)
        if (stuck(k) && !stuck(parent[k])) out.push_back(k);
    return out;
}

}  // namespace kaclone::flow
