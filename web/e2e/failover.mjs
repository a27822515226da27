// Issue 11, failover without a click: two Chromium pages in one meeting of the cluster in a box
// (tests/failover.rs). When both see and hear each other, this script prints `READY <conference
// id>`; the test kills the SFU process that holds the meeting (kill -9) and answers `KILLED` on
// standard input. Both pages must come back by themselves — no click — in one room on another
// SFU pod, with media flowing; the script prints `BACK <milliseconds from KILLED to media on
// both pages>` for the test to report.
import { createInterface } from 'node:readline';
import { assert, clickButton, expectHeard, expectMediaFlowing, inMeeting, joinAsGuest, logIn, openBrowser, scenario, screenshot, step, tile, waitFor } from './lib.mjs';

const OWNER = 'Administrator';
const GUEST = 'Gus Guest';

const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

/** What the page's session is connected to: its ticket's endpoint and how many websockets it opened. */
const connection = (page) => page.evaluate(() => ({ endpoint: window.__conclave?.session.ticket?.endpoint ?? null, pod: window.__conclave?.session.ticket?.pod ?? null, connections: window.__conclave?.session.connections ?? 0 }));

scenario('a meeting outlives the SFU pod that held it', async () => {
  // Made through the API and placed by the operator before this script starts.
  const conference = { id: process.env.CONCLAVE_CONFERENCE_ID, meetingId: process.env.CONCLAVE_MEETING_ID, password: process.env.CONCLAVE_MEETING_PASSWORD };
  assert.ok(conference.id && conference.meetingId && conference.password, 'the test passes the meeting in CONCLAVE_CONFERENCE_ID, CONCLAVE_MEETING_ID, CONCLAVE_MEETING_PASSWORD');

  const owner = await openBrowser('owner');
  const guest = await openBrowser('guest');
  const pages = [owner.page, guest.page];

  await step('the owner and a guest are in the meeting, seeing and hearing each other', async () => {
    await logIn(owner.page, 'admin', process.env.CONCLAVE_ADMIN_PASSWORD);
    await owner.page.goto(`/join/${conference.meetingId}`);
    await clickButton(owner.page, 'Join now');
    await inMeeting(owner.page, "the owner's meeting");
    await joinAsGuest(guest.page, conference, GUEST);
    for (const page of pages) {
      await tile(page, OWNER);
      await tile(page, GUEST);
      await expectMediaFlowing(page, { what: 'before the failover' });
    }
    await expectHeard(guest.page, 'the guest hears the owner');
    await screenshot(owner.page, '01-before');
  });

  const before = await Promise.all(pages.map(connection));
  assert.equal(before[0].endpoint, before[1].endpoint, `both pages on one pod: ${JSON.stringify(before)}`);
  console.log(`READY ${conference.id}`);
  assert.equal((await nextLine()).trim(), 'KILLED');
  const killed = Date.now();
  let back;

  await step('both pages come back by themselves in one room on another pod, media flowing', async () => {
    for (const page of pages) {
      await waitFor(page, (endpoint) => window.__conclave?.state().phase === 'joined' && window.__conclave.session.ticket?.endpoint !== endpoint, before[0].endpoint, { what: 'the page to rejoin on another pod', timeout: 30_000 });
    }
    await Promise.all(pages.map((page) => expectMediaFlowing(page, { what: 'after the failover', timeout: 30_000 })));
    back = Date.now() - killed;
    const after = await Promise.all(pages.map(connection));
    assert.equal(after[0].endpoint, after[1].endpoint, `both pages in one room after the failover: ${JSON.stringify(after)}`);
    for (const [i, page] of pages.entries()) {
      assert.ok(after[i].connections > before[i].connections, `page ${i} reconnected: ${JSON.stringify({ before: before[i], after: after[i] })}`);
      await tile(page, OWNER);
      await tile(page, GUEST);
    }
    await expectHeard(guest.page, 'the guest hears the owner again');
    await expectHeard(owner.page, 'the owner hears the guest again');
    await screenshot(owner.page, '02-after');
  });
  // On a line of its own (a step prints its outcome after its name).
  console.log(`BACK ${back}`);
  lines.close();
});
