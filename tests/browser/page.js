// The page side of play.mjs: starts the player named in window.config on a
// muted <video> and gives all three players one shape, which play.mjs
// drives through page.evaluate:
//
//   window.adapter.switchVideo(index), window.adapter.switchAudio(index)
//   window.state() -> { fatal, errors, video, audio, activeVideo,
//                       activeAudio, currentTime, readyState, ended, videoSize,
//                       text }
//
// `text` is the <video>'s text tracks as the browser has them:
// { kind, label, language, mode, cues: [{ start, end, text }] } (the cues
// it holds, and every cue a player added to it before). With
// `subtitles` (a language) in window.config, each player is told to show
// the subtitles in that language.
//
// `index` is a position in the `video` / `audio` lists that state() gives,
// which are in the player's own order. Each list entry is
//   video: { index, id, width, height, bandwidth, codecs }
//   audio: { index, id, lang, name, codecs }
// "active" means what the player says it is playing, not what it last
// requested: each adapter waits for the player's switched/rendered event
// where the player has one.

/* global Hls, dashjs, shaka */
'use strict';

const video = document.getElementById('v');
const result = { fatal: null, errors: [] };
const fail = (m) => { if (!result.fatal) result.fatal = String(m).slice(0, 300); };
const note = (m) => { if (result.errors.length < 20) result.errors.push(String(m).slice(0, 300)); };
const play = () => video.play().catch((e) => note(`play(): ${e.message}`));
video.addEventListener('error', () =>
  fail(`video element: ${video.error ? `${video.error.code} ${video.error.message}` : '?'}`));

function hlsAdapter(url) {
  const hls = new Hls({
    debug: false,
    ...(license
      ? { emeEnabled: true, drmSystems: { 'org.w3.clearkey': { licenseUrl: license } } }
      : {}),
    ...(subtitles ? { subtitlePreference: { lang: subtitles } } : {}),
  });
  if (subtitles) {
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => {
      const i = hls.subtitleTracks.findIndex((t) => sameLanguage(t.lang, subtitles));
      if (i >= 0 && hls.subtitleTrack !== i) hls.subtitleTrack = i;
      hls.subtitleDisplay = true;
    });
  }
  hls.on(Hls.Events.ERROR, (_, d) => {
    note(`${d.type}: ${d.details}`);
    if (d.fatal) fail(`${d.type}: ${d.details}`);
  });
  hls.on(Hls.Events.MANIFEST_PARSED, play);
  let audioPending = false;
  hls.on(Hls.Events.AUDIO_TRACK_SWITCHED, () => { audioPending = false; });
  hls.loadSource(url);
  hls.attachMedia(video);
  return {
    info: () => ({
      video: hls.levels.map((l, i) => ({ index: i, id: l.uri, width: l.width, height: l.height,
        bandwidth: l.bitrate, codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(',') || null })),
      audio: hls.audioTracks.map((t, i) => ({ index: i, id: t.url, lang: t.lang ?? null,
        name: t.name ?? null, codecs: t.audioCodec ?? null })),
      // currentLevel is the level of the fragment being played.
      activeVideo: hls.currentLevel,
      activeAudio: audioPending ? null : hls.audioTrack,
    }),
    // Setting currentLevel is a manual, immediate switch: adaptation stops
    // and the buffer ahead is flushed.
    switchVideo: (i) => { hls.currentLevel = i; },
    // Selecting the track already playing raises no AUDIO_TRACK_SWITCHED.
    switchAudio: (i) => {
      if (i !== hls.audioTrack) { audioPending = true; hls.audioTrack = i; }
    },
  };
}

