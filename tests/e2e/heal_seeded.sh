#!/usr/bin/env bash
# 10 sessions of 256 MiB over a chain of 5 nodes, each with one or two victims killed (kill -9)
# at random points between 10% and 60% of what they store, in random order: every survivor
# ends byte-identical every time. The seed is printed (set HEAL_SEED to replay a run).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
source "$(dirname "$0")/heal_lib.sh"
require_netns

seed=${HEAL_SEED:-$(( $(date +%s) % 100000 ))}
echo "seed $seed (HEAL_SEED=$seed replays these runs)"
RANDOM=$seed
n=5
data_dir $((2 << 30))
cluster_up "$n"
heal_source 256M

for ((round = 1; round <= 10; round++)); do
    victims=$((RANDOM % n + 1))
    if ((RANDOM % 2)); then
        second=$((RANDOM % (n - 1) + 1))
        ((second >= victims)) && ((second += 1))
        victims="$victims $second"
    fi
    plan=""
    killed=""
    heal_start "seeded$round" "$n" --allow-failures 2
    for v in $victims; do
        # 10-60 %: a node stores up to a buffer (64 MiB, a quarter of the stream) behind what it
        # forwarded, so a later point may come after the whole session ended.
        pct=$((10 + RANDOM % 51))
        wait_stored "$v" $((size * pct / 100))
        # A second victim may have stored (nearly) the whole stream by now (the first died
        # late, the session is nearly over): then it is a survivor like the others. "Nearly":
        # within 32 MiB of the end (a quarter of a second here) it may report done before the
        # kill lands.
        if [ "$(stored_of "$v")" -lt $((size - (32 << 20))) ] && kill_if_running "$v"; then
            plan+="node $v at $pct%, "
            killed+=" $v"
        else
            plan+="node $v at $pct% (it had (nearly) finished: a survivor), "
        fi
    done
    echo "round $round: killed ${plan%, }"
    heal_check "$n" 0 $killed
done
echo "PASS: 10 seeded rounds (seed $seed): every survivor byte-identical"
