// Issue 17: a meeting in Firefox as in Chromium. An owner logs in with Firefox and starts a
// conference now; a guest in Firefox joins through the join page (link, password, name); both
// see and hear each other; chat both ways; the guest, made a speaker, shares the screen with
// Firefox's getDisplayMedia; the guest switches microphone and speaker in the devices panel;
// a dropped websocket comes back by itself with media; the guest leaves and comes back; the
// owner ends the meeting for everyone.
import { adminToken, assert, assertNoPageErrors, choose, clickButton, createAccount, expectHeard, expectMediaFlowing, expectVideoFrom, fill, inMeeting, openFirefox, rtpDetails, scenario, screenshot, step, tile, url, valueOf, waitFor, waitForButton, waitForText } from './lib.mjs';

const GUEST = 'Gus Guest';
const OWNER = 'Olivia Owner';
const PANEL = (name) => `aside[aria-label="${name}"]`;
const DIALOG = 'dialog[open]';

/** The labels of the tracks the page sends, by kind (what Firefox calls its devices). */
async function sending(page) {
  return page.evaluate(() =>
    Object.fromEntries(
      (window.__conclave?.session.publisher?.getSenders() ?? []).filter((s) => s.track).map((s) => [s.track.kind, { label: s.track.label, id: s.track.id, state: s.track.readyState }]),
    ),
  );
}

/** The preview is ready: microphone level moving, self view playing; then "Join now". */
async function joinFromPreview(page, name, shot) {
  await waitForText(page, 'Ready to join');
  await waitFor(page, () => Number(document.querySelector('[role=meter]')?.getAttribute('aria-valuenow')) > 0, undefined, { what: `${name}'s microphone level to move` });
  await waitFor(page, () => document.querySelector('video')?.videoWidth > 0, undefined, { what: `${name}'s self view` });
  if (shot) await screenshot(page, shot);
  await clickButton(page, 'Join now');
  await inMeeting(page, `${name}'s meeting`);
}

