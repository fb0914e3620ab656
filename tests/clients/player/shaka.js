// Plays a signed channel with Shaka Player in headless Chromium, the way a player team
// would: fetch the stream object from GET /api/v1/channels/{key}/stream with the signature
// computed as signed-channel-api's Node client does (crypto + axios), then hand Shaka its
// `url` and `clearkey.keys` unchanged. Prints one JSON line: what the player saw.
// Usage: node shaka.js <base-url> <channel-key> <seconds>   env SECRET (HMAC secret),
// WRONG_KEY=1 replaces every key with a wrong one for the same KID.
//    or: node shaka.js --src <manifest-url> <seconds> [mode]   plays a URL as given (a
// stream token's streamUrl), no keys; mode `top`: see shaka.html.
const path = require('path');
const http = require('http');
const fs = require('fs');
const crypto = require('crypto');
const axios = require('axios');
const { chromium } = require('playwright-core');

(async () => {
  const direct = process.argv[2] === '--src';
  const [secs, mode] = direct ? [Number(process.argv[4] || 8), process.argv[5] || '']
                              : [Number(process.argv[4] || 8), ''];
  let data;
  if (direct) {
    data = { url: process.argv[3], drm: null, clearkey: { keys: {} } };
  } else {
    const [baseUrl, channelKey] = [process.argv[2], process.argv[3]];
    const secretKey = process.env.SECRET;
    // The document's Node client, verbatim in substance.
    const apiPath = `/api/v1/channels/${channelKey}/stream`;
    const timestamp = Math.floor(Date.now() / 1000).toString();
    const message = `${timestamp}:${apiPath}`;
    const token = crypto.createHmac('sha256', secretKey).update(message).digest('hex');
    const res = await axios.get(`${baseUrl}${apiPath}`, {
      headers: { 'X-Signature-Token': token, 'X-Signature-Timestamp': timestamp },
    });
    data = res.data.data;
  }
  let keys = data.clearkey.keys;
  if (process.env.WRONG_KEY) {
    keys = Object.fromEntries(Object.keys(keys).map(k => [k, '00112233445566778899aabbccddeeff']));
  }
  const files = {
    '/shaka.html': [path.join(__dirname, 'shaka.html'), 'text/html'],
    '/shaka-player.compiled.js': [require.resolve('shaka-player/dist/shaka-player.compiled.js'), 'application/javascript'],
  };
  const server = http.createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404); return res.end(); }
    res.writeHead(200, { 'content-type': f[1] });
    fs.createReadStream(f[0]).pipe(res);
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  // ClearKey EME needs a secure context: http://localhost is one (127.0.0.1 too).
  const page_url = `http://localhost:${server.address().port}/shaka.html?src=${encodeURIComponent(data.url)}&keys=${encodeURIComponent(JSON.stringify(keys))}&mode=${encodeURIComponent(mode)}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(page_url);
    await page.waitForTimeout(secs * 1000);
    const r = await page.evaluate(() => ({ ...window.report,
      currentTime: document.getElementById('v').currentTime,
      paused: document.getElementById('v').paused,
      readyState: document.getElementById('v').readyState }));
    r.url = data.url;
    r.drm = data.drm;
    console.log(JSON.stringify(r));
  } finally {
    await browser.close();
    server.close();
  }
})().catch(e => { console.error(e); process.exit(1); });
