// The shell's protocol order against fake websocket and peer connections (docs/signaling.md):
// join first, `publish` before each offer, candidates held until the remote description,
// subscriber tracks mapped by mid, and a reconnect with a fresh token after a drop.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError, type JoinResponse } from '../api';
import type { ClientMessage, ServerMessage } from '../generated/signal';
import type { RoomAction } from './room';
import { MAX_TRACK_VIEWS, MeetingSession, type LocalMedia } from './session';

class FakeSocket {
  static OPEN = 1;
  static all: FakeSocket[] = [];
  readyState = 0;
  sent: ClientMessage[] = [];
  onopen: (() => void) | null = null;
  onmessage: ((event: { data: string }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(readonly url: string) {
    FakeSocket.all.push(this);
  }
  send(text: string) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = 3;
    this.onclose?.();
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(message: ServerMessage) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
}

interface FakeTransceiver {
  mid: string | null;
  currentDirection: string;
  receiver: { track: { id: string } };
  sender?: { track: unknown };
}

class FakePeer {
  static all: FakePeer[] = [];
  remoteDescription: { type: string; sdp: string } | null = null;
  localDescription: { type: string; sdp: string } | null = null;
  connectionState = 'new';
  signalingState = 'stable';
  candidates: RTCIceCandidateInit[] = [];
  senders: Array<{ track: unknown; replaceTrack: (t: unknown) => Promise<void> }> = [];
  transceivers: FakeTransceiver[] = [];
  offers = 0;
  onicecandidate: ((e: unknown) => void) | null = null;
  onconnectionstatechange: (() => void) | null = null;
  ontrack: (() => void) | null = null;
  constructor() {
    FakePeer.all.push(this);
  }
  addTrack(track: unknown) {
    const sender = {
      track,
      replaceTrack: async (t: unknown) => {
        sender.track = t;
      },
    };
    this.senders.push(sender);
    this.transceivers.push({ mid: null, currentDirection: 'sendrecv', receiver: { track: { id: `receiver-of-${(track as { id: string }).id}` } }, sender });
    return sender;
  }
  /** The camera goes this way: a transceiver with its simulcast encodings. */
  addTransceiver(track: unknown, init: { sendEncodings?: RTCRtpEncodingParameters[] }) {
    const sender = this.addTrack(track) as ReturnType<FakePeer['addTrack']> & {
      encodings: RTCRtpEncodingParameters[];
      getParameters: () => { encodings: RTCRtpEncodingParameters[] };
      setParameters: (p: { encodings: RTCRtpEncodingParameters[] }) => Promise<void>;
    };
    sender.encodings = (init.sendEncodings ?? []).map((e) => ({ ...e }));
    sender.getParameters = () => ({ encodings: sender.encodings.map((e) => ({ ...e })) });
    sender.setParameters = async (p) => {
      sender.encodings = p.encodings;
    };
    return this.transceivers[this.transceivers.length - 1];
  }
  removeTrack(sender: unknown) {
    this.senders = this.senders.filter((s) => s !== sender);
  }
  getTransceivers() {
    return this.transceivers;
  }
  getSenders() {
    return this.senders;
  }
  /**
   * Like Firefox: each sending section's msid names the track with an ID of the browser's own,
   * not `MediaStreamTrack.id`.
   */
  async createOffer() {
    this.offers += 1;
    const sections = this.transceivers
      .filter((t) => t.sender)
      .map((t, index) => {
        t.mid ??= String(index);
        const track = t.sender!.track as { id: string; kind: string } | null;
        return [`m=${track?.kind ?? 'audio'} 0 UDP/TLS/RTP/SAVPF 96`, 'a=bundle-only', `a=mid:${t.mid}`, `a=msid:{stream} {sdp-${track?.id}}`].join('\r\n');
      });
    return { type: 'offer', sdp: [`v=0\r\ns=offer ${this.offers}`, ...sections, ''].join('\r\n') };
  }
  async createAnswer() {
    return { type: 'answer', sdp: 'answer' };
  }
  async setLocalDescription(description: { type: string; sdp: string }) {
    this.localDescription = description;
  }
  async setRemoteDescription(description: { type: string; sdp: string }) {
    this.remoteDescription = description;
    // Like a browser: one receiving transceiver per offered media section.
    for (const match of description.sdp.matchAll(/a=mid:(\S+)/g)) {
      if (!this.transceivers.some((t) => t.mid === match[1])) {
        this.transceivers.push({ mid: match[1], currentDirection: 'recvonly', receiver: { track: { id: `receiver-${match[1]}` } } });
      }
    }
  }
  async addIceCandidate(candidate: RTCIceCandidateInit) {
    this.candidates.push(candidate);
  }
  close() {
    this.connectionState = 'closed';
  }
}

class FakeStream {
  constructor(readonly tracks: unknown[]) {}
}

function fakeTrack(id: string, kind: 'audio' | 'video') {
  return { id, kind, enabled: true, readyState: 'live', stop: vi.fn(), addEventListener: vi.fn() } as unknown as MediaStreamTrack;
}

function ticket(token: string, inSeconds = 300, pod = 'sfu-0'): JoinResponse {
  return {
    token,
    endpoint: `ws://${pod}.test/rtc?${token}`,
    pod,
    role: 'listener',
    state: 'ready',
    identity: 'guest:1',
    displayName: 'Gus',
    expiresAt: new Date(Date.now() + inSeconds * 1000).toISOString(),
    conference: { id: 'c1', topic: 'Sync', meetingId: '123456789', media: 'audioVideo', endsAt: null },
  } as JoinResponse;
}

const joined: ServerMessage = {
  type: 'joined',
  you: 'p2',
  role: 'listener',
  grants: { chat: true, publishMedia: true, manageMicrophones: false, present: false, changeRoles: false, exclude: false, endMeeting: false, record: false },
  participants: [{ id: 'p2', displayName: 'Gus', role: 'listener', microphoneBlocked: false }],
  tracks: [],
  chat: [],
  recording: false,
  audioOnly: false,
};

function local(): LocalMedia {
  return {
    microphone: fakeTrack('mic-1', 'audio'),
    microphoneMuted: false,
    camera: fakeTrack('cam-1', 'video'),
    screen: null,
    microphoneProblem: null,
    cameraProblem: null,
    screenProblem: null,
  };
}

const flush = () => vi.advanceTimersByTimeAsync(1);

function start(overrides: { rejoin?: (lostPod?: string) => Promise<JoinResponse>; first?: JoinResponse } = {}) {
  const actions: RoomAction[] = [];
  const remote: Array<Map<string, MediaStreamTrack>> = [];
  const gaveUp: ApiError[] = [];
  const rejoin = vi.fn(overrides.rejoin ?? (async () => ticket('fresh')));
  const media = local();
  const session = new MeetingSession({
    ticket: overrides.first ?? ticket('first'),
    rejoin,
    dispatch: (a) => actions.push(a),
    onRemoteTracks: (m) => remote.push(new Map(m)),
    onLocal: () => {},
    onGiveUp: (e) => gaveUp.push(e),
    local: media,
    audioOnly: false,
  });
  session.start();
  return { session, actions, remote, gaveUp, rejoin, media };
}

beforeEach(() => {
  vi.useFakeTimers();
  FakeSocket.all = [];
  FakePeer.all = [];
  vi.stubGlobal('WebSocket', FakeSocket);
  vi.stubGlobal('RTCPeerConnection', FakePeer);
  vi.stubGlobal('MediaStream', FakeStream);
});

afterEach(() => {
  vi.unstubAllGlobals();
  vi.useRealTimers();
});

describe('the meeting session', () => {
  it('joins with its token and announces each track before offering it', async () => {
    const { actions } = start();
    await flush();
    const ws = FakeSocket.all[0];
    expect(ws.url).toBe('ws://sfu-0.test/rtc?first');
    ws.open();
    expect(ws.sent).toEqual([{ type: 'join', token: 'first', conference: 'c1' }]);
    ws.receive(joined);
    await flush();
    expect(actions.some((a) => a.kind === 'server' && a.message.type === 'joined')).toBe(true);
    expect(ws.sent.slice(1).map((m) => m.type)).toEqual(['publish', 'publish', 'offer']);
    // By the ID the offer gives each track (Firefox's differ from MediaStreamTrack.id).
    expect(ws.sent[1]).toEqual({ type: 'publish', trackId: '{sdp-mic-1}', source: 'microphone', muted: false });
    expect(ws.sent[2]).toEqual({ type: 'publish', trackId: '{sdp-cam-1}', source: 'camera', muted: false });
    expect(ws.sent[3]).toEqual({ type: 'offer', sdp: FakePeer.all[0].localDescription?.sdp });
    const [publisher] = FakePeer.all;
    expect(publisher.senders).toHaveLength(2);
    ws.receive({ type: 'answer', sdp: 'the answer' });
    await flush();
    expect(publisher.remoteDescription).toEqual({ type: 'answer', sdp: 'the answer' });
  });

  it('tells the SFU which codecs this browser decodes when it can', async () => {
    // Like Firefox without OpenH264: no H.264 among what it receives.
    vi.stubGlobal('RTCRtpReceiver', {
      getCapabilities: (kind: string) => ({
        codecs: kind === 'audio' ? [{ mimeType: 'audio/opus' }] : [{ mimeType: 'video/VP8' }, { mimeType: 'video/rtx' }, { mimeType: 'video/VP8' }],
      }),
    });
    start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    expect(ws.sent[0]).toEqual({ type: 'join', token: 'first', conference: 'c1', receiveCodecs: ['audio/opus', 'video/VP8', 'video/rtx'] });
  });

  it('answers the subscriber offer and maps room tracks by mid, holding early candidates', async () => {
    const { remote } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    const subscriber = FakePeer.all[1];
    ws.receive({ type: 'candidate', target: 'subscriber', candidate: { candidate: 'candidate:1 1 udp 1 127.0.0.1 47001 typ host', sdpMid: '0', sdpMLineIndex: 0 } });
    await flush();
    expect(subscriber.candidates).toEqual([]);
    const offer = ['v=0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'a=mid:0', 'a=msid:p1 t1', 'm=video 9 UDP/TLS/RTP/SAVPF 96', 'a=mid:1', 'a=msid:p1 t2', ''].join('\r\n');
    ws.receive({ type: 'offer', sdp: offer });
    await flush();
    expect(subscriber.candidates).toHaveLength(1);
    expect(ws.sent.at(-1)).toEqual({ type: 'answer', sdp: 'answer' });
    const map = remote.at(-1)!;
    expect([...map.keys()]).toEqual(['t1', 't2']);
    expect(map.get('t2')?.id).toBe('receiver-1');
  });

  it('sends the camera in three simulcast layers and pauses the ones the SFU says nobody receives', async () => {
    const { session } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    const [publisher] = FakePeer.all;
    const camera = publisher.senders[1] as unknown as { getParameters: () => { encodings: RTCRtpEncodingParameters[] } };
    expect(camera.getParameters().encodings.map((e) => e.rid)).toEqual(['q', 'h', 'f']);
    ws.receive({ type: 'layersWanted', trackId: '{sdp-cam-1}', layers: ['low'] });
    await flush();
    expect(camera.getParameters().encodings.map((e) => e.active)).toEqual([true, false, false]);
    ws.receive({ type: 'layersWanted', trackId: '{sdp-cam-1}', layers: ['low', 'high'] });
    await flush();
    expect(camera.getParameters().encodings.map((e) => e.active)).toEqual([true, false, true]);
    // Another track's layers change nothing here.
    ws.receive({ type: 'layersWanted', trackId: 'someone-else', layers: ['low'] });
    await flush();
    expect(camera.getParameters().encodings.map((e) => e.active)).toEqual([true, false, true]);
    // Tile views go to the SFU, and again after a reconnect.
    expect(session.viewTracks([{ track: 't9', visible: false, width: 0, height: 0 }])).toBe(true);
    expect(ws.sent.at(-1)).toEqual({ type: 'viewTracks', views: [{ track: 't9', visible: false, width: 0, height: 0 }] });
    // A large room's views go in messages the SFU accepts (it refuses more than 256 entries).
    const many = Array.from({ length: 600 }, (_, i) => ({ track: `t${i}`, visible: false, width: 0, height: 0 }));
    const before = ws.sent.length;
    expect(session.viewTracks(many)).toBe(true);
    const messages = ws.sent.slice(before) as { type: string; views: unknown[] }[];
    expect(messages.map((m) => [m.type, m.views.length])).toEqual([
      ['viewTracks', MAX_TRACK_VIEWS],
      ['viewTracks', MAX_TRACK_VIEWS],
      ['viewTracks', 600 - 2 * MAX_TRACK_VIEWS],
    ]);
    expect(messages.flatMap((m) => m.views)).toEqual(many);
  });

  it('sends the camera in one layer where this browser opted out of simulcast', async () => {
    localStorage.setItem('conclave.simulcast', 'off');
    start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    const [publisher] = FakePeer.all;
    expect((publisher.senders[1] as unknown as { encodings?: unknown }).encodings).toBeUndefined();
    localStorage.removeItem('conclave.simulcast');
  });

  it('mutes the microphone by the track ID it published', async () => {
    const { session } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    await session.setMicrophoneMuted(true);
    expect(ws.sent.at(-1)).toEqual({ type: 'muteTrack', trackId: '{sdp-mic-1}', muted: true });
  });

  it('switches devices in place: the new track replaces the old in its sender, the old device is released', async () => {
    const asked: MediaStreamConstraints[] = [];
    const fresh = { mic: fakeTrack('mic-2', 'audio'), cam: fakeTrack('cam-2', 'video') };
    let refuse = false;
    vi.stubGlobal('navigator', {
      mediaDevices: {
        getUserMedia: async (c: MediaStreamConstraints) => {
          asked.push(c);
          if (refuse) throw Object.assign(new Error('busy'), { name: 'NotReadableError' });
          return { getAudioTracks: () => (c.audio ? [fresh.mic] : []), getVideoTracks: () => (c.video ? [fresh.cam] : []) };
        },
      },
    });
    const before = local();
    const locals: LocalMedia[] = [];
    const session = new MeetingSession({
      ticket: ticket('first'),
      rejoin: async () => ticket('fresh'),
      dispatch: () => {},
      onRemoteTracks: () => {},
      onLocal: (l) => locals.push(l),
      onGiveUp: () => {},
      local: { ...before, microphoneMuted: true },
      audioOnly: false,
    });
    session.start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    const [publisher] = FakePeer.all;
    const sentBefore = ws.sent.length;

    await session.chooseDevice('microphone', 'usb-mic');
    expect(asked.at(-1)?.audio).toMatchObject({ deviceId: { exact: 'usb-mic' } });
    expect(publisher.senders[0].track).toBe(fresh.mic);
    expect(fresh.mic.enabled).toBe(false);
    expect(before.microphone!.stop).toHaveBeenCalled();
    expect(locals.at(-1)).toMatchObject({ microphone: fresh.mic, microphoneMuted: true, microphoneDevice: 'usb-mic' });
    // No renegotiation and no new publication: the SFU still knows the track by its first ID.
    expect(ws.sent.length).toBe(sentBefore);
    await session.setMicrophoneMuted(false);
    expect(ws.sent.at(-1)).toEqual({ type: 'muteTrack', trackId: '{sdp-mic-1}', muted: false });

    await session.chooseDevice('camera', 'usb-cam');
    expect(publisher.senders[1].track).toBe(fresh.cam);
    expect(before.camera!.stop).toHaveBeenCalled();

    // A device that cannot be had: the one in use stays, the problem is told.
    refuse = true;
    await session.chooseDevice('camera', 'broken-cam');
    expect(publisher.senders[1].track).toBe(fresh.cam);
    expect(fresh.cam.stop).not.toHaveBeenCalled();
    expect(locals.at(-1)?.camera).toBe(fresh.cam);
    expect(locals.at(-1)?.cameraProblem).toBeTruthy();
  });

  it('reconnects at once with a fresh token after the websocket drops, then with back-off', async () => {
    const { actions, rejoin } = start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive(joined);
    await flush();
    FakeSocket.all[0].close();
    await flush();
    expect(actions.at(-1)).toEqual({ kind: 'reconnecting' });
    expect(FakePeer.all.slice(0, 2).every((p) => p.connectionState === 'closed')).toBe(true);
    // The first attempt does not wait: the API holds the join until the meeting moved.
    await flush();
    expect(rejoin).toHaveBeenCalledTimes(1);
    const again = FakeSocket.all[1];
    expect(again.url).toBe('ws://sfu-0.test/rtc?fresh');
    again.open();
    expect(again.sent[0]).toEqual({ type: 'join', token: 'fresh', conference: 'c1' });
    // Dropped again before being admitted: now the back-off applies.
    again.close();
    await flush();
    expect(rejoin).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1300);
    expect(rejoin).toHaveBeenCalledTimes(2);
  });

  it('joins again at once after `moved`, naming the server it lost, and lands where the API says', async () => {
    const { rejoin, actions } = start({ rejoin: async () => ticket('moved', 300, 'sfu-1') });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive(joined);
    await flush();
    FakeSocket.all[0].receive({ type: 'closed', reason: 'moved' });
    // No back-off: the rejoin goes out on the next turn of the event loop.
    await flush();
    expect(actions).toContainEqual({ kind: 'reconnecting' });
    expect(rejoin).toHaveBeenCalledTimes(1);
    expect(rejoin).toHaveBeenLastCalledWith('sfu-0');
    const again = FakeSocket.all[1];
    expect(again.url).toBe('ws://sfu-1.test/rtc?moved');
    again.open();
    expect(again.sent[0]).toEqual({ type: 'join', token: 'moved', conference: 'c1' });
  });

  it('asks the API again at once when the SFU does not hold the meeting, backing off when it repeats', async () => {
    let calls = 0;
    const { rejoin, gaveUp } = start({
      rejoin: async () => {
        calls += 1;
        return ticket(`t${calls}`, 300, calls === 1 ? 'sfu-1' : 'sfu-2');
      },
    });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive({ type: 'error', code: 'wrongPod', message: 'this meeting is not on this media server any more; join again through the API' });
    await flush();
    expect(rejoin).toHaveBeenCalledTimes(1);
    expect(rejoin).toHaveBeenLastCalledWith('sfu-0');
    // The next server refuses too (its list is behind): this time with the back-off.
    FakeSocket.all[1].open();
    FakeSocket.all[1].receive({ type: 'error', code: 'wrongPod', message: 'not here' });
    await flush();
    expect(rejoin).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1300);
    expect(rejoin).toHaveBeenCalledTimes(2);
    expect(rejoin).toHaveBeenLastCalledWith('sfu-1');
    expect(FakeSocket.all.at(-1)?.url).toBe('ws://sfu-2.test/rtc?t2');
    expect(gaveUp).toEqual([]);
  });

  it('names the lost server after a dropped websocket and failed media, but not after being too slow', async () => {
    const { rejoin } = start({ rejoin: async () => ticket('fresh', 300, 'sfu-0') });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive(joined);
    await flush();
    FakeSocket.all[0].close();
    await vi.advanceTimersByTimeAsync(700);
    expect(rejoin).toHaveBeenLastCalledWith('sfu-0');
    FakeSocket.all[1].open();
    FakeSocket.all[1].receive(joined);
    await flush();
    // ICE fails on the new connection.
    const subscriber = FakePeer.all.at(-1)!;
    subscriber.connectionState = 'failed';
    subscriber.onconnectionstatechange?.();
    await vi.advanceTimersByTimeAsync(700);
    expect(rejoin).toHaveBeenCalledTimes(2);
    expect(rejoin).toHaveBeenLastCalledWith('sfu-0');
    FakeSocket.all[2].open();
    FakeSocket.all[2].receive(joined);
    await flush();
    FakeSocket.all[2].receive({ type: 'closed', reason: 'tooSlow' });
    await vi.advanceTimersByTimeAsync(700);
    expect(rejoin).toHaveBeenCalledTimes(3);
    expect(rejoin).toHaveBeenLastCalledWith(undefined);
  });

  it('keeps naming the lost server while the API cannot be reached', async () => {
    let calls = 0;
    const { rejoin } = start({
      rejoin: async () => {
        calls += 1;
        if (calls < 2) throw new ApiError(0, 'network', 'offline');
        return ticket('back', 300, 'sfu-1');
      },
    });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive(joined);
    await flush();
    FakeSocket.all[0].receive({ type: 'closed', reason: 'moved' });
    await flush();
    expect(rejoin).toHaveBeenNthCalledWith(1, 'sfu-0');
    await vi.advanceTimersByTimeAsync(1300);
    expect(rejoin).toHaveBeenNthCalledWith(2, 'sfu-0');
    FakeSocket.all.at(-1)!.open();
    FakeSocket.all.at(-1)!.receive(joined);
    await flush();
    // Admitted on sfu-1: a later drop names sfu-1.
    FakeSocket.all.at(-1)!.close();
    await vi.advanceTimersByTimeAsync(700);
    expect(rejoin).toHaveBeenLastCalledWith('sfu-1');
  });

  it('keeps trying while the API cannot be reached, backing off', async () => {
    let calls = 0;
    const { rejoin } = start({
      rejoin: async () => {
        calls += 1;
        if (calls < 3) throw new ApiError(0, 'network', 'offline');
        return ticket('back');
      },
    });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive({ type: 'closed', reason: 'gone' });
    await vi.advanceTimersByTimeAsync(700);
    expect(rejoin).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1300);
    expect(rejoin).toHaveBeenCalledTimes(2);
    await vi.advanceTimersByTimeAsync(2500);
    expect(rejoin).toHaveBeenCalledTimes(3);
    expect(FakeSocket.all.at(-1)?.url).toBe('ws://sfu-0.test/rtc?back');
  });

  it('stays out after being excluded, and gives up when the conference ended', async () => {
    const excluded = start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive(joined);
    FakeSocket.all[0].receive({ type: 'closed', reason: 'excluded' });
    await flush();
    FakeSocket.all[0].close();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(excluded.rejoin).not.toHaveBeenCalled();
    expect(excluded.actions.at(-1)).toEqual({ kind: 'server', message: { type: 'closed', reason: 'excluded' } });

    FakeSocket.all = [];
    const ended = start({ rejoin: async () => Promise.reject(new ApiError(409, 'conferenceEnded', 'this conference has ended')) });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].close();
    await vi.advanceTimersByTimeAsync(1000);
    expect(ended.gaveUp.map((e) => e.code)).toEqual(['conferenceEnded']);
  });

