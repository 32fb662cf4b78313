# Shared helpers of the relay cluster tests (tests/e2e/relay_*.sh): sourced after lib.sh, never
# run. Node i of the cluster is namespace ${prefix}i at 10.99.0.(10+i); node 0 runs the server.
#
#   cluster_up N [OPTS...]       scripts/netns-cluster up N with a prefix of this test ($prefix),
#                                torn down on every exit (which also ends what runs inside)
#   node_ip I                    10.99.0.(10+I)
#   data_dir BYTES               $data: a directory for payloads and sinks with BYTES free, on
#                                /dev/shm if it has room, else in TMPDIR; skips if neither has;
#                                removed on every exit (never kept: logs stay in $work)
#   random_file PATH SIZE        SIZE (head -c units: 1G = 1 GiB) bytes of /dev/urandom
#   sha FILE                     the sha256 of FILE, hex
#   new_run NAME                 $run=$work/NAME for the logs of one session, forget its nodes
#   start_serve SECS ARGS...     `kaclone serve ARGS` in node 0 under `timeout SECS`, in the
#                                background: $serve_pid, stdout $run/serve.out, stderr
#                                $run/serve.err. Environment set before the call is passed on.
#   start_join I SECS ARGS...    `kaclone join ARGS` in node I the same way: ${join_pid[I]},
#                                $run/joinI.out, $run/joinI.err
#   wait_listening PORT          until serve (started) listens on TCP PORT in node 0 (bounded)
#   wait_rc PID                  wait for PID; its exit code in $rc (never trips set -e)
#   wait_session N               wait for serve and nodes 1..N: $serve_rc, ${join_rc[I]}
#   kaclone_pid PID              the kaclone process started under PID (timeout's child)
#   check_table N BYTES DIGEST RESULT [any-parent]
#                                serve's stdout ($run/serve.out) is the NODE header, one row per
#                                node 1..N (ADDRESS, PARENT as the chain requires (any-parent: not
#                                checked, failed nodes' children moved on), BYTES, MB/S,
#                                DIGEST, RESULT), then one summary line, then (RESULT failed)
#                                "failed:" and one line per failed node in $failed_lines; empty
#                                BYTES (then MB/S is not checked either) or DIGEST are not compared
#   check_stored I BYTES         node I's last stderr line is the success line for BYTES:
#                                sets ${stored_digest[I]} and ${peak_rss[I]} (MiB)
#   check_no_process I...        nothing runs any more in nodes I...
#   wait_lines FILE ERE [N]      until FILE has N (default 1) lines matching ERE (bounded: 20 s;
#                                fails with FILE shown)
#   json_field LINE KEY          the value of KEY in one JSON line (strings without quotes)
#   data_port I                  the TCP port node I's kaclone listens on for its children
#                                (waits for it, bounded)

cluster="$KACLONE_SRC/scripts/netns-cluster"
prefix="kr$$"
prefix=${prefix:0:8}

# Every kaclone process runs under `timeout`, inside its namespace (so that netns-cluster down
# ends it too); -k: KILL if TERM was not obeyed.
kill_after=5

cluster_up() {
    on_exit "'$cluster' down --prefix '$prefix' >/dev/null 2>&1"
    "$cluster" up "$@" --prefix "$prefix" >"$work/cluster-up.log" 2>&1 ||
        fail "netns-cluster up $* failed: $(cat "$work/cluster-up.log")"
}

node_ip() { echo "10.99.0.$((10 + $1))"; }

