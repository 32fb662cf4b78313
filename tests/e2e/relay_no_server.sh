#!/usr/bin/env bash
# join without a server: in a cluster where nothing answers the broadcast, `--retries 2` gives
# up after two attempts with exit 1 and says so on its last stderr line, well within its bound.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns

cluster_up 1 # node 0 stays empty: the broadcast of node 1 reaches no server
new_run no-server
start_join 1 30 --session lonely --sink "$work/lonely.img" --retries 2
wait_rc "${join_pid[1]}"
expect_rc "join without a server" "$rc" 1 "$run/join1.err"
last=$(tail -n 1 "$run/join1.err")
want="kaclone join: no server for session 'lonely' answered after 2 attempts"
[[ "$last" == "$want"* ]] || fail "last stderr line of join without a server:
  got:  $last
  want: $want..."

echo "PASS: join without a server gives up"