  it('joins again after its account changed, and gives up when the rejoin finds it excluded', async () => {
    const changed = start();
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive(joined);
    FakeSocket.all[0].receive({ type: 'closed', reason: 'revoked' });
    await flush();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(changed.rejoin).toHaveBeenCalled();
    expect(changed.gaveUp).toEqual([]);

    FakeSocket.all = [];
    const excluded = start({ rejoin: async () => Promise.reject(new ApiError(403, 'excluded', 'a moderator removed you from this meeting')) });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].receive({ type: 'error', code: 'revoked', message: 'your account changed since this token was issued; join again' });
    await flush();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(excluded.rejoin).toHaveBeenCalledTimes(1);
    expect(excluded.gaveUp.map((e) => e.code)).toEqual(['excluded']);
  });

  it('gives up when the login has ended instead of retrying for ever', async () => {
    const expired = start({ rejoin: async () => Promise.reject(new ApiError(401, 'unauthenticated', 'log in first')) });
    await flush();
    FakeSocket.all[0].open();
    FakeSocket.all[0].close();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(expired.rejoin).toHaveBeenCalledTimes(1);
    expect(expired.gaveUp.map((e) => e.code)).toEqual(['unauthenticated']);
  });

  it('releases camera and microphone when the meeting ends for us, and a camera that arrives later', async () => {
    let arrive: (stream: unknown) => void = () => {};
    const late = fakeTrack('cam-late', 'video');
    let asked = 0;
    vi.stubGlobal('navigator', {
      mediaDevices: {
        getUserMedia: () => {
          asked += 1;
          return new Promise((resolve) => (arrive = resolve));
        },
      },
    });
    const { session, media } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    await session.setCamera(false);
    expect(media.camera!.stop).toHaveBeenCalled();
    // The camera is asked for again; before the browser answers, the host ends the meeting.
    const asking = session.setCamera(true);
    await flush();
    ws.receive({ type: 'closed', reason: 'ended' });
    arrive({ getVideoTracks: () => [late], getAudioTracks: () => [] });
    await asking;
    await flush();
    expect(media.microphone!.stop).toHaveBeenCalled();
    expect(late.stop).toHaveBeenCalled();
    // Steps queued after the end do nothing: the camera is not asked for again.
    expect(asked).toBe(1);
    void session.setCamera(true);
    await flush();
    expect(asked).toBe(1);
  });

  it('leaving is the end even when the websocket closes before the queued goodbye is read', async () => {
    const { session, actions, rejoin } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    session.leave();
    expect(ws.sent.at(-1)).toEqual({ type: 'leave' });
    // An offer still being answered holds the queue while `closed` arrives and the socket closes.
    ws.receive({ type: 'offer', sdp: 'v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=msid:p1 t1\r\n' });
    ws.receive({ type: 'closed', reason: 'left' });
    ws.close();
    await vi.advanceTimersByTimeAsync(20_000);
    expect(rejoin).not.toHaveBeenCalled();
    expect(FakeSocket.all).toHaveLength(1);
    expect(actions.at(-1)).toEqual({ kind: 'server', message: { type: 'closed', reason: 'left' } });
  });

  it('renews a ticket that is about to expire before connecting', async () => {
    const { rejoin } = start({ first: ticket('stale', 5) });
    await flush();
    expect(rejoin).toHaveBeenCalledTimes(1);
    expect(FakeSocket.all[0].url).toBe('ws://sfu-0.test/rtc?fresh');
  });

  it('reports nothing received from a closed subscriber connection without asking it (Firefox may never answer)', async () => {
    const { session } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    const subscriber = FakePeer.all[1] as FakePeer & { getStats?: () => Promise<unknown> };
    subscriber.getStats = vi.fn(() => new Promise(() => {}));
    subscriber.signalingState = 'closed';
    await expect(session.inbound()).resolves.toEqual([]);
    expect(subscriber.getStats).not.toHaveBeenCalled();
  });

  it('tells the SFU and drops its own screen tile when it stops sharing', async () => {
    const screen = fakeTrack('screen-1', 'video');
    vi.stubGlobal('navigator', { mediaDevices: { getDisplayMedia: async () => ({ getVideoTracks: () => [screen] }) } });
    const { session, actions } = start();
    await flush();
    const ws = FakeSocket.all[0];
    ws.open();
    ws.receive(joined);
    await flush();
    ws.receive({ type: 'answer', sdp: 'first answer' });
    await flush();
    await session.startScreen();
    expect(ws.sent.some((m) => m.type === 'publish' && m.source === 'screen')).toBe(true);
    ws.receive({ type: 'answer', sdp: 'second answer' });
    await flush();
    await session.stopScreen();
    expect(ws.sent).toContainEqual({ type: 'unpublish', trackId: '{sdp-screen-1}' });
    expect(screen.stop).toHaveBeenCalled();
    expect(actions).toContainEqual({ kind: 'ownTrackEnded', source: 'screen' });
  });
});