data_dir() {
    local need=$1 margin=$((512 << 20)) avail mem dir=""
    avail=$(df --output=avail -B1 /dev/shm 2>/dev/null | tail -n1) || avail=0
    mem=$(awk '/^MemAvailable:/ {printf "%.0f\n", $2 * 1024}' /proc/meminfo)
    if [ "${avail:-0}" -gt $((need + margin)) ] && [ "${mem:-0}" -gt $((need + 2 * margin)) ]; then
        dir=/dev/shm
    else
        avail=$(df --output=avail -B1 "${TMPDIR:-/tmp}" | tail -n1)
        [ "$avail" -gt $((need + margin)) ] && dir=${TMPDIR:-/tmp}
    fi
    [ -n "$dir" ] || skip "needs $((need >> 20)) MiB free in /dev/shm or ${TMPDIR:-/tmp} for payloads and sinks"
    data=$(mktemp -d "$dir/kaclone-data.XXXXXX")
    on_exit "rm -rf '$data'"
}

random_file() { head -c "$2" /dev/urandom >"$1"; }

sha() { sha256sum "$1" | awk '{print $1}'; }

new_run() {
    run=$work/$1
    mkdir -p "$run"
    join_pid=()
    join_rc=()
    stored_digest=()
    peak_rss=()
}

start_serve() {
    local secs=$1; shift
    ip netns exec "${prefix}0" timeout -k "$kill_after" "$secs" "$KACLONE" serve "$@" \
        >"$run/serve.out" 2>"$run/serve.err" &
    serve_pid=$!
}

start_join() {
    local i=$1 secs=$2; shift 2
    ip netns exec "${prefix}$i" timeout -k "$kill_after" "$secs" "$KACLONE" join "$@" \
        >"$run/join$i.out" 2>"$run/join$i.err" &
    join_pid[i]=$!
}

wait_listening() {
    local port=$1 t
    for ((t = 0; t < 200; t++)); do
        [ -n "$(ip netns exec "${prefix}0" ss -Hltn "sport = :$port")" ] && return 0
        kill -0 "$serve_pid" 2>/dev/null || break
        sleep 0.05
    done
    fail "serve does not listen on port $port (after 10 s or when it exited); its stderr:
$(cat "$run/serve.err")"
}

wait_rc() {
    rc=0
    wait "$1" || rc=$?
}

# Waits for every process of the session before judging any, so that a failure report sees
# all their logs and nothing of this session runs on into the next.
wait_session() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        wait_rc "${join_pid[i]}"
        join_rc[i]=$rc
    done
    wait_rc "$serve_pid"
    serve_rc=$rc
}

# 124 is timeout's: say so rather than leave a bare exit code.
describe_rc() {
    if [ "$1" -eq 124 ] || [ "$1" -eq 137 ]; then echo "$1 (killed by timeout: it hung)"; else echo "$1"; fi
}

# expect_rc WHAT GOT WANT LOG: like expect_eq, with the log of the process in the message.
expect_rc() {
    [ "$2" -eq "$3" ] && return 0
    fail "$1 exit code: got $(describe_rc "$2"), want $3; its stderr ends with:
$(tail -n 5 "$4")"
}

# expect_session_ok N: nodes 1..N and serve all exited 0.
expect_session_ok() {
    local n=$1 i
    for ((i = 1; i <= n; i++)); do
        expect_rc "node $i (join)" "${join_rc[i]}" 0 "$run/join$i.err"
    done
    expect_rc "serve" "$serve_rc" 0 "$run/serve.err"
}

kaclone_pid() {
    pgrep -P "$1" -x kaclone || true
}

