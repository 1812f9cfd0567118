#!/usr/bin/env bash
# Packaging throughput benchmark: casterpak vs. ffmpeg's HLS muxer vs. plain cp.
#
#   bench/package.sh             # build release binary, (make input once), time everything
#   bench/package.sh --prepare   # only make the cached 10-minute input file, then exit
#
# Environment:
#   BENCH_DIR   where the input file and scratch outputs live
#               (default: $HOME/.cache/casterpak-bench, outside the git tree)
#   RUNS        timed runs per tool, the median is reported (default: 3)
#   NO_BUILD=1  skip `cargo build --release` (use the existing target/release/casterpak)
#   CASTERPAK   path to the casterpak binary (default: <repo>/target/release/casterpak)
#
# The input is a 10-minute 1920x1080 30 fps H.264 (High, veryfast, B-frames)
# stream at 5 Mbit/s with a fixed 2 s GOP, plus 128 kbit/s AAC-LC stereo,
# moov at front. It is made once and cached in $BENCH_DIR.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/casterpak-bench}"
RUNS="${RUNS:-3}"
INPUT="$BENCH_DIR/input-1080p30-5M-10min.mp4"
CASTERPAK="${CASTERPAK:-$REPO/target/release/casterpak}"
PREPARE_ONLY=0

for arg in "$@"; do
    case "$arg" in
        --prepare) PREPARE_ONLY=1 ;;
        -h|--help) sed -n '2,17p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

mkdir -p "$BENCH_DIR"

# --- tools ---------------------------------------------------------------
need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
[ -x /usr/bin/time ] || need_apt+=(time)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing: ${need_apt[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
    fi
fi

# --- input file (made once, cached) --------------------------------------
make_input() {
    local tmp="$INPUT.partial.$$"
    echo "making $INPUT (10 min 1080p30 H.264 5 Mbit/s + AAC 128k; takes a few minutes) ..." >&2
    local t0 t1
    t0=$(date +%s.%N)
    ffmpeg -hide_banner -v error -y \
        -f lavfi -i "testsrc2=size=1920x1080:rate=30" \
        -f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000" \
        -t 600 -map 0:v -map 1:a \
        -c:v libx264 -preset veryfast -profile:v high -pix_fmt yuv420p \
        -b:v 5M -maxrate 5M -bufsize 10M \
        -g 60 -keyint_min 60 -sc_threshold 0 \
        -c:a aac -b:a 128k -ac 2 \
        -movflags +faststart -f mp4 "$tmp"
    t1=$(date +%s.%N)
    mv -f "$tmp" "$INPUT"
    local secs
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')
    echo "made $INPUT in ${secs}s, $(stat -c %s "$INPUT") bytes" | tee "$INPUT.made.txt" >&2
}

if [ ! -s "$INPUT" ]; then
    # One maker at a time; a second caller waits and then reuses the file.
    exec 9>"$BENCH_DIR/.make.lock"
    flock 9
    [ -s "$INPUT" ] || make_input
    flock -u 9
fi

if [ "$PREPARE_ONLY" -eq 1 ]; then
    ls -l "$INPUT"
    exit 0
fi

# --- build ---------------------------------------------------------------
BUILD_ERR=""
if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "cargo build --release ..." >&2
    if ! (cd "$REPO" && cargo build --release --quiet) >"$BENCH_DIR/build.log" 2>&1; then
        BUILD_ERR="cargo build failed: $(grep -m1 -E '^error' "$BENCH_DIR/build.log" || tail -n1 "$BENCH_DIR/build.log")"
        echo "$BUILD_ERR (see $BENCH_DIR/build.log)" >&2
    fi
fi

# --- timing --------------------------------------------------------------
SIZE_BYTES=$(stat -c %s "$INPUT")
OUT="$BENCH_DIR/out"          # same disk as the input
LOGDIR="$BENCH_DIR/logs"
mkdir -p "$LOGDIR"

# Warm the page cache once so every tool starts from the same state.
cat "$INPUT" >/dev/null

# bench NAME CMD...   (CMD writes into $OUT, which is emptied before each run)
# Appends one formatted row to ROWS. A run that fails, or that exits 0 but
# leaves no playlist (or copy) in $OUT, turns the row into "FAILED: ...".
ROWS=()
CP_MEDIAN=""

median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) exit 1; if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2 }'; }

