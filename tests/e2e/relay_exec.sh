#!/usr/bin/env bash
# join --exec CMD: 256 MiB of random data to 3 nodes that pipe it into `sha256sum > OUTFILE`.
# Every OUTFILE holds the source's sha256 once join has exited (join waits for its command),
# every node and serve exit 0 with the whole stream, and nothing is left running in the nodes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

size=$((256 << 20))
n=3
data_dir "$size"
cluster_up "$n"
random_file "$data/source" 256M
source_sha=$(sha "$data/source")

new_run exec
start_serve 60 --session exec --nodes "$n" --source "$data/source"
for ((i = 1; i <= n; i++)); do
    start_join "$i" 60 --session exec --server "$(node_ip 0)" --exec "sha256sum > '$run/node$i.sha256'"
done
wait_session "$n"

expect_session_ok "$n"
check_no_process $(seq "$n")
for ((i = 1; i <= n; i++)); do
    [ -f "$run/node$i.sha256" ] || fail "node $i's command did not run: no $run/node$i.sha256"
    expect_eq "output of node $i's 'sha256sum > OUTFILE'" "$(cat "$run/node$i.sha256")" "$source_sha  -"
    check_stored "$i" "$size"
done
check_table "$n" "$size" match ok

# A command that dies: the node fails, and its last line names the command and its status
# (not only the broken pipe it leaves to the stream).
new_run exec-dies
start_serve 60 --session exec-dies --nodes 1 --source "$data/source"
start_join 1 60 --session exec-dies --server "$(node_ip 0)" --exec "head -c 1000 >/dev/null; exit 3"
wait_session 1
expect_rc "node 1 (join) with a dying command" "${join_rc[1]}" 1 "$run/join1.err"
last=$(tail -n 1 "$run/join1.err")
want="(--exec 'head -c 1000 >/dev/null; exit 3' ended with exit status 3: Input/output error)"
[[ "$last" == "kaclone join: write the local sink at offset "*": Broken pipe $want" ]] ||
    fail "last stderr line of a node whose command died:
  got:  $last
  want: kaclone join: write the local sink at offset N: Broken pipe $want"

echo "PASS: relay to --exec commands (3 nodes, 256 MiB; a command that dies)"
