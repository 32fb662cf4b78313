#!/usr/bin/env bash
# The kaclone executable's command line: help lists every command, usage errors exit 2 with a
# one-line reason and a hint; failures that are not usage errors exit 1 with a message.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

commands=(serve join go status desc layout fixup version)

run_capture "$KACLONE" --help
expect_eq "kaclone --help exit code" "$rc" 0
for c in "${commands[@]}"; do
    grep -qE "^  $c +[A-Z]" <<<"$out" || fail "kaclone --help does not list '$c':
$out"
done

for c in "${commands[@]}"; do
    run_capture "$KACLONE" "$c" --help
    expect_eq "kaclone $c --help exit code" "$rc" 0
    grep -q "^Usage: kaclone $c " <<<"$out" || fail "kaclone $c --help has no usage line:
$out"
done

run_capture "$KACLONE" serve --bogus
expect_eq "serve --bogus exit code" "$rc" 2
expect_eq "serve --bogus message" "$err" "kaclone serve: The following argument was not expected: --bogus
Run 'kaclone serve --help' for usage."
expect_eq "serve --bogus stdout" "$out" ""

run_capture "$KACLONE" join --retries
expect_eq "join --retries (no value) exit code" "$rc" 2
expect_eq "join --retries message" "$err" "kaclone join: --retries: 1 required UINT:COUNT missing
Run 'kaclone join --help' for usage."

run_capture "$KACLONE" serve --buffer 12X
expect_eq "serve --buffer 12X exit code" "$rc" 2
expect_eq "serve --buffer 12X message" "$err" "kaclone serve: --buffer: '12X' (use B, K, M, G, T or P): unknown unit
Run 'kaclone serve --help' for usage."

run_capture "$KACLONE" serve --nodes 2
expect_eq "serve without a source exit code" "$rc" 2
expect_eq "serve without a source message" "$err" "kaclone serve: --source or --disk is required
Run 'kaclone serve --help' for usage."

run_capture "$KACLONE" serve --nodes 2 --source /dev/null --buffer 1M
expect_eq "serve --buffer 1M exit code" "$rc" 2
expect_eq "serve --buffer 1M message" "$err" "kaclone serve: --buffer must be at least 4M
Run 'kaclone serve --help' for usage."

run_capture "$KACLONE" serve --nodes 2 --source /dev/null --relay-mode fast
expect_eq "serve --relay-mode fast exit code" "$rc" 2
expect_eq "serve --relay-mode fast message" "$err" "kaclone serve: --relay-mode: 'fast' is not a relay mode (splice or zerocopy)
Run 'kaclone serve --help' for usage."

run_capture "$KACLONE" serve --nodes 2 --source /dev/null --exclude /tmp
expect_eq "serve --exclude with a file --source exit code" "$rc" 2
expect_eq "serve --exclude with a file --source message" "$err" "kaclone serve: --exclude needs --disk or a directory --source
Run 'kaclone serve --help' for usage."

run_capture "$KACLONE" join --session x
expect_eq "join without a sink exit code" "$rc" 2
expect_eq "join without a sink message" "$err" "kaclone join: --sink, --exec or --disk is required
Run 'kaclone join --help' for usage."

run_capture "$KACLONE" layout /dev/null
expect_eq "layout without --desc exit code" "$rc" 2
expect_eq "layout without --desc message" "$err" "kaclone layout: --desc is required
Run 'kaclone layout --help' for usage."

run_capture "$KACLONE" desc "$work/no-such-disk"
expect_eq "desc of a missing disk exit code" "$rc" 1
expect_eq "desc of a missing disk message" "$err" "kaclone desc: open $work/no-such-disk: No such file or directory"

run_capture "$KACLONE" frobnicate
expect_eq "unknown command exit code" "$rc" 2
expect_eq "unknown command message" "$err" "kaclone: unknown command 'frobnicate'
Run 'kaclone --help' for the commands."