scenario('a meeting in Firefox, from the join page to the end', async () => {
  const admin = await adminToken();
  const owner = await createAccount(admin, { login: 'olivia', displayName: OWNER });
  const o = await openFirefox('owner');
  const g = await openFirefox('guest');

  await step('the owner logs in with Firefox and starts a conference now', async () => {
    await o.page.goto(url('/login'));
    await fill(o.page, 'Login name', owner.login);
    await fill(o.page, 'Password', owner.password);
    await clickButton(o.page, 'Log in');
    await waitForButton(o.page, 'Log out');
    await clickButton(o.page, 'Schedule', { within: 'nav[aria-label="Main"]' });
    await fill(o.page, 'Topic (optional)', 'Firefox review');
    await clickButton(o.page, 'Start conference now');
    await waitFor(o.page, () => /\/join\/\d+$/.test(location.pathname), undefined, { what: 'the join page of the new conference' });
    await joinFromPreview(o.page, 'the owner', '01-owner-preview');
  });

  const conference = await step('the meeting info gives meeting ID, password and invite link', async () => {
    await clickButton(o.page, 'Meeting info');
    const within = PANEL('Meeting info');
    const meetingId = await valueOf(o.page, 'Meeting ID', { within });
    const password = await valueOf(o.page, 'Password', { within });
    const link = await valueOf(o.page, 'Invite link', { within });
    assert.match(meetingId, /^\d{6,12}$/);
    assert.match(password, /^\d{4,16}$/);
    assert.equal(link, url(`/join/${meetingId}`));
    await clickButton(o.page, 'Close panel');
    return { meetingId, password, link };
  });

  await step('a guest in Firefox opens the link and types password and name', async () => {
    await g.page.goto(conference.link);
    assert.equal(await valueOf(g.page, 'Meeting ID'), conference.meetingId);
    await screenshot(g.page, '02-join-page');
    await fill(g.page, 'Meeting password', conference.password);
    await fill(g.page, 'Your name', GUEST);
    await clickButton(g.page, 'Continue');
    await joinFromPreview(g.page, 'the guest', '03-guest-preview');
  });

  await step('both names appear in both grids', async () => {
    for (const page of [o.page, g.page]) {
      await tile(page, OWNER);
      await tile(page, GUEST);
    }
  });

  await step("each side decodes the other's video and receives audio, growing", async () => {
    await expectVideoFrom(o.page, GUEST, { what: "the Firefox guest's camera on the owner's page" });
    await expectVideoFrom(g.page, OWNER, { what: "the Firefox owner's camera on the guest's page" });
    await expectMediaFlowing(o.page, { what: 'owner receives the guest' });
    await expectMediaFlowing(g.page, { what: 'guest receives the owner' });
    for (const [page, other] of [
      [o.page, GUEST],
      [g.page, OWNER],
    ])
      await waitFor(page, (name) => document.querySelector(`figure[aria-label^="${name}"] video`)?.videoWidth > 0, other, { what: `${other}'s video playing` });
    const details = await rtpDetails(o.page);
    console.log(`    owner receives: ${JSON.stringify(details.inbound.map((s) => `${s.kind} ${s.codec}`))}`);
    // Heard, not only received: the decoded audio is not silence.
    await expectHeard(o.page, 'the owner hears the guest');
    await expectHeard(g.page, 'the guest hears the owner');
    await screenshot(o.page, '04-owner-grid');
    await screenshot(g.page, '05-guest-grid');
  });

  await step('chat both ways', async () => {
    await clickButton(o.page, 'Chat');
    await waitFor(o.page, () => document.activeElement?.id === 'chat-text', undefined, { what: 'the focus in the message box' });
    await o.page.keyboard.type('Hello from Olivia in Firefox');
    await o.page.keyboard.press('Enter');
    await clickButton(g.page, 'Chat, 1 unread');
    await waitForText(g.page, 'Hello from Olivia in Firefox', { within: '[role=log]' });
    await fill(g.page, 'Message', 'Hi Olivia, Gus here, also in Firefox');
    await clickButton(g.page, 'Send');
    await waitForText(o.page, 'Hi Olivia, Gus here, also in Firefox', { within: '[role=log]' });
    await screenshot(o.page, '06-owner-chat');
    await o.page.keyboard.press('Escape');
    await waitFor(o.page, () => !document.querySelector('aside[aria-label="Chat"]'), undefined, { what: 'the chat to close' });
    await clickButton(g.page, 'Close panel');
  });

  await step("the guest, made a speaker, shares the screen with Firefox's getDisplayMedia; the owner sees it", async () => {
    await clickButton(o.page, 'Participants');
    await clickButton(o.page, `Make ${GUEST} a speaker`, { within: PANEL('Participants') });
    await waitForButton(o.page, `Make ${GUEST} a listener`, { within: PANEL('Participants') });
    await clickButton(o.page, 'Close panel');
    // A real click: Firefox gives getDisplayMedia only to a user gesture.
    await clickButton(g.page, 'Share screen');
    await waitForButton(g.page, 'Stop sharing', { timeout: 20_000 }).catch(async (error) => {
      const problem = await g.page.evaluate(() => document.querySelector('.toast')?.textContent ?? '');
      throw new Error(`${error.message}; the page says: ${problem}`);
    });
    const screen = await sending(g.page);
    assert.ok(screen.video, 'the guest sends video');
    const track = await tile(o.page, `${GUEST}'s screen`);
    assert.equal(typeof track, 'string', 'the screen tile names its track');
    await expectMediaFlowing(o.page, { what: 'the shared screen', video: (t) => t === track, audio: false });
    await waitFor(o.page, (t) => document.querySelector(`figure[data-track="${t}"] video`)?.videoWidth > 0, track, { what: "the screen on the owner's page" });
    await screenshot(o.page, '07-owner-sees-screen');
    await screenshot(g.page, '08-guest-sharing');
    await clickButton(g.page, 'Stop sharing');
    await tile(o.page, `${GUEST}'s screen`, { gone: true });
    // The SFU tells only the others; the sharer's own page drops its tile by itself.
    await tile(g.page, `${GUEST}'s screen`, { gone: true });
  });

  await step('the guest switches microphone and speaker in the devices panel; the owner keeps hearing them', async () => {
    await clickButton(g.page, 'Devices');
    const within = PANEL('Devices');
    // Firefox's mock audio backend: three microphones, two outputs (lib.mjs, FIREFOX_PREFS).
    const before = await sending(g.page);
    assert.equal(before.audio?.label, 'Fake Audio Input 2 (PREFERRED)', `the preferred microphone is used first (${JSON.stringify(before)})`);
    // The panel lists the devices once the browser has answered enumerateDevices: wait for it.
    await waitFor(
      g.page,
      (label) => document.querySelector('#meeting-microphone')?.selectedOptions[0]?.textContent === label,
      'Fake Audio Input 2 (PREFERRED)',
      { what: 'the panel to show the microphone in use' },
    );
    await choose(g.page, 'Microphone', 'Fake Audio Input 1', { within });
    await waitFor(g.page, () => window.__conclave.session.publisher.getSenders().some((s) => s.track?.kind === 'audio' && s.track.label === 'Fake Audio Input 1'), undefined, {
      what: 'the new microphone in the sender',
    });
    const after = await sending(g.page);
    assert.notEqual(after.audio.id, before.audio.id, 'a new microphone track replaced the old one');
    await expectMediaFlowing(o.page, { what: "the guest's audio after the switch" });
    await expectHeard(o.page, 'the owner hears the guest on the other microphone');
    // The speaker: Firefox has setSinkId (media.setsinkid.enabled) and lists outputs while the
    // microphone is in use.
    const chosen = await choose(g.page, 'Speaker', 'Fake Audio Output 2', { within });
    await waitFor(
      g.page,
      (id) => {
        const sinks = [...document.querySelectorAll('audio')];
        return sinks.length > 0 && sinks.every((a) => a.sinkId === id);
      },
      chosen,
      { what: 'the received audio on the chosen speaker' },
    );
    assert.equal(await g.page.evaluate(() => document.querySelector('#meeting-speaker-problem')?.textContent ?? null), null, 'no problem with the speaker');
    await expectMediaFlowing(g.page, { what: 'the guest still receives the owner on the other speaker' });
    await expectHeard(g.page, 'the guest hears the owner on the other speaker');
    await screenshot(g.page, '09-guest-devices');
    await g.page.keyboard.press('Escape');
    await waitFor(g.page, () => !document.querySelector('aside[aria-label="Devices"]'), undefined, { what: 'the devices panel to close' });
  });

  await step('a dropped websocket comes back by itself, with media both ways', async () => {
    const before = await g.page.evaluate(() => window.__conclave.session.connections);
    // Every phase the page goes through, and whether it told the person.
    await g.page.evaluate(() => {
      window.__phases = [];
      window.__told = false;
      window.__watch = setInterval(() => {
        const phase = window.__conclave?.state().phase;
        if (window.__phases.at(-1) !== phase) window.__phases.push(phase);
        if (document.querySelector('.meeting-status')?.textContent.includes('Reconnecting…')) window.__told = true;
      }, 20);
    });
    await g.page.evaluate(() => window.__conclave.session.dropConnection());
    await waitFor(g.page, () => window.__phases.includes('reconnecting') && window.__conclave?.state().phase === 'joined', undefined, {
      what: 'the guest to reconnect and be back in the meeting',
      timeout: 30_000,
    });
    const { phases, told, after } = await g.page.evaluate(() => {
      clearInterval(window.__watch);
      return { phases: window.__phases, told: window.__told, after: window.__conclave.session.connections };
    });
    assert.ok(told, `the page said "Reconnecting…" (phases ${phases.join(' → ')})`);
    assert.ok(after > before, `a new connection was opened (${before} → ${after})`);
    await expectMediaFlowing(g.page, { what: 'guest receives the owner again' });
    await expectMediaFlowing(o.page, { what: 'owner receives the guest again' });
    // The microphone chosen before the drop is the one sent again.
    assert.equal((await sending(g.page)).audio?.label, 'Fake Audio Input 1', 'the chosen microphone survives the reconnect');
    await screenshot(g.page, '10-guest-after-reconnect');
  });

  await step('a phone-sized Firefox: the grid collapses, panels cover it', async () => {
    await g.page.setViewport({ width: 390, height: 844 });
    await waitFor(g.page, () => document.documentElement.clientWidth <= 390, undefined, { what: 'the phone-sized viewport' });
    const overflow = await g.page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, 'nothing sticks out sideways');
    await screenshot(g.page, '11-guest-phone-grid');
    await clickButton(g.page, 'Chat');
    const box = await g.page.evaluate(() => {
      const r = document.querySelector('aside[aria-label="Chat"]').getBoundingClientRect();
      return { width: r.width, height: r.height };
    });
    assert.ok(box.width >= 380, `the chat covers the phone's width (${JSON.stringify(box)})`);
    await screenshot(g.page, '12-guest-phone-chat');
    await clickButton(g.page, 'Close panel');
    await g.page.setViewport({ width: 1280, height: 800 });
  });

  await step('the guest leaves, the owner sees them go; the guest joins again', async () => {
    await clickButton(g.page, 'Leave');
    await clickButton(g.page, 'Leave', { within: DIALOG });
    await waitForText(g.page, 'You left the meeting');
    await tile(o.page, GUEST, { gone: true });
    await screenshot(g.page, '13-guest-left');
    const left = await g.page.evaluate(() => ({ publisher: !!window.__conclave?.session.publisher, subscriber: !!window.__conclave?.session.subscriber }));
    assert.deepEqual(left, { publisher: false, subscriber: false }, 'the peer connections are closed');
    await clickButton(g.page, 'Join again');
    await joinFromPreview(g.page, 'the guest again');
    await tile(o.page, GUEST);
    await expectMediaFlowing(o.page, { what: 'owner receives the guest who came back' });
  });

  await step('the owner ends the meeting for everyone', async () => {
    await clickButton(o.page, 'End meeting');
    await clickButton(o.page, 'End meeting', { within: DIALOG });
    await waitForText(g.page, 'The conference has ended');
    await waitForText(o.page, 'The conference has ended');
    await screenshot(g.page, '14-conference-ended');
  });

  assertNoPageErrors([o, g]);
}, { deadlineSeconds: 420 });
