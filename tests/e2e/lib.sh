# Shared helpers of the shell tests: sourced, never run. Each test sets -euo pipefail itself.
#
#   skip REASON                exit 77 (CTest: skipped) after saying why
#   require_root               skip unless root
#   require_netns              skip unless network namespaces can be made here
#   fail MESSAGE               print and exit 1
#   expect_eq WHAT GOT WANT    compare exactly, fail naming WHAT
#   run_capture CMD...         run CMD, put its exit code in $rc, stdout in $out, stderr in $err
#   $work                      a private temp directory, removed on success, kept on failure
#   on_exit CMD                add CMD to the cleanup run on every exit (last added runs first)

: "${KACLONE:?KACLONE must name the kaclone executable (CTest sets it)}"
: "${KACLONE_SRC:?KACLONE_SRC must name the source tree (CTest sets it)}"

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }

require_root() { [ "$(id -u)" -eq 0 ] || skip "needs root"; }
require_netns() {
    require_root
    command -v ip >/dev/null || skip "needs iproute2 (ip)"
    local probe="kcprobe$$"
    ip netns add "$probe" 2>/dev/null || skip "cannot create network namespaces here"
    ip netns del "$probe"
}

expect_eq() {
    [ "$2" == "$3" ] && return 0
    printf 'FAIL: %s\n  got:  %q\n  want: %q\n' "$1" "$2" "$3" >&2
    exit 1
}

run_capture() {
    set +e
    "$@" >"$work/out" 2>"$work/err"
    rc=$?
    set -e
    out=$(cat "$work/out")
    err=$(cat "$work/err")
}

work=$(mktemp -d "${TMPDIR:-/tmp}/kaclone-test.XXXXXX")
_cleanups=()
on_exit() { _cleanups=("$*" "${_cleanups[@]}"); }
_run_cleanups() {
    local status=$? c
    for c in "${_cleanups[@]}"; do eval "$c" || true; done
    if [ $status -eq 0 ] || [ $status -eq 77 ]; then
        rm -rf "$work"
    else
        echo "logs kept in $work" >&2
    fi
    exit $status
}
trap _run_cleanups EXIT
trap 'exit 130' INT TERM
