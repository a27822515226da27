// Guests join by link or by meeting ID and are told what is wrong: wrong password and unknown
// meeting ID (next to the password), a conference that starts tomorrow (when), the waiting
// room, the keyboard alone, "Remember me", a name made of HTML shown as text, an audio-only meeting without
// camera, a dropped connection that comes back by itself, a network that goes silent without
// closing anything (the server stopped with SIGSTOP), and the owner ending the meeting.
import { adminToken, apiCall, assert, assertNoPageErrors, createAccount, expectMediaFlowing, inMeeting, logIn, openBrowser, scenario, screenshot, step, waitFor } from './lib.mjs';

const HTML_NAME = '<img src=x onerror=alert(1)>';

/**
 * Silences the server without closing anything (SIGSTOP), or lets it speak again (SIGCONT): to
 * the browser, packets simply stop coming, as when a network vanishes — no TCP close, no RST.
 */
function silenceServer(silent) {
  process.kill(Number(process.env.CONCLAVE_SERVER_PID), silent ? 'SIGSTOP' : 'SIGCONT');
}

/** The error shown under a field, checked to be tied to the field for screen readers. */
async function fieldError(page, label) {
  const input = page.getByLabel(label, { exact: true });
  await waitFor(page, (id) => document.getElementById(id)?.getAttribute('aria-invalid') === 'true', await input.getAttribute('id'), { what: `${label} to be marked invalid` });
  const describedBy = await input.getAttribute('aria-describedby');
  assert.ok(describedBy, `${label} names its error`);
  const id = describedBy.split(' ').find((i) => i.endsWith('-error'));
  return page.locator(`[id="${id}"]`).innerText();
}