function dashjsAdapter(url) {
  const p = dashjs.MediaPlayer().create();
  p.updateSettings({ debug: { logLevel: dashjs.Debug.LOG_LEVEL_WARNING } });
  const ev = dashjs.MediaPlayer.events;
  // dash.js raises ERROR only for what it gives up on (manifest, codec,
  // MediaSource, a segment after its retries).
  p.on(ev.ERROR, (e) => fail(`dashjs: ${e.error ? `${e.error.code} ${e.error.message}` : JSON.stringify(e)}`));
  p.on(ev.PLAYBACK_ERROR, (e) => fail(`dashjs playback: ${e.error && e.error.message}`));
  // What is being played, not what is being fetched.
  let renderedVideo = null;
  let renderedAudio = null;
  let audioPending = false;
  p.on(ev.QUALITY_CHANGE_RENDERED, (e) => {
    if (e.mediaType === 'video' && e.newRepresentation) renderedVideo = e.newRepresentation.id;
  });
  p.on(ev.TRACK_CHANGE_RENDERED, (e) => {
    if (e.mediaType === 'audio') { renderedAudio = e.newMediaInfo; audioPending = false; }
  });
  if (license) p.setProtectionData({ 'org.w3.clearkey': { serverURL: license } });
  if (clearKeys) {
    const b64url = (hex) => btoa(String.fromCharCode(...hex.match(/../g).map((h) => parseInt(h, 16))))
      .replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    const keys = Object.fromEntries(Object.entries(clearKeys).map(([k, v]) => [b64url(k), b64url(v)]));
    p.setProtectionData({ 'org.w3.clearkey': { clearkeys: keys } });
  }
  // The source comes after the settings, so they hold from the manifest on.
  p.initialize(video, null, true);
  if (subtitles) {
    // Subtitles are turned on as a viewer does, once the media can play:
    // the text arrives while the stream is already set up (and seeked to
    // its start). dash.js hands the TextTrack only the cues near
    // currentTime, refreshed every bufferPruningInterval (10 s by
    // default): once a second, a short stream shows them all as they play.
    p.updateSettings({ streaming: { text: { defaultEnabled: false }, buffer: { bufferPruningInterval: 1 } } });
    let textTracks = [];
    p.on(ev.TEXT_TRACKS_ADDED, (e) => { textTracks = e.tracks; });
    p.on(ev.PLAYBACK_METADATA_LOADED, () => {
      const i = textTracks.findIndex((t) => sameLanguage(t.lang, subtitles));
      if (i >= 0) p.setTextTrack(i);
    });
  }
  p.attachSource(url);
  const reps = () => p.getRepresentationsByType('video');
  const tracks = () => p.getTracksFor('audio');
  // MediaInfo.codec is a whole MIME type: audio/mp4;codecs="mp4a.40.2".
  const codecsOf = (mime) => (/codecs="?([^";]*)/.exec(mime || '') || [null, mime])[1];
  const same = (a, b) => a && b && (a === b || (a.id === b.id && a.lang === b.lang && a.index === b.index));
  return {
    info: () => {
      const videos = reps().map((r, i) => ({ index: i, id: r.id, width: r.width, height: r.height,
        bandwidth: r.bandwidth, codecs: r.codecs }));
      const audios = tracks().map((t, i) => ({ index: i, id: t.id, lang: t.lang,
        name: (t.labels && t.labels[0] && t.labels[0].text) || null, codecs: codecsOf(t.codec) }));
      const current = p.getCurrentRepresentationForType('video');
      const videoId = renderedVideo ?? (current && current.id);
      const audioNow = audioPending ? null : (renderedAudio ?? p.getCurrentTrackFor('audio'));
      const v = videos.find((r) => r.id === videoId);
      return {
        video: videos,
        audio: audios,
        activeVideo: v ? v.index : null,
        activeAudio: tracks().findIndex((t) => same(t, audioNow)),
      };
    },
    switchVideo: (i) => {
      p.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
      p.setRepresentationForTypeById('video', reps()[i].id, true);
    },
    // Selecting the track already playing raises no TRACK_CHANGE_RENDERED.
    switchAudio: (i) => {
      if (same(tracks()[i], p.getCurrentTrackFor('audio'))) return;
      audioPending = true;
      p.setCurrentTrack(tracks()[i]);
    },
  };
}

