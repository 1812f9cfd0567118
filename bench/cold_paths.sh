#!/usr/bin/env bash
# Cold paths: casterpak serve next to nginx-vod-module and a static nginx,
# side by side in one run, for the 10-minute 1080p file and the 2-hour file
# made of it (bench/remote.sh's; moov at the end).
#
#   bench/cold_paths.sh
#   NGINX_VOD=$HOME/.cache/casterpak-bench/nginx-vod NO_BUILD=1 bench/cold_paths.sh
#
# Prints one markdown table, a row for each file of each of:
#   - first play: master, media playlist and segment 1, one after the other
#     on one connection (one curl). casterpak is started anew with an empty
#     cache for each of RUNS plays, so the master reads the moov cold;
#     nginx-vod (caches off, port 8082) is restarted for each. The time is
#     the sum of the three answers' (curl's time_total), and the master's
#     alone; median (min-max) of the runs. One untimed play on each server
#     before them, so that both find the file's pages in the page cache;
#   - cold mid-file segment: SEGMENTS different segments from the middle half
#     of the file, each made on request (after the first play, so the index
#     is made; nothing else cached), back to back, median; nginx-vod with
#     its caches off; nginx static: the same segment bytes (casterpak's) as
#     files; then the same segments 100 ms apart, each on an idle server (a
#     second casterpak with a cache of its own, its index read first):
#     casterpak makes the next segment ahead and stores each after
#     answering, and back to back a request shares the cores with that;
#   - cold CMAF segment (casterpak only): the video fragment alone, and video
#     + audio (two requests, times added) of the same segments, under the TS
#     row;
#   - cached segment and cached media playlist: requests/s with wrk -t2
#     -cCONNECTIONS -dDURATION; nginx-vod with its caches on (port 8081:
#     metadata and playlists; it remuxes every segment it sends); nginx
#     static serving the segment's bytes;
#   - first play of a new file in a running server: the same three requests
#     for a file the server has not seen, after it played another one (what
#     an origin that has run for a while does for a video's first viewer);
#   - peak RSS (VmHWM in /proc/PID/status) of casterpak serve: the largest of
#     the first-play processes, and that of the last one (which then served
#     the cold segments, CMAF and wrk rows) at the end of the file's rows.
# Ratios are casterpak / nginx-vod and casterpak / nginx static: of times
# for latencies (under 1: casterpak faster), of requests/s for throughput
# (over 1: casterpak faster).
#
# Environment: BENCH_DIR (as bench/package.sh), RUNS (default 5), SEGMENTS
# (default 20), DURATION of each wrk run in seconds (default 5), CONNECTIONS
# (default 16), NO_BUILD=1, CASTERPAK, NGINX_VOD (a prefix with sbin/nginx
# built with nginx-vod-module and conf/vod.conf, as
# ../shared/anchors/build-nginx-vod.sh makes it: caches on at 8081, off at
# 8082, /hls/ an alias of its media folder, where the inputs are hard-linked
# as film.mp4 and film2h.mp4; without it the nginx-vod column is skipped).
# Needs nginx, curl and wrk (installed with apt-get when missing).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
REPO="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/casterpak-bench}"
CASTERPAK="${CASTERPAK:-$REPO/target/release/casterpak}"
RUNS="${RUNS:-5}"
SEGMENTS="${SEGMENTS:-20}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-16}"
SHORT="$BENCH_DIR/input-1080p30-5M-10min.mp4"
LONG="$BENCH_DIR/input-1080p30-5M-2h.mp4"
# The name of each input under every server's root, and its label.
NAMES=(film.mp4 film2h.mp4)
INPUTS=("$SHORT" "$LONG")
LABELS=(10-min 2-hour)
NGINX_PORT=18491
VOD_CACHED_PORT=8081
VOD_COLD_PORT=8082

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

# --- inputs (made once, cached) ----------------------------------------------
mkdir -p "$BENCH_DIR"
[ -s "$SHORT" ] || "$HERE/package.sh" --prepare >/dev/null
make_long_input "$SHORT" "$LONG" "$BENCH_DIR"
[ -n "${NO_BUILD:-}" ] || (cd "$REPO" && cargo build --release -q)

