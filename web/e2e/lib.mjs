// Shared by the end-to-end scenarios: Debian's Chromium driven by playwright-core, Debian's
// Firefox ESR driven by puppeteer-core over WebDriver BiDi, the Conclave the Rust test started
// (CONCLAVE_URL), screenshots into CONCLAVE_ARTIFACTS.
// Each scenario is a plain Node script that exits non-zero on the first failed assertion.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export { assert };

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set: run the scenarios through \`cargo build -p conclave && cargo nextest run -p system-tests --test portal\`.`);
    process.exit(2);
  }
  return value;
}

export const BASE = required('CONCLAVE_URL');
export const ADMIN_PASSWORD = required('CONCLAVE_ADMIN_PASSWORD');
export const ARTIFACTS = process.env.CONCLAVE_ARTIFACTS ?? join(tmpdir(), 'conclave-e2e');
await mkdir(ARTIFACTS, { recursive: true });

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

/**
 * Firefox's preferences for a meeting without real devices, all of them Firefox's own:
 * - the camera is Firefox's fake one ("Fake Video Source", a moving test pattern) through
 *   `media.getusermedia.camera.fake.force`;
 * - microphones and speakers come from Firefox's mock audio backend
 *   (`media.cubeb.force_mock_context`): three microphones "Fake Audio Input 1", "2 (PREFERRED)"
 *   and "3" playing tones, and two outputs "Fake Audio Output 1 (PREFERRED)" and "2", so the
 *   devices panel has something to switch between and setSinkId somewhere to send sound.
 *   (`media.navigator.streams.fake` would give one "Default Audio Device" and no output at all,
 *   and it overrides both, so it stays off);
 * - no permission prompts, host candidates on loopback with their real addresses, autoplay.
 * The screen for getDisplayMedia is a real X display (see `xDisplay`): Firefox has no fake one.
 */
export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': false,
  'media.getusermedia.camera.fake.force': true,
  'media.cubeb.force_mock_context': true,
  'media.navigator.permission.disabled': true,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.setsinkid.enabled': true,
  'media.getdisplaymedia.enabled': true,
  // Quiet and quick: no first-run pages, updates or telemetry.
  'browser.shell.checkDefaultBrowser': false,
  'app.update.enabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
};

const opened = [];
/** Processes the scenario started besides the browsers (Xvfb), stopped when it ends. */
const helpers = [];
process.on('exit', () => {
  for (const child of helpers) child.kill();
});

let display;
/**
 * An X display for Firefox's getDisplayMedia: Firefox shares real screens only (its fake
 * media covers camera and microphone), and headless Firefox captures the screen of `$DISPLAY`.
 * Xvfb is started once per scenario, inside the scenario's network namespace, on a display
 * number it picks itself (`-displayfd`).
 */
