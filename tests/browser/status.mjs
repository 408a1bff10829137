// Headless-Chromium check of the admin status page, run by tests/status_page.rs.
//
//   node tests/browser/status.mjs http://127.0.0.1:PORT /path/to/screenshot.png
//
// Loads /status as a real browser renders it, checks that nodes 01 and 02 show as up and ready, saves a
// full-page screenshot, clicks node 02's drain button (a plain HTML form, the page has no JavaScript), then
// polls /status.json until 02 is draining. Works whether the form POST answers 303 -> /status or 200 JSON.
// Exit 0 on success; any failure prints what went wrong and exits 1.
import { chromium } from 'playwright-core';
import { launch } from '../chromium.mjs';

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error('usage: node status.mjs <admin base url> <screenshot path>');
  process.exit(1);
}
const STEP_MS = 10_000;

function fail(message) {
  throw new Error(message);
}

async function backendAdmin(id) {
  const resp = await fetch(new URL('/status.json', base));
  if (!resp.ok) fail(`GET /status.json answered ${resp.status}`);
  const status = await resp.json();
  const backend = status.pools?.[0]?.backends?.find((b) => b.id === id);
  if (!backend) fail(`backend ${id} is missing from /status.json: ${JSON.stringify(status)}`);
  return backend.admin;
}

let browser;
try {
  browser = await launch(chromium);
  // A fresh context: no cookies, no cache. JavaScript stays enabled so a script on the page would run;
  // the page test asserts it has none.
  const page = await browser.newPage({ viewport: { width: 1440, height: 360 } });
  page.setDefaultTimeout(STEP_MS);

  const resp = await page.goto(new URL('/status', base).href, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) fail(`GET /status answered ${resp ? resp.status() : 'nothing'}`);
  if ((await page.locator('script').count()) !== 0) fail('the status page contains a <script> element');

  for (const id of ['01', '02']) {
    const row = page.locator(`tr[data-backend="${id}"]`);
    if ((await row.count()) !== 1) fail(`no single row for backend ${id}`);
    const text = (await row.innerText()).replace(/\s+/g, ' ');
    for (const word of [id, 'up', 'ready']) {
      if (!text.split(' ').includes(word)) fail(`row ${id} does not show "${word}": ${text}`);
    }
    const health = await row.getAttribute('data-health');
    const admin = await row.getAttribute('data-admin');
    if (health !== 'up' || admin !== 'ready') fail(`row ${id} is ${health}/${admin}, expected up/ready`);
  }

  await page.screenshot({ path: screenshot, fullPage: true });

  // The page reloads itself every 2 s, which may swallow a click landing mid-reload: click until the
  // form's POST is seen. Its answer (303 to /status, or JSON) does not matter; /status.json decides.
  const drain = page.locator('tr[data-backend="02"] button[name="action"][value="drain"]');
  if ((await drain.count()) !== 1) fail('backend 02 has no single drain button');
  let posted = null;
  for (let attempt = 1; !posted; attempt++) {
    const isPost = (r) => r.method() === 'POST' && new URL(r.url()).pathname === '/backends/02/drain';
    const seen = page.waitForRequest(isPost, { timeout: 3_000 }).catch(() => null);
    await drain.click();
    posted = await seen;
    if (!posted && attempt >= 3) fail('clicking the drain button of 02 sent no POST to /backends/02/drain');
  }
  const answer = await posted.response();
  console.log(`drain form posted, answered ${answer ? answer.status() : 'nothing yet'}`);

  const deadline = Date.now() + STEP_MS;
  let admin = await backendAdmin('02');
  while (admin !== 'drain') {
    if (Date.now() > deadline) fail(`backend 02 is still "${admin}" 10 s after clicking drain`);
    await new Promise((r) => setTimeout(r, 50));
    admin = await backendAdmin('02');
  }
  console.log(`ok: status page rendered (screenshot ${screenshot}); drain button moved 02 to drain`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`browser check failed: ${e && e.message ? e.message : e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
