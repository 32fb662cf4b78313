#!/usr/bin/env bash
# scripts/netns-cluster: up makes N+1 reachable nodes with the asked MTU and shaping, is
# idempotent, and down removes every namespace, veth, bridge and process it made.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
require_netns
command -v ping >/dev/null || skip "needs ping (iputils-ping)"

cluster="$KACLONE_SRC/scripts/netns-cluster"
prefix="kt$$"
prefix=${prefix:0:8}
on_exit "'$cluster' down --prefix '$prefix' >/dev/null 2>&1"
namespaces() { ip netns list | awk '{print $1}' | grep -E "^${prefix}(-sw|[0-9]+)\$" | sort | tr '\n' ' ' || true; }
cluster_of_four="$(printf '%s\n' "${prefix}"{0..4} "${prefix}-sw" | sort | tr '\n' ' ')"
host_links_before=$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')

"$cluster" up 4 --prefix "$prefix" --rate 1gbit --mtu 9000 >/dev/null
expect_eq "namespaces while up" "$(namespaces)" "$cluster_of_four"
ip netns exec "${prefix}0" ping -c1 -W2 -q 10.99.0.14 >/dev/null || fail "node0 cannot ping node4"
ip netns exec "${prefix}4" ping -c1 -W2 -q -M do -s 8972 10.99.0.10 >/dev/null ||
    fail "a 9000-byte packet does not pass node4 -> node0"
expect_eq "node3 address" "$("$cluster" exec 3 --prefix "$prefix" -- ip -br -4 addr show eth0 | awk '{print $3}')" "10.99.0.13/24"
ip netns exec "${prefix}2" tc qdisc show dev eth0 | grep -q "tbf 1: root .* rate 1Gbit" ||
    fail "eth0 of node2 is not shaped to 1Gbit: $(ip netns exec "${prefix}2" tc qdisc show dev eth0)"
ip netns exec "${prefix}-sw" tc qdisc show dev v2 | grep -q "rate 1Gbit" || fail "switch port of node2 is not shaped"

# The bridge and veths exist only inside the cluster's namespaces, never on the host.
expect_eq "host links while up" "$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')" "$host_links_before"

# Idempotent: up again replaces the cluster (now without shaping, MTU 1500).
"$cluster" up 4 --prefix "$prefix" >/dev/null
expect_eq "namespaces after second up" "$(namespaces)" "$cluster_of_four"
ip netns exec "${prefix}0" ping -c1 -W2 -q 10.99.0.14 >/dev/null || fail "node0 cannot ping node4 after second up"
ip netns exec "${prefix}2" tc qdisc show dev eth0 | grep -q tbf && fail "second up kept the old shaping"

# down ends processes left running inside the nodes, then deletes everything.
ip netns exec "${prefix}3" sleep 600 &
sleeper=$!
"$cluster" down --prefix "$prefix" >/dev/null
wait "$sleeper" 2>/dev/null || true
kill -0 "$sleeper" 2>/dev/null && fail "down left a process running in ${prefix}3"
expect_eq "namespaces after down" "$(namespaces)" ""
expect_eq "host links after down" "$(ip -o link show | awk -F': ' '{print $2}' | sort | tr '\n' ' ')" "$host_links_before"

# down of nothing is a no-op that succeeds.
"$cluster" down --prefix "$prefix" >/dev/null || fail "down without a cluster failed"

echo "PASS: netns cluster"
