// The login an app built on the ForgeRock JavaScript SDK runs, written once for both runs of tests/sdk.rs:
// node_login.mjs imports it in Node, browser_login.mjs loads it into a Chromium page. It only talks to the
// SDK's public API (Config, FRAuth, SessionManager), so whatever tether answers goes through the SDK's own
// parsing, and uses no Node or DOM API itself.

const MAX_STEPS = 5;

/**
 * Configures the SDK for `baseUrl` (…/am/) and walks `tree` with `FRAuth.next()`: a step with a
 * NameCallback gets `username` and, in its PasswordCallback, `password`; a step with a PasswordCallback
 * alone is the TOTP step and gets `await code()`. Returns the SDK's last step (`LoginSuccess` or
 * `LoginFailure`) and the stages passed; throws on anything else. `log(line)` reports progress.
 */
export async function walk(sdk, { baseUrl, tree, username, password, code, log = () => {} }) {
  const { Config, FRAuth, StepType, CallbackType } = sdk;
  Config.set({ serverConfig: { baseUrl, timeout: 5000 }, realmPath: 'root', tree });
  const stages = [];
  let step = await FRAuth.next();
  for (let n = 1; n <= MAX_STEPS; n++) {
    if (step.type === StepType.LoginSuccess || step.type === StepType.LoginFailure) return { step, stages };
    if (step.type !== StepType.Step) throw new Error(`unexpected step type ${step.type}`);
    const stage = step.getStage();
    stages.push(stage);
    const names = step.getCallbacksOfType(CallbackType.NameCallback);
    const passwords = step.getCallbacksOfType(CallbackType.PasswordCallback);
    const kinds = step.callbacks.map((cb) => cb.getType());
    log(`step ${n}: stage ${stage}, header ${JSON.stringify(step.getHeader())}, callbacks ${kinds.join(',')}`);
    if (names.length + passwords.length !== step.callbacks.length || passwords.length !== 1) {
      throw new Error(`step ${n} has callbacks this login cannot answer: ${kinds.join(',')}`);
    }
    if (names.length === 1) {
      names[0].setName(username);
      passwords[0].setPassword(password);
    } else {
      passwords[0].setPassword(await code());
    }
    step = await FRAuth.next(step);
  }
  throw new Error(`no LoginSuccess or LoginFailure after ${MAX_STEPS} steps (stages ${stages.join(', ')})`);
}

/** What the SDK makes of a failure: the fields an app shows or branches on. */
export function describeFailure(step) {
  return {
    code: step.getCode(),
    reason: step.getReason(),
    message: step.getMessage(),
    detail: step.getDetail(),
    payload: step.payload,
  };
}

/** `walk` that must end in `LoginSuccess`: `{ token, realm, successUrl, stages }`, else it throws. */
export async function login(sdk, options) {
  const { step, stages } = await walk(sdk, options);
  if (step.type !== sdk.StepType.LoginSuccess) {
    throw new Error(`${step.type} after stages [${stages.join(', ')}]: ${JSON.stringify(describeFailure(step))}`);
  }
  const token = step.getSessionToken();
  if (!token) throw new Error(`LoginSuccess without a session token: ${JSON.stringify(step.payload)}`);
  return { token, realm: step.getRealm(), successUrl: step.getSuccessUrl(), stages };
}

/**
 * `SessionManager.logout()`, the SDK's own call (POST `sessions/?_action=logout`). A browser sends the
 * session cookie; a client without cookies passes `token`, which a request middleware (the SDK's hook
 * for changing its requests) puts in the `iPlanetDirectoryPro` header. Returns the answer's JSON and
 * throws unless it is a JSON `{"result":"Successfully logged out"}`.
 */
export async function logout(sdk, { token } = {}) {
  const { SessionManager } = sdk;
  const middleware = token
    ? [
        (req, action, next) => {
          if (action.type === 'LOGOUT') req.init.headers.set('iPlanetDirectoryPro', token);
          next();
        },
      ]
    : undefined;
  const resp = await SessionManager.logout(middleware ? { middleware } : undefined);
  const type = resp.headers.get('content-type') || '';
  const text = await resp.text();
  if (!type.startsWith('application/json')) {
    throw new Error(`logout answered ${resp.status} with content type ${JSON.stringify(type)}: ${text}`);
  }
  const body = JSON.parse(text);
  if (resp.status !== 200 || body.result !== 'Successfully logged out') {
    throw new Error(`logout answered ${resp.status} ${text}`);
  }
  return body;
}
