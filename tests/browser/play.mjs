// Plays a stream in headless Chromium with hls.js, dash.js or Shaka Player
// and checks that playback really advances, optionally across a forced
// video rendition switch and audio language switches.
//
//   node play.mjs <url> [seconds] [--player hls|dashjs|shaka]
//                 [--switch-video] [--switch-audio LANG]...
//                 [--advance SECONDS] [--timeout SECONDS] [--clearkey KID:KEY]...
//                 [--license URL] [--subtitles LANG]
//
// <url> is an HLS master playlist for hls.js, an MPD for dash.js; Shaka
// plays either. The page (page.js and the player, from node_modules) is
// served from another origin, a port of its own, so the stream's CORS
// headers are exercised too.
//
// Steps, all within one --timeout (default 60 s) for the whole run:
//  1. play until `video.currentTime` >= seconds (default 3);
//  2. --switch-video: turn adaptation off and force another video
//     rendition (one of another height if there is one, else of another
//     bandwidth), wait until the player reports it as the one playing and,
//     when the size differs, until the decoded picture (`video.videoWidth` x
//     `videoHeight`) has its size; then playback must advance --advance
//     seconds (default 1) more;
//  3. each --switch-audio LANG, in order: select the audio track in that
//     language ("fra" matches "fr" and "fr-FR"), wait until the player
//     reports it as the one playing, then playback must advance --advance
//     seconds more. Give two (--switch-audio eng --switch-audio fra) to be
//     sure of a real switch: players differ in which track they start with.
//  4. --subtitles LANG: the player is told to show subtitles in LANG from
//     the start; at the end, wait until cues in LANG have been seen and
//     none is added for a second (the player loads them ahead).
//
// Always prints exactly one JSON line on stdout:
//   ok            the verdict: no fatal error, no failure, every step done
//   player, url
//   fatal         the player's (or the <video>'s) fatal error, else null
//   failure       why the run failed otherwise (a step timed out, the
//                 stream ended first, no such language or rendition, bad
//                 arguments, ...), else null
//   errors        non-fatal error messages, at most 20
//   currentTime   of the <video> at the end, in seconds
//   readyState, ended, videoSize ("WxH" as decoded; "0x0" before a frame)
//   levels        how many video renditions the player knows (a number)
//   video         [{index, id, width, height, bandwidth, codecs}] the video
//                 renditions in the player's order (index: position in this
//                 list; id: the media playlist URI for hls.js, the
//                 Representation@id for dash.js, null for Shaka)
//   audio         [{index, id, lang, name, codecs}] the audio tracks; lang as
//                 the player has it (dash.js turns lang="eng" into "en")
//   activeVideo, activeAudio   the entries the player says are playing
//   switches      one record per switch asked for: {kind: "video"|"audio",
//                 lang (audio), from, to, changed (to is not from), active,
//                 startTime, activeAt, endTime (currentTime when asked, when
//                 active, at the end), videoSize, advanced, ok}
//   text          the <video>'s text tracks at the end: [{kind, label,
//                 language, mode, cues: [{start, end, text}]}]
//   cues          every cue seen in any poll, by track language: {lang:
//                 [{start, end, text}]} in start order (players drop cues
//                 behind the playhead)
//   elapsedMs
// Exits 0 when ok, 1 otherwise, 2 for bad arguments.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

// The UMD builds, each defining a global: Hls, dashjs, shaka.
const PLAYERS = {
  hls: 'node_modules/hls.js/dist/hls.min.js',
  dashjs: 'node_modules/dashjs/dist/modern/umd/dash.all.min.js',
  shaka: 'node_modules/shaka-player/dist/shaka-player.compiled.js',
};
const USAGE = 'usage: node play.mjs <url> [seconds] [--player hls|dashjs|shaka] '
  + '[--switch-video] [--switch-audio LANG]... [--advance S] [--timeout S]';
const POLL_MS = 200;

const started = Date.now();
let outcome = { ok: false, fatal: null, failure: null, errors: [], switches: [], cues: {} };
let finished = false;

function finish(code) {
  if (finished) return;
  finished = true;
  outcome.ok = code === 0;
  outcome.elapsedMs = Date.now() - started;
  process.stdout.write(`${JSON.stringify(outcome)}\n`, () => process.exit(code));
}

