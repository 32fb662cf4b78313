// plan_tree and order_by_address.
#include <kaclone/topology.hpp>

#include <gtest/gtest.h>

namespace kaclone {
namespace {

TEST(PlanTree, ChainLinksEachNodeToThePrevious) {
    const auto plan = plan_tree(4, 1);

    ASSERT_EQ(plan.size(), 5u);
    for (std::size_t slot = 1; slot <= 4; ++slot) EXPECT_EQ(plan[slot].parent, slot - 1);
    for (std::size_t slot = 0; slot < 4; ++slot) EXPECT_EQ(plan[slot].children, std::vector<std::size_t>{slot + 1});
    EXPECT_TRUE(plan[4].children.empty());
}

TEST(PlanTree, BinaryTreeFillsLevelByLevel) {
    const auto plan = plan_tree(6, 2);

    EXPECT_EQ(plan[0].children, (std::vector<std::size_t>{1, 2}));
    EXPECT_EQ(plan[1].children, (std::vector<std::size_t>{3, 4}));
    EXPECT_EQ(plan[2].children, (std::vector<std::size_t>{5, 6}));
    EXPECT_EQ(plan[6].parent, 2u);
}

TEST(PlanTree, OneNode) {
    const auto plan = plan_tree(1, 1);

    ASSERT_EQ(plan.size(), 2u);
    EXPECT_EQ(plan[1].parent, 0u);
    EXPECT_EQ(plan[0].children, std::vector<std::size_t>{1});
}

TEST(PlanTree, ArityZeroIsAChain) {
    const auto plan = plan_tree(3, 0);

    EXPECT_EQ(plan[3].parent, 2u);
}

TEST(OrderByAddress, SortsNumericallyNotByText) {
    const std::vector<std::string> addresses{"10.0.0.100", "10.0.0.9", "10.0.1.1", "10.0.0.10"};

    EXPECT_EQ(order_by_address(addresses), (std::vector<std::size_t>{1, 3, 0, 2}));
}

TEST(OrderByAddress, UnparsableAddressesGoLast) {
    const std::vector<std::string> addresses{"node-b", "10.0.0.2", "node-a"};

    EXPECT_EQ(order_by_address(addresses), (std::vector<std::size_t>{1, 2, 0}));
}

TEST(OrderNodes, NamedNodesFirstInFileOrderThenTheRestByAddress) {
    const std::vector<std::string> addresses{"10.0.0.3", "10.0.0.1", "10.0.0.4", "10.0.0.2"};
    const std::vector<std::string> names{"c", "a", "d", "b"};

    const auto order = order_nodes(addresses, names, {"d", "10.0.0.3"});

    EXPECT_EQ(order, (std::vector<std::size_t>{2, 0, 1, 3}));
}

TEST(OrderNodes, EntriesThatMatchNoNodeOrANodeTwiceAreSkipped) {
    const std::vector<std::string> addresses{"10.0.0.2", "10.0.0.1"};
    const std::vector<std::string> names{"b", "a"};

    const auto order = order_nodes(addresses, names, {"ghost", "b", "10.0.0.2", "a"});

    EXPECT_EQ(order, (std::vector<std::size_t>{0, 1}));
}

TEST(OrderNodes, WithoutAnOrderItIsTheAddressOrder) {
    const std::vector<std::string> addresses{"10.0.0.9", "10.0.0.10", "10.0.0.1"};

    EXPECT_EQ(order_nodes(addresses, {"x", "y", "z"}, {}), order_by_address(addresses));
}

}  // namespace
}  // namespace kaclone