# --- scratch and processes, all removed on exit --------------------------------
WORK="$BENCH_DIR/cold_paths"
LOGS="$BENCH_DIR/logs/cold_paths"
rm -rf "$WORK" "$LOGS"
mkdir -p "$WORK/media" "$WORK/static/tmp" "$LOGS"
# A copy of the binary: a build running alongside cannot change it mid-run.
BIN="$WORK/casterpak"
cp "$CASTERPAK" "$BIN"
for n in 0 1; do
    ln -f "${INPUTS[$n]}" "$WORK/media/${NAMES[$n]}" 2>/dev/null || cp "${INPUTS[$n]}" "$WORK/media/${NAMES[$n]}"
done

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
forget() {
    local kept=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget "$1"; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Every server reads the inputs from the page cache (the 2-hour file is
# 4.6 GB; nothing is dropped between rows).
echo "reading the inputs into the page cache ..." >&2
cat "$SHORT" "$LONG" >/dev/null

# --- nginx-vod: started for each first play, as a child (daemon off) -----------
VOD_NOTE=""
if [ -z "${NGINX_VOD:-}" ]; then
    VOD_NOTE="nginx-vod skipped: NGINX_VOD is not set (a prefix with sbin/nginx and conf/vod.conf)"
elif [ ! -x "$NGINX_VOD/sbin/nginx" ] || [ ! -f "$NGINX_VOD/conf/vod.conf" ]; then
    VOD_NOTE="nginx-vod skipped: no $NGINX_VOD/sbin/nginx or $NGINX_VOD/conf/vod.conf"
elif listening "$VOD_COLD_PORT" || listening "$VOD_CACHED_PORT"; then
    # Its ports are bound with reuseport: a second one would share them.
    VOD_NOTE="nginx-vod skipped: something already listens on $VOD_CACHED_PORT or $VOD_COLD_PORT (stop it: $NGINX_VOD/sbin/nginx -c $NGINX_VOD/conf/vod.conf -s stop)"
fi
if [ -z "$VOD_NOTE" ]; then
    VOD_CONF="$NGINX_VOD/conf/vod.conf"
    # Its media folder: what /hls/ is an alias of.
    VOD_MEDIA=$(awk '$1 == "alias" { sub(/;$/, "", $2); print $2; exit }' "$VOD_CONF")
    [ -n "$VOD_MEDIA" ] || VOD_MEDIA="$BENCH_DIR/vod-media/"
    mkdir -p "$VOD_MEDIA"
    for n in 0 1; do
        [ -e "$VOD_MEDIA/${NAMES[$n]}" ] || ln "${INPUTS[$n]}" "$VOD_MEDIA/${NAMES[$n]}" 2>/dev/null \
            || cp "${INPUTS[$n]}" "$VOD_MEDIA/${NAMES[$n]}"
    done
fi
VOD_PID=""
vod_start() {
    "$NGINX_VOD/sbin/nginx" -c "$VOD_CONF" -g "daemon off; $NGINX_USER" 2>>"$LOGS/nginx-vod.log" &
    VOD_PID=$!
    pids+=("$VOD_PID")
    for _ in $(seq 100); do
        listening "$VOD_COLD_PORT" && listening "$VOD_CACHED_PORT" && return 0
        kill -0 "$VOD_PID" 2>/dev/null || break
        sleep 0.02
    done
    echo "nginx-vod did not start; see $LOGS/nginx-vod.log" >&2
    exit 1
}
vod_stop() { [ -z "$VOD_PID" ] || stop "$VOD_PID"; VOD_PID=""; }

# --- casterpak serve -------------------------------------------------------------
# cp_start NAME [CACHE]: casterpak serve on a new, empty cache ($WORK/cache
# unless CACHE is given; log in $LOGS/NAME.log);
# sets CP_PID and CP_URL (http://127.0.0.1:PORT). Run in $WORK, so that no
# ./casterpak.toml is read.
cp_start() {
    # Its own file for the address: the child opens it, maybe after the
    # first look here, which must not find the previous one's.
    local out="$WORK/$1.out" cache="${2:-$WORK/cache}"
    rm -rf "$cache" "$out"
    (cd "$WORK" && RUST_LOG=warn exec "$BIN" serve --root "$WORK/media" --cache-dir "$cache" \
        --listen 127.0.0.1:0) >"$out" 2>"$LOGS/$1.log" &
    CP_PID=$!
    pids+=("$CP_PID")
    CP_URL=""
    for _ in $(seq 250); do
        CP_URL=$(grep -m1 -o 'http://[0-9.:]*' "$out" 2>/dev/null || true)
        [ -z "$CP_URL" ] || return 0
        kill -0 "$CP_PID" 2>/dev/null || break
        sleep 0.02
    done
    echo "casterpak serve did not start; see $LOGS/$1.log" >&2
    exit 1
}
hwm_kb() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }

# --- helpers -------------------------------------------------------------------
# stats: "median min max" of the numbers on stdin.
stats() {
    sort -g | awk '{a[NR] = $1} END {
        if (NR == 0) exit 1
        m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        print m, a[1], a[NR] }'
}
median() { stats | awk '{print $1}'; }
# fetch URL: seconds for one answer (fails unless 2xx).
fetch() { curl -fsS -o /dev/null -w '%{time_total}\n' "$1"; }
# each PATTERN: fetch PATTERN with @K@ replaced by each picked segment number.
each() { local k; for k in "${picked[@]}"; do fetch "${1//@K@/$k}"; done; }
# play BASE MASTER PLAYLIST SEGMENT: a first play on one connection; prints
# "total_seconds master_seconds". With SAVE=DIR, keeps the bodies and checks
# that each answer names the next.
play() {
    local w dir="${SAVE:-}" outs=(-o /dev/null -o /dev/null -o /dev/null)
    [ -z "$dir" ] || { rm -rf "$dir"; mkdir -p "$dir"; outs=(-o "$dir/1" -o "$dir/2" -o "$dir/3"); }
    w=$(curl -s --max-time 120 "${outs[@]}" -w '%{http_code} %{time_total}\n' "$1/$2" "$1/$3" "$1/$4" || true)
    if [ "$(awk '{printf "%s ", $1}' <<<"$w")" != "200 200 200 " ]; then
        echo "FAILED: statuses $(awk '{printf "%s ", $1}' <<<"$w")for $1/{$2,$3,$4}" >&2
        return 1
    fi
    if [ -n "$dir" ] && { ! grep -q "^[^#]*$3" "$dir/1" || ! grep -q "^[^#]*$4" "$dir/2"; }; then
        echo "FAILED: $1/$2 does not list $3, or $3 does not list $4" >&2
        return 1
    fi
    awk '{s += $2} NR == 1 {m = $2} END {print s, m}' <<<"$w"
}
# rps URL: requests/s with wrk (FAILED when some answers were not 2xx/3xx or
# sockets failed); its output is kept in $LOGS/wrk.log.
rps() {
    local out
    out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$1" 2>&1)
    printf '== %s\n%s\n' "$1" "$out" >>"$LOGS/wrk.log"
    if grep -qE 'Non-2xx|Socket errors' <<<"$out"; then
        echo FAILED
    else
        awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out"
    fi
}

