#!/usr/bin/env bash
# Origin benchmark: casterpak serve on the 10-minute 1080p file, next to
# nginx serving one of the same segments as a static file.
#
#   bench/serve.sh
#
# Reports, in one run:
#   - cold segment latency: median over SEGMENTS different segments, cache
#     emptied first (the first request, which also reads the moov, apart);
#   - cached segment latency: the same segments again;
#   - nginx's latency for the same segment bytes as a static file;
#   - requests per second with wrk for a cached playlist and a cached
#     segment, and for nginx serving that segment file.
#
# With NGINX_VOD=PREFIX (nginx with nginx-vod-module, built by
# ../shared/anchors/build-nginx-vod.sh with a media folder that holds the
# same input as film.mp4), the same rows for nginx-vod: cold segments with
# its caches off (port 8082), and throughput with its caches on (8081).
#
# Environment: BENCH_DIR (as bench/package.sh), SEGMENTS (default 40),
# DURATION of each wrk run in seconds (default 10), CONNECTIONS (default 32),
# NO_BUILD=1, CASTERPAK, NGINX_VOD.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
REPO="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/casterpak-bench}"
INPUT="$BENCH_DIR/input-1080p30-5M-10min.mp4"
CASTERPAK="${CASTERPAK:-$REPO/target/release/casterpak}"
SEGMENTS="${SEGMENTS:-40}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-32}"
PORT=18480
NGINX_PORT=18481

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
[ -f "$INPUT" ] || "$HERE/package.sh" --prepare
[ -n "${NO_BUILD:-}" ] || (cd "$REPO" && cargo build --release -q)

WORK="$BENCH_DIR/serve"
rm -rf "$WORK"
mkdir -p "$WORK/media" "$WORK/nginx/html" "$WORK/nginx/tmp"
ln -f "$INPUT" "$WORK/media/film.mp4" 2>/dev/null || cp "$INPUT" "$WORK/media/film.mp4"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

RUST_LOG=warn "$CASTERPAK" serve --root "$WORK/media" --cache-dir "$WORK/cache" \
    --listen "127.0.0.1:$PORT" >/dev/null &
pids+=($!)
BASE="http://127.0.0.1:$PORT/i/film.mp4"
for _ in $(seq 50); do curl -fs "$BASE/master.m3u8" -o /dev/null 2>/dev/null && break; sleep 0.1; done

median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
ms() { awk '{printf "%.2f", $1*1000}'; }
fetch() { curl -fs -o /dev/null -w '%{time_total}\n' "$1"; }

# Restart with an empty cache so the first request parses the moov cold.
cleanup; pids=()
rm -rf "$WORK/cache"
RUST_LOG=warn "$CASTERPAK" serve --root "$WORK/media" --cache-dir "$WORK/cache" \
    --listen "127.0.0.1:$PORT" >/dev/null &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