function shakaAdapter(url) {
  shaka.polyfill.installAll();
  const p = new shaka.Player();
  const { Code, Severity } = shaka.util.Error;
  const describe = (e) => `shaka ${Object.keys(Code).find((k) => Code[k] === e.code) ?? ''} (${e.code})`
    + (e.data && e.data.length ? ` ${JSON.stringify(e.data).slice(0, 200)}` : '');
  p.addEventListener('error', (e) => {
    if (e.detail.severity === Severity.CRITICAL) fail(describe(e.detail)); else note(describe(e.detail));
  });
  if (clearKeys) p.configure({ drm: { clearKeys } });
  if (license) p.configure({ drm: { servers: { 'org.w3.clearkey': license } } });
  // Preferred before loading, the text streams from the first segment on.
  if (subtitles) {
    p.configure({ preferredText: [{ language: subtitles, role: '', format: '', forced: false }] });
  }
  const showSubtitles = () => {
    const track = p.getTextTracks().find((t) => sameLanguage(t.language, subtitles));
    if (track) p.selectTextTrack(track);
  };
  p.attach(video).then(() => p.load(url)).then(() => { if (subtitles) showSubtitles(); })
    .then(play).catch((e) => fail(describe(e)));
  const indexOfActive = (list) => list.findIndex((t) => t.active);
  // Shaka's `active` is the track being streamed; its VideoTrack has no id,
  // and the lists keep their order.
  return {
    info: () => {
      const vt = p.getVideoTracks();
      const at = p.getAudioTracks();
      return {
        video: vt.map((t, i) => ({ index: i, id: t.label ?? null, width: t.width, height: t.height,
          bandwidth: t.bandwidth, codecs: t.codecs })),
        // originalLanguage is the manifest's ("fra"), language Shaka's own ("fr").
        audio: at.map((t, i) => ({ index: i, id: t.id ?? null, lang: t.originalLanguage || t.language,
          name: t.label, codecs: t.codecs })),
        activeVideo: indexOfActive(vt),
        activeAudio: indexOfActive(at),
      };
    },
    switchVideo: (i) => {
      p.configure('abr.enabled', false);
      p.selectVideoTrack(p.getVideoTracks()[i], true);
    },
    switchAudio: (i) => { p.selectAudioTrack(p.getAudioTracks()[i]); },
  };
}

const { player, url, clearKeys, license, subtitles } = window.config;

// Every cue a player adds to a text track, kept: players drop cues behind
// the playhead (Shaka does), and on a loaded machine a poll can come only
// after that. The cues are still the player's, at the times it gave them.
const addedCues = new WeakMap();
const addCue = TextTrack.prototype.addCue;
TextTrack.prototype.addCue = function (cue) {
  const list = addedCues.get(this) ?? [];
  if (list.length < 1000) list.push({ start: cue.startTime, end: cue.endTime, text: cue.text });
  addedCues.set(this, list);
  return addCue.call(this, cue);
};

// Whether two language tags name one language: "en" is "en-US" and "eng".
function sameLanguage(a, b) {
  const norm = (lang) => {
    const primary = String(lang ?? '').toLowerCase().split(/[-_]/)[0];
    return { eng: 'en', deu: 'de', ger: 'de', fra: 'fr', fre: 'fr', spa: 'es' }[primary] ?? primary;
  };
  return norm(a) !== '' && norm(a) === norm(b);
}
window.adapter = { hls: hlsAdapter, dashjs: dashjsAdapter, shaka: shakaAdapter }[player](url);

window.state = () => {
  let info = { video: [], audio: [], activeVideo: null, activeAudio: null };
  try { info = window.adapter.info(); } catch (e) { note(`info: ${e.message}`); }
  const errors = result.errors.splice(0);
  return {
    fatal: result.fatal,
    errors,
    video: info.video,
    audio: info.audio,
    activeVideo: info.video.find((r) => r.index === info.activeVideo) ?? null,
    activeAudio: info.audio.find((t) => t.index === info.activeAudio) ?? null,
    currentTime: video.currentTime,
    readyState: video.readyState,
    ended: video.ended,
    videoSize: `${video.videoWidth}x${video.videoHeight}`,
    // When each subtitle request started and ended, in ms since the page
    // loaded: a player that fetched its text late shows it here.
    pageMs: performance.now(),
    textRequests: performance.getEntriesByType('resource')
      .filter((e) => /subtitles|\.vtt/.test(e.name))
      .map((e) => `${e.name.split('/').pop()} ${Math.round(e.startTime)}-${Math.round(e.responseEnd)}`),
    text: [...video.textTracks].map((t) => ({
      kind: t.kind,
      label: t.label,
      language: t.language,
      mode: t.mode,
      cues: [
        ...[...(t.cues ?? [])].map((c) => ({ start: c.startTime, end: c.endTime, text: c.text })),
        ...(addedCues.get(t) ?? []),
      ],
    })),
  };
};