run_capture "$KACLONE"
expect_eq "no command exit code" "$rc" 2
grep -q "^Usage: kaclone " <<<"$err" || fail "kaclone without a command shows no usage: $err"

run_capture "$KACLONE" version
expect_eq "version exit code" "$rc" 0
expect_eq "version first line" "$(head -n1 <<<"$out")" "kaclone 0.1.0"

# go asks the server of the session on loopback once; nobody serves "cli-usage-nobody" there.
run_capture "$KACLONE" go --session cli-usage-nobody --server 127.0.0.1 --retries 1
expect_eq "go without a server: exit code" "$rc" 1
expect_eq "go without a server: message" "$err" \
    "kaclone go: no server for session 'cli-usage-nobody' answered after 1 attempt (asked 127.0.0.1): no server answered"

# The whole-machine clone: nothing is erased without --yes; a missing disk is named.
run_capture "$KACLONE" join --disk "$work/no-such-disk"
expect_eq "join --disk without --yes: exit code" "$rc" 2
expect_eq "join --disk without --yes: message" "$err" "kaclone join: --disk $work/no-such-disk is erased: confirm with --yes
Run 'kaclone join --help' for usage."
run_capture "$KACLONE" join --disk "$work/no-such-disk" --yes --server 127.0.0.1 --retries 1
expect_eq "join --disk of a missing disk: exit code" "$rc" 1
expect_eq "join --disk of a missing disk: message" "$err" "kaclone join: open $work/no-such-disk: No such file or directory"
run_capture "$KACLONE" serve --nodes 1 --disk "$work/no-such-disk"
expect_eq "serve --disk of a missing disk: exit code" "$rc" 1
expect_eq "serve --disk of a missing disk: message" "$err" "kaclone serve: open $work/no-such-disk: No such file or directory"
run_capture "$KACLONE" serve --nodes 1 --disk sda --mbr-file sdb "$work/no-such-disk"
expect_eq "serve --mbr-file for another drive: exit code" "$rc" 2
expect_eq "serve --mbr-file for another drive: message" "$err" "kaclone serve: --mbr-file sdb: the boot code is written to the clones of --disk sda, give that drive
Run 'kaclone serve --help' for usage."
truncate -s 1M "$work/disk.img"
run_capture "$KACLONE" serve --nodes 1 --disk "$work/disk.img" --exclude-disk "$work/disk.img"
expect_eq "serve --exclude-disk of the cloned disk: exit code" "$rc" 1
expect_eq "serve --exclude-disk of the cloned disk: message" "$err" \
    "kaclone serve: --exclude-disk $work/disk.img is the disk being cloned (--disk): refused before any node was touched"
run_capture "$KACLONE" serve --nodes 1 --source /dev/null --root /
expect_eq "serve --root without --disk: exit code" "$rc" 2
expect_eq "serve --root without --disk: message" "$err" "kaclone serve: --root requires --disk
Run 'kaclone serve --help' for usage."
run_capture "$KACLONE" serve --nodes 1 --disk "$work/disk.img" --desc "$work/disk.desc" --fill-last
expect_eq "serve --fill-last with --desc: exit code" "$rc" 2
expect_eq "serve --fill-last with --desc: message" "$err" "kaclone serve: --desc excludes --fill-last
Run 'kaclone serve --help' for usage."
run_capture "$KACLONE" status --session cli-usage-nobody --server 127.0.0.1 --retries 1
expect_eq "status without a server: exit code" "$rc" 1
expect_eq "status without a server: message" "$err" \
    "kaclone status: no server for session 'cli-usage-nobody' answered after 1 attempt (asked 127.0.0.1): no server answered"

# a bad --exclude of a directory --source: refused before any node joins (no --nodes wait)
mkdir -p "$work/tree/keep"
run_capture "$KACLONE" serve --nodes 1 --source "$work/tree" --exclude nosuch
expect_eq "serve --exclude nosuch: exit code" "$rc" 1
expect_eq "serve --exclude nosuch: message" "$err" "kaclone serve: --exclude nosuch (no directory $work/tree/nosuch): an excluded path must be a directory inside the tree; refused before any node was touched"

