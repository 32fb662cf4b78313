// The server's flow analysis: which node holds the session back, which one is stuck.
#include <kaclone/flow.hpp>

#include <gtest/gtest.h>

namespace kaclone::flow {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

const clock::time_point t0{};
constexpr std::uint64_t mb = 1'000'000;
constexpr std::uint64_t s_ns = 1'000'000'000;

// A node's history over 5 s (samples each second): it stored and took in `rate` bytes per
// second from `start`, its intake was held `held` of each second, its sink busy `busy` of it.
struct pace {
    std::uint64_t start = 0;
    double rate = 0;
    double held = 0;
    double busy = 0;
};
history history_of(const pace& p) {
    history h;
    for (int i = 0; i <= 5; ++i) {
        const auto bytes = p.start + static_cast<std::uint64_t>(p.rate * i);
        h.add({t0 + seconds(i), bytes, bytes, static_cast<std::uint64_t>(p.held * s_ns * i),
               static_cast<std::uint64_t>(p.busy * s_ns * i)});
    }
    return h;
}

TEST(FlowHistory, RatesOverTheWindow) {
    const auto h = history_of({100 * mb, 10.0 * mb, 0.9, 0.25});
    const auto r = h.over_window();
    ASSERT_TRUE(r);
    EXPECT_DOUBLE_EQ(r->seconds, 5);
    EXPECT_DOUBLE_EQ(r->stored_per_second, 10.0 * mb);
    EXPECT_NEAR(r->held_fraction, 0.9, 1e-9);
    ASSERT_TRUE(r->sink_capacity);
    EXPECT_NEAR(*r->sink_capacity, 40.0 * mb, 1);  // 50 MB in 1.25 s of writes
}

TEST(FlowHistory, KeepsOnlyTheWindowAndNeedsHalfOfIt) {
    history h{seconds(5)};
    h.add({t0, 0, 0, 0, 0});
    EXPECT_FALSE(h.over_window());  // one sample
    h.add({t0 + seconds(2), 2 * mb, 2 * mb, 0, 0});
    EXPECT_FALSE(h.over_window());  // 2 s of a 5 s window
    for (int i = 3; i <= 20; ++i) h.add({t0 + seconds(i), i * mb, i * mb, 0, 0});
    const auto r = h.over_window();
    ASSERT_TRUE(r);
    EXPECT_DOUBLE_EQ(r->seconds, 5);  // 15 s .. 20 s
    EXPECT_DOUBLE_EQ(r->stored_per_second, 1.0 * mb);
    EXPECT_FALSE(r->sink_capacity);  // never busy: not what limits it
}

TEST(FlowHistory, CountersThatGoBackReadAsNothing) {
    history h;
    h.add({t0, 50 * mb, 50 * mb, 0, 0});
    h.add({t0 + seconds(5), 10 * mb, 10 * mb, 0, 0});
    const auto r = h.over_window();
    ASSERT_TRUE(r);
    EXPECT_DOUBLE_EQ(r->stored_per_second, 0);
}

// server -> 1 -> 2 -> 3 -> 4, node 3 slow (its link or its disk): the bytes pile up above it,
// the server's retention is full and node 2 stands a buffer ahead of it.
struct chain {
    std::vector<std::uint32_t> parent{0, 0, 1, 2, 3};
    std::vector<bool> live = std::vector<bool>(5, true);
    std::vector<history> nodes;
};
chain slow_third(double slow_rate) {
    chain c;
    c.nodes = {history_of({220 * mb, slow_rate, 0.95}), history_of({210 * mb, slow_rate, 0.95}),
               history_of({200 * mb, slow_rate, 0.9, 0.01}), history_of({136 * mb, slow_rate, 0}),
               history_of({135 * mb, slow_rate, 0})};
    return c;
}

constexpr double best = 100.0 * mb;  // the best the session did
const slow_rule rule{best, 16 * mb, 4};

TEST(FlowFindSlow, FindsTheNodeTheBytesPileUpAbove) {
    auto c = slow_third(5.0 * mb);
    const auto slow = find_slow(c.nodes, c.parent, c.live, rule);
    ASSERT_TRUE(slow);
    EXPECT_EQ(slow->node, 3u);
    EXPECT_DOUBLE_EQ(slow->stored_per_second, 5.0 * mb);
    EXPECT_EQ(slow->behind, 64 * mb);
    EXPECT_DOUBLE_EQ(slow->pace, best);  // node 2's sink could take 500 MB/s
}

TEST(FlowFindSlow, ANodeNotMuchSlowerThanThePaceIsNotAFault) {
    auto c = slow_third(30.0 * mb);
    EXPECT_FALSE(find_slow(c.nodes, c.parent, c.live, rule));
    EXPECT_TRUE(find_slow(c.nodes, c.parent, c.live, slow_rule{best, 16 * mb, 3}));
}

TEST(FlowFindSlow, ANodeSlowFromTheFirstByteIsThePace) {
    auto c = slow_third(5.0 * mb);
    EXPECT_FALSE(find_slow(c.nodes, c.parent, c.live, slow_rule{5.0 * mb, 16 * mb, 4}));
}

TEST(FlowFindSlow, WhenEverySinkSlowsDownNobodyIsToBlame) {
    // Small files: every node's disk takes about 6 MB/s now, node 3's 5 MB/s.
    auto c = slow_third(5.0 * mb);
    c.nodes[1] = history_of({210 * mb, 5.0 * mb, 0.95, 0.8});
    c.nodes[2] = history_of({200 * mb, 5.0 * mb, 0.95, 0.8});
    c.nodes[4] = history_of({135 * mb, 5.0 * mb, 0, 0.9});
    EXPECT_FALSE(find_slow(c.nodes, c.parent, c.live, rule));
}

TEST(FlowFindSlow, NoVerdictWhileTheServerIsNotHeld) {
    auto c = slow_third(5.0 * mb);
    c.nodes[0] = history_of({220 * mb, 5.0 * mb, 0.2});
    EXPECT_FALSE(find_slow(c.nodes, c.parent, c.live, rule));
}

TEST(FlowFindSlow, ASmallLeadIsNoJam) {
    auto c = slow_third(5.0 * mb);
    EXPECT_FALSE(find_slow(c.nodes, c.parent, c.live, slow_rule{best, 65 * mb, 4}));
}

TEST(FlowFindSlow, ANodeWhoseOwnSinkIsSlowIsBehindItsChild) {
    // Node 2 forwards before it writes: its child is ahead of it, its parent too.
    auto c = slow_third(5.0 * mb);
    c.nodes[2] = history_of({140 * mb, 5.0 * mb, 0.95, 0.99});
    c.nodes[3] = history_of({200 * mb, 5.0 * mb, 0});
    c.nodes[4] = history_of({199 * mb, 5.0 * mb, 0});
    const auto slow = find_slow(c.nodes, c.parent, c.live, rule);
    ASSERT_TRUE(slow);
    EXPECT_EQ(slow->node, 2u);
    EXPECT_EQ(slow->behind, 70 * mb);
}

TEST(FlowFindSlow, InATreeTheChildFurthestBehindIsBlamed) {
    // server -> 1 -> {2, 3}: 3 is a buffer behind node 1, 2 is not.
    std::vector<std::uint32_t> parent{0, 0, 1, 1};
    std::vector<bool> live(4, true);
    std::vector<history> nodes{history_of({301 * mb, 4.0 * mb, 0.95}), history_of({300 * mb, 4.0 * mb, 0.95}),
                               history_of({299 * mb, 4.0 * mb, 0}), history_of({236 * mb, 4.0 * mb, 0})};
    const auto slow = find_slow(nodes, parent, live, rule);
    ASSERT_TRUE(slow);
    EXPECT_EQ(slow->node, 3u);
    live[3] = false;  // failed already: nobody else is behind
    EXPECT_FALSE(find_slow(nodes, parent, live, rule));
}

TEST(FlowToBlame, ASecondSlowChildOfTheSameParentBlamesTheParent) {
    const std::vector<std::uint32_t> parent{0, 0, 1, 2, 3};
    std::vector<unsigned> slow_children(5, 0);
    const slow_node third{3, 5.0 * mb, best, 64 * mb};
    EXPECT_EQ(to_blame(third, parent, slow_children), 3u);
    slow_children[2] = 1;  // node 2 lost a child as too slow before: now its link out is suspect
    EXPECT_EQ(to_blame(third, parent, slow_children), 2u);
    slow_children[0] = 1;  // the server is never blamed
    EXPECT_EQ(to_blame(slow_node{1, 5.0 * mb, best, 64 * mb}, parent, slow_children), 1u);
}

progress_view view(bool held, std::uint64_t wire, clock::time_point changed, clock::time_point heard) {
    return {true, held, wire, changed, heard, {}};
}

TEST(FlowFindStuck, ANodeThatTakesNothingWhileItsParentHasBytes) {
    const auto now = t0 + seconds(100);
    const std::vector<std::uint32_t> parent{0, 0, 1, 2};
    std::vector<progress_view> nodes{view(false, 500, now, now), view(true, 400, now, now),
                                     view(false, 300, now - seconds(6), now), view(false, 300, now - seconds(6), now)};
    note_behind(nodes, parent, now - seconds(6));
    note_behind(nodes, parent, now);
    // Node 2 is stuck; node 3 below it is starved, not stuck: its parent has nothing more.
    EXPECT_EQ(find_stuck(nodes, parent, now, seconds(5)), std::vector<std::uint32_t>{2});
    nodes[3].wire = 200;  // now node 3 also has a parent with bytes for it, but that one is stuck
    note_behind(nodes, parent, now - seconds(6));
    EXPECT_EQ(find_stuck(nodes, parent, now, seconds(5)), std::vector<std::uint32_t>{2});
    EXPECT_TRUE(find_stuck(nodes, parent, now, seconds(7)).empty());
}

TEST(FlowFindStuck, BytesThatJustArrivedAtTheParentAreNoStall) {
    // Everyone waits for a stopped node's acknowledgements: node 2 has all that node 1 has,
    // until node 1 is sent a little more.
    const auto now = t0 + seconds(100);
    const std::vector<std::uint32_t> parent{0, 0, 1};
    std::vector<progress_view> nodes{view(false, 400, now, now), view(false, 400, now - seconds(6), now),
                                     view(false, 400, now - seconds(6), now)};
    note_behind(nodes, parent, now - seconds(6));
    nodes[0].wire = 410;  // the server has read a little more
    nodes[1].wire = 405;  // and sent node 1 some of it
    nodes[1].changed = now;
    note_behind(nodes, parent, now);
    EXPECT_TRUE(find_stuck(nodes, parent, now, seconds(5)).empty());
    EXPECT_EQ(nodes[1].behind_since, now);
    EXPECT_EQ(nodes[2].behind_since, now);
    EXPECT_TRUE(find_stuck(nodes, parent, now + seconds(4), seconds(5)).empty());
    EXPECT_EQ(find_stuck(nodes, parent, now + seconds(5), seconds(5)), (std::vector<std::uint32_t>{1}));
}

TEST(FlowFindStuck, HeldUnwatchedOrWithASilentParentIsNotStuck) {
    const auto now = t0 + seconds(100);
    const std::vector<std::uint32_t> parent{0, 0, 1};
    std::vector<progress_view> nodes{view(false, 500, now, now), view(false, 400, now - seconds(9), now),
                                     view(false, 100, now - seconds(9), now)};
    note_behind(nodes, parent, now - seconds(9));
    nodes[1].held = true;  // waits for room (its child or sink): not stuck
    EXPECT_EQ(find_stuck(nodes, parent, now, seconds(5)), std::vector<std::uint32_t>{2});
    nodes[1].heard = now - seconds(3);  // its parent is silent: the silence rule judges that one
    EXPECT_TRUE(find_stuck(nodes, parent, now, seconds(5)).empty());
    nodes[1].heard = now;
    nodes[2].watched = false;  // not receiving (laying out its disk, done, failed)
    EXPECT_TRUE(find_stuck(nodes, parent, now, seconds(5)).empty());
}

}  // namespace
}  // namespace kaclone::flow
