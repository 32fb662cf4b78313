// plan_tree and order_by_address.
#include <kaclone/topology.hpp>

#include <algorithm>
#include <numeric>
#include <optional>

#include <arpa/inet.h>

namespace kaclone {

std::vector<placement> plan_tree(std::size_t nodes, unsigned arity) {
    const std::size_t k = arity == 0 ? 1 : arity;
    std::vector<placement> plan(nodes + 1);
    for (std::size_t slot = 1; slot <= nodes; ++slot) {
        plan[slot].parent = (slot - 1) / k;  // heap layout: children of p are k*p+1 .. k*p+k
        plan[plan[slot].parent].children.push_back(slot);
    }
    return plan;
}

namespace {
std::optional<std::uint32_t> ipv4(const std::string& text) {
    in_addr a{};
    if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return std::nullopt;
    return ntohl(a.s_addr);
}
}  // namespace

std::vector<std::size_t> order_by_address(const std::vector<std::string>& addresses) {
    std::vector<std::size_t> order(addresses.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
        const auto x = ipv4(addresses[a]), y = ipv4(addresses[b]);
        if (x && y) return *x < *y;
        if (x || y) return x.has_value();  // parsable addresses first
        return addresses[a] < addresses[b];
    });
    return order;
}

std::vector<std::size_t> order_nodes(const std::vector<std::string>& addresses, const std::vector<std::string>& names,
                                     const std::vector<std::string>& order) {
    std::vector<std::size_t> result;
    std::vector<bool> placed(addresses.size(), false);
    for (const std::string& wanted : order) {
        for (std::size_t i = 0; i < addresses.size(); ++i) {
            if (placed[i] || (addresses[i] != wanted && (i >= names.size() || names[i] != wanted))) continue;
            placed[i] = true;
            result.push_back(i);
            break;
        }
    }
    for (std::size_t i : order_by_address(addresses))
        if (!placed[i]) result.push_back(i);
    return result;
}

}  // namespace kaclone
