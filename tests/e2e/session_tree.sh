#!/usr/bin/env bash
# Trees: 32 MiB of random data down a 7-node arity-2 tree and a 13-node arity-3 tree. Every
# node stores the source's sha256, and every node's parent (from serve's JSON `assigned`
# events) is the one the level-by-level plan gives: in address order node i's parent is node
# (i - 1) / K, node 0 being the server.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

size=$((32 << 20))
data_dir $((16 * size))
cluster_up 13
random_file "$data/source" 32M
source_sha=$(sha "$data/source")

tree() {
    local n=$1 k=$2 i line want got
    new_run "tree$n-$k"
    start_serve 120 --session "tree$k" --nodes "$n" --arity "$k" --json --source "$data/source"
    for ((i = 1; i <= n; i++)); do
        start_join "$i" 120 --session "tree$k" --server "$(node_ip 0)" --sink "$data/t$k-$i"
    done
    wait_session "$n"
    expect_rc "serve (arity $k)" "$serve_rc" 0 "$run/serve.err"
    for ((i = 1; i <= n; i++)); do
        expect_rc "node $i (join, arity $k)" "${join_rc[i]}" 0 "$run/join$i.err"
        expect_eq "sha256 of node $i's sink (arity $k)" "$(sha "$data/t$k-$i")" "$source_sha"
        rm -f "$data/t$k-$i"
    done
    want=$(for ((i = 1; i <= n; i++)); do echo "$(node_ip $(((i - 1) / k)))>$(node_ip "$i")"; done | sort | paste -sd' ')
    got=$(grep '"event":"assigned"' "$run/serve.out" | while read -r line; do
        echo "$(json_field "$line" parent)>$(json_field "$line" address)"
    done | sort | paste -sd' ')
    expect_eq "parent>node of every node (arity $k)" "$got" "$want"
    line=$(grep '"event":"summary"' "$run/serve.out")
    expect_eq "summary ok (arity $k)" "$(json_field "$line" ok)" "$n"
}

tree 7 2
tree 13 3

echo "PASS: a 7-node arity-2 tree and a 13-node arity-3 tree store identical copies"
