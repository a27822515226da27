// Issue 17, mixed meetings: a Chromium participant (the owner) and a Firefox participant (a
// guest through the join page) see and hear each other both ways, whatever codecs each
// browser offers: the video each one publishes is decoded by the other (the SFU forwards
// without transcoding, so the codec it accepts from one browser must be one the other
// decodes), and the voice decodes as sound. Camera off and on, chat, screen sharing from
// Firefox to Chromium and back. A third participant, Firefox without setSinkId, is told
// instead of being offered a speaker choice that cannot work. Run again with the server in
// single-port mode (CONCLAVE_SFU_UDP_PORT), it checks that both browsers reach the SFU on that
// one port; run with ICE over TCP (CONCLAVE_SFU_ICE_TCP_PORT) while a firewall rule drops UDP
// to the SFU (CONCLAVE_E2E_UDP_BLOCKED), that both browsers reach it over TCP on that port —
// and get its sender reports there too, from webrtc-rs instead of the direct media path.
import { adminToken, apiCall, assert, assertNoPageErrors, choose, clickButton, createAccount, expectHeard, expectMediaFlowing, expectVideoFrom, fill, inMeeting, joinAsGuest, logIn, openBrowser, openFirefox, rtpDetails, scenario, senderReports, screenshot, selectedRemoteCandidates, step, tile, waitFor, waitForButton, waitForText } from './lib.mjs';

const OWNER = 'Chris Chromium';
const GUEST = 'Fiona Firefox';
const THIRD = 'Sam Nosink';
const PANEL = (name) => `aside[aria-label="${name}"]`;
const DIALOG = 'dialog[open]';

/** The codecs a page sends and receives, for the log and the assertions. */
async function codecs(page) {
  const details = await rtpDetails(page);
  const list = (streams) => [...new Set(streams.filter((s) => s.codec).map((s) => `${s.kind} ${s.codec}${s.fmtp ? ` (${s.fmtp})` : ''} pt ${s.payloadType}`))];
  return { sends: list(details.outbound), receives: list(details.inbound), receivers: details.receivers, details };
}

