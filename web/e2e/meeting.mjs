// The main scenario: an owner logs in and starts a conference, a guest joins through
// the link; both see and hear each other; chat both ways and privately; the owner makes the
// guest a speaker, the guest shares the screen, the owner excludes the guest.
import { adminToken, assert, assertNoPageErrors, createAccount, expectMediaFlowing, inMeeting, logIn, openBrowser, scenario, screenshot, step, waitFor } from './lib.mjs';

const GUEST = 'Gus Guest';

scenario('a meeting in the browser, from login to exclusion', async () => {
  const admin = await adminToken();
  const owner = await createAccount(admin, { login: 'olivia', displayName: 'Olivia Owner' });
  const o = await openBrowser('owner');
  const g = await openBrowser('guest');

  await step('the owner logs in and starts a conference now', async () => {
    await logIn(o.page, owner.login, owner.password);
    await o.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedule' }).click();
    await o.page.getByLabel('Topic (optional)').fill('Design review');
    await o.page.getByRole('button', { name: 'Start conference now' }).click();
    await o.page.waitForURL(/\/join\/\d+$/);
  });

  await step('the owner sees the preview: camera, level meter, device choice', async () => {
    await o.page.getByRole('heading', { name: /Ready to join/ }).waitFor();
    await o.page.getByLabel('Microphone', { exact: true }).waitFor();
    await o.page.getByLabel('Camera', { exact: true }).waitFor();
    await waitFor(o.page, () => Number(document.querySelector('[role=meter]')?.getAttribute('aria-valuenow')) > 0, undefined, { what: 'the microphone level to move' });
    await waitFor(o.page, () => document.querySelector('video')?.videoWidth > 0, undefined, { what: 'the self view' });
    await screenshot(o.page, '02-owner-preview');
    await o.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(o.page, "the owner's meeting");
  });

  const conference = await step('the meeting info has meeting ID, password and invite link at hand', async () => {
    await o.page.getByRole('button', { name: 'Meeting info' }).click();
    const info = o.page.getByRole('complementary', { name: 'Meeting info' });
    const meetingId = await info.getByRole('textbox', { name: 'Meeting ID' }).inputValue();
    const password = await info.getByRole('textbox', { name: 'Password' }).inputValue();
    const link = await info.getByRole('textbox', { name: 'Invite link' }).inputValue();
    assert.match(meetingId, /^\d{6,12}$/);
    assert.match(password, /^\d{4,16}$/);
    assert.equal(link, `${new URL(o.page.url()).origin}/join/${meetingId}`);
    await info.getByRole('button', { name: 'Copy the invite link' }).click();
    await info.getByText(/^(Copied\.|Selected: press Ctrl\+C to copy\.)$/).waitFor();
    await screenshot(o.page, '03-meeting-info');
    await o.page.getByRole('button', { name: 'Close panel' }).click();
    return { meetingId, password, link };
  });

  await step('a guest opens the invite link and types password and name', async () => {
    await g.page.goto(conference.link);
    await g.page.getByLabel('Meeting password').waitFor();
    assert.equal(await g.page.getByLabel('Meeting ID').inputValue(), conference.meetingId);
    await screenshot(g.page, '01-join-page');
    await g.page.getByLabel('Meeting password').fill(conference.password);
    await g.page.getByLabel('Your name').fill(GUEST);
    await g.page.getByRole('button', { name: 'Continue' }).click();
    await g.page.getByRole('heading', { name: /Ready to join/ }).waitFor();
    await waitFor(g.page, () => Number(document.querySelector('[role=meter]')?.getAttribute('aria-valuenow')) > 0, undefined, { what: "the guest's microphone level" });
    await screenshot(g.page, '04-guest-preview');
    await g.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(g.page, "the guest's meeting");
  });

  await step('both names appear in both grids', async () => {
    for (const page of [o.page, g.page]) {
      await page.getByRole('figure', { name: /^Olivia Owner/ }).waitFor();
      await page.getByRole('figure', { name: new RegExp(`^${GUEST}`) }).waitFor();
    }
  });

  await step("each side decodes the other's video and receives audio, growing", async () => {
    await expectMediaFlowing(o.page, { what: 'owner receives the guest' });
    await expectMediaFlowing(g.page, { what: 'guest receives the owner' });
    await waitFor(o.page, (name) => document.querySelector(`figure[aria-label^="${name}"] video`)?.videoWidth > 0, GUEST, { what: "the guest's video on the owner's screen" });
    await screenshot(o.page, '05-meeting-grid');
  });

  await step('chat both ways, with the unread count while the panel is closed', async () => {
    // By keyboard: the chat button moves the focus to the message box.
    await o.page.getByRole('button', { name: 'Chat', exact: true }).focus();
    await o.page.keyboard.press('Enter');
    await waitFor(o.page, () => document.activeElement?.id === 'chat-text', undefined, { what: 'the focus in the message box' });
    await o.page.keyboard.type('Hello from Olivia');
    await o.page.keyboard.press('Enter');
    await g.page.getByRole('button', { name: 'Chat, 1 unread' }).waitFor();
    await screenshot(g.page, '06-guest-unread');
    await g.page.getByRole('button', { name: 'Chat, 1 unread' }).click();
    await g.page.getByRole('log', { name: 'Chat messages' }).getByText('Hello from Olivia').waitFor();
    await g.page.getByRole('textbox', { name: 'Message' }).fill('Hi Olivia, Gus here');
    await g.page.getByRole('button', { name: 'Send' }).click();
    await o.page.getByRole('log', { name: 'Chat messages' }).getByText('Hi Olivia, Gus here').waitFor();
    await screenshot(o.page, '07-owner-chat');
    // Escape closes the panel and gives the focus back to its button.
    await o.page.keyboard.press('Escape');
    await o.page.getByRole('complementary', { name: 'Chat' }).waitFor({ state: 'detached' });
    await waitFor(o.page, () => document.activeElement?.dataset.panel === 'chat', undefined, { what: 'the focus back on the chat button' });
  });

  await step('a private message from the owner to the guest', async () => {
    await o.page.getByRole('button', { name: 'Participants' }).click();
    await o.page.getByRole('button', { name: `Send a private message to ${GUEST}` }).click();
    assert.equal(
      await o.page.getByLabel('To').inputValue(),
      await o.page.evaluate((name) => Object.values(window.__conclave.state().participants).find((p) => p.displayName === name).id, GUEST),
    );
    await o.page.getByRole('textbox', { name: 'Message' }).fill('Only for you, Gus');
    await o.page.getByRole('textbox', { name: 'Message' }).press('Enter');
    const line = g.page.getByRole('log', { name: 'Chat messages' }).locator('.chat-line', { hasText: 'Only for you, Gus' });
    await line.waitFor();
    assert.match(await line.innerText(), /private/);
    await o.page.getByRole('log', { name: 'Chat messages' }).getByText(`privately to ${GUEST}`).waitFor();
    await screenshot(g.page, '08-guest-private-message');
  });

  await step('the guest turns the camera off and on; the owner sees the avatar, then video again', async () => {
    const tile = o.page.getByRole('figure', { name: GUEST });
    await g.page.getByRole('button', { name: 'Stop camera' }).click();
    await tile.locator('.avatar').waitFor();
    await g.page.getByRole('button', { name: 'Start camera' }).click();
    await tile.locator('.avatar').waitFor({ state: 'detached' });
    const track = await tile.getAttribute('data-track');
    await expectMediaFlowing(o.page, { what: "the guest's camera after turning it on again", video: (t) => t === track, audio: false });
  });

  await step('the guest switches to another microphone during the meeting; the owner keeps hearing them', async () => {
    await g.page.getByRole('button', { name: 'Devices', exact: true }).click();
    const panel = g.page.getByRole('complementary', { name: 'Devices' });
    const select = panel.getByLabel('Microphone', { exact: true });
    // Chromium's fake devices: a default microphone and "Fake Audio Input 1" and "2" (listed
    // once the panel has asked the browser).
    await select.locator('option', { hasText: 'Fake Audio Input 2' }).waitFor({ state: 'attached' });
    await select.selectOption({ label: 'Fake Audio Input 2' });
    // The publishing connection now sends the new device's track.
    await waitFor(
      g.page,
      (label) =>
        window.__conclave.session.publisher
          ?.getSenders()
          .some((sender) => sender.track?.kind === 'audio' && sender.track.label === label),
      'Fake Audio Input 2',
      { what: 'the new microphone in the sender' },
    );
    assert.equal(await select.evaluate((el) => el.selectedOptions[0]?.textContent), 'Fake Audio Input 2');
    await expectMediaFlowing(o.page, { what: "the guest's audio after the switch" });
    // The owner's voice goes to the chosen speaker (setSinkId on every received audio element).
    const speaker = panel.getByLabel('Speaker', { exact: true });
    await speaker.locator('option', { hasText: 'Fake Audio Output 2' }).waitFor({ state: 'attached' });
    await speaker.selectOption({ label: 'Fake Audio Output 2' });
    const chosen = await speaker.inputValue();
    await waitFor(
      g.page,
      (id) => {
        const sinks = [...document.querySelectorAll('audio')];
        return sinks.length > 0 && sinks.every((a) => a.sinkId === id);
      },
      chosen,
      { what: 'the received audio on the chosen speaker' },
    );
    await screenshot(g.page, '08b-guest-devices');
    await g.page.keyboard.press('Escape');
    await panel.waitFor({ state: 'detached' });
  });

  await step('the owner makes the guest a speaker', async () => {
    await o.page.getByRole('button', { name: 'Participants' }).click();
    const list = o.page.getByRole('complementary', { name: 'Participants' });
    await list.getByText('Listener').waitFor();
    await screenshot(o.page, '09-participant-list');
    await list.getByRole('button', { name: `Make ${GUEST} a speaker` }).click();
    await list.getByRole('button', { name: `Make ${GUEST} a listener` }).waitFor();
    await g.page.getByRole('button', { name: 'Share screen' }).waitFor();
  });

  await step("the guest shares the screen and the owner's grid shows it, frames growing", async () => {
    await g.page.getByRole('button', { name: 'Share screen' }).click();
    await g.page.getByRole('button', { name: 'Stop sharing' }).waitFor();
    const screenTile = o.page.getByRole('figure', { name: `${GUEST}'s screen` });
    await screenTile.waitFor();
    const track = await screenTile.getAttribute('data-track');
    assert.ok(track, 'the screen tile names its track');
    await expectMediaFlowing(o.page, { what: 'the shared screen', video: (t) => t === track, audio: false });
    await waitFor(o.page, (t) => document.querySelector(`figure[data-track="${t}"] video`)?.videoWidth > 0, track, { what: 'the screen on the owner’s page' });
    await screenshot(o.page, '10-owner-sees-screen');
  });

  await step('a phone-sized screen: the grid collapses, panels cover it', async () => {
    await o.page.setViewportSize({ width: 390, height: 844 });
    await o.page.getByRole('button', { name: 'Close panel' }).click();
    await screenshot(o.page, '11-phone-grid');
    await o.page.getByRole('button', { name: 'Chat', exact: true }).click();
    await screenshot(o.page, '12-phone-chat');
    const box = await o.page.getByRole('complementary', { name: 'Chat' }).boundingBox();
    assert.ok(box && box.width >= 380, `the chat covers the phone's width (${JSON.stringify(box)})`);
    await o.page.getByRole('button', { name: 'Close panel' }).click();
    await o.page.setViewportSize({ width: 1280, height: 800 });
  });

  await step("the owner mutes the guest's microphone; the guest is told why it stays muted", async () => {
    await o.page.getByRole('button', { name: 'Participants' }).click();
    await o.page.getByRole('button', { name: `Mute ${GUEST}'s microphone` }).click();
    await g.page.getByText('Olivia Owner muted your microphone').waitFor();
    const mic = g.page.getByRole('button', { name: 'Unmute microphone' });
    assert.equal(await mic.getAttribute('aria-disabled'), 'true');
    // It stays focusable (so the note is read), but pressing it changes nothing.
    await mic.focus();
    await g.page.keyboard.press('Enter');
    assert.equal(
      await g.page.evaluate(() => window.__conclave.session.publisher.getSenders().find((s) => s.track?.kind === 'audio')?.track.enabled),
      false,
      'the microphone stays off',
    );
    await screenshot(g.page, '13-guest-microphone-blocked');
    await o.page.getByRole('button', { name: `Allow ${GUEST} to speak` }).click();
    await g.page.getByText('Olivia Owner muted your microphone').waitFor({ state: 'detached' });
    await g.page.getByRole('button', { name: 'Unmute microphone' }).click();
    await g.page.getByRole('button', { name: 'Mute microphone' }).waitFor();
    await o.page.getByRole('button', { name: 'Close panel' }).click();
  });

  await step('the owner excludes the guest, who is told', async () => {
    await o.page.getByRole('button', { name: 'Participants' }).click();
    await o.page.getByRole('button', { name: `Remove ${GUEST} from the meeting` }).click();
    await o.page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
    await g.page.getByRole('heading', { name: 'You were removed from the conference' }).waitFor();
    await screenshot(g.page, '14-guest-removed');
    await o.page.getByRole('figure', { name: new RegExp(`^${GUEST}`) }).waitFor({ state: 'detached' });
    await screenshot(o.page, '15-owner-after-exclusion');
  });

  assertNoPageErrors([o, g]);
});
