// Scheduling in the portal, as an owner does it: form errors next to their fields, a weekly
// conference on two days until a date with invitees, the log, the info page (meeting ID and
// password, dial-in by phone and SIP, the .ics download with its CONFERENCE lines, an invitation by e-mail with its log line and .eml file), an
// edit of the start with "Notify participants", a meeting ID already taken, delete after a
// confirmation, and repeating an ad hoc conference from the archive after its owner ended it
// (with a phone caller, joined as the SIP gateway joins one, in its attendance).
import { createHmac } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { adminToken, apiCall, assert, createAccount, logIn, openBrowser, scenario, screenshot, step } from './lib.mjs';

const DATA_DIR = process.env.CONCLAVE_DATA_DIR;
if (!DATA_DIR) {
  console.error('CONCLAVE_DATA_DIR is not set: run the scenario through `cargo nextest run -p system-tests --test portal`.');
  process.exit(2);
}
const OUTBOX = join(DATA_DIR, 'outbox');

const pad = (n) => String(n).padStart(2, '0');
const ymd = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;

/** The first Tuesday at least `days` days from now (UTC calendar), and a date 5 weeks later. */
function futureTuesday(days) {
  const d = new Date(Date.now() + days * 86_400_000);
  while (d.getUTCDay() !== 2) d.setUTCDate(d.getUTCDate() + 1);
  const until = new Date(d.getTime() + 35 * 86_400_000);
  return { date: ymd(d), until: ymd(until), untilCompact: ymd(until).replaceAll('-', '') };
}

/** The .eml files in the outbox whose text satisfies `test`; polls until there are `count`. */
async function outboxMails(test, { count = 1, timeout = 20_000 } = {}) {
  const deadline = Date.now() + timeout;
  let found = [];
  while (Date.now() < deadline) {
    let names = [];
    try {
      names = (await readdir(OUTBOX)).filter((n) => n.endsWith('.eml'));
    } catch {
      names = [];
    }
    found = [];
    for (const name of names) {
      const text = await readFile(join(OUTBOX, name), 'utf8');
      if (test(text)) found.push(text);
    }
    if (found.length >= count) return found;
    // The outbox worker writes asynchronously; look again shortly (polling a folder, not a sleep to sync a page).
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`expected ${count} matching .eml file(s) in ${OUTBOX}, found ${found.length}`);
}

/** A service token of the SIP gateway (`sip:gateway`), signed as `conclave sip` signs it: HS256
 * with the join-token secret standalone keeps in its data folder. */
async function gatewayToken() {
  const secret = (await readFile(join(DATA_DIR, 'join-token.key'), 'utf8')).trim();
  const now = Math.floor(Date.now() / 1000);
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: 'sip:gateway', aud: 'conclave-internal', iat: now, exp: now + 60 })}`;
  return `${unsigned}.${createHmac('sha256', secret).update(unsigned).digest('base64url')}`;
}

/** Polls the API until `probe(answer)` is truthy. */
async function apiWait(method, path, token, probe, what, timeout = 20_000) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await apiCall(method, path, undefined, token);
    const value = probe(last);
    if (value) return value;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`timed out waiting for ${what}; last answer ${JSON.stringify(last)}`);
}

/** The error text shown inside the same .field as the control with `id`. */
async function errorNextTo(page, id) {
  const error = page.locator(`.field:has(> #${id}) .field-error, .field:has(#${id}) > .field-error`).first();
  await error.waitFor();
  // The control points at it for screen readers.
  const describedBy = (await page.locator(`#${id}`).getAttribute('aria-describedby')) ?? '';
  assert.ok(describedBy.split(' ').includes(`${id}-error`), `#${id} is described by its error (${describedBy})`);
  assert.equal(await page.locator(`#${id}`).getAttribute('aria-invalid'), 'true');
  return (await error.textContent()).trim();
}

