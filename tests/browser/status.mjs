// Headless-Chromium check of the admin status page, run by tests/status_page.rs.
//
//   node tests/browser/status.mjs http://127.0.0.1:PORT /path/to/screenshot.png ADMIN_TOKEN
//
// At 1280x900: logs in once (HTTP basic auth at /login, the token as the password; no 401 after it), checks that every node's action controls are inside the viewport, types into a deadline
// field and waits (polling) until the figures' rendered time changes, then checks the text is still
// there; drains node 02 with a deadline from its form and polls /status.json until 02 is draining with
// that deadline; without JavaScript, pauses the reload and puts 03 in maint. Saves a viewport screenshot. Exit 0 on success; a failure prints what went wrong, exit 1.
import { chromium } from 'playwright-core';
import { launch } from '../chromium.mjs';

const [base, screenshot, token] = process.argv.slice(2);
if (!base || !screenshot || !token) {
  console.error('usage: node status.mjs <admin base url> <screenshot path> <admin token>');
  process.exit(1);
}
const STEP_MS = 10_000;
const [WIDTH, HEIGHT] = [1280, 900];

function fail(message) {
  throw new Error(message);
}

async function backend(id) {
  const resp = await fetch(new URL('/status.json', base));
  if (!resp.ok) fail(`GET /status.json answered ${resp.status}`);
  const status = await resp.json();
  const found = status.pools?.[0]?.backends?.find((b) => b.id === id);
  if (!found) fail(`backend ${id} is missing from /status.json: ${JSON.stringify(status)}`);
  return found;
}

let browser;
try {
  browser = await launch(chromium);
  // The credentials stand for what the operator types into the browser's one basic auth prompt:
  // playwright answers a challenge with them, and only a challenge.
  const context = await browser.newContext({
    viewport: { width: WIDTH, height: HEIGHT },
    httpCredentials: { username: 'operator', password: token },
  });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const challenges = [];
  page.on('response', (r) => {
    if (r.status() === 401) challenges.push(`${r.request().method()} ${new URL(r.url()).pathname}`);
  });

  const resp = await page.goto(new URL('/login', base).href, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) fail(`GET /login answered ${resp ? resp.status() : 'nothing'}`);
  if (new URL(page.url()).pathname !== '/status') fail(`/login landed on ${page.url()}, not /status`);
  const header = await page.locator('header').innerText();
  if (!header.includes('Logged in (basic auth)')) fail(`the page does not show the login: ${header}`);

  const rows = page.locator('tr[data-backend]');
  const ids = await rows.evaluateAll((rs) => rs.map((r) => r.getAttribute('data-backend')));
  if (ids.length < 3) fail(`expected at least 3 node rows, saw ${ids}`);
  for (const id of ids) {
    const row = page.locator(`tr[data-backend="${id}"]`);
    const controls = [
      row.locator('input[name="deadline_s"]'),
      ...['drain', 'ready', 'maint'].map((a) => row.locator(`button[name="action"][value="${a}"]`)),
    ];
    for (const control of controls) {
      if ((await control.count()) !== 1) fail(`row ${id} lacks one of its action controls`);
      const box = await control.boundingBox();
      if (!box || box.x < 0 || box.y < 0 || box.x + box.width > WIDTH || box.y + box.height > HEIGHT) {
        fail(`an action control of ${id} is outside the ${WIDTH}x${HEIGHT} viewport: ${JSON.stringify(box)}`);
      }
    }
  }
  console.log(`the action controls of ${ids.join(', ')} are inside ${WIDTH}x${HEIGHT}`);

  // What is typed survives a refresh: wait for the rendered time to change, then read the field back.
  const typed = page.locator('tr[data-backend="01"] input[name="deadline_s"]');
  await typed.click();
  await typed.pressSequentially('1234567');
  const time = page.locator('header time');
  const before = await time.getAttribute('datetime');
  await page.waitForFunction(
    (b) => document.querySelector('header time').getAttribute('datetime') !== b,
    before,
    { timeout: STEP_MS, polling: 100 },
  );
  const kept = await typed.inputValue();
  if (kept !== '1234567') fail(`the refresh lost the typed text: "${kept}" (from ${before})`);
  console.log(`the figures refreshed (${before} -> ${await time.getAttribute('datetime')}), "${kept}" kept`);
  await typed.fill('');

  await page.screenshot({ path: screenshot });

  // Drain 02 with a deadline, from its form.
  const form = page.locator('tr[data-backend="02"]');
  await form.locator('input[name="deadline_s"]').fill('600');
  const isPost = (r) => r.method() === 'POST' && new URL(r.url()).pathname === '/backends/02/drain';
  const posted = page.waitForRequest(isPost);
  await form.locator('button[value="drain"]').click();
  const answer = await (await posted).response();
  console.log(`drain form posted, answered ${answer ? answer.status() : 'nothing yet'}`);
  await page.waitForURL((u) => u.pathname === '/status');

  const deadline = Date.now() + STEP_MS;
  let b = await backend('02');
  while (b.admin !== 'drain' || !(b.drain_left_s > 0)) {
    if (Date.now() > deadline) fail(`backend 02 is not draining with a deadline: ${JSON.stringify(b)}`);
    await new Promise((r) => setTimeout(r, 50));
    b = await backend('02');
  }
  if (b.drain_left_s > 600) fail(`02 drains for ${b.drain_left_s} s, more than the 600 typed`);
  // Without JavaScript the forms still work: paused (no reload), put 03 in maint from its form.
  const plain = await browser.newContext({
    viewport: { width: WIDTH, height: HEIGHT },
    javaScriptEnabled: false,
    httpCredentials: { username: 'operator', password: token },
  });
  const noJs = await plain.newPage();
  noJs.setDefaultTimeout(STEP_MS);
  await noJs.goto(new URL('/login', base).href, { waitUntil: 'load' });
  await noJs.locator('#pause').click();
  await noJs.waitForURL((u) => u.search === '?refresh=off');
  if ((await noJs.locator('meta[http-equiv="refresh"]').count()) !== 0) fail('the paused page still reloads');
  await noJs.locator('tr[data-backend="03"] button[value="maint"]').click();
  await noJs.waitForURL((u) => u.pathname === '/status' && u.search === '');
  const deadlineNoJs = Date.now() + STEP_MS;
  while ((await backend('03')).admin !== 'maint') {
    if (Date.now() > deadlineNoJs) fail('the maint form without JavaScript did not put 03 in maint');
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log('without JavaScript: paused, and the maint form put 03 in maint');

  // Chromium answered /login's challenge itself (the one prompt); any 401 the page saw after it would
  // be a second prompt.
  if (challenges.length !== 0) fail(`the token was asked for again: ${JSON.stringify(challenges)}`);
  console.log(`ok: one login, 02 draining with ${b.drain_left_s} s left; screenshot ${screenshot}`);
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`browser check failed: ${e && e.message ? e.message : e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
