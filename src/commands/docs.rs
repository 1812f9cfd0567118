//! Man pages and shell completions, generated from the command-line
//! definition (the files in `man/` and `completions/` are made so, and a
//! test keeps them current). A subcommand's page carries the options every
//! subcommand takes, and the sections an operator looks for: the
//! configuration file, the environment, and the URLs `serve` answers.

use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// The man page of `command`, or of its subcommand `sub`.
pub fn man_page(mut command: clap::Command, sub: Option<&str>) -> anyhow::Result<String> {
    // Propagates the global options into every subcommand.
    command.build();
    let subcommands: Vec<String> = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .map(|s| s.get_name().to_string())
        .collect();
    let page = match sub {
        Some(name) => command
            .find_subcommand(name)
            .ok_or_else(|| anyhow::anyhow!("no subcommand {name:?}"))?
            .clone()
            .name(format!("casterpak-{name}")),
        None => command,
    };
    let has_version = page.get_version().is_some();
    let man = Man::new(page);
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if sub.is_none() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::new();
    configuration(&mut roff);
    environment(&mut roff);
    if matches!(sub, None | Some("serve" | "master" | "package")) {
        urls(&mut roff);
    }
    see_also(&mut roff, sub, &subcommands);
    roff.to_writer(&mut out)?;
    if has_version {
        man.render_version_section(&mut out)?;
    }
    Ok(String::from_utf8(out)?)
}

fn configuration(roff: &mut Roff) {
    roff.control("SH", ["CONFIGURATION"]);
    roff.text([
        roman("Every subcommand reads the same configuration: the TOML file given with "),
        bold("--config"),
        roman(", else "),
        italic("./casterpak.toml"),
        roman(", else "),
        italic("/etc/casterpak/casterpak.toml"),
        roman(
            ", else none; then the environment; then the options. An unknown key or a bad \
               value stops the program with an error naming it. Sections and keys: ",
        ),
        bold("[media]"),
        roman(" root, segment_duration, failure_ttl; "),
        bold("[server]"),
        roman(
            " listen, prefix, base_url, workers, max_connections, max_age, error_max_age, \
               cors_origin, send_timeout, header_timeout, keepalive_timeout, wait_timeout, admin_listen, prefetch; ",
        ),
        bold("[cache]"),
        roman(
            " dir, output_ttl, input_ttl, output_max_size, input_max_size, gc_interval, \
               fsync, min_free; ",
        ),
        bold("[remote]"),
        roman(" connect_timeout, timeout, revalidate, copies; "),
        bold("[log]"),
        roman(" format; "),
        bold("[tokens]"),
        roman(" key, param, cookie, required; "),
        bold("[protection]"),
        roman(" method (none, aes-128 or sample-aes), secret, key_id, retired, paths, key_prefix; "),
        bold("[preroll]"),
        roman(" header, default, countries, off_paths, param, geoip_db, forwarded_for, trusted_proxies; "),
        bold("[[sources]]"),
        roman(
            " (one per URL path prefix) prefix, type (filesystem, http or s3), root; url; \
               endpoint, region, bucket, key_prefix, path_style, access_key, secret_key; \
               copy. Durations take s, m, h or d; sizes K, M, G or T. \
               README.md describes each key.",
        ),
    ]);
}

fn environment(roff: &mut Roff) {
    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", []);
    roff.text([bold("CASTERPAK_<SECTION>_<KEY>")]);
    roff.text([roman(
        "Overrides one configuration key, e.g. CASTERPAK_SERVER_LISTEN=0.0.0.0:80 or \
         CASTERPAK_CACHE_OUTPUT_MAX_SIZE=20G. A variable naming no key is an error.",
    )]);
    roff.control("TP", []);
    roff.text([
        bold("AWS_ACCESS_KEY_ID"),
        roman(", "),
        bold("AWS_SECRET_ACCESS_KEY"),
        roman(", "),
        bold("AWS_SESSION_TOKEN"),
    ]);
    roff.text([roman(
        "Credentials of s3 sources that give no access_key and secret_key. Never logged.",
    )]);
    roff.control("TP", []);
    roff.text([bold("RUST_LOG")]);
    roff.text([roman(
        "What is logged on stderr, e.g. casterpak=debug; the access log of serve is \
         the target access.",
    )]);
    roff.control("TP", []);
    roff.text([bold("XDG_CACHE_HOME"), roman(", "), bold("HOME")]);
    roff.text([roman(
        "The default cache directory is $XDG_CACHE_HOME/casterpak, else \
         $HOME/.cache/casterpak.",
    )]);
}

