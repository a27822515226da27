// A meeting with more people than Rick's window has room for: his grid shows as many tiles as
// fit, the last place counting the others, and the SFU sends him no video of those he does not
// see. When someone he does not see starts to speak, their tile takes the place of the one who
// spoke longest ago (nobody, here: the first camera in the grid's order), their video reaches
// him, and the video of the tile that gave up its place stops.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ARTIFACTS, adminToken, apiCall, assert, assertNoPageErrors, clickButton, inboundMedia, joinAsGuest, openBrowser, scenario, screenshot, step, waitFor } from './lib.mjs';

/** A mono 16-bit WAV of `seconds`: a 440 Hz tone at half scale (speech to the SFU), or silence. */
async function wav(name, seconds, tone) {
  const rate = 16_000;
  const samples = rate * seconds;
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i += 1) data.writeInt16LE(tone ? Math.round(16_000 * Math.sin((2 * Math.PI * 440 * i) / rate)) : 0, i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  const path = join(ARTIFACTS, name);
  await writeFile(path, Buffer.concat([header, data]));
  return path;
}

/** What Rick's grid shows: the names on the tiles shown and hidden, and the count tile's text. */
async function grid(page) {
  return page.evaluate(() => {
    const name = (f) => f.querySelector('.tile-name')?.textContent ?? '';
    const tiles = [...document.querySelectorAll('section.grid figure.tile')];
    return {
      shown: tiles.filter((f) => !f.hidden).map(name),
      hidden: tiles.filter((f) => f.hidden).map(name),
      tracks: Object.fromEntries(tiles.map((f) => [name(f), f.dataset.track ?? null])),
      more: document.querySelector('section.grid .more-tiles')?.textContent ?? null,
    };
  });
}

/** Frames of `track` Rick's browser decoded so far. */
async function frames(page, track) {
  return (await inboundMedia(page)).find((s) => s.kind === 'video' && s.track === track)?.framesDecoded ?? 0;
}