bench() {
    local name="$1"; shift
    local times=() rss=() i err="" outmb=""
    for ((i = 1; i <= RUNS; i++)); do
        rm -rf "$OUT"
        mkdir -p "$OUT"
        sync
        local tf="$LOGDIR/$name.$i.time" lf="$LOGDIR/$name.$i.log" t0 t1
        # Wall time is taken with a nanosecond clock around the run (GNU time's
        # %e has only 10 ms resolution); GNU time supplies the peak RSS (%M).
        t0=$(date +%s.%N)
        if /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$lf" 2>&1; then
            t1=$(date +%s.%N)
            read -r _ m <"$tf"
            if ! find "$OUT" -name '*.m3u8' -o -name 'copy.mp4' | grep -q .; then
                err="exited 0 but wrote no playlist; output: $(grep -m1 . "$lf" || echo none)"
                break
            fi
            times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')"); rss+=("$m")
            outmb=$(du -sb "$OUT" | awk '{printf "%.1f", $1/1e6}')
        else
            err="$(grep -v '^Command exited with non-zero status' "$lf" | grep -m1 . || true)"
            [ -n "$err" ] || err="exit status $(grep -o 'status [0-9]*' "$tf" | head -n1)"
            break
        fi
    done
    rm -rf "$OUT"
    if [ -n "$err" ]; then
        ROWS+=("$(printf '%-10s  FAILED: %s' "$name" "${err:0:120}")")
        return 0
    fi
    local med peak mbps ratio
    med=$(printf '%s\n' "${times[@]}" | median)
    peak=$(printf '%s\n' "${rss[@]}" | sort -g | tail -n1)
    mbps=$(awk -v s="$SIZE_BYTES" -v t="$med" 'BEGIN{ if (t>0) printf "%.0f", s/1e6/t; else print "inf" }')
    if [ "$name" = cp ]; then CP_MEDIAN="$med"; fi
    if [ -n "$CP_MEDIAN" ]; then
        ratio=$(awk -v a="$med" -v b="$CP_MEDIAN" 'BEGIN{ if (b>0) printf "%.2fx", a/b; else print "-" }')
    else
        ratio="-"
    fi
    ROWS+=("$(printf '%-10s %10s %10s %12s %10s %10s' "$name" "$med" "$mbps" "$(awk -v k="$peak" 'BEGIN{printf "%.1f", k/1024}')" "$ratio" "$outmb")")
}

# cp first, so the other rows can be expressed as a ratio to it.
bench cp cp "$INPUT" "$OUT/copy.mp4"

if [ -n "$BUILD_ERR" ]; then
    ROWS+=("$(printf '%-10s  FAILED: %s' casterpak "${BUILD_ERR:0:100}")")
elif [ ! -x "$CASTERPAK" ]; then
    ROWS+=("$(printf '%-10s  FAILED: %s' casterpak "no binary at $CASTERPAK")")
else
    bench casterpak "$CASTERPAK" package "$INPUT" --out "$OUT/hls"
    # The same file as CMAF (fMP4 segments, HLS and DASH manifests).
    bench cmaf "$CASTERPAK" package "$INPUT" --out "$OUT/hls" --format cmaf
fi
# ffmpeg's fMP4 HLS, the peer of the CMAF row.
bench ff-fmp4 ffmpeg -nostdin -v error -i "$INPUT" -c copy -f hls -hls_time 6 \
    -hls_segment_type fmp4 -hls_playlist_type vod "$OUT/index.m3u8"

bench ffmpeg ffmpeg -nostdin -v error -i "$INPUT" -c copy -f hls -hls_time 6 \
    -hls_playlist_type vod "$OUT/index.m3u8"

echo
echo "input: $INPUT ($(awk -v s="$SIZE_BYTES" 'BEGIN{printf "%.1f MB", s/1e6}')), $RUNS runs each, median wall time, peak RSS over the runs"
printf '%-10s %10s %10s %12s %10s %10s\n' tool seconds MB/s "peak RSS MB" "vs cp" "out MB"
for r in "${ROWS[@]}"; do echo "$r"; done
echo "(logs: $LOGDIR)"
