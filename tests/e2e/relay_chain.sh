#!/usr/bin/env bash
# The relay down a chain: 1 GiB of random data to 1, 3 and 8 nodes that store it in files
# (--sink), across both relay modes and the three ways to find the server (HOST:PORT, broadcast
# discovery with the nodes started before the server, HOST). Every sink is the source (size and
# sha256), every node exits 0 and reports the whole stream with the same digest, serve exits 0
# and its table lists the N nodes in address order (node k's parent is node k-1, node 1's the
# server), all `match` and `ok`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

size=$((1 << 30))
data_dir $((9 * size)) # the source and the 8 sinks of the largest session
cluster_up 8           # one cluster for every session; nodes beyond N stay idle
random_file "$data/source" 1G
source_sha=$(sha "$data/source")

# chain_run NAME N SECS MODE SERVER PORT ORDER: one session of N nodes, each process bounded by
# SECS; SERVER empty = discovery by broadcast, PORT non-empty = serve --port PORT; ORDER
# nodes-first starts the nodes before serve (their discovery must retry until it answers),
# server-first starts the nodes once serve is up (with PORT: once it listens on PORT).
chain_run() {
    local name=$1 n=$2 secs=$3 mode=$4 server=$5 port=$6 order=$7 i
    local -a serve_args=(--session "$name" --nodes "$n" --source "$data/source" --relay-mode "$mode")
    local -a where=()
    [ -z "$port" ] || serve_args+=(--port "$port")
    [ -z "$server" ] || where=(--server "$server")

    local started=$SECONDS
    new_run "$name"
    mkdir "$data/$name"
    if [ "$order" == server-first ]; then
        start_serve "$secs" "${serve_args[@]}"
        [ -z "$port" ] || wait_listening "$port"
    fi
    for ((i = 1; i <= n; i++)); do
        start_join "$i" "$secs" --session "$name" "${where[@]}" --sink "$data/$name/node$i.img"
    done
    [ "$order" == server-first ] || start_serve "$secs" "${serve_args[@]}"
    wait_session "$n"

    for ((i = 1; i <= n; i++)); do
        expect_rc "$name: node $i (join)" "${join_rc[i]}" 0 "$run/join$i.err"
    done
    expect_rc "$name: serve" "$serve_rc" 0 "$run/serve.err"
    check_table "$n" "$size" match ok
    for ((i = 1; i <= n; i++)); do
        check_stored "$i" "$size"
        expect_eq "$name: digest node $i reports (node 1's)" "${stored_digest[i]}" "${stored_digest[1]}"
        expect_eq "$name: size of node $i's sink" "$(stat -c %s "$data/$name/node$i.img")" "$size"
    done
    # sha256 of the sinks, two at a time (two cores)
    (cd "$data/$name" && printf 'node%d.img\n' $(seq "$n") | xargs -P2 -n1 sha256sum) >"$run/sinks.sha256"
    for ((i = 1; i <= n; i++)); do
        expect_eq "$name: sha256 of node $i's sink" \
            "$(awk -v f="node$i.img" '$2 == f {print $1}' "$run/sinks.sha256")" "$source_sha"
    done
    rm -rf "${data:?}/$name"
    echo "ok: $name: $n node(s), relay mode $mode, ${server:-discovery}, $order, $((SECONDS - started)) s"
}

chain_run n1 1 90 zerocopy "$(node_ip 0):4711" 4711 server-first
chain_run n3 3 90 splice "" "" nodes-first
chain_run n8 8 150 zerocopy "$(node_ip 0)" "" server-first

echo "PASS: relay chain (1, 3, 8 nodes, 1 GiB)"
