// What the browser tests share: an icewatch serving its page (`demo`,
// `replay` or `monitor`), Debian's chromium driven by playwright-core, and
// a way to wait.
// Not a test itself: its name matches none of `node --test`'s patterns.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from '../web/node_modules/playwright-core/index.mjs';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const binary = process.env.ICEWATCH_BIN || join(root, 'target', 'debug', 'icewatch');
const chromiumPath = '/usr/bin/chromium';
export const WAIT = 60_000; // generous: CI machines are small and busy
let started = 0; // icewatch processes started, for their state folders

/**
 * Starts `icewatch ARGS... --listen 127.0.0.1:0` and resolves with the
 * process and the URL of its page, the first URL it prints. Its
 * `XDG_STATE_HOME` is a folder of its own under target/tmp/, so that
 * `monitor`'s default history never lands in the user's.
 */
export function startIcewatch(args) {
  assert.ok(existsSync(binary), `no ${binary}: run \`cargo build\` first`);
  const stateHome = join(root, 'target', 'tmp', `e2e-state-${process.pid}-${started++}`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(binary, [...args, '--listen', '127.0.0.1:0'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, XDG_STATE_HOME: stateHome },
    });
    let output = '';
    const timer = setTimeout(() => reject(new Error(`icewatch ${args[0]} printed no URL in ${WAIT} ms:\n${output}`)), WAIT);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const url = output.match(/http:\/\/\S+/);
      if (url) { clearTimeout(timer); resolvePromise({ child, url: url[0], output: () => output }); }
    });
    child.stderr.on('data', (chunk) => { output += chunk; });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`icewatch ${args[0]} exited (${code}):\n${output}`)); });
    child.on('error', reject);
  });
}

export function stopIcewatch(server) {
  if (!server) return;
  server.child.removeAllListeners('exit');
  server.child.kill('SIGTERM');
}

/** A headless chromium with a fresh profile; `close()` also removes the profile. */
export async function launchBrowser(options = {}) {
  assert.ok(existsSync(chromiumPath), `no ${chromiumPath}: install Debian's chromium (apt-get install chromium)`);
  const profile = mkdtempSync(join(tmpdir(), 'icewatch-e2e-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run'],
    viewport: { width: 1440, height: 960 },
    colorScheme: 'light',
    ...options,
  });
  const close = context.close.bind(context);
  context.close = async () => { await close(); rmSync(profile, { recursive: true, force: true }); };
  return context;
}

/** Polls `check` until it returns a truthy value, which it resolves with; fails with `what`. */
export async function eventually(what, check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Opens `url` in `browser` and waits until the page is live; script and
 * console errors are pushed to `errors`. Resolves with the page.
 */
export async function openPage(browser, url, errors) {
  const page = browser.pages()[0] ?? await browser.newPage();
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push('console: ' + m.text()); });
  await page.goto(url);
  await page.waitForSelector('[data-testid=connection][data-state=live]', { timeout: WAIT });
  return page;
}
