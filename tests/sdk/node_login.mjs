// The official ForgeRock JavaScript SDK logging in through tether from Node, run by tests/sdk.rs:
//
//   node tests/sdk/node_login.mjs http://127.0.0.1:PORT BASE32SECRET [--hold]
//
// Node's fetch keeps no cookies, so nothing but the proxy's `auth_id` hint keeps the steps of the login on
// the node that holds them (SPEC 5.7). First a wrong password, which must end in the SDK's LoginFailure
// with tether's 401; then the `mfa` chain (demo / secret, then a TOTP code computed here from the secret)
// to LoginSuccess, printing `token <tokenId>`; then `SessionManager.logout()`, the token in the
// `iPlanetDirectoryPro` header. With `--hold` it waits for a line on stdin before logging out, so the
// caller can check the token while it is live. Exit 0 when all of it worked; otherwise the reason and 1.
import * as sdk from '@forgerock/javascript-sdk';
import { describeFailure, login, logout, walk } from './login.mjs';
import { totp } from './totp.mjs';

const [base, secret, ...flags] = process.argv.slice(2);
if (!base || !secret || flags.some((f) => f !== '--hold')) {
  console.error('usage: node node_login.mjs <proxy base url> <base32 TOTP secret> [--hold]');
  process.exit(1);
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

try {
  if (typeof window !== 'undefined' || typeof document !== 'undefined') fail('this must run without a DOM');
  const baseUrl = new URL('/am/', base).href;
  const log = (line) => console.log(line);

  // A wrong password first: the SDK must see tether's 401 error as a LoginFailure it can read, which it
  // does only when the error body is JSON with a JSON content type.
  const wrong = await walk(sdk, { baseUrl, tree: 'mfa', username: 'demo', password: 'wrong', log });
  const failure = wrong.step.type === sdk.StepType.LoginFailure ? describeFailure(wrong.step) : null;
  if (failure?.code !== 401 || failure.message !== 'Authentication Failed') {
    fail(`a wrong password did not end in LoginFailure 401 "Authentication Failed": ${wrong.step.type} ` +
      JSON.stringify(failure ?? wrong.step.payload));
  }
  console.log(`wrong password: LoginFailure ${failure.code} ${JSON.stringify(failure.message)}`);

  const { token, realm, stages } = await login(sdk, {
    baseUrl,
    tree: 'mfa',
    username: 'demo',
    password: 'secret',
    code: async () => totp(secret),
    log,
  });
  console.log(`login succeeded in realm ${realm} after stages ${stages.join(', ')}`);
  console.log(`token ${token}`);
  if (flags.includes('--hold')) await nextLine();
  const answer = await logout(sdk, { token });
  console.log(`logout: ${JSON.stringify(answer)}`);
  console.log('ok: the SDK logged in and out from Node');
  // The SDK's request timeouts are timers it never clears; do not wait for them.
  process.exit(0);
} catch (e) {
  console.error(`SDK login from Node failed: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
}

function fail(message) {
  throw new Error(message);
}
