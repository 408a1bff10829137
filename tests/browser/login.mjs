// Headless-Chromium check of the login page, run by tests/login_page.rs.
//
//   node tests/browser/login.mjs http://127.0.0.1:PORT /path/to/screenshot.png
//
// Reads one TOTP code per line on stdin when it needs one (the test computes them), prints
//   TOKEN <value of the session cookie>   once signed in, then waits for a line "logout" on stdin;
//   DONE                                   after clicking "Sign out".
// Everything goes through the proxy at the base URL; the browser keeps the nodes' cookies, which is what
// keeps each step on the node holding the login. Exit 0 on success; any failure prints why and exits 1.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';
import { launch } from '../chromium.mjs';

const [base, screenshot] = process.argv.slice(2);
if (!base || !screenshot) {
  console.error('usage: node login.mjs <proxy base url> <screenshot path>');
  process.exit(1);
}
const STEP_MS = 10_000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function nextLine(what) {
  const { value, done } = await lines.next();
  if (done) throw new Error(`stdin closed while waiting for ${what}`);
  return value.trim();
}
function fail(message) {
  throw new Error(message);
}

let browser;
try {
  browser = await launch(chromium);
  const context = await browser.newContext({ viewport: { width: 800, height: 560 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  page.on('console', (m) => {
    // The initial "who am I" call is a 401 by design; anything else (a CSP violation above all) is a bug.
    if (m.type() === 'error' && !/401/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));

  // Every authenticate POST passes through unchanged, except one: to see the page handle AM's "Session
  // has timed out" (401, errorCode 110), one step is sent with the authId of a step already answered, a
  // replay the node itself refuses with 110. And every first step (no authId) is held back a little, as
  // a slow network would: after a failure the page must not invite typing into a form it is about to
  // replace, or what is typed is lost.
  let lastAuthId = null;
  let replay = null;
  await page.route('**/json/realms/root/authenticate*', async (route) => {
    const body = route.request().postDataJSON() || {};
    if (replay && body.authId) {
      body.authId = replay;
      replay = null;
      return route.continue({ postData: JSON.stringify(body) });
    }
    if (body.authId) lastAuthId = body.authId;
    else await new Promise((resolve) => setTimeout(resolve, 400));
    return route.continue();
  });

  const resp = await page.goto(new URL('/am/XUI/?authIndexValue=mfa', base).href, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) fail(`GET /am/XUI/ answered ${resp ? resp.status() : 'nothing'}`);

  async function credentials(password) {
    await page.locator('form#step input[type="text"][autocomplete="username"]').fill('demo');
    await page.locator('form#step input[type="password"]').fill(password);
    await page.locator('form#step button[type="submit"]').click();
  }

  // A wrong password: AM's message, and a fresh first step to try again.
  await credentials('wrong');
  await page.locator('#error:not([hidden])').waitFor();
  const error = (await page.locator('#error').innerText()).trim();
  console.log(`wrong password shows: ${error}`);
  if (error !== 'Authentication Failed') fail(`the wrong password showed "${error}"`);

  // Name and password, then the one-time code in a numeric text field.
  await credentials('secret');
  const code = page.locator('form#step[data-stage="TOTP1"] input[inputmode="numeric"]');
  await code.waitFor();

  // The code step sent with the name-and-password step's authId: 110, and the page starts over.
  replay = lastAuthId;
  await code.fill('000000');
  await page.locator('form#step button[type="submit"]').click();
  await page.locator('form#step[data-stage="DataStore1"]').waitFor();
  const timedOut = (await page.locator('#error').innerText()).trim();
  console.log(`a replayed step shows: ${timedOut}`);
  if (!/timed out/.test(timedOut)) fail(`the replayed step showed "${timedOut}"`);

  await credentials('secret');
  await code.waitFor();
  if ((await code.getAttribute('type')) !== 'text') fail('the one-time code field is not a text input');
  if ((await page.locator('#error').isVisible())) fail('the error stayed after a step that passed');
  console.log('NEED_CODE');
  await code.fill(await nextLine('a TOTP code'));
  await page.locator('form#step button[type="submit"]').click();

  await page.locator('#done:not([hidden])').waitFor();
  const user = (await page.locator('#user').innerText()).trim();
  if (user !== 'demo') fail(`signed in as "${user}", expected demo`);
  const cookies = await context.cookies(base);
  const session = cookies.find((c) => c.name === 'iPlanetDirectoryPro');
  if (!session) fail(`no session cookie after login: ${JSON.stringify(cookies)}`);
  if (!session.httpOnly) fail('the session cookie is readable by scripts');
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) fail(problems.join('; '));
  console.log(`TOKEN ${session.value}`);

  if ((await nextLine('"logout"')) !== 'logout') fail('expected "logout"');
  await page.locator('#logout').click();
  await page.locator('#note:not([hidden])').waitFor();
  await page.locator('form#step:not([hidden])').waitFor();
  const after = (await context.cookies(base)).map((c) => `${c.name}=${c.value}`);
  if (after.some((c) => c.startsWith('iPlanetDirectoryPro='))) fail(`the session cookie survived logout: ${after}`);
  if (problems.length) fail(problems.join('; '));
  console.log('DONE');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`browser check failed: ${e && e.message ? e.message : e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
