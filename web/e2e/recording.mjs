// Recording end to end: a moderatorPlus starts a meeting, a guest joins (both publish the fake
// camera and microphone), the moderatorPlus records about 10 s and stops; both see the
// indicator and the notice; a plain moderator is offered no button. The meeting ends, the
// archive shows the recording once it is composed, and its player seeks past 5 s (range
// requests) and plays. The Rust side (tests/portal.rs) checks the file in the S3 bucket.
import { adminToken, assert, assertNoPageErrors, createAccount, expectMediaFlowing, inMeeting, joinAsGuest, logIn, openBrowser, scenario, screenshot, step, waitFor } from './lib.mjs';

const GUEST = 'Gina Guest';

scenario('a moderatorPlus records a meeting and plays it in the archive', async () => {
  const admin = await adminToken();
  const rita = await createAccount(admin, { login: 'rita', displayName: 'Rita Recorder', level: 'moderatorPlus' });
  const r = await openBrowser('recorder');
  const g = await openBrowser('guest');

  const conference = await step('the moderatorPlus starts a meeting now and joins', async () => {
    await logIn(r.page, rita.login, rita.password);
    await r.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Schedule' }).click();
    await r.page.getByLabel('Topic (optional)').fill('Quarterly review');
    await r.page.getByRole('button', { name: 'Start conference now' }).click();
    await r.page.waitForURL(/\/join\/\d+$/);
    await r.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(r.page, "the recorder's meeting");
    await r.page.getByRole('button', { name: 'Meeting info' }).click();
    const info = r.page.getByRole('complementary', { name: 'Meeting info' });
    const meetingId = await info.getByRole('textbox', { name: 'Meeting ID' }).inputValue();
    const password = await info.getByRole('textbox', { name: 'Password' }).inputValue();
    await r.page.getByRole('button', { name: 'Close panel' }).click();
    return { meetingId, password };
  });

  await step('a guest joins; both receive media', async () => {
    await joinAsGuest(g.page, conference, GUEST);
    await expectMediaFlowing(r.page, { what: 'the recorder receives the guest' });
    await expectMediaFlowing(g.page, { what: 'the guest receives the recorder' });
    assert.equal(await g.page.getByRole('button', { name: 'Start recording' }).count(), 0, 'a guest is offered no recording button');
  });

  const started = await step('the moderatorPlus starts recording; everyone sees the indicator and the notice', async () => {
    await r.page.getByRole('button', { name: 'Start recording' }).click();
    const at = Date.now();
    await r.page.getByRole('button', { name: 'Stop recording' }).waitFor();
    for (const page of [r.page, g.page]) {
      await page.getByTitle('This meeting is being recorded').waitFor();
    }
    await g.page.getByText('Recording started by Rita Recorder.').waitFor();
    await screenshot(g.page, '01-guest-sees-recording');
    return at;
  });

  await step('after about 10 s it stops; the indicator goes', async () => {
    await r.page.waitForTimeout(Math.max(0, 10_000 - (Date.now() - started)));
    await r.page.getByRole('button', { name: 'Stop recording' }).click();
    await r.page.getByRole('button', { name: 'Start recording' }).waitFor();
    await g.page.getByText('Recording stopped by Rita Recorder.').waitFor();
    await g.page.getByTitle('This meeting is being recorded').waitFor({ state: 'detached' });
  });

  await step('the moderatorPlus ends the meeting', async () => {
    await r.page.getByRole('button', { name: 'End meeting' }).click();
    await r.page.getByRole('dialog').getByRole('button', { name: 'End meeting' }).click();
  });

  await step('the archive shows the recording once it is composed, and its player seeks and plays', async () => {
    await r.page.goto(new URL('/archive', r.page.url()).toString());
    const deadline = Date.now() + 120_000;
    // The composer runs after the stop; the archive entry appears when the meeting is over.
    while (!(await r.page.locator('.recording video').count())) {
      assert.ok(Date.now() < deadline, 'the recording did not appear in the archive within 2 minutes');
      await r.page.waitForTimeout(1_000);
      await r.page.reload();
    }
    await r.page.getByText(/Recorded .* by Rita Recorder/).waitFor();
    const played = await r.page.evaluate(async () => {
      const video = document.querySelector('.recording video');
      video.muted = true;
      if (video.readyState < 1) await new Promise((resolve, reject) => { video.onloadedmetadata = resolve; video.onerror = () => reject(new Error(`media error ${video.error?.code}`)); });
      const duration = video.duration;
      video.currentTime = 6;
      await new Promise((resolve) => { video.onseeked = resolve; });
      await video.play();
      await new Promise((resolve) => setTimeout(resolve, 500));
      return { duration, currentTime: video.currentTime, width: video.videoWidth, paused: video.paused };
    });
    assert.ok(played.duration > 8 && played.duration < 14, `about 10 s: ${JSON.stringify(played)}`);
    assert.ok(played.currentTime > 5, `the player sought past 5 s: ${JSON.stringify(played)}`);
    assert.ok(played.width > 0 && !played.paused, `the video plays: ${JSON.stringify(played)}`);
    await screenshot(r.page, '02-archive-player');
  });

  assertNoPageErrors([r, g]);
});
