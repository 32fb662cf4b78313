#!/usr/bin/env bash
# join --sink DIR with hostile tar streams (sent as plain files with serve --source FILE):
# entries with `..`, an absolute path, a write through a symlink that leaves DIR and a hardlink
# to a file outside are each refused with a line naming them, nothing lands outside DIR, the
# harmless entries around them are extracted, and join exits 1 saying how many it refused.
# A truncated stream and random bytes make join exit 1 too. serve exits 0 every time: the
# stream itself was delivered intact; what is in it is the node's business.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
require_netns
command -v python3 >/dev/null || skip "needs python3 (builds the hostile archives)"

n=2
data_dir $((16 << 20))
cluster_up "$n"
outside=$data/outside
mkdir "$outside"
printf 'secret' >"$outside/shadow"

python3 - "$data" "$outside" <<'EOF'
import io, os, sys, tarfile
data, outside = sys.argv[1], sys.argv[2]
def add(t, name, kind=tarfile.REGTYPE, body=b"", link=""):
    i = tarfile.TarInfo(name)
    i.type, i.linkname, i.size, i.mode = kind, link, len(body), 0o644
    t.addfile(i, io.BytesIO(body) if body else None)
with tarfile.open(f"{data}/hostile.tar", "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "good1", body=b"one")
    add(t, "../escape-dotdot", body=b"evil")
    add(t, f"{outside}/escape-absolute", body=b"evil")
    add(t, "a", tarfile.SYMTYPE, link=outside)
    add(t, "a/escape-symlink", body=b"evil")
    add(t, "h", tarfile.LNKTYPE, link=f"{outside}/shadow")
    add(t, "good2", body=b"two")
with tarfile.open(f"{data}/big.tar", "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "big", body=os.urandom(1 << 20))
with open(f"{data}/big.tar", "rb") as f, open(f"{data}/truncated.tar", "wb") as g:
    g.write(f.read(600000))
with open(f"{data}/random.bin", "wb") as f:
    f.write(os.urandom(1 << 20))
EOF

# run_case NAME FILE: serve FILE to $n nodes, each extracting into $data/NAME-I; waits for all.
run_case() {
    local name=$1 file=$2 i
    new_run "$name"
    start_serve 60 --session "$name" --nodes "$n" --source "$file"
    for ((i = 1; i <= n; i++)); do
        mkdir "$data/$name-$i"
        start_join "$i" 60 --session "$name" --server "$(node_ip 0)" --sink "$data/$name-$i"
    done
    wait_session "$n"
    expect_rc "serve ($name)" "$serve_rc" 0 "$run/serve.err"
    check_no_process $(seq "$n")
}

run_case hostile "$data/hostile.tar"
for ((i = 1; i <= n; i++)); do
    dir=$data/hostile-$i
    expect_rc "node $i (join, hostile stream)" "${join_rc[i]}" 1 "$run/join$i.err"
    expect_eq "node $i's refusals" "$(grep -E '^kaclone join: refused ' "$run/join$i.err")" \
"kaclone join: refused ../escape-dotdot: a '..' component
kaclone join: refused $outside/escape-absolute: an absolute path
kaclone join: refused a/escape-symlink: its path goes through the symlink a
kaclone join: refused h: its hardlink target $outside/shadow has an absolute path"
    expect_eq "node $i's last line" "$(tail -n 1 "$run/join$i.err")" \
        "kaclone join: extracting into $dir: 4 entries, the first ../escape-dotdot (a '..' component): entries that would write outside the target root were refused"
    expect_eq "node $i's good1" "$(cat "$dir/good1")" one
    expect_eq "node $i's good2" "$(cat "$dir/good2")" two
    expect_eq "node $i's symlink a" "$(readlink "$dir/a")" "$outside"
    [ ! -e "$dir/h" ] || fail "node $i created the refused hardlink h"
done
expect_eq "files outside every node's DIR" "$(ls -A "$outside" | paste -sd' ')" "shadow"
expect_eq "the file next to the sinks" "$(ls -A "$data" | grep -c escape || true)" 0
expect_eq "links of the file a hardlink targeted" "$(stat -c %h "$outside/shadow")" 1

run_case truncated "$data/truncated.tar"
for ((i = 1; i <= n; i++)); do
    expect_rc "node $i (join, truncated stream)" "${join_rc[i]}" 1 "$run/join$i.err"
    expect_eq "node $i's last line (truncated stream)" "$(tail -n 1 "$run/join$i.err")" \
        "kaclone join: extracting into $data/truncated-$i: read data of big: Truncated tar archive: the tar stream could not be read or written"
done

run_case random "$data/random.bin"
for ((i = 1; i <= n; i++)); do
    expect_rc "node $i (join, random bytes)" "${join_rc[i]}" 1 "$run/join$i.err"
    expect_eq "node $i's last line (random bytes)" "$(tail -n 1 "$run/join$i.err")" \
        "kaclone join: extracting into $data/random-$i: open stream: Unrecognized archive format: the tar stream could not be read or written"
    expect_eq "node $i's DIR after random bytes" "$(ls -A "$data/random-$i")" ""
done

echo "PASS: hostile, truncated and random tar streams refused on 2 nodes, nothing outside DIR"