/** Waits until `track`'s decoded frames grow by more than `by`. */
async function framesGrow(page, track, by, what) {
  const start = await frames(page, track);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if ((await frames(page, track)) > start + by) return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what}: no more frames of ${track} decoded than ${start} in 20 s`);
}

/** Asserts that `track`'s frames stop: none decoded in 2 s once 1.5 s have passed for the SFU's change. */
async function framesStop(page, track, what) {
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const before = await frames(page, track);
  await new Promise((resolve) => setTimeout(resolve, 2000));
  const after = await frames(page, track);
  assert.equal(after, before, `${what}: ${after - before} frames decoded in 2 s`);
}

scenario('a large room shows the last speakers', async () => {
  const admin = await adminToken();
  const conference = await step('an ad hoc conference', async () => {
    const answer = await apiCall('POST', '/conferences/adhoc', { topic: 'All hands' }, admin);
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    return answer.body;
  });
  const silence = await wav('silence.wav', 2, false);
  const tone = await wav('tone.wav', 2, true);
  // The publishers send one layer each (two cores carry four browsers).
  const open = async (name, audio, viewport) => {
    const browser = await openBrowser(name, { viewport, args: [`--use-file-for-fake-audio-capture=${audio}`] });
    await browser.context.addInitScript(() => localStorage.setItem('conclave.simulcast', 'off'));
    return browser;
  };
  const ann = await open('ann', silence);
  const ben = await open('ben', silence);
  const fay = await open('fay', tone);
  // Room for three tiles in Rick's window: himself, one more, and the count.
  const rick = await open('rick', silence, { width: 900, height: 420 });

  await step('Ann, Ben and Fay join with their cameras; Fay mutes her microphone', async () => {
    await joinAsGuest(ann.page, conference, 'Ann');
    await joinAsGuest(ben.page, conference, 'Ben');
    await joinAsGuest(fay.page, conference, 'Fay');
    await clickButton(fay.page, 'Mute microphone');
    await waitFor(ann.page, () => window.__conclave.state().activeSpeaker === null, undefined, { what: 'silence after Fay muted', timeout: 15_000 });
  });

  const before = await step('Rick’s small window shows himself, the first camera and the count of the others', async () => {
    await joinAsGuest(rick.page, conference, 'Rick');
    await waitFor(rick.page, () => Object.keys(window.__conclave.state().participants).length === 4 && !!document.querySelector('section.grid .more-tiles'), undefined, {
      what: 'four participants and a count tile',
    });
    const view = await grid(rick.page);
    assert.ok(view.shown.length >= 2, `Rick should see himself and someone else: ${JSON.stringify(view)}`);
    assert.ok(view.shown.includes('Rick (you)'), JSON.stringify(view));
    assert.ok(view.hidden.includes('Fay'), `Fay joined last and has not spoken: ${JSON.stringify(view)}`);
    assert.equal(view.more, `+${view.hidden.length}${view.hidden.join(', ')}`, JSON.stringify(view));
    await screenshot(rick.page, '01-rick-before');
    return view;
  });

  const fayTrack = before.tracks.Fay;
  const annTrack = before.tracks.Ann;
  assert.ok(fayTrack && annTrack, JSON.stringify(before));
  await step('Rick receives the video he sees and none of Fay’s', async () => {
    await framesGrow(rick.page, annTrack, 10, 'Ann’s tile');
    await framesStop(rick.page, fayTrack, 'Fay’s tile is not shown');
  });

  await step('Fay speaks: her tile takes Ann’s place in Rick’s grid and her video reaches him', async () => {
    await clickButton(fay.page, 'Unmute microphone');
    await waitFor(rick.page, () => window.__conclave.state().spoke[0] !== undefined, undefined, { what: 'an active speaker at Rick’s', timeout: 15_000 });
    await waitFor(
      rick.page,
      () => {
        const fay = [...document.querySelectorAll('section.grid figure.tile')].find((f) => f.querySelector('.tile-name')?.textContent === 'Fay');
        return fay && !fay.hidden;
      },
      undefined,
      { what: 'Fay’s tile shown', timeout: 15_000 },
    );
    const view = await grid(rick.page);
    assert.ok(view.shown.includes('Fay') && view.hidden.includes('Ann'), JSON.stringify(view));
    assert.equal(view.shown.length, before.shown.length, `the grid keeps its size: ${JSON.stringify(view)}`);
    await framesGrow(rick.page, fayTrack, 10, 'Fay’s tile once she speaks');
    await screenshot(rick.page, '02-rick-fay-speaks');
  });

  await step('Ann’s video, no longer shown, stops', async () => {
    await framesStop(rick.page, annTrack, 'Ann’s tile gave its place to Fay');
  });

  await step('Fay stops; Rick joins again in a fresh page and his grid starts with her, who spoke last', async () => {
    await clickButton(fay.page, 'Mute microphone');
    await waitFor(rick.page, () => window.__conclave.state().activeSpeaker === null, undefined, { what: 'silence after Fay muted', timeout: 15_000 });
    await joinAsGuest(rick.page, conference, 'Rick');
    await waitFor(rick.page, () => Object.keys(window.__conclave.state().participants).length === 4 && !!document.querySelector('section.grid .more-tiles'), undefined, {
      what: 'four participants and a count tile after joining again',
    });
    const view = await grid(rick.page);
    assert.ok(view.shown.includes('Fay') && view.hidden.includes('Ann'), `the SFU named Fay as the last speaker: ${JSON.stringify(view)}`);
    await framesGrow(rick.page, view.tracks.Fay, 10, 'Fay’s tile after joining again');
  });

  await step('the count tile opens the participant list with everyone', async () => {
    const label = await rick.page.locator('section.grid .more-tiles').getAttribute('aria-label');
    assert.match(label, /^\d+ more participants?: show the list$/);
    await clickButton(rick.page, label);
    for (const name of ['Ann', 'Ben', 'Fay']) await rick.page.locator('.panel-side').getByText(name, { exact: true }).first().waitFor();
    await screenshot(rick.page, '03-rick-list');
  });

  assertNoPageErrors([ann, ben, fay, rick]);
});