scenario('Chromium and Firefox participants see and hear each other', async () => {
  const admin = await adminToken();
  const owner = await createAccount(admin, { login: 'chris', displayName: OWNER });
  const ownerToken = (await apiCall('POST', '/auth/login', { login: owner.login, password: owner.password })).body.sessionToken;
  const started = await apiCall('POST', '/conferences/adhoc', { topic: 'Mixed browsers' }, ownerToken);
  assert.equal(started.status, 201, JSON.stringify(started.body));
  const conference = { meetingId: started.body.meetingId, password: started.body.password };

  const c = await openBrowser('chromium-owner');
  const f = await openFirefox('firefox-guest');

  await step('the owner joins with Chromium, the guest with Firefox through the join page', async () => {
    await logIn(c.page, owner.login, owner.password);
    await c.page.goto(`/join/${conference.meetingId}`);
    await clickButton(c.page, 'Join now');
    await inMeeting(c.page, "the owner's meeting");
    await joinAsGuest(f.page, conference, GUEST);
    for (const page of [c.page, f.page]) {
      await tile(page, OWNER);
      await tile(page, GUEST);
    }
  });

  // The SFU sends the media itself (docs/sfu.md, "Direct media"), and with it the sender
  // reports: each browser must have them for both kinds, and be able to read them.
  await step('the SFU\'s sender reports reach both browsers', async () => {
    for (const [name, page] of [
      ['Chromium', c.page],
      ['Firefox', f.page],
    ]) {
      const deadline = Date.now() + 15_000;
      let reports = await senderReports(page);
      while (!(reports.audio > 0 && reports.video > 0) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        reports = await senderReports(page);
      }
      assert.ok(reports.audio > 0 && reports.video > 0, `${name} has sender reports for audio and video (${JSON.stringify(reports)})`);
    }
  });

  await step('each decodes the video of the other browser and hears its voice', async () => {
    await expectVideoFrom(c.page, GUEST, { what: "the Firefox guest's camera in Chromium" });
    await expectVideoFrom(f.page, OWNER, { what: "the Chromium owner's camera in Firefox" });
    await expectMediaFlowing(c.page, { what: 'Chromium receives Firefox' });
    await expectMediaFlowing(f.page, { what: 'Firefox receives Chromium' });
    await expectHeard(c.page, 'Chromium hears Firefox');
    await expectHeard(f.page, 'Firefox hears Chromium');
    for (const [page, other] of [
      [c.page, GUEST],
      [f.page, OWNER],
    ])
      await waitFor(page, (name) => document.querySelector(`figure[aria-label^="${name}"] video`)?.videoWidth > 0, other, { what: `${other}'s video playing` });
    // Both connections of both browsers reach the SFU on one port: in single-port mode (the
    // server runs with CONCLAVE_SFU_UDP_PORT) its UDP port; with UDP to the SFU dropped (and
    // CONCLAVE_SFU_ICE_TCP_PORT) its ICE-TCP port.
    const single = process.env.CONCLAVE_SFU_UDP_PORT;
    const tcp = process.env.CONCLAVE_E2E_UDP_BLOCKED && process.env.CONCLAVE_SFU_ICE_TCP_PORT;
    const expected = single ? { protocol: 'udp', port: single } : tcp ? { protocol: 'tcp', port: tcp } : null;
    if (expected)
      for (const [page, browser] of [
        [c.page, 'Chromium'],
        [f.page, 'Firefox'],
      ]) {
        const remotes = await selectedRemoteCandidates(page);
        const connections = new Set(remotes.map((r) => r.connection));
        if (connections.size !== 2 || !remotes.every((r) => r.protocol === expected.protocol && String(r.port) === expected.port))
          throw new Error(`${browser} should reach the SFU over ${expected.protocol.toUpperCase()} on port ${expected.port} with both connections, but its selected pairs name ${JSON.stringify(remotes)}`);
      }
    await screenshot(c.page, '01-chromium-sees-firefox');
    await screenshot(f.page, '02-firefox-sees-chromium');
  });

  await step('the negotiated codecs: what one browser sends, the other decodes', async () => {
    const chromium = await codecs(c.page);
    const firefox = await codecs(f.page);
    console.log(`    Chromium sends ${JSON.stringify(chromium.sends)}, receives ${JSON.stringify(chromium.receives)}`);
    console.log(`    Firefox sends ${JSON.stringify(firefox.sends)}, receives ${JSON.stringify(firefox.receives)}`);
    console.log(`    Chromium's receivers accept ${JSON.stringify(chromium.receivers)}`);
    console.log(`    Firefox's receivers accept ${JSON.stringify(firefox.receivers)}`);
    const video = (list) => list.filter((s) => s.startsWith('video ')).map((s) => s.split(' ')[1].toLowerCase());
    // Firefox ESR as packaged has VP8, VP9 and AV1 but no H.264 (that needs the OpenH264
    // plugin it downloads): whatever Chromium sends must be one of those.
    const firefoxDecodes = await f.page.evaluate(() => RTCRtpReceiver.getCapabilities('video').codecs.map((c) => c.mimeType.toLowerCase()));
    const chromiumDecodes = await c.page.evaluate(() => RTCRtpReceiver.getCapabilities('video').codecs.map((c) => c.mimeType.toLowerCase()));
    for (const codec of video(chromium.sends))
      assert.ok(firefoxDecodes.includes(codec), `the SFU accepted ${codec} from Chromium, which Firefox cannot decode (Firefox decodes ${[...new Set(firefoxDecodes)]})`);
    for (const codec of video(firefox.sends))
      assert.ok(chromiumDecodes.includes(codec), `the SFU accepted ${codec} from Firefox, which Chromium cannot decode`);
    assert.ok(video(firefox.receives).length > 0, 'Firefox receives video');
    assert.ok(video(chromium.receives).length > 0, 'Chromium receives video');
    for (const { receives, who } of [
      { receives: chromium.receives, who: 'Chromium' },
      { receives: firefox.receives, who: 'Firefox' },
    ])
      assert.ok(
        receives.some((s) => s.startsWith('audio audio/opus')),
        `${who} receives Opus (${JSON.stringify(receives)})`,
      );
    // Each side decodes what it receives, frames growing per stream (not only in sum).
    for (const [page, who] of [
      [c.page, 'Chromium'],
      [f.page, 'Firefox'],
    ]) {
      const before = (await rtpDetails(page)).inbound.filter((s) => s.kind === 'video');
      const deadline = Date.now() + 15_000;
      let grown = false;
      while (!grown && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 300));
        const after = (await rtpDetails(page)).inbound.filter((s) => s.kind === 'video');
        const then = new Map(before.map((s) => [s.ssrc, s.framesDecoded]));
        grown = before.length > 0 && before.every((s) => after.some((a) => a.ssrc === s.ssrc && a.framesDecoded > then.get(s.ssrc)));
      }
      assert.ok(grown, `${who} decodes every video stream it receives, growing (${JSON.stringify(before)})`);
    }
  });

  await step('chat both ways', async () => {
    await clickButton(c.page, 'Chat');
    await fill(c.page, 'Message', 'Hello from Chromium');
    await clickButton(c.page, 'Send');
    await clickButton(f.page, 'Chat, 1 unread');
    await waitForText(f.page, 'Hello from Chromium', { within: '[role=log]' });
    await fill(f.page, 'Message', 'Hello back from Firefox');
    await f.page.keyboard.press('Enter');
    await waitForText(c.page, 'Hello back from Firefox', { within: '[role=log]' });
    await screenshot(f.page, '03-firefox-chat');
    await clickButton(c.page, 'Close panel');
    await clickButton(f.page, 'Close panel');
  });

  await step('camera off and on, each way', async () => {
    for (const [sender, receiver, name] of [
      [f, c, GUEST],
      [c, f, OWNER],
    ]) {
      const avatar = (who) => !!document.querySelector(`figure[aria-label^="${who}"] .avatar`);
      await clickButton(sender.page, 'Stop camera');
      await waitFor(receiver.page, avatar, name, { what: `${name}'s avatar in ${receiver.name}` });
      await clickButton(sender.page, 'Start camera');
      await waitFor(receiver.page, (who) => !document.querySelector(`figure[aria-label^="${who}"] .avatar`), name, { what: `${name}'s video back in ${receiver.name}` });
      const track = await tile(receiver.page, name);
      await expectMediaFlowing(receiver.page, { what: `${name}'s camera on again, in ${receiver.name}`, video: (t) => t === track, audio: false });
    }
  });

  await step('Firefox shares its screen and Chromium sees it; then Chromium shares and Firefox sees it', async () => {
    await clickButton(c.page, 'Participants');
    await clickButton(c.page, `Make ${GUEST} a speaker`, { within: PANEL('Participants') });
    await waitForButton(c.page, `Make ${GUEST} a listener`, { within: PANEL('Participants') });
    await clickButton(c.page, 'Close panel');
    for (const [sender, receiver, name] of [
      [f, c, GUEST],
      [c, f, OWNER],
    ]) {
      await clickButton(sender.page, 'Share screen');
      await waitForButton(sender.page, 'Stop sharing', { timeout: 20_000 });
      const track = await tile(receiver.page, `${name}'s screen`);
      assert.equal(typeof track, 'string', 'the screen tile names its track');
      await expectMediaFlowing(receiver.page, { what: `${name}'s screen in ${receiver.name}`, video: (t) => t === track, audio: false });
      await waitFor(receiver.page, (t) => document.querySelector(`figure[data-track="${t}"] video`)?.videoWidth > 0, track, { what: `the screen playing in ${receiver.name}` });
      const shared = await codecs(receiver.page);
      console.log(`    ${receiver.name} receives the screen of ${sender.name}: ${JSON.stringify(shared.receives.filter((s) => s.startsWith('video')))}`);
      await screenshot(receiver.page, `04-${receiver.name}-sees-screen`);
      await clickButton(sender.page, 'Stop sharing');
      await tile(receiver.page, `${name}'s screen`, { gone: true });
      await tile(sender.page, `${name}'s screen`, { gone: true });
    }
  });

  await step('a Firefox without setSinkId is told why there is no speaker choice, and still sees and hears both', async () => {
    const n = await openFirefox('firefox-without-setsinkid', { prefs: { 'media.setsinkid.enabled': false } });
    assert.equal(await n.page.evaluate(() => 'setSinkId' in HTMLMediaElement.prototype), false, 'this Firefox has no setSinkId');
    await joinAsGuest(n.page, conference, THIRD);
    await clickButton(n.page, 'Devices');
    await waitForText(n.page, 'This browser cannot send it to another one', { within: PANEL('Devices') });
    assert.equal(await n.page.evaluate(() => document.querySelector('#meeting-speaker')), null, 'no speaker select');
    // The microphone can still be switched there.
    await choose(n.page, 'Microphone', 'Fake Audio Input 3', { within: PANEL('Devices') });
    await screenshot(n.page, '05-firefox-without-setsinkid-devices');
    const tracks = await Promise.all([tile(n.page, OWNER), tile(n.page, GUEST)]);
    for (const [track, name] of [
      [tracks[0], OWNER],
      [tracks[1], GUEST],
    ])
      await expectMediaFlowing(n.page, { what: `the third participant receives ${name}`, video: (t) => t === track });
    await expectHeard(n.page, 'the third participant hears the others');
    await expectMediaFlowing(c.page, { what: 'Chromium receives the third participant', video: () => true });
    await clickButton(n.page, 'Leave');
    await clickButton(n.page, 'Leave', { within: DIALOG });
    await waitForText(n.page, 'You left the meeting');
    await tile(c.page, THIRD, { gone: true });
    await n.close();
  });

  await step('the Chromium owner ends the meeting; Firefox is told', async () => {
    await clickButton(c.page, 'End meeting');
    await clickButton(c.page, 'End meeting', { within: DIALOG });
    await waitForText(f.page, 'The conference has ended');
    await waitForText(c.page, 'The conference has ended');
    await screenshot(f.page, '06-firefox-conference-ended');
  });

  assertNoPageErrors([c, f]);
}, { deadlineSeconds: 420 });
