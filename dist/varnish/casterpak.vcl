# A shield cache in front of one or more casterpak origins (Varnish 7).
#
#   varnishd -a :80 -f /etc/varnish/casterpak.vcl -p vcl_path=/etc/varnish -s malloc,4G
#
# The origins are listed in casterpak-origins.vcl, beside this file: one
# `backend` each (with the `casterpak_health` probe), each added to the
# `origins` director in its `vcl_init`. Each video (a file, or a csmil set) is kept on
# one origin, chosen by consistent hashing on its URL's directory: its
# index and its segments are made, and cached, once. When an origin goes
# away, the probe marks it sick within a few seconds and its videos move to
# the next origin on the ring; a request meeting it before that is retried
# there. Adding or removing an origin moves only its share of the videos.

vcl 4.1;

import directors;
import std;

# casterpak's readiness: 503 while its cache cannot be used.
probe casterpak_health {
    .url = "/healthz";
    .expected_response = 200;
    .interval = 2s;
    .timeout = 1s;
    .window = 3;
    .threshold = 2;
    .initial = 2;
}

sub vcl_init {
    new origins = directors.shard();
}

# Its backends, each added to `origins` in a vcl_init of its own.
include "casterpak-origins.vcl";

sub vcl_init {
    origins.reconfigure();
}

sub vcl_recv {
    # Health and metrics are each origin's own: never cached.
    if (req.url ~ "^/(healthz|metrics)(\?|$)") {
        return (pass);
    }
    if (req.url ~ "^/(i|cmaf)/") {
        # AES-128 keys: casterpak checks each request's token (query or
        # cookie); a key is never kept here.
        if (req.url ~ "\.key(\?|$)") {
            return (pass);
        }
        # One object serves every URL that differs only in its query string
        # (player cache busters, analytics, signed-URL tokens): the object
        # is found by the path alone (vcl_hash). The request still goes to
        # the origin as it came, with its query string and cookies: the
        # origin checks a token there (tokens.required) and carries a query
        # token on into the URIs of the playlist it answers, which is then
        # private (not kept here). Segments kept here are served without a
        # token check: protect their content with [protection] (they are
        # useless without the key, which is checked every time), or check
        # tokens at the edge in front of this cache.
        set req.http.X-Casterpak-Path = regsub(req.url, "\?.*$", "");
        # A master's filters (b=, b-in=, b-in-range=, __b__=, audio-only,
        # video-only) make other masters: a master is kept per whole URL.
        # Masters are small and kept in the origin's memory: a cache buster
        # on one costs a fast answer there.
        if (req.http.X-Casterpak-Path ~ "/master\.m3u8$") {
            set req.http.X-Casterpak-Path = req.url;
        }
        # The viewer's country, for pre-rolls: one spelling (the origin's
        # answers vary by it).
        if (req.http.X-Country) {
            set req.http.X-Country = std.tolower(req.http.X-Country);
        }
        # A media playlist without its pre-roll (preroll=0) is another one.
        if (req.url ~ "[?&]preroll=0(&|$)") {
            set req.http.X-Casterpak-Path = req.http.X-Casterpak-Path + "?preroll=0";
        }
    }
    # Only GET and HEAD reach the cache; concurrent misses for one URL
    # wait for one fetch (Varnish's request collapsing, on by default).
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    return (hash);
}

sub vcl_hash {
    # casterpak answers a URL with the same bytes whatever the Host (its
    # absolute URIs come from server.base_url): one object per URL, however
    # a player names this cache.
    if (req.url ~ "^/(i|cmaf)/") {
        hash_data(req.http.X-Casterpak-Path);
        # Media playlists and DASH MPDs start with the pre-roll of the
        # viewer's country ([preroll], header X-Country: set it here from
        # GeoIP, or let the CDN's header through under that name): one per
        # country. Masters, segments and everything else are the same for
        # every country.
        if (req.http.X-Casterpak-Path ~ "/(index[^/]*\.m3u8|manifest\.mpd)" && req.http.X-Country) {
            hash_data(req.http.X-Country);
        }
        return (lookup);
    }
}

sub vcl_backend_fetch {
    # The video's origin: the URL without its last part (a file's or a
    # csmil set's directory), so that all its renditions, playlists and
    # segments go to one origin; the next one on the ring on a retry.
    set bereq.backend = origins.backend(
        by = KEY,
        key = origins.key(regsub(bereq.url, "/[^/]*$", "/")),
        alt = bereq.retries,
        healthy = CHOSEN);
}

sub vcl_backend_error {
    # An origin that cannot be reached (gone before the probe noticed):
    # the next one makes the same bytes.
    if (bereq.retries < 1) {
        return (retry);
    }
}

sub vcl_backend_response {
    # Which origin made it, and whether that was from its own cache.
    set beresp.http.X-Origin = beresp.backend.name;
    if (beresp.http.X-Cache) {
        set beresp.http.X-Origin-Cache = beresp.http.X-Cache;
        unset beresp.http.X-Cache;
    }
    if (bereq.url !~ "^/(i|cmaf)/") {
        return (deliver);
    }
    unset beresp.http.Set-Cookie;
    if (beresp.http.Cache-Control ~ "(private|no-store)") {
        # A playlist carrying a viewer's token, or a refusal of one: the
        # next request goes to the origin (hit-for-miss).
        set beresp.ttl = 10s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    if (beresp.status >= 500) {
        # Ours to retry soon, never to keep.
        set beresp.ttl = 1s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    if (beresp.status >= 400) {
        # A missing file or a bad URL: briefly (the origin says 10 s).
        set beresp.ttl = 10s;
        set beresp.grace = 0s;
        return (deliver);
    }
    if (bereq.url ~ "\.(m3u8|mpd|vtt)$") {
        # VOD playlists: as long as the origin says (a day by default). A
        # live playlist would say half its target duration, and that is
        # what it gets: the origin's max-age is kept when it is shorter.
        # Subtitles too: they are made of sidecar files, which are edited
        # more often than media.
        if (beresp.ttl > 1d) {
            set beresp.ttl = 1d;
        }
    } else {
        # Segments and init segments of a VOD file never change (their
        # URLs carry no version: a replaced file changes its ETag, and a
        # purge or ban clears them).
        set beresp.ttl = 7d;
    }
    # Served stale for a while when every origin is down.
    set beresp.grace = 6h;
    return (deliver);
}

sub vcl_deliver {
    # This cache's own answer: HIT, or MISS (fetched for this request).
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
    # The object's remaining TTL, for an operator who asks.
    if (req.http.X-Casterpak-Debug) {
        set resp.http.X-Cache-TTL = obj.ttl;
    }
}