# Results: R[ROW SERVER FILE], ROW one of play, master, cold, cmafv, cmafva,
# seg, pl, rssplay, rssend; SERVER cp, vod or static; FILE 0 or 1.
declare -A R

# --- the static nginx: casterpak's segment bytes as files ------------------------
static_nginx_conf "$WORK/static" "$NGINX_PORT" "$LOGS/static-error.log"
if listening "$NGINX_PORT"; then echo "port $NGINX_PORT is in use" >&2; exit 1; fi
"$NGINX" -c "$WORK/static/nginx.conf" -g 'daemon off;' 2>>"$LOGS/static-error.log" &
pids+=($!)
for _ in $(seq 100); do listening "$NGINX_PORT" && break; sleep 0.02; done
STATIC="http://127.0.0.1:$NGINX_PORT"

CP_M=master.m3u8 CP_P=index_0_av.m3u8 CP_S=segment1_0_av.ts
# nginx-vod's master names index-v1-a1.m3u8 (index.m3u8 answers the same).
VOD_M=master.m3u8 VOD_P=index-v1-a1.m3u8 VOD_S=seg-1-v1-a1.ts

for n in 0 1; do
    name=${NAMES[$n]}
    # --- first play of a new file in a running server: one server plays
    # another name of the input first (its heap and threads warm), then
    # each run plays a name it has not seen (its index and segments cold).
    # nginx-vod with its caches off keeps nothing of a file: every play of
    # it is a first one. ---
    echo "first play of a new file in a running server, $name: $RUNS runs ..." >&2
    for ((run = 0; run <= RUNS; run++)); do
        ln -f "${INPUTS[$n]}" "$WORK/media/w$run-$name" 2>/dev/null || cp "${INPUTS[$n]}" "$WORK/media/w$run-$name"
    done
    cp_start "warm-$n"
    play "$CP_URL/i/w0-$name" $CP_M $CP_P $CP_S >/dev/null
    : >"$WORK/warm-cp"
    for ((run = 1; run <= RUNS; run++)); do
        play "$CP_URL/i/w$run-$name" $CP_M $CP_P $CP_S >>"$WORK/warm-cp"
    done
    stop "$CP_PID"
    R["warm cp $n"]=$(awk '{print $1}' "$WORK/warm-cp" | stats)
    R["warmmaster cp $n"]=$(awk '{print $2}' "$WORK/warm-cp" | stats)
    if [ -z "$VOD_NOTE" ]; then
        vod_start
        play "http://127.0.0.1:$VOD_COLD_PORT/hls/$name" $VOD_M $VOD_P $VOD_S >/dev/null
        : >"$WORK/warm-vod"
        for ((run = 1; run <= RUNS; run++)); do
            play "http://127.0.0.1:$VOD_COLD_PORT/hls/$name" $VOD_M $VOD_P $VOD_S >>"$WORK/warm-vod"
        done
        vod_stop
        R["warm vod $n"]=$(awk '{print $1}' "$WORK/warm-vod" | stats)
        R["warmmaster vod $n"]=$(awk '{print $2}' "$WORK/warm-vod" | stats)
    fi

    # --- first play ---
    echo "first play of $name: untimed play on each server, then $RUNS runs ..." >&2
    cp_start "warmup-$n"
    SAVE="$WORK/play" play "$CP_URL/i/$name" $CP_M $CP_P $CP_S >/dev/null
    COUNT=$(grep -c '^segment' "$WORK/play/2")
    R["sizes cp $n"]="playlist $(wc -c <"$WORK/play/2") B, segment 1 $(wc -c <"$WORK/play/3") B"
    stop "$CP_PID"
    if [ -z "$VOD_NOTE" ]; then
        vod_start
        SAVE="$WORK/play" play "http://127.0.0.1:$VOD_COLD_PORT/hls/$name" $VOD_M $VOD_P $VOD_S >/dev/null
        VOD_COUNT=$(grep -c 'seg-[0-9]*-v1-a1\.ts' "$WORK/play/2")
        R["sizes vod $n"]="playlist $(wc -c <"$WORK/play/2") B, segment 1 $(wc -c <"$WORK/play/3") B"
        [ "$VOD_COUNT" = "$COUNT" ] || echo "note: $name has $COUNT segments in casterpak's playlist, $VOD_COUNT in nginx-vod's" >&2
        vod_stop
    fi
    : >"$WORK/play-cp"; : >"$WORK/play-vod"; : >"$WORK/rss-play"
    for ((run = 1; run <= RUNS; run++)); do
        cp_start "play-$n-$run"
        play "$CP_URL/i/$name" $CP_M $CP_P $CP_S >>"$WORK/play-cp"
        hwm_kb "$CP_PID" >>"$WORK/rss-play"
        # The last one goes on to serve the rows below.
        [ "$run" -eq "$RUNS" ] || stop "$CP_PID"
        if [ -z "$VOD_NOTE" ]; then
            vod_stop; vod_start
            play "http://127.0.0.1:$VOD_COLD_PORT/hls/$name" $VOD_M $VOD_P $VOD_S >>"$WORK/play-vod"
        fi
    done
    for s in cp vod; do
        [ -s "$WORK/play-$s" ] || continue
        R["play $s $n"]=$(awk '{print $1}' "$WORK/play-$s" | stats)
        R["master $s $n"]=$(awk '{print $2}' "$WORK/play-$s" | stats)
    done
    R["rssplay cp $n"]=$(stats <"$WORK/rss-play" | awk '{print $3}')

    # --- cold mid-file segments: the middle half of the file ---
    picked=()
    lo=$((COUNT / 4)) hi=$((3 * COUNT / 4))
    [ "$lo" -ge 1 ] || lo=1
    mapfile -t picked < <(for ((i = 0; i < SEGMENTS; i++)); do
        echo $((lo + (SEGMENTS > 1 ? i * (hi - lo) / (SEGMENTS - 1) : 0)))
    done | uniq)
    echo "cold segments of $name: ${#picked[@]} of $COUNT (${picked[0]}..${picked[-1]}) ..." >&2
    BASE="$CP_URL/i/$name"
    CMAF="$CP_URL/cmaf/$name"
    R["cold cp $n"]=$(each "$BASE/segment@K@_0_av.ts" | median)
    if [ -z "$VOD_NOTE" ]; then
        R["cold vod $n"]=$(each "http://127.0.0.1:$VOD_COLD_PORT/hls/$name/seg-@K@-v1-a1.ts" | median)
    fi
    # The same segments, each on an idle server: a casterpak of its own
    # (an empty cache; its index read first, and stored), 100 ms between
    # requests, so that what the answer before started (the next segment
    # made ahead, the store) is done; back to back, a request shares the
    # 2 cores with that work. With both inputs and the default SEGMENTS,
    # the picks are 2 or more apart: none is made ahead of its request.
    spaced() { local k; for k in "${picked[@]}"; do sleep 0.1; fetch "${1//@K@/$k}"; done; }
    main=("$CP_PID" "$CP_URL")
    cp_start "idle-$n" "$WORK/cache-idle"
    fetch "$CP_URL/i/$name/$CP_M" >/dev/null
    sleep 1.5
    R["idle cp $n"]=$(spaced "$CP_URL/i/$name/segment@K@_0_av.ts" | median)
    stop "$CP_PID"
    CP_PID=${main[0]} CP_URL=${main[1]}
    if [ -z "$VOD_NOTE" ]; then
        R["idle vod $n"]=$(spaced "http://127.0.0.1:$VOD_COLD_PORT/hls/$name/seg-@K@-v1-a1.ts" | median)
    fi
    # CMAF: its playlists and init segments first, untimed, as a player would.
    for p in master.m3u8 index_0_v.m3u8 index_0_a.m3u8 init_0_v.mp4 init_0_a.mp4; do fetch "$CMAF/$p" >/dev/null; done
    # Video then audio fragment of each picked segment, both made on request.
    for k in "${picked[@]}"; do
        echo "$(fetch "$CMAF/seg${k}_0_v.m4s") $(fetch "$CMAF/seg${k}_0_a.m4s")"
    done >"$WORK/cmaf"
    R["cmafv cp $n"]=$(awk '{print $1}' "$WORK/cmaf" | median)
    R["cmafva cp $n"]=$(awk '{print $1 + $2}' "$WORK/cmaf" | median)
    # The same segment bytes, as files for the static nginx (now cached).
    mkdir -p "$WORK/static/html/$n"
    for k in "${picked[@]}"; do curl -fsS -o "$WORK/static/html/$n/$k.ts" "$BASE/segment${k}_0_av.ts"; done
    R["cold static $n"]=$(each "$STATIC/$n/@K@.ts" | median)
    R["idle static $n"]=$(spaced "$STATIC/$n/@K@.ts" | median)

    # --- throughput: a cached segment and the cached media playlist ---
    k=${picked[0]}
    echo "throughput for $name (wrk -t2 -c$CONNECTIONS -d${DURATION}s) ..." >&2
    R["seg cp $n"]=$(rps "$BASE/segment${k}_0_av.ts")
    R["seg static $n"]=$(rps "$STATIC/$n/$k.ts")
    R["pl cp $n"]=$(rps "$BASE/$CP_P")
    if [ -z "$VOD_NOTE" ]; then
        VOD="http://127.0.0.1:$VOD_CACHED_PORT/hls/$name"
        fetch "$VOD/seg-$k-v1-a1.ts" >/dev/null; fetch "$VOD/$VOD_P" >/dev/null
        R["seg vod $n"]=$(rps "$VOD/seg-$k-v1-a1.ts")
        R["pl vod $n"]=$(rps "$VOD/$VOD_P")
        vod_stop
    fi
    R["rssend cp $n"]=$(hwm_kb "$CP_PID")
    stop "$CP_PID"
