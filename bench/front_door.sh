#!/usr/bin/env bash
# Front-door benchmark: the attack of tests/cli/front_door.rs (500 idle
# connections, 50 slowloris clients, 64 clients that never read a 4 MB
# response, 32 bodies declared and never sent, absurd lengths and headers,
# 20 pooled keep-alive players, all at once) held for ATTACK_SECONDS (60)
# while a good client fetches a playlist and a cached segment every 0.5 s.
# Prints the good client's latency unloaded and under attack (p50/p99), the
# pooled players' requests, and the server's peak threads, descriptors and
# RSS; then the low-limits run (96 descriptors, 16 tasks).
#
#   bench/front_door.sh            ATTACK_SECONDS=120 bench/front_door.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export FRONT_DOOR_SECONDS="${ATTACK_SECONDS:-60}"
cargo test --release --test cli front_door -- --nocapture --test-threads 1 2>&1 |
    grep -oE '(front door|low limits|connection cap|test result):? .*'
