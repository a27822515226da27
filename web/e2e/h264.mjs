// A publisher that offers only H.264 (as a browser without VP8, or one whose H.264 comes first
// and is forced with setCodecPreferences) is answered with H.264 by the SFU, and another
// Chromium receives and decodes it; the other way VP8 still flows. A Firefox without H.264
// (Debian's, no OpenH264) is told it cannot play that video and still gets everyone else's.
// (Every browser that offers VP8 is answered with VP8: sfu/tests/browser_descriptions_are_answered.rs.)
import { adminToken, apiCall, assert, assertNoPageErrors, expectMediaFlowing, expectVideoFrom, joinAsGuest, openBrowser, openFirefox, rtpDetails, scenario, screenshot, step, waitForText } from './lib.mjs';

/**
 * Runs in the page before its scripts: every video track the page sends offers H.264 only
 * (the camera goes through addTransceiver, in simulcast; the screen through addTrack).
 */
function onlyH264() {
  const h264 = () => RTCRtpReceiver.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264' || c.mimeType === 'video/rtx');
  const addTrack = RTCPeerConnection.prototype.addTrack;
  RTCPeerConnection.prototype.addTrack = function (track, ...streams) {
    const sender = addTrack.call(this, track, ...streams);
    if (track.kind === 'video') this.getTransceivers().find((t) => t.sender === sender)?.setCodecPreferences(h264());
    return sender;
  };
  const addTransceiver = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (trackOrKind, init) {
    const transceiver = addTransceiver.call(this, trackOrKind, init);
    const kind = typeof trackOrKind === 'string' ? trackOrKind : trackOrKind.kind;
    if (kind === 'video') transceiver.setCodecPreferences(h264());
    return transceiver;
  };
}

/** The codec of the page's sending (outbound) or receiving (inbound) video, once it flows. */
async function videoCodec(page, direction, what) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const streams = (await rtpDetails(page))[direction].filter((s) => s.kind === 'video' && s.codec);
    const moving = streams.find((s) => (direction === 'outbound' ? s.framesEncoded : s.framesDecoded) > 0);
    if (moving) return moving;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${what}: no ${direction} video with a codec`);
}

scenario('a publisher that offers only H.264 is seen by another Chromium', async () => {
  const admin = await adminToken();
  const conference = await step('an ad hoc conference', async () => {
    const answer = await apiCall('POST', '/conferences/adhoc', { topic: 'H.264' }, admin);
    assert.equal(answer.status, 201, JSON.stringify(answer.body));
    return answer.body;
  });
  const h = await openBrowser('h264-sender');
  await h.context.addInitScript(onlyH264);
  const v = await openBrowser('vp8-sender');

  await step('Hana (H.264 only) and Victor (any codec) join through the join page', async () => {
    await joinAsGuest(h.page, conference, 'Hana');
    await joinAsGuest(v.page, conference, 'Victor');
  });

  await step('Hana sends H.264: the SFU answered her offer with it', async () => {
    const sent = await videoCodec(h.page, 'outbound', "Hana's camera");
    assert.equal(sent.codec, 'video/H264', JSON.stringify(sent));
    assert.match(sent.fmtp ?? '', /packetization-mode=1/);
  });

  await step('Victor receives Hana’s H.264 and decodes it, frames growing', async () => {
    const track = await expectVideoFrom(v.page, 'Hana');
    await expectMediaFlowing(v.page, { what: "Hana's H.264 camera on Victor's page", video: (t) => t === track });
    const received = await videoCodec(v.page, 'inbound', "Hana's video at Victor");
    assert.equal(received.codec, 'video/H264', JSON.stringify(received));
    await screenshot(v.page, '01-victor-sees-h264');
  });

  await step('Hana receives Victor’s VP8', async () => {
    const track = await expectVideoFrom(h.page, 'Victor');
    await expectMediaFlowing(h.page, { what: "Victor's camera on Hana's page", video: (t) => t === track });
    const received = await videoCodec(h.page, 'inbound', "Victor's video at Hana");
    assert.equal(received.codec, 'video/VP8', JSON.stringify(received));
  });

  const f = await openFirefox('firefox');
  await step('Fiona joins with Firefox, which does not decode H.264: she is told, and sees Victor', async () => {
    await joinAsGuest(f.page, conference, 'Fiona');
    await waitForText(f.page, "this browser cannot play Hana's video: it comes as H264, which this browser does not decode");
    await expectVideoFrom(f.page, 'Victor');
    await screenshot(f.page, '02-firefox-told-about-h264');
  });

  await step('Hana and Victor see Fiona', async () => {
    await expectVideoFrom(h.page, 'Fiona');
    await expectVideoFrom(v.page, 'Fiona');
  });

  assertNoPageErrors([h, v, f]);
});
