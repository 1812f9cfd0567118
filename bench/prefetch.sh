#!/usr/bin/env bash
# Segments made ahead (server.prefetch): what a player gains, and what a
# burst of other requests pays, with prefetch 0 and 1 side by side in one
# run, on the 10-minute 1080p input (made by bench/package.sh --prepare).
#
#   - player: a fresh server, the media playlist, then segments 1..N back to
#     back as a player fills its buffer (each request once the last is in);
#     latency of each segment request, median and p90. Then the same with
#     20 ms between an answer and the next request, as a network round
#     trip would put there.
#   - burst: CLIENTS clients at once, each asking for cold segments of its
#     own part of the file (no two ask for the same one), every answer
#     triggering a prefetch nobody asks for: latency median, p90 and the
#     wall time of the burst. Prefetch must not slow it.
#
# Environment: BENCH_DIR, CASTERPAK, NO_BUILD=1, ROUNDS (default 3: both
# settings alternate, a fresh server each time), N (default 30), CLIENTS
# (default 8). Needs curl.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/casterpak-bench}"
CASTERPAK="${CASTERPAK:-$REPO/target/release/casterpak}"
ROUNDS="${ROUNDS:-3}"
N="${N:-30}"
CLIENTS="${CLIENTS:-8}"
SHORT="$BENCH_DIR/input-1080p30-5M-10min.mp4"
PORT=18493

[ -s "$SHORT" ] || "$HERE/package.sh" --prepare >/dev/null
[ -n "${NO_BUILD:-}" ] || (cd "$REPO" && cargo build --release -q)
WORK="$(mktemp -d)"
pid=""
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
mkdir -p "$WORK/media"
ln -f "$SHORT" "$WORK/media/film.mp4" 2>/dev/null || cp "$SHORT" "$WORK/media/film.mp4"
cat "$WORK/media/film.mp4" >/dev/null

start() { # start PREFETCH: a fresh server on an empty cache
    rm -rf "$WORK/cache"
    (cd "$WORK" && CASTERPAK_SERVER_PREFETCH="$1" RUST_LOG=warn exec "$CASTERPAK" serve \
        --root "$WORK/media" --cache-dir "$WORK/cache" --listen "127.0.0.1:$PORT") \
        >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0; sleep 0.02; done
    echo "casterpak serve did not start" >&2
    exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
B="http://127.0.0.1:$PORT/i/film.mp4"
# stats: "median p90" of the numbers (seconds) on stdin, in ms.
stats() { sort -g | awk '{a[NR]=$1} END {printf "%.2f %.2f", a[int((NR+1)/2)]*1000, a[int(NR*0.9+0.5)]*1000}'; }

for p in 0 1; do : >"$WORK/player-$p"; : >"$WORK/rtt-$p"; : >"$WORK/burst-$p"; : >"$WORK/wall-$p"; done
echo "prefetch: $ROUNDS rounds of each setting, alternating ..." >&2
for ((round = 1; round <= ROUNDS; round++)); do
    for p in 0 1; do
        start "$p"
        curl -fs -o /dev/null "$B/master.m3u8"
        curl -fs -o /dev/null "$B/index_0_av.m3u8"
        for k in $(seq 1 "$N"); do
            curl -fs -o /dev/null -w '%{time_total}\n' "$B/segment${k}_0_av.ts"
        done >>"$WORK/player-$p"
        stop
        start "$p"
        curl -fs -o /dev/null "$B/index_0_av.m3u8"
        for k in $(seq 1 "$N"); do
            sleep 0.02
            curl -fs -o /dev/null -w '%{time_total}\n' "$B/segment${k}_0_av.ts"
        done >>"$WORK/rtt-$p"
        stop
        start "$p"
        curl -fs -o /dev/null "$B/index_0_av.m3u8"
        t0=$(date +%s.%N)
        for c in $(seq 0 $((CLIENTS - 1))); do
            # Client c: segments 3c+1, 3(c+CLIENTS)+1, ...: cold, its own.
            (for i in 0 1 2 3; do
                k=$((3 * (c + i * CLIENTS) + 1))
                curl -fs -o /dev/null -w '%{time_total}\n' "$B/segment${k}_0_av.ts"
            done) >>"$WORK/burst-$p" &
        done
        wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
        t1=$(date +%s.%N)
        echo "$t0 $t1" | awk '{print $2 - $1}' >>"$WORK/wall-$p"
        stop
    done
done

echo
echo "casterpak $("$CASTERPAK" --version | awk '{print $2}'); $(nproc) cores; 10-minute 1080p input"
echo
echo "| | prefetch 0 | prefetch 1 |"
echo "| --- | ---: | ---: |"
echo "| player: segments 1..$N back to back, ms per request (median / p90) | $(stats <"$WORK/player-0" | tr ' ' /) | $(stats <"$WORK/player-1" | tr ' ' /) |"
echo "| player, 20 ms between answer and request, ms per request (median / p90) | $(stats <"$WORK/rtt-0" | tr ' ' /) | $(stats <"$WORK/rtt-1" | tr ' ' /) |"
echo "| burst: $CLIENTS clients x 4 cold segments, ms per request (median / p90) | $(stats <"$WORK/burst-0" | tr ' ' /) | $(stats <"$WORK/burst-1" | tr ' ' /) |"
echo "| burst: wall time, ms (median / p90 of $ROUNDS) | $(stats <"$WORK/wall-0" | tr ' ' /) | $(stats <"$WORK/wall-1" | tr ' ' /) |"
