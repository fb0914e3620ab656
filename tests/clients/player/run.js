// Plays an HLS URL with hls.js in headless Chromium for a few seconds and prints what the
// player saw as one JSON line: fragments and keys loaded, errors, playback position.
// Usage: node run.js <stream-url> <seconds> [ll]   (ll: hls.js lowLatencyMode, reports latency)
// Env: SPKI_PINS (trust these certificate keys), HOST_RULES (Chromium --host-resolver-rules).
const path = require('path');
const http = require('http');
const fs = require('fs');
const { chromium } = require('playwright-core');

(async () => {
  const [src, secs, mode] = [process.argv[2], Number(process.argv[3] || 8), process.argv[4] || ''];
  // Serve the page and hls.js from an ephemeral loopback port (a page origin other than
  // sluice's, so CORS is exercised as in production).
  const files = {
    '/index.html': [path.join(__dirname, 'index.html'), 'text/html'],
    '/hls.min.js': [require.resolve('hls.js/dist/hls.min.js'), 'application/javascript'],
  };
  const server = http.createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { 'content-type': f[1] });
    fs.createReadStream(f[0]).pipe(res);
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  const page_url = `http://127.0.0.1:${server.address().port}/index.html?src=${encodeURIComponent(src)}&mode=${mode}`;
  const args = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'];
  // A test CA's edge certificate: trust exactly its key (base64 SHA-256 of the SPKI).
  if (process.env.SPKI_PINS) { args.push(`--ignore-certificate-errors-spki-list=${process.env.SPKI_PINS}`); }
  if (process.env.HOST_RULES) { args.push(`--host-resolver-rules=${process.env.HOST_RULES}`); }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args,
  });
  try {
    const page = await browser.newPage();
    await page.goto(page_url);
    await page.waitForTimeout(secs * 1000);
    const r = await page.evaluate(() => ({ ...window.report,
      currentTime: document.getElementById('v').currentTime,
      readyState: document.getElementById('v').readyState,
      // The HTTP versions the media requests went over (h2, http/1.1).
      protocols: [...new Set(performance.getEntriesByType('resource')
        .filter(e => !e.name.includes('hls.min.js')).map(e => e.nextHopProtocol))] }));
    console.log(JSON.stringify(r));
  } finally {
    await browser.close();
    server.close();
  }
})().catch(e => { console.error(e); process.exit(1); });
