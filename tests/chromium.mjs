// Launching the system Chromium headless, shared by tests/browser and tests/sdk. Each caller passes its
// own playwright-core `chromium`, so every package resolves its own pinned copy.
//
// The flags keep Chromium off the network except for the page under test: without the
// background-networking ones it keeps trying hosts this machine cannot reach.

export const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

export function launch(chromium) {
  return chromium.launch({
    executablePath,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    timeout: 30_000,
  });
}