export function xDisplay() {
  display ??= new Promise((resolve, reject) => {
    const bin = process.env.XVFB ?? '/usr/bin/Xvfb';
    if (!existsSync(bin)) {
      reject(new Error(`Xvfb is missing at ${bin}: \`apt-get install xvfb\` (Firefox shares only real screens, and headless Firefox captures the X display of $DISPLAY)`));
      return;
    }
    const child = spawn(bin, ['-displayfd', '3', '-screen', '0', '1280x800x24', '-nolisten', 'tcp'], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    helpers.push(child);
    let said = '';
    let errors = '';
    child.stderr.on('data', (chunk) => (errors += chunk));
    child.stdio[3].on('data', (chunk) => {
      said += chunk;
      if (said.includes('\n')) resolve(`:${said.trim()}`);
    });
    child.on('exit', (code) => reject(new Error(`Xvfb stopped (${code}): ${errors.slice(-500)}`)));
  });
  return display;
}

/**
 * A fresh browser profile (its own cookies and localStorage) with one page. `viewport`
 * defaults to a desktop; pass `{ width: 390, height: 844 }` for a phone.
 */
export async function openBrowser(name, { viewport = { width: 1280, height: 800 }, args = [] } = {}) {
  const profile = await mkdtemp(join(tmpdir(), `conclave-${name}-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [...CHROMIUM_ARGS, ...args],
    viewport,
    baseURL: BASE,
  });
  context.setDefaultTimeout(15_000);
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  const browser = {
    name,
    context,
    page,
    problems,
    async close() {
      await context.close();
      await rm(profile, { recursive: true, force: true });
    },
  };
  opened.push(browser);
  return browser;
}

/**
 * A fresh Firefox (its own profile) with one page, driven by puppeteer-core over WebDriver
 * BiDi. The object has the shape of `openBrowser`'s: `page` (a puppeteer Page: `goto` needs
 * a full URL, see `url`), `problems`, `close`. `prefs` adds or overrides Firefox preferences.
 */
export async function openFirefox(name, { viewport = { width: 1280, height: 800 }, prefs = {} } = {}) {
  const firefox = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX ?? '/usr/bin/firefox-esr',
    headless: true,
    // A loaded machine (two cores, several browsers) starts Firefox slowly.
    timeout: 90_000,
    protocolTimeout: 60_000,
    defaultViewport: viewport,
    env: { ...process.env, DISPLAY: await xDisplay() },
    extraPrefsFirefox: { ...FIREFOX_PREFS, ...prefs },
  });
  const page = (await firefox.pages())[0] ?? (await firefox.newPage());
  // `defaultViewport` sizes new pages only, not the one Firefox opens with.
  await page.setViewport(viewport);
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  const browser = {
    name,
    firefox,
    page,
    problems,
    async close() {
      await firefox.close();
    },
  };
  opened.push(browser);
  return browser;
}

/** The portal's address for a path (puppeteer has no base URL). */
export function url(path) {
  return new URL(path, BASE).href;
}

/** Saves a full-page screenshot as `<artifacts>/<name>.png`. */
export async function screenshot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

let stepNumber = 0;
/** Runs one named step and logs it, so a failure says where it happened. */
export async function step(name, body) {
  stepNumber += 1;
  const started = Date.now();
  process.stdout.write(`  step ${stepNumber}: ${name} … `);
  try {
    const result = await body();
    console.log(`ok (${Date.now() - started} ms)`);
    return result;
  } catch (error) {
    console.log('FAILED');
    for (const browser of opened) {
      await screenshot(browser.page, `FAILED-${stepNumber}-${browser.name}`).catch(() => {});
      if (browser.problems.length) console.log(`  ${browser.name}: ${browser.problems.join('\n    ')}`);
    }
    throw error;
  }
}

/** Runs a scenario with a deadline; exits 1 on failure, closing every browser. */
export async function scenario(name, body, { deadlineSeconds = 240 } = {}) {
  console.log(`scenario: ${name}`);
  const timer = setTimeout(() => {
    console.error(`scenario "${name}" did not finish within ${deadlineSeconds} s`);
    process.exit(1);
  }, deadlineSeconds * 1000);
  let failed = false;
  try {
    await body();
  } catch (error) {
    failed = true;
    console.error(error);
  } finally {
    for (const browser of opened) await browser.close().catch(() => {});
    clearTimeout(timer);
  }
  process.exit(failed ? 1 : 0);
}

/** Calls the API from Node (for setting up accounts), logged in with a bearer token. */
export async function apiCall(method, path, body, token) {
  const response = await fetch(`${BASE}/api/v1${path}`, {
    method,
    headers: {
      // As the portal marks its requests: the API refuses a state-changing one that has neither
      // this header nor a JSON body.
      'x-conclave-request': '1',
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}

/** A bearer token of the `admin` account. */
export async function adminToken() {
  const answer = await apiCall('POST', '/auth/login', { login: 'admin', password: ADMIN_PASSWORD });
  assert.equal(answer.status, 200, `admin login: ${JSON.stringify(answer.body)}`);
  return answer.body.sessionToken;
}

/** Creates an account through the API and returns its login and password. */
export async function createAccount(token, { login, displayName, level = 'audience', email, timeZone = 'Europe/Berlin' }) {
  const password = `pw-${login}-secret-1`;
  const answer = await apiCall('POST', '/users', { login, displayName, email: email ?? `${login}@example.org`, level, password, timeZone }, token);
  assert.equal(answer.status, 201, `create ${login}: ${JSON.stringify(answer.body)}`);
  return { login, password, displayName, id: answer.body.id };
}

/** Logs in through the portal's form. */
export async function logIn(page, login, password) {
  await page.goto('/login');
  await page.getByLabel('Login name').fill(login);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('button', { name: 'Log out' }).waitFor();
}

/** Whether `page` is playwright's (Chromium) rather than puppeteer's (Firefox). */
function isPlaywright(page) {
  return typeof page.getByRole === 'function';
}

/** Like `waitFor`, but returns the handle (an element when `probe` returns one). */
async function waitForHandle(page, probe, arg, { timeout = 20_000, what = 'condition' } = {}) {
  const waiting = isPlaywright(page)
    ? page.waitForFunction(probe, arg, { timeout, polling: 200 })
    : page.waitForFunction(probe, { timeout, polling: 200 }, arg);
  return waiting.catch((error) => {
    throw new Error(`timed out waiting for ${what}: ${error.message}`);
  });
}

/** Polls `probe` (in the page) until it returns a truthy value; returns that value. */
export async function waitFor(page, probe, arg, options = {}) {
  const handle = await waitForHandle(page, probe, arg, options);
  return handle.jsonValue();
}

// ---- helpers that drive either browser by what people see ---------------------------------
// Playwright's getByRole/getByLabel have no puppeteer counterpart under WebDriver BiDi
// (`::-p-aria` does not resolve there), so these find elements in the page by their
// accessible name: a <label>'s text (its `.control`), a button's aria-label or text.

/**
 * In the page: the visible, enabled button (or link) named `name` (its aria-label, else its
 * text) inside `within` (a selector); with `gone`, true once there is none.
 */
function findButton({ name, within, gone = false }) {
  const root = within ? document.querySelector(within) : document;
  // The name exactly, else a name followed by more words ("Participants 3" for "Participants").
  let found = null;
  let prefixed = null;
  for (const el of root?.querySelectorAll('button, a, [role=button]') ?? []) {
    if (el.getClientRects().length === 0 || el.disabled) continue;
    const label = el.getAttribute('aria-label') ?? el.textContent.replace(/\s+/g, ' ').trim();
    if (label === name) {
      found = el;
      break;
    }
    if (!prefixed && label.startsWith(`${name} `)) prefixed = el;
  }
  found ??= prefixed;
  return gone ? !found : found;
}

/**
 * In the page: the form control whose <label> reads `label` (exactly), inside `within`; with
 * `option`, the value of the control's option that reads `option` (null while not listed).
 */
function findControl({ label, within, option }) {
  const root = within ? document.querySelector(within) : document;
  for (const el of root?.querySelectorAll('label') ?? []) {
    if (el.textContent.replace(/\s+/g, ' ').trim() !== label || !el.control) continue;
    if (option === undefined) return el.control;
    return [...(el.control.options ?? [])].find((o) => o.textContent.trim() === option)?.value ?? null;
  }
  return null;
}

/** Clicks the button named `name` (aria-label, else its text) with a real mouse click. */
export async function clickButton(page, name, { within, timeout } = {}) {
  const handle = await waitForHandle(page, findButton, { name, within }, { timeout, what: `the button "${name}"${within ? ` in ${within}` : ''}` });
  await handle.asElement().click();
}

/** Waits for the button named `name`; `{ gone: true }` waits until there is none. */
export async function waitForButton(page, name, { within, timeout, gone = false } = {}) {
  const what = `the button "${name}"${gone ? ' to go' : ''}`;
  await waitForHandle(page, findButton, { name, within, gone }, { timeout, what });
}

/** The form control labelled `label` (an element handle). */
export async function control(page, label, { within, timeout } = {}) {
  const handle = await waitForHandle(page, findControl, { label, within }, { timeout, what: `the field "${label}"` });
  return handle.asElement();
}

/** Types `value` into the field labelled `label`, replacing what it held. */
export async function fill(page, label, value, options = {}) {
  const field = await control(page, label, options);
  await field.evaluate((el) => {
    el.focus();
    el.select?.();
  });
  if (value === '') await page.keyboard.press('Backspace');
  else await page.keyboard.type(value);
}

/** The current value of the field labelled `label`. */
export async function valueOf(page, label, options = {}) {
  return (await control(page, label, options)).evaluate((el) => el.value);
}

/** Chooses the option reading `option` in the select labelled `label` (waits for it to be listed). */
export async function choose(page, label, option, options = {}) {
  const value = await waitFor(page, findControl, { label, within: options.within, option }, { timeout: options.timeout, what: `"${option}" listed in ${label}` });
  const select = await control(page, label, options);
  if (isPlaywright(page)) await select.selectOption(value);
  else await select.select(value);
  return value;
}

/** Waits until the page (or `within`) shows `text`; `{ gone: true }` until it does not. */
export async function waitForText(page, text, { within, timeout, gone = false } = {}) {
  await waitFor(
    page,
    ({ text, within, gone }) => {
      const root = within ? document.querySelector(within) : document.body;
      const shown = !!root && root.innerText.includes(text);
      return gone ? !shown : shown;
    },
    { text, within, gone },
    { timeout, what: `"${text}"${gone ? ' to go' : ''}${within ? ` in ${within}` : ''}` },
  );
}

/** Waits for the video tile (a <figure>) whose label starts with `name`; returns its track. */
export async function tile(page, name, { gone = false, timeout } = {}) {
  return waitFor(
    page,
    ({ name, gone }) => {
      const figure = [...document.querySelectorAll('figure.tile')].find((f) => f.getAttribute('aria-label').startsWith(name));
      if (gone) return !figure;
      return figure ? (figure.dataset.track ?? '') || true : null;
    },
    { name, gone },
    { timeout, what: `the tile "${name}"${gone ? ' to go' : ''}` },
  );
}

/**
 * What one page receives, per inbound RTP stream of its subscriber connection:
 * `{kind, track (the room's track ID), framesDecoded, packetsReceived, bytesReceived}`.
 * Reads `window.__conclave`, which the meeting page exposes for these tests.
 */
export async function inboundMedia(page) {
  // A connection closed by a reconnect while its statistics are asked for may never answer
  // (Firefox): such a sample counts as empty.
  return page.evaluate(async () =>
    window.__conclave ? Promise.race([window.__conclave.session.inbound(), new Promise((resolve) => setTimeout(() => resolve([]), 3000))]) : [],
  );
}

/**
 * What the page's connections carry, per RTP stream, with the codec of each:
 * `{inbound: [{kind, ssrc, codec, fmtp, payloadType, framesDecoded, packetsReceived,
 *   totalAudioEnergy}], outbound: [{kind, ssrc, codec, fmtp, payloadType, framesEncoded,
 *   packetsSent}], receivers: [codecs the
 *   receivers were set up for (RTCRtpReceiver.getParameters)]}`.
 */
export async function rtpDetails(page) {
  return page.evaluate(async () => {
    const session = window.__conclave?.session;
    const out = { inbound: [], outbound: [], receivers: [] };
    if (!session) return out;
    const within = (promise) => Promise.race([promise, new Promise((resolve) => setTimeout(() => resolve(null), 3000))]);
    for (const [direction, pc] of [
      ['inbound', session.subscriber],
      ['outbound', session.publisher],
    ]) {
      if (!pc || pc.signalingState === 'closed') continue;
      const stats = await within(pc.getStats());
      if (!stats) continue;
      const codecs = new Map();
      stats.forEach((s) => s.type === 'codec' && codecs.set(s.id, s));
      stats.forEach((s) => {
        if (s.type !== `${direction}-rtp`) return;
        const codec = codecs.get(s.codecId);
        out[direction].push({
          kind: s.kind,
          ssrc: s.ssrc,
          codec: codec?.mimeType ?? null,
          fmtp: codec?.sdpFmtpLine ?? null,
          payloadType: codec?.payloadType ?? null,
          ...(direction === 'inbound'
            ? { framesDecoded: s.framesDecoded ?? 0, packetsReceived: s.packetsReceived ?? 0, totalAudioEnergy: s.totalAudioEnergy ?? 0 }
            : { framesEncoded: s.framesEncoded ?? 0, packetsSent: s.packetsSent ?? 0 }),
        });
      });
      if (direction === 'inbound')
        for (const transceiver of pc.getTransceivers())
          if (transceiver.currentDirection && transceiver.currentDirection !== 'stopped' && transceiver.currentDirection !== 'inactive')
            out.receivers.push({
              mid: transceiver.mid,
              kind: transceiver.receiver.track.kind,
              codecs: transceiver.receiver.getParameters().codecs.map((c) => `${c.mimeType}/${c.payloadType}${c.sdpFmtpLine ? ` ${c.sdpFmtpLine}` : ''}`),
            });
    }
    return out;
  });
}

/**
 * The RTCP sender reports the page's subscriber connection has received, per kind: `{audio,
 * video}`, each the number of `remote-outbound-rtp` streams (what a sender report describes)
 * with a remote timestamp. Browsers synchronise audio and video with them.
 */
export async function senderReports(page) {
  return page.evaluate(async () => {
    const pc = window.__conclave?.session?.subscriber;
    const out = { audio: 0, video: 0 };
    if (!pc || pc.signalingState === 'closed') return out;
    const stats = await Promise.race([pc.getStats(), new Promise((resolve) => setTimeout(() => resolve(null), 3000))]);
    stats?.forEach((s) => {
      const kind = s.kind ?? s.mediaType;
      if (s.type === 'remote-outbound-rtp' && s.remoteTimestamp > 0 && kind in out) out[kind] += 1;
    });
    return out;
  });
}

/**
 * The SFU's end of each of the page's connections, as the browser chose it: `[{connection:
 * 'publisher' | 'subscriber', protocol, address, port}]` from the selected candidate pair
 * (Chromium names it on the transport, Firefox marks it `selected`).
 */
export async function selectedRemoteCandidates(page) {
  return page.evaluate(async () => {
    const session = window.__conclave?.session;
    const out = [];
    if (!session) return out;
    for (const [connection, pc] of [
      ['publisher', session.publisher],
      ['subscriber', session.subscriber],
    ]) {
      if (!pc || pc.signalingState === 'closed') continue;
      const stats = await Promise.race([pc.getStats(), new Promise((resolve) => setTimeout(() => resolve(null), 3000))]);
      if (!stats) continue;
      const byId = new Map();
      stats.forEach((s) => byId.set(s.id, s));
      const chosen = new Set();
      stats.forEach((s) => {
        if (s.type === 'transport' && s.selectedCandidatePairId) chosen.add(s.selectedCandidatePairId);
        if (s.type === 'candidate-pair' && s.selected) chosen.add(s.id);
      });
      for (const id of chosen) {
        const remote = byId.get(byId.get(id)?.remoteCandidateId);
        if (remote) out.push({ connection, protocol: remote.protocol, address: remote.address ?? remote.ip, port: remote.port });
      }
    }
    return out;
  });
}

/**
 * Waits until the page decodes video and receives audio, then until both grow again, so
 * media is flowing now, not only once. `video` picks the video streams to watch (by room
 * track ID); by default any. Returns the last sample.
 */
export async function expectMediaFlowing(page, { what = 'media', video = () => true, audio = true, timeout = 30_000 } = {}) {
  const deadline = Date.now() + timeout;
  const sum = (stats) => ({
    frames: stats.filter((s) => s.kind === 'video' && video(s.track)).reduce((n, s) => n + s.framesDecoded, 0),
    packets: stats.filter((s) => s.kind === 'audio').reduce((n, s) => n + s.packetsReceived, 0),
  });
  let first;
  let last;
  let streams = [];
  while (Date.now() < deadline) {
    streams = await inboundMedia(page);
    last = sum(streams);
    if (!first && last.frames > 0 && (!audio || last.packets > 0)) first = last;
    else if (first && last.frames > first.frames + 5 && (!audio || last.packets > first.packets + 5)) return last;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const each = streams.map((s) => `${s.kind} ${s.track ?? '(unmapped)'}: ${s.packetsReceived} packets, ${s.framesDecoded} frames`);
  throw new Error(
    `${what}: media did not keep flowing (first ${JSON.stringify(first)}, last ${JSON.stringify(last)}; received streams: ${each.join('; ') || 'none'}). ` +
      'When audio flows and no video arrives, the SFU did not take or forward the publisher’s video: see server.log in the artifacts.',
  );
}

/** Waits until the page decodes received audio as sound: totalAudioEnergy grows. */
export async function expectHeard(page, what = 'the others') {
  const energy = async () => (await rtpDetails(page)).inbound.filter((s) => s.kind === 'audio').reduce((n, s) => n + s.totalAudioEnergy, 0);
  const deadline = Date.now() + 20_000;
  const first = await energy();
  let last = first;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250));
    last = await energy();
    if (last > first) return;
  }
  throw new Error(`${what}: the received audio does not decode as sound (totalAudioEnergy ${first} → ${last})`);
}

/**
 * Waits until `page` receives the camera of `name` (the room announces the track and video
 * packets of it arrive), so that a publisher whose video the SFU does not take or forward is
 * told as such rather than as "no frames".
 */
export async function expectVideoFrom(page, name, { what = `${name}'s camera`, timeout = 20_000 } = {}) {
  const deadline = Date.now() + timeout;
  let track;
  let streams = [];
  while (Date.now() < deadline) {
    track = await page.evaluate((who) => [...document.querySelectorAll('figure.tile:not(.screen)')].find((f) => f.getAttribute('aria-label').startsWith(who))?.dataset.track ?? null, name);
    streams = await inboundMedia(page);
    if (track && streams.some((s) => s.kind === 'video' && s.track === track && s.packetsReceived > 0)) return track;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const audio = streams.filter((s) => s.kind === 'audio' && s.packetsReceived > 0).length;
  throw new Error(
    `${what} never arrives: ${track ? `the room announced it (track ${track}) but no video packets of it come` : 'the room never announced it (no track on the tile)'}, ` +
      `while ${audio} audio stream(s) do (received: ${JSON.stringify(streams)}). The SFU did not take or forward this publisher's video; ` +
      'if server.log says "Failed to get track_remote: {…} for RtpPacket", the SFU answered the publisher with codecs it does not send ' +
      '(Firefox sends VP8 as payload type 120 with RTX 124, Chromium as 96 with 97).',
  );
}

/** Waits until the meeting page is admitted to the room. */
export async function inMeeting(page, what = 'the meeting') {
  await waitFor(page, () => window.__conclave?.state().phase === 'joined', undefined, { what: `${what} to be joined`, timeout: 30_000 });
}

/** Joins through the join page as a guest (meeting ID from the link, password, name), in either browser. */
export async function joinAsGuest(page, conference, name) {
  await page.goto(url(`/join/${conference.meetingId}`));
  await fill(page, 'Meeting password', conference.password);
  await fill(page, 'Your name', name);
  await clickButton(page, 'Continue');
  await waitForText(page, 'Ready to join');
  await waitFor(page, () => document.querySelector('video')?.videoWidth > 0, undefined, { what: `${name}'s self view` });
  await clickButton(page, 'Join now');
  await inMeeting(page, `${name}'s meeting`);
}

/** Asserts that none of `browsers` had a page error or console error (a failed resource load, such as an expected 401, is none). */
export function assertNoPageErrors(browsers) {
  for (const b of browsers)
    assert.deepEqual(
      b.problems.filter((p) => !/Failed to load resource/.test(p)),
      [],
      `${b.name} had page errors`,
    );
}
