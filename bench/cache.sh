#!/usr/bin/env bash
# Cache administration at scale: time and peak RSS of gc, stat and
# invalidate on a cache of ROWS objects, and serve's time to first answer
# when it starts on that cache.
#
#   bench/cache.sh                        # build, make the cache once, measure
#   BASELINE=/path/to/older/casterpak bench/cache.sh   # the same for that build first
#   ROWS=100000 bench/cache.sh            # a smaller cache
#
# Environment:
#   BENCH_DIR   where the caches live (default: $HOME/.cache/casterpak-bench)
#   ROWS        objects in the cache (default: 1000000)
#   NO_BUILD=1  skip `cargo build --release`
#   CASTERPAK   the binary measured (default: <repo>/target/release/casterpak)
#   BASELINE    another binary (an older build) measured the same way first;
#               then CASTERPAK is also timed opening the baseline's cache, when
#               that needs a schema upgrade
#
# The cache is made once per schema version and kept in
# $BENCH_DIR/cache/template-<ROWS>-v<version>: the real objects of one
# fixture (made by casterpak package), then ROWS rows inserted straight into
# its SQLite index and, for each, a sparse file of the row's size (so that
# reconcile finds every file it expects without filling the disk). Every
# destructive run works on a fresh copy: the database copied, the objects
# hard-linked.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/casterpak-bench}"
ROWS="${ROWS:-1000000}"
CASTERPAK="${CASTERPAK:-$REPO/target/release/casterpak}"
BASELINE="${BASELINE:-}"
PORT=18482
WORK="$BENCH_DIR/cache"
MEDIA="$WORK/media"
RUN="$WORK/run"

need=()
command -v sqlite3 >/dev/null || need+=(sqlite3)
[ -x /usr/bin/time ] || need+=(time)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
[ -n "${NO_BUILD:-}" ] || (cd "$REPO" && cargo build --release -q)

mkdir -p "$MEDIA/films"
# Copied once: a new copy is a new source (mtime, ctime), whose objects
# the templates made before would not hold.
[ -f "$MEDIA/films/real.mp4" ] || cp "$REPO/tests/fixtures/h264-aac-bframes.mp4" "$MEDIA/films/real.mp4"
# The time the template's rows are made relative to (kept with it, and
# given to every command as --now, so that runs on one template agree).
NOW=$(date +%s)

# Rows in the proportions of a cache of 6 s segments: 90 % segments
# (2 MiB), 8 % playlists (1 KiB), 2 % parsed indexes (64 KiB); 100 objects
# per source, so that with a million rows 'films/f012*.mp4' selects 1 %;
# last access spread over the 4 days before NOW in an order unrelated to
# the key's, so that the default output TTL (3 days) takes a quarter.
fill_sql() {
    cat <<EOF
PRAGMA synchronous = OFF;
PRAGMA cache_size = -262144;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $ROWS),
k(i, kind, ext, bytes, ago) AS (
    SELECT i,
           CASE WHEN i % 100 < 90 THEN 'segment' WHEN i % 100 < 98 THEN 'playlist' ELSE 'index' END,
           CASE WHEN i % 100 < 90 THEN 'ts' WHEN i % 100 < 98 THEN 'm3u8' ELSE 'idx' END,
           CASE WHEN i % 100 < 90 THEN 2097152 WHEN i % 100 < 98 THEN 1024 ELSE 65536 END,
           (i * 7919) % $ROWS * 345600 / $ROWS
    FROM n)
INSERT INTO object (key, file, kind, bytes, created, accessed, expired)
SELECT printf('v2|%s|6||0|av|films/f%05d.mp4:734003200:1700000000000000000:%d:%08d', kind, i / 100, i / 100, i),
       printf('objects/%02x/%062x.%s', i % 256, i, ext), kind, bytes, $NOW - ago - 60, $NOW - ago, 0
FROM k;
INSERT INTO object_source (key, path, size, mtime_ns)
SELECT key, substr(key, instr(key, 'films/'), 16), 734003200, 1700000000000000000
FROM object WHERE key LIKE 'v2|%|films/f%';
COMMIT;
EOF
}

make_template() {
    local bin=$1 template=$2 partial="$2.partial"
    echo "making $template ($ROWS objects; a minute or two) ..." >&2
    rm -rf "$partial"
    "$bin" --root "$MEDIA" --cache-dir "$partial" package films/real.mp4 >/dev/null
    fill_sql | sqlite3 "$partial/cache.db"
    for d in $(seq 0 255); do printf '%s/objects/%02x\n' "$partial" "$d"; done | xargs mkdir -p
    for kind in "segment 2097152" "playlist 1024" "index 65536"; do
        set -- $kind
        sqlite3 "$partial/cache.db" "SELECT file FROM object WHERE kind = '$1' AND key LIKE 'v2|%|films/f%'" |
            (cd "$partial" && xargs truncate -s "$2")
    done
    echo "$NOW" >"$partial/now"
    mv "$partial" "$template"
}

# The template for the schema version `bin` makes.
template_of() {
    local bin=$1 probe="$WORK/probe"
    rm -rf "$probe"
    "$bin" --root "$MEDIA" --cache-dir "$probe" package films/real.mp4 >/dev/null
    local version
    version=$(sqlite3 "$probe/cache.db" 'PRAGMA user_version')
    rm -rf "$probe"
    local template="$WORK/template-$ROWS-v$version"
    [ -d "$template" ] || make_template "$bin" "$template"
    echo "$template"
}