scenario('guests join by link or meeting ID and are told what is wrong', async () => {
  const admin = await adminToken();
  const owner = await createAccount(admin, { login: 'owen', displayName: 'Owen Owner' });
  const ownerToken = (await apiCall('POST', '/auth/login', { login: owner.login, password: owner.password })).body.sessionToken;
  // Small rooms: the test's SFU has 100 UDP ports, and a room reserves two per participant.
  const soon = () => new Date(Date.now() + 60_000).toISOString();
  const now = await apiCall('POST', '/conferences', { topic: 'Weekly sync', start: soon(), durationMinutes: 30, timeZone: 'UTC', maxParticipants: 4 }, ownerToken);
  assert.equal(now.status, 201, JSON.stringify(now.body));
  const tomorrow = new Date();
  tomorrow.setUTCDate(tomorrow.getUTCDate() + 1);
  tomorrow.setUTCHours(12, 0, 0, 0);
  const later = await apiCall('POST', '/conferences', { topic: 'Planning', start: tomorrow.toISOString(), durationMinutes: 60, timeZone: 'UTC' }, ownerToken);
  assert.equal(later.status, 201, JSON.stringify(later.body));
  const audio = await apiCall(
    'POST',
    '/conferences',
    { topic: 'Phone sync', start: soon(), durationMinutes: 30, timeZone: 'UTC', media: 'audioOnly', maxParticipants: 2 },
    ownerToken,
  );
  assert.equal(audio.status, 201, JSON.stringify(audio.body));
  const board = await apiCall(
    'POST',
    '/conferences',
    { topic: 'Board meeting', start: soon(), durationMinutes: 30, timeZone: 'UTC', maxParticipants: 2, allowJoinWithoutOwner: false },
    ownerToken,
  );
  assert.equal(board.status, 201, JSON.stringify(board.body));

  const g = await openBrowser('guest');
  const dialogs = [];
  g.page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });

  await step('a wrong password is told next to the password field', async () => {
    await g.page.goto(`/join/${now.body.meetingId}`);
    await g.page.getByLabel('Meeting password').fill('000000' === now.body.password ? '111111' : '000000');
    await g.page.getByLabel('Your name').fill('Gina Guest');
    await g.page.getByRole('button', { name: 'Continue' }).click();
    assert.match(await fieldError(g.page, 'Meeting password'), /meeting ID or the password is wrong/);
    await screenshot(g.page, '01-wrong-password');
  });

  await step('an unknown meeting ID gets the same message, at the same place', async () => {
    await g.page.goto('/join');
    await g.page.getByLabel('Meeting ID').fill('999999999');
    await g.page.getByLabel('Meeting password').fill('123456');
    await g.page.getByLabel('Your name').fill('Gina Guest');
    await g.page.getByRole('button', { name: 'Continue' }).click();
    assert.match(await fieldError(g.page, 'Meeting password'), /meeting ID or the password is wrong/);
  });

  await step('the invitation link fills in the password and takes it out of the address bar', async () => {
    // The link a mail carries: the password in the fragment, which the browser never sends.
    const link = new URL(later.body.invitationUrl);
    assert.equal(link.hash, `#pwd=${later.body.password}`);
    await g.page.goto(`${link.pathname}${link.hash}`);
    assert.equal(await g.page.getByLabel('Meeting password').inputValue(), later.body.password);
    await waitFor(g.page, () => location.hash === '', undefined, { what: 'the fragment to leave the address bar' });
    assert.equal(new URL(g.page.url()).pathname, `/join/${later.body.meetingId}`);
    assert.equal(await g.page.evaluate(() => document.activeElement?.id), 'join-name', 'the guest only types a name');
  });

  await step('a conference scheduled for tomorrow says when it starts', async () => {
    await g.page.getByLabel('Your name').fill('Gina Guest');
    await g.page.getByRole('button', { name: 'Continue' }).click();
    const expected = await g.page.evaluate((start) => new Date(start).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }), tomorrow.toISOString());
    const alert = g.page.getByRole('alert').filter({ hasText: 'has not started yet' });
    await alert.waitFor();
    assert.match(await alert.innerText(), new RegExp(`It starts tomorrow at ${expected}`));
    await g.page.getByRole('button', { name: 'Join automatically when it opens' }).click();
    await g.page.getByText(/you will join automatically tomorrow at/).waitFor();
    await screenshot(g.page, '02-not-started');
    await g.page.getByRole('button', { name: 'Stop waiting' }).click();
  });

  await step('an audio-only meeting never asks for the camera', async () => {
    await g.page.goto(`/join/${audio.body.meetingId}`);
    await g.page.getByLabel('Meeting password').fill(audio.body.password);
    await g.page.getByLabel('Your name').fill('Gina Guest');
    await g.page.getByRole('button', { name: 'Continue' }).click();
    await g.page.getByText('This meeting is audio only').waitFor();
    await g.page.getByLabel('Microphone', { exact: true }).waitFor();
    assert.equal(await g.page.getByLabel('Camera', { exact: true }).count(), 0);
    assert.equal(await g.page.locator('video').count(), 0);
    await g.page.getByRole('button', { name: 'Back' }).click();
  });

  const o = await openBrowser('owner');
  await step('a guest waits until the owner arrives', async () => {
    await g.page.goto(`/join/${board.body.meetingId}`);
    await g.page.getByLabel('Meeting password').fill(board.body.password);
    await g.page.getByLabel('Your name').fill('Gina Guest');
    await g.page.getByRole('button', { name: 'Continue' }).click();
    await g.page.getByRole('button', { name: 'Join now' }).click();
    await g.page.getByRole('heading', { name: 'Waiting for the host' }).waitFor();
    await screenshot(g.page, '04-waiting-for-the-host');
    await logIn(o.page, owner.login, owner.password);
    await o.page.goto(`/join/${board.body.meetingId}`);
    await o.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(g.page, 'the guest let in');
    await g.page.getByRole('figure', { name: /^Owen Owner/ }).waitFor();
    for (const page of [g.page, o.page]) {
      await page.getByRole('button', { name: 'Leave' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Leave' }).click();
      await page.getByRole('heading', { name: 'You left the meeting' }).waitFor();
    }
  });

  await step('the owner enters the running meeting', async () => {
    await o.page.goto(`/join/${now.body.meetingId}`);
    await o.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(o.page, "the owner's meeting");
  });

  await step('an account that is not the owner is asked for the password only when needed', async () => {
    const member = await createAccount(admin, { login: 'mia', displayName: 'Mia Member' });
    const m = await openBrowser('member');
    await logIn(m.page, member.login, member.password);
    await m.page.goto(`/join/${now.body.meetingId}`);
    const field = m.page.getByLabel('Meeting password');
    await field.waitFor();
    assert.equal(await m.page.getByLabel('Your name').count(), 0, 'an account is not asked for a name');
    await m.page.getByText('This meeting needs its password. Ask its owner for it.').waitFor();
    await screenshot(m.page, '05-account-asked-for-password');
    await field.fill(now.body.password);
    await m.page.getByRole('button', { name: 'Continue' }).click();
    await m.page.getByText('You join as').getByText('Mia Member').waitFor();
    await m.close();
  });

  await step('the join form is filled and sent with the keyboard alone', async () => {
    await g.page.goto('/join');
    await g.page.getByLabel('Meeting ID').waitFor();
    const focused = () => g.page.evaluate(() => document.activeElement?.id ?? '');
    await waitFor(g.page, () => document.activeElement?.id === 'join-meeting-id', undefined, { what: 'the meeting ID to have the focus' });
    await g.page.keyboard.type(now.body.meetingId);
    await g.page.keyboard.press('Tab');
    assert.equal(await focused(), 'join-password');
    await g.page.keyboard.type(now.body.password);
    await g.page.keyboard.press('Tab');
    assert.equal(await focused(), 'join-name');
    await g.page.keyboard.type(HTML_NAME);
    await g.page.keyboard.press('Tab');
    assert.equal(await focused(), 'join-remember');
    await g.page.keyboard.press('Space');
    assert.equal(await g.page.getByLabel('Remember me on this computer').isChecked(), true);
    await g.page.keyboard.press('Tab');
    await g.page.keyboard.press('Enter');
    await g.page.getByRole('heading', { name: /Ready to join/ }).waitFor();
    // Once the devices are ready, through the preview's controls to "Join now", by Tab alone.
    await waitFor(g.page, () => [...document.querySelectorAll('button')].some((b) => b.textContent.trim() === 'Join now' && !b.disabled), undefined, {
      what: 'the preview to be ready',
    });
    for (let i = 0; i < 12; i += 1) {
      const text = await g.page.evaluate(() => document.activeElement?.textContent ?? '');
      if (text.trim() === 'Join now') break;
      await g.page.keyboard.press('Tab');
    }
    assert.equal((await g.page.evaluate(() => document.activeElement?.textContent ?? '')).trim(), 'Join now');
    await g.page.keyboard.press('Enter');
    await inMeeting(g.page, "the guest's meeting");
  });

  await step('a name made of HTML shows as text in the grid and the participant list', async () => {
    const tile = o.page.getByRole('figure', { name: HTML_NAME });
    await tile.waitFor();
    assert.equal((await tile.locator('.tile-name').innerText()).trim(), HTML_NAME);
    await o.page.getByRole('button', { name: 'Participants' }).click();
    const entry = o.page.getByRole('complementary', { name: 'Participants' }).getByText(HTML_NAME, { exact: true });
    await entry.waitFor();
    assert.equal(await o.page.locator('img').count(), 0, 'no image element was made from the name');
    await screenshot(o.page, '03-html-name-as-text');
    await o.page.getByRole('button', { name: 'Close panel' }).click();
    assert.deepEqual(dialogs, [], 'no script ran');
  });

  await step('media flows both ways', async () => {
    await expectMediaFlowing(o.page, { what: 'owner receives the guest' });
    await expectMediaFlowing(g.page, { what: 'guest receives the owner' });
  });

  await step('a guest who refuses camera and microphone joins without media, then leaves', async () => {
    const d = await openBrowser('denier');
    // As if the person clicked "Block" in the browser's permission prompt.
    await d.page.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () => Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    });
    await d.page.goto(`/join/${now.body.meetingId}`);
    await d.page.getByLabel('Meeting password').fill(now.body.password);
    await d.page.getByLabel('Your name').fill('Dana Denied');
    await d.page.getByRole('button', { name: 'Continue' }).click();
    await d.page.getByText('Access to the microphone was denied').waitFor();
    await d.page.getByText('Access to the camera was denied').waitFor();
    await screenshot(d.page, '06-devices-denied');
    await d.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(d.page, "the denier's meeting");
    await d.page.getByRole('button', { name: 'No microphone' }).waitFor();
    await expectMediaFlowing(d.page, { what: 'the denier still receives the others' });
    await o.page.getByRole('figure', { name: 'Dana Denied' }).waitFor();
    await d.page.getByRole('button', { name: 'Leave' }).click();
    await d.page.getByRole('dialog').getByRole('button', { name: 'Leave' }).click();
    await d.page.getByRole('heading', { name: 'You left the meeting' }).waitFor();
    await o.page.getByRole('figure', { name: 'Dana Denied' }).waitFor({ state: 'detached' });
    await d.close();
  });

  await step('"Remember me" skips the name question on the next visit', async () => {
    const again = await g.context.newPage();
    await again.goto(`/join/${now.body.meetingId}`);
    await again.getByText('You join as').waitFor();
    assert.equal((await again.locator('.join-as strong').innerText()).trim(), HTML_NAME);
    assert.equal(await again.getByLabel('Your name').count(), 0, 'the name is not asked');
    await screenshot(again, '07-remembered-name');
    await again.getByRole('button', { name: 'Change name' }).click();
    assert.equal(await again.getByLabel('Your name').inputValue(), HTML_NAME);
    await again.close();
  });

  await step('a dropped connection comes back by itself, with media', async () => {
    const before = await g.page.evaluate(() => window.__conclave.session.connections);
    await g.context.setOffline(true);
    await g.page.evaluate(() => window.__conclave.session.dropConnection());
    await g.page.getByRole('status').filter({ hasText: 'Reconnecting…' }).waitFor();
    await screenshot(g.page, '08-reconnecting');
    await g.context.setOffline(false);
    await inMeeting(g.page, 'the guest back in the meeting');
    const after = await g.page.evaluate(() => window.__conclave.session.connections);
    assert.ok(after > before, `a new connection was opened (${before} → ${after})`);
    await expectMediaFlowing(g.page, { what: 'guest receives the owner again' });
    await expectMediaFlowing(o.page, { what: 'owner receives the guest again' });
    await o.page.getByRole('figure', { name: HTML_NAME }).waitFor();
  });

  await step('the network goes silent without closing anything: ICE notices, the page reconnects', async () => {
    const before = await g.page.evaluate(() => window.__conclave.session.connections);
    silenceServer(true);
    try {
      // The websocket stays open and says nothing; ICE reports the loss (disconnected), and
      // after a grace period the page starts over.
      await g.page.getByRole('status').filter({ hasText: 'Reconnecting…' }).waitFor({ timeout: 30_000 });
    } finally {
      silenceServer(false);
    }
    await inMeeting(g.page, 'the guest back in the meeting after the network returned');
    const after = await g.page.evaluate(() => window.__conclave.session.connections);
    assert.ok(after > before, `a new connection was opened (${before} → ${after})`);
    await expectMediaFlowing(g.page, { what: 'guest receives the owner after the network returned' });
    await expectMediaFlowing(o.page, { what: 'owner receives the guest after the network returned' });
  });

  await step('the owner ends the meeting and the guest is told', async () => {
    await o.page.getByRole('button', { name: 'End meeting' }).click();
    await o.page.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
    await g.page.getByRole('heading', { name: 'The conference has ended' }).waitFor();
    await o.page.getByRole('heading', { name: 'The conference has ended' }).waitFor();
    await screenshot(g.page, '09-conference-ended');
  });

  assertNoPageErrors([o, g]);
});