COUNT=$(curl -fs "$BASE/index_0_av.m3u8" | grep -c '^segment')
FIRST_MS=$(fetch "$BASE/segment1_0_av.ts" | ms)
step=$(( (COUNT - 1) / SEGMENTS )); [ "$step" -ge 1 ] || step=1
picked=()
for ((k = 2; k <= COUNT && ${#picked[@]} < SEGMENTS; k += step)); do picked+=("$k"); done
COLD_MS=$(for k in "${picked[@]}"; do fetch "$BASE/segment${k}_0_av.ts"; done | median | ms)
CACHED_MS=$(for k in "${picked[@]}"; do fetch "$BASE/segment${k}_0_av.ts"; done | median | ms)
# The same segments as CMAF, cold: video and audio are a fragment each, so
# a segment's time is the two requests'.
CMAF="http://127.0.0.1:$PORT/cmaf/film.mp4"
CMAF_COLD_MS=$(for k in "${picked[@]}"; do
    v=$(fetch "$CMAF/seg${k}_0_v.m4s"); a=$(fetch "$CMAF/seg${k}_0_a.m4s")
    awk -v v="$v" -v a="$a" 'BEGIN{print v+a}'
done | median | ms)
SEG="segment${picked[0]}_0_av.ts"
curl -fs "$BASE/$SEG" -o "$WORK/nginx/html/$SEG"
SEG_BYTES=$(stat -c %s "$WORK/nginx/html/$SEG")

static_nginx_conf "$WORK/nginx" "$NGINX_PORT" "$WORK/nginx/error.log"
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$NGINX_PORT/$SEG" -o /dev/null 2>/dev/null && break; sleep 0.1; done
NGINX_MS=$(for _ in "${picked[@]}"; do fetch "http://127.0.0.1:$NGINX_PORT/$SEG"; done | median | ms)

rps() { wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$1" | awk '/Requests\/sec/ {print $2} /Transfer\/sec/ {print $2}' | paste -sd' '; }
PLAYLIST_RPS=$(rps "$BASE/index_0_av.m3u8")
SEGMENT_RPS=$(rps "$BASE/$SEG")
NGINX_RPS=$(rps "http://127.0.0.1:$NGINX_PORT/$SEG")

if [ -n "${NGINX_VOD:-}" ]; then
    # As root, its workers must be root too to read media under /root.
    "$NGINX_VOD/sbin/nginx" -c "$NGINX_VOD/conf/vod.conf" ${NGINX_USER:+-g "$NGINX_USER"}
    trap 'cleanup; "$NGINX_VOD/sbin/nginx" -c "$NGINX_VOD/conf/vod.conf" -s stop 2>/dev/null || true' EXIT
    VOD_COLD=http://127.0.0.1:8082/hls/film.mp4
    VOD_CACHED=http://127.0.0.1:8081/hls/film.mp4
    for _ in $(seq 50); do curl -fs "$VOD_COLD/index.m3u8" -o /dev/null && break; sleep 0.1; done
    VOD_FIRST_MS=$(fetch "$VOD_COLD/seg-1-v1-a1.ts" | ms)
    VOD_COLD_MS=$(for k in "${picked[@]}"; do fetch "$VOD_COLD/seg-${k}-v1-a1.ts"; done | median | ms)
    VOD_PLAYLIST_RPS=$(rps "$VOD_CACHED/index.m3u8")
    VOD_SEGMENT_RPS=$(rps "$VOD_CACHED/seg-${picked[0]}-v1-a1.ts")
fi

echo
echo "input: $INPUT ($COUNT segments); segment $SEG is $SEG_BYTES bytes"
echo "latency (curl, median of ${#picked[@]} segments):"
printf '  %-44s %8s ms\n' "first segment, cold (includes moov parse)" "$FIRST_MS"
printf '  %-44s %8s ms\n' "cold segment (cache emptied)" "$COLD_MS"
printf '  %-44s %8s ms\n' "cold CMAF segment (video + audio fragment)" "$CMAF_COLD_MS"
printf '  %-44s %8s ms\n' "cached segment" "$CACHED_MS"
printf '  %-44s %8s ms\n' "nginx, same segment as a static file" "$NGINX_MS"
echo "throughput (wrk -t2 -c$CONNECTIONS -d${DURATION}s: requests/s, transfer/s):"
printf '  %-44s %s\n' "casterpak cached playlist" "$PLAYLIST_RPS"
printf '  %-44s %s\n' "casterpak cached segment" "$SEGMENT_RPS"
printf '  %-44s %s\n' "nginx static segment" "$NGINX_RPS"
if [ -n "${NGINX_VOD:-}" ]; then
    echo "nginx-vod-module (caches off for latency, on for throughput):"
    printf '  %-44s %8s ms\n' "first segment, cold" "$VOD_FIRST_MS"
    printf '  %-44s %8s ms\n' "cold segment" "$VOD_COLD_MS"
    printf '  %-44s %s\n' "cached playlist" "$VOD_PLAYLIST_RPS"
    printf '  %-44s %s\n' "cached segment" "$VOD_SEGMENT_RPS"
fi