done

# --- the table -------------------------------------------------------------------
# get ROW SERVER FILE: the value, or nothing.
get() { echo "${R["$1 $2 $3"]:-}"; }
# ms "MEDIAN [MIN MAX]": milliseconds, with the range when there is one.
ms() {
    [ -n "$1" ] || { echo -; return; }
    awk -v s="$1" 'BEGIN { n = split(s, v, " ")
        if (n >= 3) printf "%.2f (%.2f-%.2f)", v[1] * 1000, v[2] * 1000, v[3] * 1000
        else printf "%.2f", v[1] * 1000 }'
}
num() { [ -n "$1" ] && echo "$1" || echo -; }
mb() { [ -n "$1" ] && awk -v k="$1" 'BEGIN{printf "%.1f MB", k / 1024}' || echo -; }
# ratio A B: A / B of their first numbers, or "-".
ratio() {
    awk -v a="${1%% *}" -v b="${2%% *}" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.2f", a / b; else print "-" }'
}
row() {   # row LABEL CASTERPAK NGINX-VOD STATIC RATIO-VOD RATIO-STATIC
    printf '| %s | %s | %s | %s | %s | %s |\n' "$@"
}
lat() {   # lat LABEL ROW FILE: a latency row
    local c v s
    c=$(get "$2" cp "$3") v=$(get "$2" vod "$3") s=$(get "$2" static "$3")
    row "$1" "$(ms "$c")" "$(ms "$v")" "$(ms "$s")" "$(ratio "$c" "$v")" "$(ratio "$c" "$s")"
}
thr() {   # thr LABEL ROW FILE: a throughput row
    local c v s
    c=$(get "$2" cp "$3") v=$(get "$2" vod "$3") s=$(get "$2" static "$3")
    row "$1" "$(num "$c")" "$(num "$v")" "$(num "$s")" "$(ratio "$c" "$v")" "$(ratio "$c" "$s")"
}