function options(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      player: { type: 'string', default: 'hls' },
      'switch-video': { type: 'boolean', default: false },
      'switch-audio': { type: 'string', multiple: true, default: [] },
      advance: { type: 'string', default: '1' },
      timeout: { type: 'string', default: '60' },
      clearkey: { type: 'string', multiple: true, default: [] },
      license: { type: 'string' },
      subtitles: { type: 'string' },
    },
  });
  const opts = {
    url: positionals[0],
    want: Number(positionals[1] ?? 3),
    player: values.player,
    switchVideo: values['switch-video'],
    switchAudio: values['switch-audio'],
    advance: Number(values.advance),
    timeoutS: Number(values.timeout),
    // KID:KEY in hex, each: W3C ClearKey keys for the player (dash.js,
    // Shaka).
    clearKeys: values.clearkey.length
      ? Object.fromEntries(values.clearkey.map((pair) => pair.split(':')))
      : null,
    // A W3C ClearKey license server's URL, for every player.
    license: values.license ?? null,
    subtitles: values.subtitles ?? null,
  };
  if (!opts.url || positionals.length > 2 || !PLAYERS[opts.player]
    || ![opts.want, opts.advance, opts.timeoutS].every(Number.isFinite)) {
    throw new Error(USAGE);
  }
  return opts;
}

function main() {
  let opts;
  try {
    opts = options(process.argv.slice(2));
  } catch (e) {
    outcome.failure = `arguments: ${e.message}`;
    finish(2);
    return;
  }
  outcome = { ...outcome, player: opts.player, url: opts.url };
  // Whatever hangs (the browser, a page that never answers), the JSON line
  // still comes out, a little after the run's own deadline.
  setTimeout(() => {
    outcome.failure ??= 'watchdog: the run did not end in time';
    finish(1);
  }, (opts.timeoutS + 15) * 1000);
  run(opts)
    .then(() => finish(outcome.fatal || outcome.failure ? 1 : 0))
    .catch((e) => {
      outcome.failure ??= `script: ${e?.stack ?? e}`.slice(0, 500);
      finish(1);
    });
}

async function run(opts) {
  const files = {
    '/player.js': readFileSync(new URL(PLAYERS[opts.player], import.meta.url)),
    '/page.js': readFileSync(new URL('page.js', import.meta.url)),
  };
  const config = JSON.stringify({
    player: opts.player, url: opts.url, clearKeys: opts.clearKeys, license: opts.license,
    subtitles: opts.subtitles,
  })
    .replaceAll('<', '\\u003c');
  const html = `<!doctype html><video id="v" muted playsinline></video>
<script>window.config = ${config};</script>
<script src="/player.js"></script>
<script src="/page.js"></script>`;
  const server = http.createServer((req, res) => {
    const body = files[req.url];
    res.writeHead(200, { 'Content-Type': body ? 'text/javascript' : 'text/html' });
    res.end(body ?? html);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--autoplay-policy=no-user-gesture-required'],
      timeout: opts.timeoutS * 1000,
    });
    const tab = await browser.newPage();
    tab.on('pageerror', (e) => note(`pageerror: ${e.message}`));
    await tab.goto(`http://127.0.0.1:${server.address().port}/`, { timeout: opts.timeoutS * 1000 });
    await steps(probe(tab, started + opts.timeoutS * 1000), opts);
  } finally {
    await browser?.close().catch(() => {});
    server.close();
  }
}

function note(message) {
  if (outcome.errors.length < 20) outcome.errors.push(String(message).slice(0, 300));
}