fresh_db() { cp -f "$1/cache.db" "$RUN/cache.db"; rm -f "$RUN/cache.db-wal" "$RUN/cache.db-shm"; }
fresh_run() {
    rm -rf "$RUN"
    mkdir -p "$RUN/tmp"
    cp -al "$1/objects" "$RUN/objects"
    fresh_db "$1"
}

row() { printf '%-34s %9s %12s  %s\n' "$@"; }

# Runs `bin ARGS...` on the run cache; prints seconds, peak RSS and the
# last line of its output.
timed() {
    local name=$1 bin=$2
    shift 2
    local t0 t1 out="$WORK/out.txt"
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$WORK/time.txt" "$bin" --root "$MEDIA" --cache-dir "$RUN" \
        --now "$NOW" "$@" >"$out" 2>"$WORK/err.txt" || {
        row "$name" FAILED "" "$(head -c 200 "$WORK/err.txt")"
        return
    }
    t1=$(date +%s.%N)
    local rss
    rss=$(awk '{printf "%.1f", $1/1024}' "$WORK/time.txt")
    local summary
    summary=$(grep -E '^(total|deleted|would delete [0-9]|kept|expired)' "$out" | tr '\n' ' ' || true)
    row "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" "$rss" \
        "$(wc -l <"$out") lines${summary:+: }${summary:0:150}"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# serve on the run cache: time to its first answer, the latency of the
# answers while its start-up reconcile runs, and how long that keeps it busy.
serve_start() {
    local bin=$1 url="http://127.0.0.1:$PORT/i/films/real.mp4/master.m3u8"
    local t0 t1 pid
    t0=$(date +%s.%N)
    RUST_LOG=warn "$bin" serve --root "$MEDIA" --cache-dir "$RUN" --listen "127.0.0.1:$PORT" \
        >/dev/null 2>"$WORK/serve.err" &
    pid=$!
    local headers
    until headers=$(curl -fs -D - -o /dev/null "$url" 2>/dev/null); do
        kill -0 "$pid" 2>/dev/null || { row "serve" FAILED "" "$(head -c 200 "$WORK/serve.err")"; return; }
        sleep 0.005
    done
    t1=$(date +%s.%N)
    local lat=()
    for _ in $(seq 20); do lat+=("$(curl -fs -o /dev/null -w '%{time_total}' "$url")"); done
    # Busy until the CPU it uses falls under 5 % over a second.
    local before after
    before=$(cpu_ticks "$pid")
    while sleep 1; after=$(cpu_ticks "$pid"); [ $((after - before)) -gt 5 ]; do before=$after; done
    local t2 rss
    t2=$(date +%s.%N)
    rss=$(awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$pid/status")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    row "serve: first answer" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" "" \
        "X-Cache $(printf '%s' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" {print $2}'); next 20: $(printf '%s\n' "${lat[@]}" | sort -g |
            awk '{a[NR]=$1*1000} END{printf "median %.1f ms, max %.1f ms", a[int((NR+1)/2)], a[NR]}')"
    row "serve: busy after start" "$(awk -v a="$t0" -v b="$t2" 'BEGIN{printf "%.1f", b-a}')" "$rss" \
        "(CPU under 5 % over 1 s; peak RSS so far)"
}

suite() {
    local bin=$1 template
    template=$(template_of "$bin")
    NOW=$(cat "$template/now")
    echo
    echo "$bin ($("$bin" --version)), $(basename "$template"), now=$NOW"
    row "" seconds "peak RSS MB" "output"
    fresh_run "$template"
    serve_start "$bin"
    timed "stat" "$bin" stat
    timed "gc --dry-run --json" "$bin" gc --dry-run --json
    timed "gc --dry-run (lists)" "$bin" gc --dry-run
    timed "invalidate 'films/f012*.mp4'" "$bin" invalidate 'films/f012*.mp4'
    fresh_db "$template"
    timed "invalidate --all" "$bin" invalidate --all
    fresh_db "$template"
    # About a quarter past the 3-day TTL, then a cap of 70 % of the
    # segments' bytes, so that gc also evicts by size.
    CASTERPAK_CACHE_OUTPUT_MAX_SIZE=$((ROWS * 90 / 100 * 2097152 * 70 / 100)) \
        timed "gc (ttl + size cap)" "$bin" gc
    fresh_run "$template"
    timed "invalidate --all --hard" "$bin" invalidate --all --hard
    echo "$template" >"$WORK/last-template"
}

if [ -n "$BASELINE" ]; then
    suite "$BASELINE"
    old_template=$(cat "$WORK/last-template")
fi
suite "$CASTERPAK"
if [ -n "$BASELINE" ] && [ "$old_template" != "$(cat "$WORK/last-template")" ]; then
    echo
    echo "$CASTERPAK opening $(basename "$old_template") (schema upgrade on first open):"
    fresh_run "$old_template"
    timed "stat (upgrades the schema)" "$CASTERPAK" stat
fi
rm -rf "$RUN"