echo
echo "casterpak $("$BIN" --version 2>/dev/null | awk '{print $2}') ($CASTERPAK, $(date -r "$CASTERPAK" '+%F %T')); $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for n in 0 1; do
    echo "${LABELS[$n]}: $(basename "${INPUTS[$n]}") ($(awk -v b="$(stat -c %s "${INPUTS[$n]}")" 'BEGIN{printf "%.1f MB", b/1e6}')), as ${NAMES[$n]}; casterpak: ${R["sizes cp $n"]}${R["sizes vod $n"]:+; nginx-vod: ${R["sizes vod $n"]}}"
done
if [ -n "$VOD_NOTE" ]; then
    echo "$VOD_NOTE"
else
    echo "nginx-vod: $("$NGINX_VOD/sbin/nginx" -v 2>&1 | sed 's/.*: //') with nginx-vod-module ($NGINX_VOD), caches off on $VOD_COLD_PORT, on on $VOD_CACHED_PORT"
fi
echo "nginx static: $("$NGINX" -v 2>&1 | sed 's/.*: //')"
echo
row "path" "casterpak" "nginx-vod" "nginx static" "casterpak / nginx-vod" "casterpak / static"
row "---" "---:" "---:" "---:" "---:" "---:"
for n in 0 1; do
    lat "first play, ${LABELS[$n]}: master + playlist + segment 1, ms (median, min-max of $RUNS)" play "$n"
    lat "first play, ${LABELS[$n]}: master alone, ms" master "$n"