fn urls(roff: &mut Roff) {
    roff.control("SH", ["URLS"]);
    roff.text([roman(
        "Akamai MSOD names, under server.prefix (/i/), for a file or a csmil set of files:",
    )]);
    for (url, what) in [
        (
            "/i/<path>/<file>/master.m3u8",
            "the master playlist of one file",
        ),
        (
            "/i/<path>/<file>/index_0_av.m3u8",
            "its media playlist (_a audio only, _v video only)",
        ),
        (
            "/i/<path>/<file>/segment<K>_0_av.ts",
            "its segment K, from 1",
        ),
        (
            "/i/<dir>/<prefix>,<l0>,<l1>,...,<suffix>.csmil/master.m3u8",
            "a master of the files <dir>/<prefix><lN><suffix>, at most 64; \
             index_<N>_av.m3u8 and segment<K>_<N>_av.ts are rendition N's",
        ),
        (
            "/i/<path>/<file>/key_<ID>_0.key",
            "the AES-128 key of a protected stream's segments (rendition N: key_<ID>_<N>.key), \
             made with the secret named ID; only with a good token when tokens.key is set. \
             A protected stream's segments name the secret too: segment<K>_<N>_av_<ID>.ts",
        ),
        (
            "/i/<...>/master.m3u8?b=200-700",
            "MSOD's bitrate filter (b=200,700 or 200-700 or 300-, kbit/s): only those variants; \
             also b-in=400,1200 (within 100 kbit/s), b-in-range=100-500 and __b__=800 \
             (that variant first)",
        ),
        (
            "/i/<...>/master.m3u8?audio-only, ?video-only",
            "each rendition's audio alone (index_<N>_a.m3u8), or its video alone \
             (index_<N>_v.m3u8)",
        ),
        (
            "/i/<path>/<file>/iframes_0_av.m3u8",
            "its I-frame playlist: each segment's key frame as a byte range of the segment",
        ),
        (
            "/i/<path>/<file>/index.m3u8, .../segment-<K>.ts",
            "the predecessor's names: rendition 0 with all its tracks",
        ),
        (
            "/i/<path>/<file>/subtitles_<tag>.m3u8, .../subtitles<K>_<tag>.vtt",
            "a subtitle rendition from a sidecar file <file without extension>[.<lang>][.forced].vtt \
             or .srt, or from a tx3g/text/wvtt track in the file (tag: en, pt-br, de-forced, und), \
             and its WebVTT segment K; \
             .../subtitles_<tag>.vtt is the whole track (DASH)",
        ),
        (
            "/cmaf/<path>/<file>/key_<ID>_0.key",
            "the cbcs key of its CMAF (DASH) form, as a W3C ClearKey license (JSON Web Keys)",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(url)]);
        roff.text([roman(what)]);
    }
}

fn see_also(roff: &mut Roff, sub: Option<&str>, subcommands: &[String]) {
    roff.control("SH", ["SEE ALSO"]);
    let pages: Vec<String> = std::iter::once("casterpak".to_string())
        .chain(subcommands.iter().map(|s| format!("casterpak-{s}")))
        .filter(|page| sub.is_none_or(|s| *page != format!("casterpak-{s}")))
        .filter(|page| sub.is_some() || page != "casterpak")
        .map(|page| format!("{page}(1)"))
        .collect();
    roff.text([roman(pages.join(", "))]);
}
