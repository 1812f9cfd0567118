# shellcheck shell=bash
# Shared by the benchmark scripts: sourced, not run.

# make_long_input SHORT LONG DIR: makes LONG, twelve times SHORT stream
# copied (moov at the end), unless it exists; a lock in DIR keeps two
# scripts from making it at once. Its making time goes to LONG.made.txt.
make_long_input() {
    local short="$1" long="$2" dir="$3"
    [ -s "$long" ] && return 0
    exec 9>"$dir/.make.lock"
    flock 9
    if [ ! -s "$long" ]; then
        echo "making $long (12 x the 10-minute file, stream copy, moov at the end) ..." >&2
        local list="$long.list.$$" tmp="$long.partial.$$" t0 t1
        for _ in $(seq 12); do printf "file '%s'\n" "$short"; done >"$list"
        t0=$(date +%s.%N)
        ffmpeg -hide_banner -nostdin -v error -y -f concat -safe 0 -i "$list" -c copy -f mp4 "$tmp"
        t1=$(date +%s.%N)
        rm -f "$list"
        mv -f "$tmp" "$long"
        echo "made $long in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s, $(stat -c %s "$long") bytes" \
            | tee "$long.made.txt" >&2
    fi
    flock -u 9
}

# nginx's workers drop to www-data unless told otherwise, and could not
# read files under /root: as root, they stay root.
NGINX_USER=""
[ "$(id -u)" -ne 0 ] || NGINX_USER="user root;"

# static_nginx_conf DIR PORT ERROR_LOG: writes DIR/nginx.conf for an nginx
# serving DIR/html as static files on 127.0.0.1:PORT (sendfile on, no
# access log), its pid and temporary files under DIR.
static_nginx_conf() {
    local dir="$1" port="$2" error_log="$3"
    mkdir -p "$dir/html" "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
$NGINX_USER
worker_processes auto;
pid $dir/nginx.pid;
error_log $error_log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $dir/tmp;
    proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp;
    uwsgi_temp_path $dir/tmp;
    scgi_temp_path $dir/tmp;
    server { listen 127.0.0.1:$port; root $dir/html; }
}
CONF
}