done
for n in 0 1; do
    lat "first play of a new file in a running server, ${LABELS[$n]}: master + playlist + segment 1, ms" warm "$n"
    lat "first play of a new file in a running server, ${LABELS[$n]}: master alone, ms" warmmaster "$n"
done
for n in 0 1; do
    lat "cold mid-file TS segment, ${LABELS[$n]}, ms (median of ${#picked[@]}, back to back)" cold "$n"
    lat "... the same segments, each on an idle server (100 ms apart), ms" idle "$n"
    c=$(get cmafv cp "$n") t=$(get cold cp "$n")
    row "cold CMAF video fragment, ${LABELS[$n]}, ms" "$(ms "$c")" - - "(vs TS $(ratio "$c" "$t"))" -
    c=$(get cmafva cp "$n")
    row "cold CMAF video + audio fragments, ${LABELS[$n]}, ms" "$(ms "$c")" - - "(vs TS $(ratio "$c" "$t"))" -
done
for n in 0 1; do
    thr "cached TS segment, ${LABELS[$n]}, req/s (wrk -t2 -c$CONNECTIONS -d${DURATION}s)" seg "$n"
done
for n in 0 1; do
    thr "cached media playlist, ${LABELS[$n]}, req/s" pl "$n"
done
for what in rssplay rssend; do
    label="peak RSS of casterpak serve after the first play (largest of $RUNS)"
    [ "$what" = rssplay ] || label="peak RSS of casterpak serve at the end (+ cold, CMAF, wrk rows)"
    for n in 0 1; do
        c=$(get "$what" cp "$n")
        r=-
        [ "$n" -eq 0 ] || r="2-hour / 10-min: $(ratio "$c" "$(get "$what" cp 0)")"
        row "$label, ${LABELS[$n]}" "$(mb "$c")" - - "$r" -
    done
done
echo
echo "Ratios of times for latencies (under 1: casterpak faster), of requests/s for throughput (over 1: casterpak faster)."
[ -n "$VOD_NOTE" ] || echo "nginx-vod's caches (port $VOD_CACHED_PORT) hold metadata and playlists, not segments: it remuxes each segment it sends."
echo "(logs: $LOGS; took ${SECONDS} s)"
