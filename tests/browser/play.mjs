// Plays an HLS master playlist in headless Chromium with hls.js and checks
// that playback really advances.
//
//   node play.mjs <master-url> [seconds]
//
// The page is served from another origin (a port of its own), so the
// stream's CORS headers are exercised too. Prints one JSON line; exits 0
// when `video.currentTime` reached the wanted seconds with no fatal error.

import http from 'node:http';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [masterUrl, wantArg] = process.argv.slice(2);
const want = Number(wantArg ?? 3);
const hlsJs = readFileSync(new URL('./node_modules/hls.js/dist/hls.min.js', import.meta.url));

const page = `<!doctype html><video id="v" muted playsinline></video>
<script src="/hls.js"></script>
<script>
  window.result = { fatal: null, errors: [], levels: 0 };
  const video = document.getElementById('v');
  const hls = new Hls({ debug: false });
  hls.on(Hls.Events.ERROR, (_, d) => {
    window.result.errors.push(d.details);
    if (d.fatal) window.result.fatal = d.type + ': ' + d.details;
  });
  hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { window.result.levels = d.levels.length; video.play(); });
  hls.loadSource(${JSON.stringify(masterUrl)});
  hls.attachMedia(video);
</script>`;

const server = http.createServer((req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript' });
    res.end(hlsJs);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page);
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
let outcome;
try {
  const tab = await browser.newPage();
  await tab.goto(`http://127.0.0.1:${server.address().port}/`);
  const deadline = Date.now() + 30_000;
  for (;;) {
    outcome = await tab.evaluate(() => ({
      ...window.result,
      currentTime: document.getElementById('v').currentTime,
      readyState: document.getElementById('v').readyState,
    }));
    if (outcome.fatal || outcome.currentTime >= want || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(outcome));
process.exit(!outcome.fatal && outcome.currentTime >= want ? 0 : 1);