# counts and ports: the message says what is accepted
run_capture "$KACLONE" serve --nodes 0 --source /dev/null
expect_eq "serve --nodes 0: exit code" "$rc" 2
expect_eq "serve --nodes 0: message" "$err" "kaclone serve: --nodes: '0' is not a whole number from 1 to 999999999
Run 'kaclone serve --help' for usage."
run_capture "$KACLONE" join --retries -1 --sink "$work/never"
expect_eq "join --retries -1: exit code" "$rc" 2
expect_eq "join --retries -1: message" "$err" "kaclone join: --retries: '-1' is not a whole number from 1 to 999999999
Run 'kaclone join --help' for usage."
run_capture "$KACLONE" serve --nodes 1 --source /dev/null --port 70000
expect_eq "serve --port 70000: exit code" "$rc" 2
expect_eq "serve --port 70000: message" "$err" "kaclone serve: --port: '70000' is not a port 1..65535
Run 'kaclone serve --help' for usage."

# --server values: a usage error naming the part that is wrong, before anything is opened
for bad in "127.0.0.1:99999|port '99999' is not a number 1..65535" "127.0.0.1:|port '' is not a number 1..65535" \
    "127.0.0.1:abc|port 'abc' is not a number 1..65535" "[::1|no ']' after the IPv6 address" \
    ":7118|no host (expected HOST or HOST:PORT)"; do
    value=${bad%%|*}
    run_capture "$KACLONE" join --session cli-usage-nobody --server "$value" --sink "$work/never"
    expect_eq "join --server $value: exit code" "$rc" 2
    expect_eq "join --server $value: message" "$err" "kaclone join: --server '$value': ${bad#*|}
Run 'kaclone join --help' for usage."
done
expect_eq "bad --server: nothing created" "$(ls "$work/never" 2>&1)" "ls: cannot access '$work/never': No such file or directory"
run_capture "$KACLONE" join --session cli-usage-nobody --server 127.0.0.1 --sink "$work/never" --yes
expect_eq "join --yes for a file: exit code" "$rc" 2
expect_eq "join --yes for a file: message" "$err" "kaclone join: --yes confirms --disk, or a block device given as --sink
Run 'kaclone join --help' for usage."

# A join that finds no server leaves its sink as it was: a file keeps its bytes, a file it
# would create is not left behind, an --exec command never runs.
head -c 100000 /dev/urandom >"$work/kept.img"
kept=$(sha256sum <"$work/kept.img")
run_capture "$KACLONE" join --session cli-usage-nobody --server 127.0.0.1 --retries 1 --sink "$work/kept.img"
expect_eq "no server, existing --sink: exit code" "$rc" 1
expect_eq "no server, existing --sink: bytes kept" "$(sha256sum <"$work/kept.img")" "$kept"
run_capture "$KACLONE" join --session cli-usage-nobody --server 127.0.0.1 --retries 1 --sink "$work/new.img"
expect_eq "no server, new --sink: exit code" "$rc" 1
expect_eq "no server, new --sink: not left behind" "$(ls "$work/new.img" 2>&1)" "ls: cannot access '$work/new.img': No such file or directory"
run_capture "$KACLONE" join --session cli-usage-nobody --server 127.0.0.1 --retries 1 --exec "touch '$work/ran'"
expect_eq "no server, --exec: exit code" "$rc" 1
expect_eq "no server, --exec: message" "$err" \
    "kaclone join: no server for session 'cli-usage-nobody' answered after 1 attempt (asked 127.0.0.1): no server answered"
expect_eq "no server, --exec: never started" "$(ls "$work/ran" 2>&1)" "ls: cannot access '$work/ran': No such file or directory"

echo "PASS: cli usage"
