// Topology planning: which node sends to which. Pure functions, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace kaclone {

// One slot of a plan: slot 0 is the server, slots 1..N the nodes in their order.
struct placement {
    std::size_t parent = 0;             // slot of the parent (the server's own entry: 0)
    std::vector<std::size_t> children;  // slots this one sends to, in order
};

// A tree of `nodes` nodes under the server where every slot has at most `arity` children,
// filled level by level (arity 1 is the chain: slot i's parent is slot i - 1). Returns
// nodes + 1 placements. `arity` 0 is taken as 1.
std::vector<placement> plan_tree(std::size_t nodes, unsigned arity);

// Indices of `addresses` (dotted IPv4) in ascending numeric address order; an address that
// does not parse sorts last, by its text. Ties keep their input order.
std::vector<std::size_t> order_by_address(const std::vector<std::string>& addresses);

// Indices of the nodes in session order: first the nodes that `order` names (by address or
// by host name; the first entry that matches a node places it), in the order of `order`,
// then all others as order_by_address sorts them. `addresses` and `names` are parallel.
std::vector<std::size_t> order_nodes(const std::vector<std::string>& addresses, const std::vector<std::string>& names,
                                     const std::vector<std::string>& order);

}  // namespace kaclone
