// Join → first frame, measured (a benchmark, not a timed test): someone who clicks "Join now" in
// the preview waits this long before the first remote video frame is on screen. Paula publishes
// her camera; Rick joins through the join page several times, each time in a fresh page, and
// the time from the click to the first decoded frame of Paula's tile is taken in Rick's page
// (requestVideoFrameCallback, the page's own clock). The median, min and max go to
// join-first-frame.json in the artifacts and, when CARGO_TARGET_DIR is set, in
// $CARGO_TARGET_DIR/bench-results/ beside the SFU's benchmarks.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARTIFACTS, adminToken, apiCall, assert, clickButton, fill, joinAsGuest, openBrowser, scenario, step, url, waitFor, waitForText } from './lib.mjs';

const JOINS = Number(process.env.CONCLAVE_BENCH_JOINS ?? 5);

/** Clicks "Join now" and waits in the page for the first frame of a remote camera. */
async function clickToFirstFrame(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const button = [...document.querySelectorAll('button')].find((b) => b.textContent?.trim() === 'Join now');
        if (!button) return reject(new Error('no "Join now" button'));
        const clicked = performance.now();
        const timeout = setTimeout(() => reject(new Error('no remote frame within 20 s')), 20_000);
        const watched = new WeakSet();
        const look = () => {
          for (const video of document.querySelectorAll('figure.tile[data-view] video')) {
            if (watched.has(video)) continue;
            watched.add(video);
            video.requestVideoFrameCallback(() => {
              clearTimeout(timeout);
              observer.disconnect();
              resolve(performance.now() - clicked);
            });
          }
        };
        const observer = new MutationObserver(look);
        observer.observe(document.body, { childList: true, subtree: true });
        button.click();
        look();
      }),
  );
}

scenario('join → first frame', async () => {
  const admin = await adminToken();
  const conference = await step('an ad hoc conference', async () => {
    const answer = await apiCall('POST', '/conferences/adhoc', { topic: 'First frame' }, admin);
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    return answer.body;
  });
  const p = await openBrowser('publisher');
  await step('Paula publishes her camera', () => joinAsGuest(p.page, conference, 'Paula'));

  const samples = [];
  for (let i = 1; i <= JOINS; i += 1) {
    await step(`join ${i} of ${JOINS}: click "Join now" → Paula's first frame`, async () => {
      const r = await openBrowser(`receiver-${i}`);
      await r.page.goto(url(`/join/${conference.meetingId}`));
      await fill(r.page, 'Meeting password', conference.password);
      await fill(r.page, 'Your name', `Rick ${i}`);
      await clickButton(r.page, 'Continue');
      await waitForText(r.page, 'Ready to join');
      await waitFor(r.page, () => document.querySelector('video')?.videoWidth > 0, undefined, { what: 'the self view' });
      const ms = await clickToFirstFrame(r.page);
      samples.push(ms);
      console.log(`    ${Math.round(ms)} ms`);
      await r.close();
    });
  }

  await step('the figures are written', async () => {
    const sorted = [...samples].sort((a, b) => a - b);
    const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
    const result = {
      benchmark: 'join-first-frame',
      what: 'click on "Join now" in the preview → first decoded frame of a remote camera, Chromium on loopback',
      at: new Date().toISOString(),
      joins: samples.length,
      medianMs: Math.round(median),
      minMs: Math.round(sorted[0]),
      maxMs: Math.round(sorted[sorted.length - 1]),
      samplesMs: samples.map(Math.round),
    };
    const text = `${JSON.stringify(result, null, 2)}\n`;
    await writeFile(join(ARTIFACTS, 'join-first-frame.json'), text);
    if (process.env.CARGO_TARGET_DIR) {
      const dir = join(process.env.CARGO_TARGET_DIR, 'bench-results');
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'join-first-frame.json'), text);
    }
    console.log(`    join → first frame: median ${result.medianMs} ms (min ${result.minMs}, max ${result.maxMs}, ${result.joins} joins)`);
    assert.equal(samples.length, JOINS);
  });
});
