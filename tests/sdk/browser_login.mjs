// The official ForgeRock JavaScript SDK logging in through tether in headless Chromium, run by tests/sdk.rs:
//
//   node tests/sdk/browser_login.mjs http://127.0.0.1:PORT BASE32SECRET [--hold]
//
// The page must share its origin with the AM calls (the browser then keeps tether's `amlbcookie` and the
// HttpOnly session cookie, as for a real app served next to AM), but tether serves no pages. So
// `page.route()` answers `<proxy>/sdk-test.html` and `<proxy>/__sdk__/…` itself: the page, and the SDK's
// ES modules from tests/sdk/node_modules (the 4.x package ships no single-file browser bundle; an import
// map points its bare imports at the dependencies' browser builds). Every `/am/` request goes to the real
// proxy. The page runs login.mjs, the same FRAuth.next() loop as the Node run; TOTP codes come from Node
// through an exposed function. Prints `token <tokenId>`, then logs out with `SessionManager.logout()`, the
// browser sending the session cookie; `--hold` waits for a line on stdin before that. Exit 0 when all of
// it worked; otherwise the reason and 1.
import { access, readFile } from 'node:fs/promises';
import { dirname, extname, isAbsolute, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { launch } from '../chromium.mjs';
import { totp } from './totp.mjs';

const [base, secret, ...flags] = process.argv.slice(2);
if (!base || !secret || flags.some((f) => f !== '--hold')) {
  console.error('usage: node browser_login.mjs <proxy base url> <base32 TOTP secret> [--hold]');
  process.exit(1);
}
const HERE = dirname(fileURLToPath(import.meta.url));
const STEP_MS = 10_000;
const origin = new URL(base).origin;
const PAGE = `${origin}/sdk-test.html`;
const FILES = `${origin}/__sdk__/`;

function fail(message) {
  throw new Error(message);
}

/** Resolves at the next line on stdin, or at its end. */
function nextLine() {
  return new Promise((resolve) => {
    let seen = '';
    const done = () => {
      process.stdin.off('data', onData).off('end', done).pause();
      resolve();
    };
    const onData = (chunk) => {
      seen += chunk;
      if (seen.includes('\n')) done();
    };
    process.stdin.setEncoding('utf8').on('data', onData).on('end', done).resume();
  });
}

/** The browser `import` target of a package `exports` entry: the first matching condition, in its order. */
function pick(target) {
  if (typeof target === 'string') return target;
  if (!target || typeof target !== 'object') return undefined;
  for (const [key, value] of Object.entries(target)) {
    if (['browser', 'import', 'module', 'default'].includes(key)) {
      const found = pick(value);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * An import map for the SDK and everything it depends on, as installed: each package (and each subpath it
 * exports) to the ES module a browser import resolves to, under `FILES`. A dependency found where Node
 * would find it for its importer but not at the top (npm nests a second version when ranges conflict)
 * goes into a scope for that importer's files.
 */
async function importMap() {
  const imports = {};
  const scopes = {};
  const seen = new Set();
  // Node's lookup from package directory `from`: its node_modules, then each parent's, up to tests/sdk.
  const locate = async (name, from) => {
    for (let dir = from; ; dir = posix.dirname(dir)) {
      const candidate = posix.join(dir, 'node_modules', name);
      if (await access(join(HERE, candidate, 'package.json')).then(() => true, () => false)) return candidate;
      if (dir === '.') fail(`${name} is not installed (needed by ${from})`);
    }
  };
  const add = async (name, from) => {
    const dir = await locate(name, from);
    const manifest = JSON.parse(await readFile(join(HERE, dir, 'package.json'), 'utf8'));
    const map = dir === posix.join('node_modules', name) ? imports : (scopes[`${FILES}${from}/`] ??= {});
    const { exports } = manifest;
    const entries =
      exports && typeof exports === 'object' && Object.keys(exports).some((k) => k.startsWith('.'))
        ? Object.entries(exports)
        : [['.', exports]];
    for (const [subpath, target] of entries) {
      if (subpath.includes('*')) continue;
      const file = pick(target) ?? (subpath === '.' ? manifest.module ?? manifest.main : undefined);
      if (file && /\.m?js$/.test(file)) map[name + subpath.slice(1)] = `${FILES}${posix.join(dir, file)}`;
    }
    if (!map[name]) fail(`no browser ES module entry for ${name} in ${dir}`);
    if (seen.has(dir)) return;
    seen.add(dir);
    for (const dep of Object.keys(manifest.dependencies ?? {})) await add(dep, dir);
  };
  await add('@forgerock/javascript-sdk', '.');
  return { imports, scopes };
}

/** The synthetic page: an import map for the SDK's bare imports, then a module that loads it. */
async function pageHtml() {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>tether SDK login</title><link rel="icon" href="data:,">
<script type="importmap">${JSON.stringify(await importMap())}</script>
<script>
  // Bundlers replace process.env.NODE_ENV in the dependencies' ES builds; without one, define it.
  window.process = { env: { NODE_ENV: 'production' } };
</script>
<script type="module">
  import * as sdk from '@forgerock/javascript-sdk';
  import { login, logout } from '${FILES}login.mjs';
  window.sdkLogin = (options) =>
    login(sdk, { ...options, code: () => window.totpNow(), log: (line) => window.report(line) });
  window.sdkLogout = () => logout(sdk);
  window.sdkReady = true;
</script>
</head><body>SDK login</body></html>`;
}

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.cjs': 'text/javascript' };

let browser;
try {
  browser = await launch(chromium);
  // A fresh context: no cookies yet.
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_MS);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console: ${m.text()}`);
  });
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  const amCalls = [];
  page.on('response', (r) => {
    const url = new URL(r.url());
    if (url.pathname.startsWith('/am/')) amCalls.push(`${r.request().method()} ${url.pathname}${url.search} ${r.status()}`);
  });

  const html = await pageHtml();
  await page.route(PAGE, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.route(`${FILES}**`, async (route) => {
    const path = decodeURIComponent(new URL(route.request().url()).pathname.slice('/__sdk__/'.length));
    const file = join(HERE, path);
    const inside = relative(HERE, file);
    if (inside.startsWith('..') || isAbsolute(inside)) return route.fulfill({ status: 403, body: 'outside tests/sdk' });
    try {
      const body = await readFile(file);
      return route.fulfill({ status: 200, contentType: TYPES[extname(file)] || 'application/octet-stream', body });
    } catch {
      return route.fulfill({ status: 404, body: `no ${path}` });
    }
  });
  await page.exposeFunction('totpNow', () => totp(secret));
  await page.exposeFunction('report', (line) => console.log(line));

  const resp = await page.goto(PAGE, { waitUntil: 'load' });
  if (!resp || resp.status() !== 200) fail(`the synthetic page answered ${resp ? resp.status() : 'nothing'}`);
  await page
    .waitForFunction(() => window.sdkReady === true, null, { timeout: STEP_MS })
    .catch(() => fail(`the SDK did not load in the page: ${problems.join('; ') || 'no error reported'}`));

  const result = await page
    .evaluate(
      (baseUrl) =>
        window
          .sdkLogin({ baseUrl, tree: 'mfa', username: 'demo', password: 'secret' })
          .then((r) => ({ ok: r }), (e) => ({ error: String(e && e.message ? e.message : e) })),
      new URL('/am/', base).href,
    );
  if (result.error) fail(`${result.error}\nAM calls: ${amCalls.join('; ')}\n${problems.join('\n')}`);
  const { token, realm, stages } = result.ok;
  console.log(`login succeeded in realm ${realm} after stages ${stages.join(', ')}`);
  console.log(`AM calls: ${amCalls.join('; ')}`);

  // The browser keeps what tether set: the affinity cookie and the HttpOnly session cookie.
  const cookies = await context.cookies(origin);
  const cookie = (name) => cookies.find((c) => c.name === name);
  if (cookie('iPlanetDirectoryPro')?.value !== token) {
    fail(`the browser holds no iPlanetDirectoryPro cookie with the token: ${JSON.stringify(cookies)}`);
  }
  if (!cookie('iPlanetDirectoryPro').httpOnly) fail('the session cookie is not HttpOnly');
  if (!cookie('amlbcookie')) fail(`the browser holds no amlbcookie: ${JSON.stringify(cookies)}`);
  console.log(`cookies: amlbcookie=${cookie('amlbcookie').value}, iPlanetDirectoryPro (HttpOnly)`);
  console.log(`token ${token}`);

  if (flags.includes('--hold')) await nextLine();
  const answer = await page.evaluate(() =>
    window.sdkLogout().then((r) => ({ ok: r }), (e) => ({ error: String(e && e.message ? e.message : e) })),
  );
  if (answer.error) fail(`logout: ${answer.error}`);
  console.log(`logout: ${JSON.stringify(answer.ok)}`);
  if (problems.length) fail(`the page reported problems: ${problems.join('; ')}`);
  console.log('ok: the SDK logged in and out in Chromium');
  await browser.close();
  process.exit(0);
} catch (e) {
  console.error(`SDK login in Chromium failed: ${e && e.message ? e.message : e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
