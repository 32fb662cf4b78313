# Helpers of the node-failure tests (tests/e2e/heal_*.sh): sourced after lib.sh and
# cluster_lib.sh, never run. A session sends $data/source (made by heal_source) from node 0 to
# nodes 1..N, each storing it in $data/nodeI.img; the tests hurt some nodes on the way.
#
#   heal_source SIZE             $data/source: SIZE (head -c units) random bytes; $source_sha,
#                                $size (bytes)
#   heal_start NAME N ARGS...    new_run NAME, then serve (ARGS added: --arity, --allow-failures,
#                                ...) and N joins, each under a 180 s timeout
#   stored_of I                  bytes node I has stored (its sink's allocated blocks: the data
#                                is random, so no holes)
#   wait_stored I BYTES          until node I stored at least BYTES (bounded: 60 s; fails if the
#                                session ended first)
#   kill_node I                  kill -9 node I's kaclone (at the point it reached)
#   kill_if_running I            the same if it still runs; false if it had exited
#   heal_check N SERVE_RC VICTIMS...
#                                waits for the session, then: every victim's kaclone was killed
#                                (137) or exited 1, serve exited SERVE_RC; serve's table lists
#                                every node once, victims "failed", survivors "ok" with BYTES
#                                = $size and digest match; the "failed:" section has exactly
#                                one line per victim naming the offset it reached; every
#                                survivor's sink has the source's sha256

heal_source() {
    random_file "$data/source" "$1"
    source_sha=$(sha "$data/source")
    size=$(stat -c %s "$data/source")
}

heal_start() {
    local name=$1 n=$2 i
    shift 2
    new_run "$name"
    rm -f "$data"/node*.img
    start_serve 180 --session "$name" --nodes "$n" --source "$data/source" "$@"
    for ((i = 1; i <= n; i++)); do
        start_join "$i" 180 --session "$name" --server "$(node_ip 0)" --sink "$data/node$i.img"
    done
}

stored_of() { stat -c '%b %B' "$data/node$1.img" 2>/dev/null | awk '{printf "%.0f\n", $1 * $2}' || echo 0; }

wait_stored() {
    local i=$1 want=$2 t
    for ((t = 0; t < 1200; t++)); do
        [ "$(stored_of "$i")" -ge "$want" ] && return 0
        kill -0 "${join_pid[i]}" 2>/dev/null || break
        sleep 0.05
    done
    fail "node $i did not store $want bytes (it has $(stored_of "$i")) within 60 s or before it exited; its stderr:
$(tail -n 5 "$run/join$i.err")"
}

kill_if_running() {
    local pid
    pid=$(kaclone_pid "${join_pid[$1]}")
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
}

kill_node() {
    local pid
    pid=$(kaclone_pid "${join_pid[$1]}")
    [ -n "$pid" ] || fail "node $1's kaclone is not running any more (it was to be killed)"
    kill -KILL "$pid"
}

heal_check() {
    local n=$1 want_serve=$2 i k victim row addr res
    shift 2
    local victims=" $* "
    wait_session "$n"
    for ((i = 1; i <= n; i++)); do
        if [[ "$victims" == *" $i "* ]]; then
            [ "${join_rc[i]}" -eq 137 ] || [ "${join_rc[i]}" -eq 1 ] ||
                fail "victim node $i exit code: $(describe_rc "${join_rc[i]}"), want 137 (killed) or 1; its stderr ends with:
$(tail -n 5 "$run/join$i.err")"
        else
            expect_rc "node $i (join), a survivor" "${join_rc[i]}" 0 "$run/join$i.err"
        fi
    done
    expect_rc "serve" "$serve_rc" "$want_serve" "$run/serve.err"
    local table
    table=$(cat "$run/serve.out")
    [[ "$(head -n 1 "$run/serve.out")" == NODE* ]] || fail "serve's stdout does not start with the NODE header:
$table"
    for ((i = 1; i <= n; i++)); do
        addr=$(node_ip "$i")
        row=$(awk -v a="$addr" 'NR > 1 && NR <= '"$((n + 1))"' && $2 == a' "$run/serve.out")
        [ "$(grep -c . <<<"$row")" -eq 1 ] || fail "serve's table does not have exactly one row for $addr:
$table"
        read -r -a f <<<"$row"
        res=${f[6]}
        if [[ "$victims" == *" $i "* ]]; then
            expect_eq "serve's table, RESULT of victim $addr" "$res" failed
        else
            expect_eq "serve's table, RESULT of $addr" "$res" ok
            expect_eq "serve's table, BYTES of $addr" "${f[3]}" "$size"
            expect_eq "serve's table, DIGEST of $addr" "${f[5]}" match
        fi
    done
    local failed_lines want_lines=0
    failed_lines=$(sed -n '/^failed:$/,$p' "$run/serve.out" | tail -n +2)
    for victim in $*; do
        ((want_lines += 1))
        grep -qE "^  node [0-9]+ \($(node_ip "$victim" | sed 's/\./\\./g')\): .+ \(at offset [0-9]+\)$" <<<"$failed_lines" ||
            fail "serve's failed: section has no line for victim node $victim naming its offset:
$table"
    done
    expect_eq "lines in serve's failed: section" "$(grep -c . <<<"$failed_lines" || true)" "$want_lines"
    local survivors=()
    for ((i = 1; i <= n; i++)); do
        [[ "$victims" == *" $i "* ]] || survivors+=("node$i.img")
    done
    (cd "$data" && printf '%s\n' "${survivors[@]}" | xargs -P2 -n1 sha256sum) >"$run/sinks.sha256"
    for k in "${survivors[@]}"; do
        expect_eq "sha256 of survivor $k" "$(awk -v f="$k" '$2 == f {print $1}' "$run/sinks.sha256")" "$source_sha"
    done
}