scenario('scheduling, editing, deleting and repeating in the portal', async () => {
  const admin = await adminToken();
  const ada = await createAccount(admin, { login: 'ada', displayName: 'Ada Lovelace', level: 'moderator', timeZone: 'Europe/Berlin' });
  const adaToken = (await apiCall('POST', '/auth/login', { login: ada.login, password: ada.password })).body.sessionToken;
  const browser = await openBrowser('ada');
  const { page } = browser;
  const when = futureTuesday(8);
  let conferenceId;
  let meetingId;
  let password;

  await step('log in', () => logIn(page, ada.login, ada.password));

  await step('the log is empty at first and says so', async () => {
    await page.getByText('You have no conferences scheduled.').waitFor();
    await screenshot(page, '01-log-empty');
  });

  await step('form errors appear next to their fields', async () => {
    await page.getByRole('link', { name: 'Schedule', exact: true }).click();
    await page.getByRole('heading', { name: 'Schedule a conference' }).waitFor();
    // The account's zone is the default.
    assert.equal(await page.getByLabel('Time zone').inputValue(), 'Europe/Berlin');
    assert.equal(await page.getByLabel('Allow joining in the absence of the conference owner').isChecked(), true);
    assert.match(await page.getByLabel('Meeting ID').inputValue(), /^[1-9]\d{8}$/);
    assert.match(await page.getByLabel('Meeting password').inputValue(), /^[1-9]\d{5}$/);
    await page.getByLabel('Date', { exact: true }).fill(when.date);
    await page.getByLabel('Start', { exact: true }).fill('10:00');
    await page.getByLabel('End', { exact: true }).fill('10:00');
    await page.getByLabel('Invitees').fill('bob@example.org\nnot-an-address');
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    assert.equal(await errorNextTo(page, 'topic'), 'Enter a topic.');
    assert.equal(await errorNextTo(page, 'end'), 'The end must be after the start.');
    assert.match(await errorNextTo(page, 'invitees'), /“not-an-address” is not an e-mail address/);
    // Focus goes to the first field in error.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'topic');
    assert.match(page.url(), /\/schedule$/, 'nothing was sent');
    await screenshot(page, '02-schedule-errors');
  });

  await step('schedule a weekly conference on Tuesday and Thursday until a date, with invitees', async () => {
    await page.getByLabel('Topic', { exact: true }).fill('Design review');
    // A corrected field loses its message; the others keep theirs until the next try.
    assert.equal(await page.locator('#topic-error').count(), 0);
    assert.equal(await page.getByLabel('Topic', { exact: true }).getAttribute('aria-invalid'), null);
    assert.equal(await page.locator('#invitees-error').count(), 1);
    // An end before the start is on the next day, and the form says so under the field.
    await page.getByLabel('End', { exact: true }).fill('00:30');
    assert.equal(await page.locator('#end-hint').textContent(), 'Ends the next day · 14 h 30 min');
    await page.getByLabel('End', { exact: true }).fill('11:00');
    assert.equal(await page.locator('#end-hint').textContent(), '1 h');
    await page.getByLabel('Repeat', { exact: true }).selectOption('weekly');
    // The start's weekday is already ticked; add Thursday.
    assert.equal(await page.getByLabel('Tuesday').isChecked(), true);
    await page.getByLabel('Thursday').check();
    await page.getByLabel('On a date').check();
    await page.getByLabel('Last date').fill(when.until);
    await page.getByLabel('Maximum participants').fill('20');
    await page.getByLabel('Invitees').fill('bob@example.org, carol@example.org');
    meetingId = await page.getByLabel('Meeting ID').inputValue();
    password = await page.getByLabel('Meeting password').inputValue();
    await screenshot(page, '03-schedule-filled');
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForURL(/\/conferences\/[^/]+$/);
    conferenceId = decodeURIComponent(page.url().split('/').pop());
    await page.getByRole('heading', { name: 'Design review' }).waitFor();
    await page.getByText('Conference scheduled. Invitations to 2 addresses are on their way.').waitFor();
  });

  await step('the info page shows meeting ID, password, the rule in words and the zone', async () => {
    assert.equal((await page.getByTestId('meeting-id').textContent()).trim(), meetingId);
    assert.equal((await page.getByTestId('meeting-password').textContent()).trim(), password);
    const facts = await page.locator('dl.facts').textContent();
    assert.match(facts, /Every week on Tuesday and Thursday, until/);
    assert.match(facts, /10:00–11:00 Europe\/Berlin \(UTC\+0[12]:00\)/);
    assert.match(facts, /bob@example\.org, carol@example\.org/);
    assert.equal(await page.getByLabel('Join link').inputValue(), `${process.env.CONCLAVE_URL}/join/${meetingId}`);
    // Dial-in (the server runs with --dial-in-number and --sip-address): the keys to type, and a
    // SIP link that skips the gateway's questions.
    const keys = `then type the meeting ID ${meetingId}# and then the password ${password}#`;
    assert.equal((await page.getByTestId('dial-in-number').textContent()).trim(), `+49 30 1234567, ${keys}`);
    assert.equal(await page.getByTestId('dial-in-number').getByRole('link').getAttribute('href'), 'tel:+49301234567');
    assert.equal((await page.getByTestId('dial-in-sip').textContent()).trim(), `conference@conclave.example.org, ${keys}`);
    const sipLink = page.getByRole('link', { name: `sip:${meetingId}*${password}@conclave.example.org` });
    assert.equal(await sipLink.getAttribute('href'), `sip:${meetingId}*${password}@conclave.example.org`);
    const stored = await apiCall('GET', `/conferences/${conferenceId}`, undefined, adaToken);
    assert.match(stored.body.recurrence, new RegExp(`^FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=${when.untilCompact.slice(0, 6)}\\d\\dT\\d{6}Z$`));
    assert.equal(stored.body.maxParticipants, 20);
    assert.equal(stored.body.timeZone, 'Europe/Berlin');
    await screenshot(page, '04-info');
  });

  await step('"Copy link" puts the join link on the clipboard', async () => {
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: process.env.CONCLAVE_URL });
    await page.getByRole('button', { name: 'Copy link' }).click();
    await page.getByText('Link copied.').waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${process.env.CONCLAVE_URL}/join/${meetingId}`);
  });

  await step('"Add to calendar" downloads an .ics with the RRULE', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Add to calendar' }).click()]);
    assert.equal(download.suggestedFilename(), 'conference.ics');
    const ics = await readFile(await download.path(), 'utf8');
    assert.match(ics, /BEGIN:VCALENDAR/);
    assert.match(ics, /SUMMARY:Design review/);
    assert.match(ics, /RRULE:FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=\d{8}T\d{6}Z/);
    assert.match(ics, /DTSTART;TZID=Europe\/Berlin:\d{8}T100000/);
    const unfolded = ics.replaceAll('\r\n ', '');
    assert.ok(unfolded.includes(`CONFERENCE;VALUE=URI;FEATURE=AUDIO;LABEL=`), unfolded);
    assert.ok(unfolded.includes(`:sip:${meetingId}*${password}@conclave.example.org\r\n`), unfolded);
    assert.match(unfolded, /CONFERENCE;VALUE=URI;FEATURE=PHONE;LABEL="[^"]+":tel:\+49301234567\r\n/);
  });

  await step('the invitees got their invitations in the outbox', async () => {
    await outboxMails((t) => /^To: bob@example\.org/m.test(t) && /METHOD:REQUEST/.test(t));
    await outboxMails((t) => /^To: carol@example\.org/m.test(t));
  });

  await step("an invitee without an account follows the mail's link to the join page, meeting ID filled in", async () => {
    const [mail] = await outboxMails((t) => /^To: bob@example\.org/m.test(t));
    // Quoted-printable soft line breaks may split the link.
    const link = mail.replace(/=\r?\n/g, '').match(/https?:\/\/[^\s"<>]+\/join\/\d+/)?.[0];
    assert.equal(link, `${process.env.CONCLAVE_URL}/join/${meetingId}`);
    const bob = await openBrowser('bob');
    await bob.page.goto(link);
    await bob.page.getByRole('heading', { name: 'Join a meeting' }).waitFor();
    assert.equal(await bob.page.getByLabel('Meeting ID').inputValue(), meetingId);
    await bob.page.getByLabel('Your name').waitFor();
    await screenshot(bob.page, '04b-invitee-join-link');
    await bob.close();
  });

  await step('send an invitation e-mail: the answer names the outbox, a log row appears, an .eml is written', async () => {
    await page.getByLabel('E-mail addresses').fill('dave@example.org');
    await page.getByRole('button', { name: 'Send invitation' }).click();
    await page.getByText(/Invitation queued for 1 address — written to the server’s outbox folder/).waitFor();
    const row = page.locator('table.invitation-log tr', { hasText: 'dave@example.org' });
    await row.waitFor();
    assert.match(await row.textContent(), /Invitation/);
    const mails = await outboxMails((t) => /^To: dave@example\.org/m.test(t));
    assert.match(mails[0], /Design review/);
    // The scheduling invitations are in the log as well.
    await page.locator('table.invitation-log tr', { hasText: 'bob@example.org' }).waitFor();
    await screenshot(page, '05-info-invited');
  });

  await step('the log shows the conference with date, times, topic and status', async () => {
    await page.getByRole('link', { name: 'My conferences' }).click();
    const row = page.locator('table.conference-log tbody tr', { hasText: 'Design review' });
    await row.waitFor();
    const text = await row.textContent();
    assert.match(text, /10:00/);
    assert.match(text, /11:00/);
    assert.match(text, /Europe\/Berlin/);
    assert.match(await row.locator('.badge').textContent(), /Offline/);
    assert.equal(await row.getByRole('link', { name: 'Join Design review' }).getAttribute('href'), `/join/${meetingId}`);
    await screenshot(page, '06-log');
  });

  await step('edit the start time and notify the participants', async () => {
    const row = page.locator('table.conference-log tbody tr', { hasText: 'Design review' });
    await row.getByRole('link', { name: 'Edit Design review' }).click();
    await page.getByRole('heading', { name: 'Edit conference' }).waitFor();
    // Prefilled from the conference, in its zone.
    assert.equal(await page.getByLabel('Topic', { exact: true }).inputValue(), 'Design review');
    assert.equal(await page.getByLabel('Start', { exact: true }).inputValue(), '10:00');
    assert.equal(await page.getByLabel('Thursday').isChecked(), true);
    assert.equal(await page.getByLabel('Last date').inputValue(), when.until);
    await page.getByLabel('Start', { exact: true }).fill('11:30');
    // The end moves with the start.
    assert.equal(await page.getByLabel('End', { exact: true }).inputValue(), '12:30');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Changes saved.').waitFor();
    const stored = await apiCall('GET', `/conferences/${conferenceId}`, undefined, adaToken);
    assert.equal(stored.body.sequence, 1);
    assert.match(stored.body.start, /T11:30:00\+0[12]:00$/);
    assert.equal(stored.body.durationMinutes, 60);
    assert.match(stored.body.recurrence, /BYDAY=TU,TH/, 'the rule was not touched');
    await page.getByRole('button', { name: 'Notify participants' }).click();
    await page.getByText(/Update sent to 3 participants/).waitFor();
    const updates = await outboxMails((t) => /SEQUENCE:1/.test(t) && /New time/.test(t), { count: 3 });
    assert.equal(updates.length, 3);
    await screenshot(page, '07-edit-notified');
  });

  await step('notifying without invitees says so', async () => {
    const lone = await apiCall('POST', '/conferences', { topic: 'Quiet planning', start: `${when.date}T15:00`, end: `${when.date}T16:00`, timeZone: 'Europe/Berlin' }, adaToken);
    assert.equal(lone.status, 201, JSON.stringify(lone.body));
    await page.goto(`/conferences/${lone.body.id}/edit`);
    await page.getByLabel('Topic', { exact: true }).fill('Quiet planning (moved)');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.getByText('Changes saved.').waitFor();
    await page.getByRole('button', { name: 'Notify participants' }).click();
    await page.getByText('Nobody is invited to this conference, so there is nobody to notify.', { exact: false }).waitFor();
  });

  await step('a meeting ID already taken is refused next to the meeting ID field', async () => {
    await page.goto('/schedule');
    await page.getByLabel('Topic', { exact: true }).fill('Clash');
    await page.getByLabel('Date', { exact: true }).fill(when.date);
    await page.getByLabel('Start', { exact: true }).fill('13:00');
    await page.getByLabel('End', { exact: true }).fill('14:00');
    await page.getByLabel('Meeting ID').fill(meetingId);
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    assert.match(await errorNextTo(page, 'meetingId'), new RegExp(`The meeting ID ${meetingId} is in use`));
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'meetingId');
    await page.getByLabel('Meeting ID').fill('12345');
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    assert.match(await errorNextTo(page, 'meetingId'), /6 to 12 digits/);
    await screenshot(page, '08-meeting-id-taken');
  });

  await step('delete asks first; cancelling keeps it, confirming with notify sends cancellations', async () => {
    await page.getByRole('link', { name: 'My conferences' }).click();
    const row = page.locator('table.conference-log tbody tr', { hasText: 'Design review' });
    await row.getByRole('button', { name: 'Delete Design review' }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete this conference?' });
    await dialog.waitFor();
    assert.match(await dialog.textContent(), /“Design review” will be deleted/);
    await screenshot(page, '09-delete-confirm');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await dialog.waitFor({ state: 'hidden' });
    assert.equal(await row.count(), 1, 'cancelling keeps the conference');
    await row.getByRole('button', { name: 'Delete Design review' }).click();
    await dialog.waitFor();
    const notify = dialog.getByLabel(/Notify invitees \(3\)/);
    assert.equal(await notify.isChecked(), true);
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByText('“Design review” was deleted.').waitFor();
    await row.waitFor({ state: 'detached' });
    const gone = await apiCall('GET', `/conferences/${conferenceId}`, undefined, adaToken);
    assert.equal(gone.status, 404);
    await outboxMails((t) => /METHOD:CANCEL/.test(t), { count: 3 });
  });

  let archiveId;
  await step('"Start conference now" takes the owner to the join page', async () => {
    await page.goto('/schedule');
    await page.getByLabel('Topic (optional)').fill('Stand-up');
    await page.getByRole('button', { name: 'Start conference now' }).click();
    await page.waitForURL(/\/join\/\d{6,12}$/);
    meetingId = page.url().split('/').pop();
    const log = await apiCall('GET', '/conferences', undefined, adaToken);
    const adHoc = log.body.find((c) => c.meetingId === meetingId);
    assert.ok(adHoc, 'the ad hoc conference is in the log');
    assert.equal(adHoc.kind, 'adHoc');
    assert.equal(adHoc.topic, 'Stand-up');
    assert.equal(adHoc.status, 'online');
  });

  await step('a phone caller (as the SIP gateway joins it), then the owner enter the ad hoc conference over the signaling websocket; the owner ends it and it goes to the archive', async () => {
    // Leave the join page so only these websockets are in the room.
    await page.goto('/');
    const adHoc = (await apiCall('GET', '/conferences', undefined, adaToken)).body.find((c) => c.meetingId === meetingId);
    const phone = await page.evaluate(
      async ({ id, password, token }) => {
        const answer = await fetch('/api/v1/join', {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
          body: JSON.stringify({ meetingId: id, password, phone: { callerId: '+4930123451234', address: '203.0.113.9' } }),
        });
        const joined = await answer.json();
        if (!answer.ok) return { error: JSON.stringify(joined) };
        const ws = new WebSocket(joined.endpoint);
        window.phoneSocket = ws;
        return await new Promise((resolve) => {
          ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token: joined.token, conference: joined.conference.id }));
          ws.onmessage = (event) => {
            if (JSON.parse(event.data).type === 'joined') resolve({ role: joined.role, name: joined.displayName });
          };
          ws.onclose = (event) => resolve({ error: `closed ${event.code} ${event.reason}` });
        });
      },
      { id: meetingId, password: adHoc.password, token: await gatewayToken() },
    );
    assert.ok(!phone.error, `phone join: ${phone.error}`);
    assert.deepEqual(phone, { role: 'listener', name: 'Phone ···1234' });
    const outcome = await page.evaluate(async (id) => {
      const answer = await fetch('/api/v1/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ meetingId: id }) });
      const joined = await answer.json();
      if (!answer.ok) return { error: JSON.stringify(joined) };
      const ws = new WebSocket(joined.endpoint);
      return await new Promise((resolve) => {
        const seen = [];
        ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token: joined.token, conference: joined.conference.id }));
        ws.onmessage = (event) => {
          const message = JSON.parse(event.data);
          seen.push(message.type);
          if (message.type === 'joined') ws.send(JSON.stringify({ type: 'endMeeting' }));
        };
        ws.onclose = (event) => resolve({ seen, code: event.code, role: joined.role });
      });
    }, meetingId);
    assert.ok(!outcome.error, `join: ${outcome.error}`);
    assert.equal(outcome.role, 'moderator');
    assert.ok(outcome.seen.includes('joined'), `admitted: ${JSON.stringify(outcome)}`);
    const entry = await apiWait('GET', '/conferences?view=archive', adaToken, (a) => a.body?.find?.((e) => e.meetingId === meetingId), 'the archive entry');
    archiveId = entry.id;
  });

  await step('the archive shows the past conference with its attendance', async () => {
    await page.getByRole('link', { name: 'Archive' }).click();
    const item = page.locator('li.archive-entry', { hasText: 'Stand-up' });
    await item.waitFor();
    const attendance = item.locator('table.attendance tbody tr', { hasText: 'Ada Lovelace' });
    await attendance.waitFor();
    assert.match(await attendance.textContent(), /Account/);
    const caller = item.locator('table.attendance tbody tr', { hasText: 'Phone ···1234' });
    assert.equal((await caller.locator('td[data-label="Kind"]').textContent()).trim(), 'Phone');
    await screenshot(page, '10-archive');
  });

  await step('repeat from the archive: the form is prefilled and scheduling moves the entry out of the archive', async () => {
    const item = page.locator('li.archive-entry', { hasText: 'Stand-up' });
    await item.getByRole('link', { name: 'Repeat Stand-up' }).click();
    await page.getByRole('heading', { name: 'Schedule again' }).waitFor();
    assert.equal(await page.getByLabel('Topic', { exact: true }).inputValue(), 'Stand-up');
    assert.equal(await page.getByLabel('Time zone').inputValue(), 'Europe/Berlin');
    const date = await page.getByLabel('Date', { exact: true }).inputValue();
    assert.ok(date >= ymd(new Date()), `the draft starts in the future (${date})`);
    await screenshot(page, '11-repeat-form');
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.waitForURL(/\/conferences\/[^/]+$/);
    await page.getByRole('heading', { name: 'Stand-up' }).waitFor();
    const archive = await apiCall('GET', '/conferences?view=archive', undefined, adaToken);
    assert.ok(!archive.body.some((e) => e.id === archiveId), 'the entry left the archive');
    await page.getByRole('link', { name: 'Archive' }).click();
    await page.getByText('No past conferences yet.').waitFor();
  });

  await step('an archive entry can be deleted after a confirmation', async () => {
    // Make another one the same way, then delete it in the portal.
    const started = await apiCall('POST', '/conferences/adhoc', { topic: 'Retro' }, adaToken);
    assert.equal(started.status, 201);
    const ended = await page.evaluate(async (id) => {
      const joined = await (await fetch('/api/v1/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ meetingId: id }) })).json();
      const ws = new WebSocket(joined.endpoint);
      return await new Promise((resolve) => {
        ws.onopen = () => ws.send(JSON.stringify({ type: 'join', token: joined.token, conference: joined.conference.id }));
        ws.onmessage = (event) => JSON.parse(event.data).type === 'joined' && ws.send(JSON.stringify({ type: 'endMeeting' }));
        ws.onclose = () => resolve(true);
      });
    }, started.body.meetingId);
    assert.ok(ended);
    await apiWait('GET', '/conferences?view=archive', adaToken, (a) => a.body?.find?.((e) => e.topic === 'Retro'), 'the Retro archive entry');
    await page.reload();
    const item = page.locator('li.archive-entry', { hasText: 'Retro' });
    await item.getByRole('button', { name: 'Delete Retro' }).click();
    const dialog = page.getByRole('dialog', { name: 'Delete this archive entry?' });
    await dialog.getByRole('button', { name: 'Delete', exact: true }).click();
    await page.getByText('“Retro” was removed from the archive.').waitFor();
    await item.waitFor({ state: 'detached' });
  });

  await step('phone-sized screens: the log, the form and the info page', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto('/');
    const card = page.locator('table.conference-log tbody tr', { hasText: 'Stand-up' });
    await card.waitFor();
    // Cells carry their labels on phones, and the table header is hidden.
    assert.equal(await page.locator('table.conference-log thead').isVisible(), false);
    assert.equal(await card.locator('td[data-label="Topic"]').isVisible(), true);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    assert.equal(overflow, false, 'the log fits the phone screen without sideways scrolling');
    await screenshot(page, '12-phone-log');
    await page.goto('/schedule');
    await page.getByLabel('Topic', { exact: true }).waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1), false, 'the form fits');
    await screenshot(page, '13-phone-schedule');
    await card.count();
    await page.goto('/');
    await page.locator('table.conference-log tbody tr', { hasText: 'Stand-up' }).getByRole('link', { name: 'Info about Stand-up' }).click();
    await page.getByTestId('meeting-id').waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1), false, 'the info page fits');
    await screenshot(page, '14-phone-info');
    // The portal follows the system's dark mode.
    await page.emulateMedia({ colorScheme: 'dark' });
    await screenshot(page, '15-phone-info-dark');
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto('/schedule');
    await page.getByLabel('Topic', { exact: true }).waitFor();
    await screenshot(page, '16-schedule-dark');
    await page.emulateMedia({ colorScheme: 'light' });
  });

  await step('a login that ends while the form is filled in: log in again, and the form is back', async () => {
    await page.goto('/schedule');
    await page.getByLabel('Topic', { exact: true }).fill('Budget review');
    await page.getByLabel('Invitees').fill('erin@example.org');
    // The session ends elsewhere (as when it expires): the cookie is no longer accepted.
    await page.context().clearCookies();
    await page.getByRole('button', { name: 'Schedule', exact: true }).click();
    await page.getByRole('status').filter({ hasText: 'Your login has ended' }).waitFor();
    await page.getByLabel('Login name').fill(ada.login);
    await page.getByLabel('Password').fill(ada.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('status').filter({ hasText: 'what you had filled in is back' }).waitFor();
    assert.match(page.url(), /\/schedule$/);
    assert.equal(await page.getByLabel('Topic', { exact: true }).inputValue(), 'Budget review');
    assert.equal(await page.getByLabel('Invitees').inputValue(), 'erin@example.org');
    await screenshot(page, '17-form-restored');
    // Taken once: opening the form again starts afresh.
    await page.getByRole('link', { name: 'My conferences' }).click();
    await page.getByRole('link', { name: 'Schedule', exact: true }).click();
    await page.getByLabel('Topic', { exact: true }).waitFor();
    assert.equal(await page.getByLabel('Topic', { exact: true }).inputValue(), '');
  });

  await step('no script errors on the way', async () => {
    const errors = browser.problems.filter((p) => p.startsWith('page error'));
    assert.deepEqual(errors, []);
  });
});
