// Presentations (issue 14): the owner uploads a three-page PDF (each page one colour), shows
// it and turns to page 2 with the button and to page 3 with the keyboard; the guest's stage
// shows each page — checked on the rendered image's pixels, not on a label. The guest, a
// listener, has no upload button and the SFU refuses their page turn. A phone-sized screen
// still shows the page. Stopping clears the guest's stage.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ADMIN_PASSWORD, ARTIFACTS, adminToken, apiCall, assert, assertNoPageErrors, inMeeting, joinAsGuest, logIn, openBrowser, scenario, screenshot, step, waitFor } from './lib.mjs';

/** A PDF with one 960×540 page per colour, each filled with it. */
function pdf(colours) {
  const objects = ['<< /Type /Catalog /Pages 2 0 R >>'];
  objects.push(`<< /Type /Pages /Kids [${colours.map((_, i) => `${3 + 2 * i} 0 R`).join(' ')}] /Count ${colours.length} >>`);
  colours.forEach(([r, g, b], i) => {
    objects.push(`<< /Type /Page /Parent 2 0 R /MediaBox [0 0 960 540] /Contents ${4 + 2 * i} 0 R >>`);
    const content = `${r} ${g} ${b} rg 0 0 960 540 re f`;
    objects.push(`<< /Length ${content.length} >>\nstream\n${content}\nendstream`);
  });
  let out = '%PDF-1.4\n';
  const offsets = [];
  objects.forEach((object, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) out += `${String(offset).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

const COLOURS = { 1: [255, 0, 0], 2: [0, 255, 0], 3: [0, 0, 255] };

/** The colour in the middle of the stage's page image as drawn on a canvas, once it shows `page`. */
async function stageColour(page, number, what) {
  return waitFor(
    page,
    (n) => {
      const img = document.querySelector(`.stage-page img[data-page="${n}"]`);
      if (!img || !img.complete || img.naturalWidth === 0) return null;
      const canvas = document.createElement('canvas');
      canvas.width = img.naturalWidth;
      canvas.height = img.naturalHeight;
      const context = canvas.getContext('2d');
      context.drawImage(img, 0, 0);
      const [r, g, b] = context.getImageData(img.naturalWidth / 2, img.naturalHeight / 2, 1, 1).data;
      return { r, g, b, width: img.naturalWidth, shown: img.getBoundingClientRect().width };
    },
    number,
    { what },
  );
}

function assertColour(found, page) {
  const [r, g, b] = COLOURS[page];
  assert.ok(Math.abs(found.r - r) < 20 && Math.abs(found.g - g) < 20 && Math.abs(found.b - b) < 20, `page ${page} should be rgb(${r},${g},${b}), found ${JSON.stringify(found)}`);
}

scenario('a presentation from upload to the last page, followed by a guest', async () => {
  const admin = await adminToken();
  const started = await apiCall('POST', '/conferences/adhoc', { topic: 'Slides' }, admin);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const conference = started.body;
  const file = join(ARTIFACTS, 'three-colours.pdf');
  await writeFile(file, pdf([[1, 0, 0], [0, 1, 0], [0, 0, 1]]));
  const o = await openBrowser('owner');
  const g = await openBrowser('guest');

  await step('the owner and a guest join', async () => {
    await logIn(o.page, 'admin', ADMIN_PASSWORD);
    await o.page.goto(`/join/${conference.meetingId}`);
    await o.page.getByRole('button', { name: 'Join now' }).click();
    await inMeeting(o.page, "the owner's meeting");
    await joinAsGuest(g.page, conference, 'Gus Guest');
  });

  await step('the listener has no upload button; the owner uploads the PDF and shows it', async () => {
    assert.equal(await g.page.getByRole('button', { name: 'Present a file' }).count(), 0);
    await o.page.getByTestId('presentation-file').setInputFiles(file);
    await o.page.locator('.stage[data-page="1"]').waitFor();
    await o.page.getByText('Page 1 of 3').waitFor();
    assertColour(await stageColour(o.page, 1, "page 1 on the owner's stage"), 1);
    assertColour(await stageColour(g.page, 1, "page 1 on the guest's stage"), 1);
    await screenshot(o.page, '01-owner-presents');
  });

  await step("the owner turns to page 2 with the button; the guest's page shows page 2", async () => {
    await o.page.getByRole('button', { name: 'Next page' }).click();
    const found = await stageColour(g.page, 2, "page 2 on the guest's stage");
    assertColour(found, 2);
    assert.equal(found.width, 1280, 'the page image is 1280 px wide');
    await screenshot(g.page, '02-guest-sees-page-2');
  });

  await step('the owner turns to page 3 with the keyboard', async () => {
    // Off the buttons: the keys work wherever the focus is, except in a text field.
    await o.page.evaluate(() => document.activeElement?.blur());
    await o.page.keyboard.press('ArrowRight');
    assertColour(await stageColour(g.page, 3, "page 3 on the guest's stage"), 3);
    await o.page.keyboard.press('PageUp');
    assertColour(await stageColour(g.page, 2, 'back on page 2 after PageUp'), 2);
  });

  await step("the guest's own page turn is refused by the server", async () => {
    await g.page.evaluate(() => window.__conclave.session.setPresentationPage(3));
    const notice = await waitFor(g.page, () => window.__conclave.state().notice, undefined, { what: 'the refusal' });
    assert.equal(notice.code, 'forbidden');
    assert.equal(await o.page.evaluate(() => window.__conclave.state().presentation.page), 2, 'the page did not change');
    assertColour(await stageColour(g.page, 2, 'page 2 still'), 2);
  });

  await step('a late joiner sees the current page', async () => {
    const late = await openBrowser('late');
    await joinAsGuest(late.page, conference, 'Lea Late');
    assertColour(await stageColour(late.page, 2, "page 2 on the late joiner's stage"), 2);
    await late.close();
  });

  await step('on a phone-sized screen the page still shows above the tiles', async () => {
    await g.page.setViewportSize({ width: 390, height: 844 });
    const found = await stageColour(g.page, 2, 'page 2 on the phone');
    assert.ok(found.shown >= 300, `the page fills the phone's width (${found.shown} px)`);
    const stage = await g.page.locator('.stage-page').boundingBox();
    const strip = await g.page.locator('.grid.strip').boundingBox();
    assert.ok(stage && strip && stage.y < strip.y, `the stage is above the tiles (${JSON.stringify({ stage, strip })})`);
    await screenshot(g.page, '03-phone-stage');
  });

  await step("the owner stops presenting; the guest's stage goes away", async () => {
    await o.page.getByRole('button', { name: 'Stop presenting' }).click();
    await g.page.locator('.stage').waitFor({ state: 'detached' });
    await g.page.locator('.grid').first().waitFor();
  });

  assertNoPageErrors([o, g]);
});