check_table() {
    local n=$1 bytes=$2 digest=$3 result=$4 parents=${5:-chain} file=$run/serve.out
    local -a lines f
    local k idx addr summary=0 seen=" " table
    mapfile -t lines <"$file"
    table=$(cat "$file")
    [[ "${lines[0]:-}" == NODE* ]] || fail "serve's stdout does not start with the NODE header:
$table"
    [ ${#lines[@]} -ge $((n + 2)) ] || fail "serve's stdout has fewer than $n rows and a summary:
$table"
    for ((k = 1; k <= n; k++)); do
        read -r -a f <<<"${lines[k]}"
        [ ${#f[@]} -eq 7 ] || fail "serve's table row $k has ${#f[@]} columns, not 7: '${lines[k]}'
$table"
        addr=${f[1]}
        [[ "$addr" =~ ^10\.99\.0\.([0-9]+)$ ]] || fail "serve's table row $k: ADDRESS '$addr' is no node's:
$table"
        idx=$((10#${BASH_REMATCH[1]} - 10))
        [ "$idx" -ge 1 ] && [ "$idx" -le "$n" ] && [ "$addr" == "$(node_ip "$idx")" ] || fail "serve's table row $k: ADDRESS $addr is not one of nodes 1..$n:
$table"
        [[ "$seen" == *" $idx "* ]] && fail "serve's table lists $addr twice:
$table"
        seen+="$idx "
        [ "$parents" == any-parent ] || expect_eq "serve's table, PARENT of $addr" "${f[2]}" "$(node_ip $((idx - 1)))"
        if [ -n "$bytes" ]; then
            expect_eq "serve's table, BYTES of $addr" "${f[3]}" "$bytes"
            [[ "${f[4]}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "serve's table, MB/S of $addr is not a number: '${f[4]}'"
        fi
        [ -z "$digest" ] || expect_eq "serve's table, DIGEST of $addr" "${f[5]}" "$digest"
        expect_eq "serve's table, RESULT of $addr" "${f[6]}" "$result"
    done
    # Then the summary line, and only when a node failed: "failed:" and one line per failed node.
    [[ "${lines[n + 1]:-}" == "kaclone serve: "* ]] || fail "no summary line after the $n rows:
$table"
    failed_lines=$(printf '%s\n' "${lines[@]:n+2}")
    if [ "$result" == ok ]; then
        expect_eq "lines after serve's summary" "$failed_lines" ""
    else
        expect_eq "first line after serve's summary" "${lines[n + 2]:-}" "failed:"
    fi
}

check_stored() {
    local i=$1 bytes=$2 last
    last=$(tail -n 1 "$run/join$i.err")
    local re='^kaclone join: stored ([0-9]+) bytes in [0-9]+(\.[0-9]+)? s \([0-9]+(\.[0-9]+)? MB/s\), digest ([0-9a-f]{32}), peak RSS ([0-9]+\.[0-9]) MiB$'
    [[ "$last" =~ $re ]] || fail "node $i's last stderr line is not the success line:
  got:  $last
  want: kaclone join: stored $bytes bytes in SECS s (RATE MB/s), digest HEX32, peak RSS X.Y MiB"
    expect_eq "bytes node $i says it stored" "${BASH_REMATCH[1]}" "$bytes"
    stored_digest[i]=${BASH_REMATCH[4]}
    peak_rss[i]=${BASH_REMATCH[5]}
}

check_no_process() {
    local i pids
    for i in "$@"; do
        pids=$(ip netns pids "${prefix}$i" | paste -sd,)
        [ -z "$pids" ] || fail "processes still run in node $i after its kaclone exited:
$(ps -o pid=,args= -p "$pids" 2>/dev/null)"
    done
}

wait_lines() {
    local file=$1 re=$2 want=${3:-1} t
    for ((t = 0; t < 400; t++)); do
        [ "$(grep -cE -- "$re" "$file" 2>/dev/null || true)" -ge "$want" ] && return 0
        sleep 0.05
    done
    fail "fewer than $want lines matching '$re' in $file after 20 s:
$(cat "$file" 2>/dev/null)"
}

json_field() {
    sed -nE "s/.*\"$2\":(\"([^\"]*)\"|([^,}]*)).*/\2\3/p" <<<"$1"
}

data_port() {
    local port="" t
    for ((t = 0; t < 400; t++)); do
        port=$(ip netns exec "${prefix}$1" ss -Hltn | awk '{ sub(".*:", "", $4); print $4 }' | head -n 1)
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.05
    done
    fail "node $1 does not listen for its children after 20 s"
}