// Reads the page's state into `outcome`; `until` polls until a predicate
// holds, and answers false (with `failure` set, unless the player failed)
// on a fatal error, the end of the stream or the deadline.
function probe(tab, deadline) {
  const poll = async () => {
    const s = await tab.evaluate(() => window.state());
    const errors = [...outcome.errors, ...s.errors].slice(0, 20);
    outcome = { ...outcome, ...s, errors, levels: s.video.length };
    for (const t of s.text) {
      const seen = outcome.cues[t.language] ?? [];
      for (const c of t.cues) {
        if (!seen.some((o) => o.start === c.start && o.end === c.end && o.text === c.text)) seen.push(c);
      }
      seen.sort((a, b) => a.start - b.start);
      outcome.cues[t.language] = seen;
    }
    return s;
  };
  const until = async (what, pred) => {
    for (;;) {
      const s = await poll();
      if (s.fatal) return false;
      if (pred(s)) return true;
      if (s.ended) { outcome.failure = `${what}: the stream ended first`; return false; }
      if (Date.now() > deadline) { outcome.failure = `${what}: timed out`; return false; }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  };
  return { tab, poll, until };
}

async function steps(p, opts) {
  if (!await p.until(`playing to ${opts.want} s`, (s) => s.currentTime >= opts.want)) return;
  if (opts.switchVideo && !await switchVideo(p, opts.advance)) return;
  for (const lang of opts.switchAudio) {
    if (!await switchAudio(p, lang, opts.advance)) return;
  }
  if (opts.subtitles) await subtitleCues(p, opts.subtitles);
}

// Waits until cues in `lang` have been seen, and their count holds for a
// second.
async function subtitleCues(p, lang) {
  let count = -1;
  let since = Date.now();
  const settled = () => {
    const n = Object.entries(outcome.cues).filter(([l]) => sameLanguage(l, lang))
      .reduce((sum, [, cues]) => sum + cues.length, 0);
    if (n !== count) { count = n; since = Date.now(); }
    return n > 0 && Date.now() - since >= 1000;
  };
  // The end of the stream is no failure here: cues stay.
  for (const deadline = Date.now() + 20_000; ;) {
    const s = await p.poll();
    if (s.fatal) return;
    if (settled()) return;
    if (Date.now() > deadline) {
      outcome.failure = `subtitles in ${lang}: no cues (${JSON.stringify(s.text).slice(0, 200)}; `
        + `requests: ${s.textRequests.join(', ')}; ${Math.round(s.pageMs)} ms since the page loaded)`;
      return;
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function switchVideo(p, advance) {
  const s = await p.poll();
  const from = s.activeVideo;
  const to = otherRendition(s.video, from);
  const record = { kind: 'video', from, to: to ?? null, changed: Boolean(to), active: null, ok: false };
  outcome.switches.push(record);
  if (!to) {
    outcome.failure = `video switch: no rendition other than ${JSON.stringify(from)}`;
    return false;
  }
  const size = `${to.width}x${to.height}`;
  const sized = to.width > 0 && to.height > 0 && size !== s.videoSize;
  record.startTime = s.currentTime;
  await p.tab.evaluate((i) => window.adapter.switchVideo(i), to.index);
  if (!await p.until('video switch', (t) => t.activeVideo?.index === to.index
    && (!sized || t.videoSize === size))) return false;
  return advanced(p, record, advance);
}

async function switchAudio(p, lang, advance) {
  const s = await p.poll();
  const from = s.activeAudio;
  const to = s.audio.find((t) => sameLanguage(t.lang, lang));
  const record = { kind: 'audio', lang, from, to: to ?? null, changed: Boolean(to) && to.index !== from?.index,
    active: null, ok: false };
  outcome.switches.push(record);
  if (!to) {
    const known = s.audio.map((t) => t.lang).join(', ') || 'none';
    outcome.failure = `audio switch: no track in ${lang} (known: ${known})`;
    return false;
  }
  record.startTime = s.currentTime;
  await p.tab.evaluate((i) => window.adapter.switchAudio(i), to.index);
  if (!await p.until(`audio switch to ${lang}`, (t) => t.activeAudio?.index === to.index)) return false;
  return advanced(p, record, advance);
}

// After a switch took: playback must go on `advance` seconds, on it.
async function advanced(p, record, advance) {
  const key = record.kind === 'video' ? 'activeVideo' : 'activeAudio';
  record.activeAt = (await p.poll()).currentTime;
  record.advanced = await p.until(`${record.kind} switch: advancing ${advance} s`,
    (t) => t.currentTime >= record.activeAt + advance);
  const t = await p.poll();
  record.endTime = t.currentTime;
  record.videoSize = t.videoSize;
  record.active = t[key];
  record.ok = record.advanced && t[key]?.index === record.to.index;
  if (record.advanced && !record.ok) {
    outcome.failure = `${record.kind} switch: the player went to ${JSON.stringify(t[key])}`;
  }
  return record.ok;
}

// Another video rendition than the active one: of another height if any
// (so the switch shows in the decoded picture), else of another bandwidth.
function otherRendition(list, active) {
  const others = list.filter((r) => r.index !== active?.index);
  return others.find((r) => r.height && active?.height && r.height !== active.height)
    ?? others.find((r) => r.bandwidth !== active?.bandwidth)
    ?? others[0];
}

// ISO 639-2 codes (an mp4's mdhd, ffmpeg's MPDs) to ISO 639-1, which the
// players may turn them into: dash.js says "en" for lang="eng".
const ISO639_2 = {
  eng: 'en', fra: 'fr', fre: 'fr', deu: 'de', ger: 'de', spa: 'es', ita: 'it', por: 'pt',
  nld: 'nl', dut: 'nl', rus: 'ru', jpn: 'ja', zho: 'zh', chi: 'zh', kor: 'ko', ara: 'ar',
  swe: 'sv', pol: 'pl', tur: 'tr', hin: 'hi', ces: 'cs', cze: 'cs', fin: 'fi', dan: 'da',
  nor: 'no', ell: 'el', gre: 'el', heb: 'he', hun: 'hu', ukr: 'uk',
};

function sameLanguage(a, b) {
  const norm = (lang) => {
    const primary = String(lang ?? '').toLowerCase().split(/[-_]/)[0];
    return ISO639_2[primary] ?? primary;
  };
  return norm(a) !== '' && norm(a) === norm(b);
}

main();
