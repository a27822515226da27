// The meeting's shell around the pure room state (room.ts): one signaling websocket to the
// SFU and two RTCPeerConnections, exactly as docs/signaling.md describes them.
//   publisher  — we offer; our microphone, camera and screen go up. Each track is announced
//                with `publish` (its MediaStreamTrack.id is the msid track ID) before the offer.
//   subscriber — the SFU offers; everyone else's tracks come down. Which room track a media
//                section carries is read from the offer's msid (sdp.ts).
// Candidates trickle both ways with their `target`. When the websocket or ICE fails, the session
// asks the API for a fresh join token (they last 5 minutes) and joins again with back-off; the
// SFU replaces the old session of the same identity. Losing the media server (websocket closed,
// ICE failed, `closed {reason: moved}`, error `wrongPod`) names it in that join (`lostPod`), so
// the API answers with the server the meeting moved to — it holds that join until the meeting
// has moved, so the first attempt after losing the server goes out at once.
import { renewIn } from './presentation';
import type { ClientMessage, CloseReason, IceCandidate, PeerTarget, ServerMessage, TrackId, TrackSource, TrackView, VideoLayer } from '../generated/signal';
import type { JoinResponse } from '../api';
import { ApiError } from '../api';
import { backoff } from './joining';
import { acquire, mediaProblem } from './media';
import { FATAL_CODES, RECONNECT_REASONS, type RoomAction } from './room';
import { offeredTracks } from './sdp';

/** Our own media, as the controls show it. */
export interface LocalMedia {
  /** The microphone track (kept while muted); null without a microphone. */
  microphone: MediaStreamTrack | null;
  microphoneMuted: boolean;
  /** The camera track while the camera is on. */
  camera: MediaStreamTrack | null;
  /** The shared screen while sharing. */
  screen: MediaStreamTrack | null;
  /** Why a device is not available (shown next to its button). */
  microphoneProblem: string | null;
  cameraProblem: string | null;
  screenProblem: string | null;
  /** Devices chosen before entering. */
  microphoneDevice?: string;
  cameraDevice?: string;
}

export interface SessionOptions {
  /** The answer of POST /join that brought us here. */
  ticket: JoinResponse;
  /**
   * Asks POST /join again with the same credentials, for a fresh token; `lostPod`: the media
   * server (the last ticket's `pod`) the connection to which was just lost.
   */
  rejoin: (lostPod?: string) => Promise<JoinResponse>;
  /** Feeds the room's reducer. */
  dispatch: (action: RoomAction) => void;
  /** The received tracks, by room track ID, whenever they change. */
  onRemoteTracks: (tracks: Map<TrackId, MediaStreamTrack>) => void;
  /** Our own media whenever it changes. */
  onLocal: (local: LocalMedia) => void;
  /** A refusal of the API while reconnecting that ends the meeting for us. */
  onGiveUp: (error: ApiError) => void;
  local: LocalMedia;
  audioOnly: boolean;
}

/**
 * Why a connection is dropped: `moved` (the SFU said the meeting moved, or that it does not hold
 * it), `server` (the websocket closed, media failed, the SFU shut down: the server may be gone),
 * `client` (this client was too slow, a token was stale, the account changed: the server is fine).
 */
type Loss = 'moved' | 'server' | 'client';

/** A ticket this close to its expiry is not used for a new connection. */
const TICKET_MARGIN_MS = 20_000;
/** ICE may come back by itself from `disconnected`; after this long we reconnect. */
const DISCONNECTED_GRACE_MS = 4_000;

/** Entries one `viewTracks` message may hold (`proto::signal::MAX_TRACK_VIEWS`). */
export const MAX_TRACK_VIEWS = 256;

/**
 * One of our tracks on the publisher connection. `trackId` is the track's ID in our offer's
 * `a=msid` (Chromium uses `MediaStreamTrack.id`, Firefox an ID of its own): null until the
 * offer that carries it is made and the track is announced with `publish`.
 */
type Published = { source: TrackSource; sender: RTCRtpSender; trackId: string | null };

/** The camera's simulcast layers, lowest first; the RTP stream IDs are what the SFU reads. */
export const SIMULCAST_ENCODINGS: RTCRtpEncodingParameters[] = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

const RID_OF_LAYER: Record<VideoLayer, string> = { low: 'q', medium: 'h', high: 'f' };

/**
 * Whether the camera goes out in simulcast: yes, unless this browser opted out
 * (`localStorage['conclave.simulcast'] = 'off'`, for a machine too weak to encode three layers).
 */
export function simulcastCamera(): boolean {
  try {
    return globalThis.localStorage?.getItem('conclave.simulcast') !== 'off';
  } catch {
    return true;
  }
}

export class MeetingSession {
  private options: SessionOptions;
  private ticket: JoinResponse;
  private ws: WebSocket | null = null;
  /** The peer connections of the current websocket; null until admitted. */
  publisher: RTCPeerConnection | null = null;
  subscriber: RTCPeerConnection | null = null;
  private local: LocalMedia;
  /** Our tracks on the current publisher connection, by source. */
  private published = new Map<TrackSource, Published>();
  /** How we show each received video track, told again after every (re)join. */
  private views = new Map<string, TrackView>();
  private remote = new Map<TrackId, MediaStreamTrack>();
  private queue: Promise<void> = Promise.resolve();
  private pendingCandidates = new Map<PeerTarget, RTCIceCandidateInit[]>();
  private publisherBusy = false;
  private publisherDirty = false;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private disconnectedTimer: ReturnType<typeof setTimeout> | undefined;
  /** Over: left, closed by the SFU, or torn down by the page. */
  private finished = false;
  private admitted = false;
  /** `leave` was sent: the websocket closing next is the end, not a drop. */
  private leaving = false;
  /** The media server lost since the last admission, named in the rejoins until one admits us. */
  private lostPod: string | undefined;
  /** The upload that waits for the SFU's upload ticket. */
  private uploadWaiter: { resolve: (ticket: string) => void; reject: (error: Error) => void } | null = null;
  /** Renews the view ticket of the presentation pages before it expires. */
  private accessTimer: ReturnType<typeof setTimeout> | undefined;
  /** How many times a connection was opened (tests read it). */
  connections = 0;

  constructor(options: SessionOptions) {
    this.options = options;
    this.ticket = options.ticket;
    this.local = { ...options.local };
  }

  /** Opens the first connection. */
  start(): void {
    void this.connect();
  }

  // ---- connection ---------------------------------------------------------------------

  private async connect(): Promise<void> {
    if (this.finished) return;
    if (new Date(this.ticket.expiresAt).getTime() - Date.now() < TICKET_MARGIN_MS) {
      try {
        this.ticket = await this.options.rejoin();
      } catch (error) {
        this.rejoinFailed(error);
        return;
      }
      if (this.finished) return;
    }
    let ws: WebSocket;
    try {
      ws = new WebSocket(this.ticket.endpoint);
    } catch {
      this.reconnect('server');
      return;
    }
    this.ws = ws;
    this.connections += 1;
    this.admitted = false;
    ws.onopen = () => {
      if (ws !== this.ws) return;
      this.send({ type: 'join', token: this.ticket.token, conference: this.ticket.conference.id, ...receiveCodecs() });
    };
    ws.onmessage = (event) => {
      if (ws !== this.ws || typeof event.data !== 'string') return;
      let message: ServerMessage;
      try {
        message = JSON.parse(event.data) as ServerMessage;
      } catch {
        return;
      }
      // One message at a time: negotiation steps must not overtake each other.
      this.queue = this.queue.then(() => this.handle(ws, message)).catch((error) => console.warn('signaling', error));
    };
    ws.onclose = () => {
      // After the messages that came before the close: a `closed {reason}` still waiting in
      // the queue decides whether this was the end or a drop.
      this.queue = this.queue.then(() => {
        if (ws !== this.ws || this.finished) return;
        if (this.leaving) {
          this.finish();
          this.options.dispatch({ kind: 'server', message: { type: 'closed', reason: 'left' } });
        } else this.reconnect('server');
      });
    };
  }

  private rejoinFailed(error: unknown): void {
    const final = error instanceof ApiError && ['conferenceEnded', 'conferenceTooLarge', 'excluded', 'wrongMeetingCredentials', 'validation', 'forbidden', 'notFound', 'unauthenticated'].includes(error.code);
    if (final) {
      this.finish();
      this.options.onGiveUp(error as ApiError);
    } else {
      this.reconnect();
    }
  }

  /**
   * Drops the current connection and opens a new one after a back-off — at once for the first
   * attempt after the server was lost or moved the meeting (the join names it as `lostPod`, and
   * the API holds such a join until the meeting has moved). `loss`: why (a retry after a failed
   * rejoin gives none and keeps naming the server lost before).
   */
  private reconnect(loss?: Loss): void {
    if (this.finished || this.leaving || this.reconnectTimer !== undefined) return;
    if (loss === 'moved' || loss === 'server') this.lostPod = this.ticket.pod ?? undefined;
    else if (loss === 'client') this.lostPod = undefined;
    this.options.dispatch({ kind: 'reconnecting' });
    this.closeConnection();
    const lost = loss === 'moved' || loss === 'server';
    const delay = lost && this.attempt === 0 ? 0 : backoff(this.attempt, Math.random());
    this.attempt += 1;
    this.reconnectTimer = setTimeout(async () => {
      this.reconnectTimer = undefined;
      if (this.finished) return;
      try {
        this.ticket = await this.options.rejoin(this.lostPod);
      } catch (error) {
        this.rejoinFailed(error);
        return;
      }
      void this.connect();
    }, delay);
  }

  private closeConnection(): void {
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try {
        ws.close();
      } catch {
        // Already closed.
      }
    }
    this.closePeers();
    // Steps of the old connection still waiting must not hold up the new one.
    this.queue = Promise.resolve();
  }

  private closePeers(): void {
    clearTimeout(this.disconnectedTimer);
    for (const pc of [this.publisher, this.subscriber]) {
      if (!pc) continue;
      pc.onicecandidate = pc.onconnectionstatechange = pc.ontrack = null;
      pc.close();
    }
    this.publisher = this.subscriber = null;
    this.published.clear();
    this.pendingCandidates.clear();
    this.publisherBusy = this.publisherDirty = false;
    if (this.remote.size) {
      this.remote = new Map();
      this.options.onRemoteTracks(this.remote);
    }
  }

  /** The meeting is over for us: connections closed, camera, microphone and screen released. */
  private finish(): void {
    this.finished = true;
    clearTimeout(this.accessTimer);
    this.uploadWaiter?.reject(new Error('You left the meeting.'));
    this.uploadWaiter = null;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.closeConnection();
    const { microphone, camera, screen } = this.local;
    for (const track of [microphone, camera, screen]) track?.stop();
    if (microphone || camera || screen) this.setLocal({ microphone: null, camera: null, screen: null });
  }

  /**
   * Asks for a microphone or camera: null when it cannot be had (the problem is shown) or when
   * the meeting ended for us while the browser was asking (it is released at once).
   */
  private async device(kind: 'microphone' | 'camera', deviceId?: string): Promise<MediaStreamTrack | null> {
    const got = await acquire(kind, deviceId);
    if (!got.track) {
      this.setLocal(kind === 'camera' ? { cameraProblem: got.problem } : { microphoneProblem: got.problem });
      return null;
    }
    return this.over(got.track) ? null : got.track;
  }

  /** A device that arrived after the meeting ended for us is released at once. */
  private over(track: MediaStreamTrack): boolean {
    if (this.finished) track.stop();
    return this.finished;
  }

  private send(message: ClientMessage): boolean {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  // ---- messages from the SFU -----------------------------------------------------------

  private async handle(ws: WebSocket, message: ServerMessage): Promise<void> {
    if (ws !== this.ws) return;
    switch (message.type) {
      case 'joined':
        this.attempt = 0;
        this.admitted = true;
        this.lostPod = undefined;
        this.openPeers();
        this.options.dispatch({ kind: 'server', message });
        this.sendViews([...this.views.values()]);
        await this.publishAll();
        return;
      case 'answer':
        await this.publisherAnswered(message.sdp);
        return;
      case 'layersWanted':
        await this.sendLayers(message.trackId, message.layers);
        return;
      case 'offer':
        await this.subscriberOffered(message.sdp);
        return;
      case 'candidate':
        await this.addCandidate(message.target, message.candidate);
        return;
      case 'roleChanged':
        this.options.dispatch({ kind: 'server', message });
        // Below speaker the SFU already stopped forwarding the screen; stop sending it too.
        if (!message.grants.present && this.local.screen) await this.stopScreen(false);
        return;
      case 'microphoneBlocked':
        this.options.dispatch({ kind: 'server', message });
        if (message.blocked && this.local.microphone) {
          this.local.microphone.enabled = false;
          this.setLocal({ microphoneMuted: true });
        }
        return;
      case 'presentationUploadTicket':
        this.uploadWaiter?.resolve(message.ticket);
        this.uploadWaiter = null;
        return;
      case 'presentationAccess':
        clearTimeout(this.accessTimer);
        this.accessTimer = setTimeout(() => this.send({ type: 'requestPresentationAccess' }), renewIn(message.expiresAt, Date.now()));
        this.options.dispatch({ kind: 'server', message });
        return;
      case 'error':
        if (this.uploadWaiter && (message.code === 'forbidden' || message.code === 'rateLimited' || message.code === 'notJoined')) {
          // The refusal of our ticket request: the upload says why.
          this.uploadWaiter.reject(new Error(message.message.charAt(0).toUpperCase() + message.message.slice(1) + '.'));
          this.uploadWaiter = null;
          return;
        }
        if (message.code === 'wrongPod') {
          // This media server does not hold the meeting (any more): ask the API where it is.
          this.reconnect('moved');
          return;
        }
        if (message.code === 'tokenExpired' || message.code === 'invalidToken' || message.code === 'revoked') {
          // A reconnect with a stale token: ask for a fresh one.
          if (!this.admitted) {
            this.ticket = { ...this.ticket, expiresAt: new Date(0).toISOString() };
            this.reconnect('client');
            return;
          }
        }
        if (FATAL_CODES.includes(message.code)) this.finish();
        this.options.dispatch({ kind: 'server', message });
        return;
      case 'closed':
        if (RECONNECT_REASONS.includes(message.reason)) {
          this.reconnect(lossOf(message.reason));
          return;
        }
        this.finish();
        this.options.dispatch({ kind: 'server', message });
        return;
      default:
        this.options.dispatch({ kind: 'server', message });
    }
  }

  private openPeers(): void {
    this.closePeers();
    this.publisher = this.peer('publisher');
    this.subscriber = this.peer('subscriber');
  }

  private peer(target: PeerTarget): RTCPeerConnection {
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    pc.onicecandidate = (event) => {
      if (!event.candidate || !event.candidate.candidate) return;
      const init = event.candidate.toJSON();
      const candidate: IceCandidate = { candidate: init.candidate ?? '' };
      if (init.sdpMid != null) candidate.sdpMid = init.sdpMid;
      if (init.sdpMLineIndex != null) candidate.sdpMLineIndex = init.sdpMLineIndex;
      if (init.usernameFragment != null) candidate.usernameFragment = init.usernameFragment;
      this.send({ type: 'candidate', target, candidate });
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.publisher && pc !== this.subscriber) return;
      if (pc.connectionState === 'failed') this.reconnect('server');
      else if (pc.connectionState === 'disconnected') {
        clearTimeout(this.disconnectedTimer);
        this.disconnectedTimer = setTimeout(() => {
          if ((pc === this.publisher || pc === this.subscriber) && pc.connectionState === 'disconnected') this.reconnect('server');
        }, DISCONNECTED_GRACE_MS);
      } else if (pc.connectionState === 'connected') clearTimeout(this.disconnectedTimer);
    };
    if (target === 'subscriber') pc.ontrack = () => this.mapRemoteTracks();
    return pc;
  }

  private async addCandidate(target: PeerTarget, candidate: IceCandidate): Promise<void> {
    const pc = target === 'publisher' ? this.publisher : this.subscriber;
    if (!pc || !candidate.candidate) return;
    const init: RTCIceCandidateInit = {
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid ?? undefined,
      sdpMLineIndex: candidate.sdpMLineIndex ?? undefined,
      usernameFragment: candidate.usernameFragment ?? undefined,
    };
    if (!pc.remoteDescription) {
      const pending = this.pendingCandidates.get(target) ?? [];
      pending.push(init);
      this.pendingCandidates.set(target, pending);
      return;
    }
    await pc.addIceCandidate(init).catch((error) => console.warn('candidate refused', error));
  }

  private async flushCandidates(target: PeerTarget, pc: RTCPeerConnection): Promise<void> {
    const pending = this.pendingCandidates.get(target) ?? [];
    this.pendingCandidates.delete(target);
    for (const init of pending) await pc.addIceCandidate(init).catch((error) => console.warn('candidate refused', error));
  }

  private async subscriberOffered(sdp: string): Promise<void> {
    const pc = this.subscriber;
    if (!pc) return;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await this.flushCandidates('subscriber', pc);
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this.send({ type: 'answer', sdp: answer.sdp ?? pc.localDescription?.sdp ?? '' });
    this.mapRemoteTracks();
  }

  /** Which room track each receiving transceiver carries now, from the SFU's last offer. */
  private mapRemoteTracks(): void {
    const pc = this.subscriber;
    const sdp = pc?.remoteDescription?.sdp;
    if (!pc || !sdp) return;
    const byMid = new Map(offeredTracks(sdp).map((t) => [t.mid, t.track]));
    const next = new Map<TrackId, MediaStreamTrack>();
    for (const transceiver of pc.getTransceivers()) {
      const track = transceiver.mid ? byMid.get(transceiver.mid) : undefined;
      if (track && transceiver.currentDirection !== 'stopped') next.set(track, transceiver.receiver.track);
    }
    const same = next.size === this.remote.size && [...next].every(([id, t]) => this.remote.get(id) === t);
    if (!same) {
      this.remote = next;
      this.options.onRemoteTracks(next);
    }
  }

  // ---- publishing ------------------------------------------------------------------------

  private async publishAll(): Promise<void> {
    const { microphone, camera, screen } = this.local;
    if (microphone && microphone.readyState === 'live') this.addPublished('microphone', microphone);
    if (camera && camera.readyState === 'live' && !this.options.audioOnly) this.addPublished('camera', camera);
    if (screen && screen.readyState === 'live') this.addPublished('screen', screen);
    await this.negotiatePublisher();
  }

  /**
   * Adds a track to the publisher connection; the next offer announces it. With simulcast
   * (`simulcastCamera()`) the camera goes in three layers (docs/sfu.md): the SFU sends each
   * receiver the one that suits its link and tile, and asks us to pause layers nobody receives
   * (`layersWanted`).
   */
  private addPublished(source: TrackSource, track: MediaStreamTrack): void {
    const pc = this.publisher;
    if (!pc) return;
    const streams = [new MediaStream([track])];
    const sender =
      source === 'camera' && simulcastCamera()
        ? pc.addTransceiver(track, { direction: 'sendonly', streams, sendEncodings: SIMULCAST_ENCODINGS.map((e) => ({ ...e })) }).sender
        : pc.addTrack(track, ...streams);
    this.published.set(source, { source, sender, trackId: null });
  }

  /** Dynacast: encode only the layers of `trackId` that someone receives. */
  private async sendLayers(trackId: string, layers: VideoLayer[]): Promise<void> {
    const published = [...this.published.values()].find((p) => p.trackId === trackId);
    if (!published) return;
    const wanted = new Set(layers.map((layer) => RID_OF_LAYER[layer]));
    const parameters = published.sender.getParameters();
    let changed = false;
    for (const encoding of parameters.encodings ?? []) {
      if (!encoding.rid) continue;
      const active = wanted.has(encoding.rid);
      if (encoding.active !== active) {
        encoding.active = active;
        changed = true;
      }
    }
    if (changed) await published.sender.setParameters(parameters).catch((error) => console.warn('pausing simulcast layers', error));
  }

  /**
   * Tells the SFU how we show the video we receive (`views` from the tiles on screen): a
   * hidden tile gets no video, a small one a small layer.
   */
  viewTracks(views: TrackView[]): boolean {
    for (const view of views) this.views.set(view.track, view);
    if (!this.admitted) return true;
    return this.sendViews(views);
  }

  /** Sends `views` in messages of at most `MAX_TRACK_VIEWS` entries (what the SFU accepts). */
  private sendViews(views: TrackView[]): boolean {
    let sent = true;
    for (let start = 0; start < views.length; start += MAX_TRACK_VIEWS) {
      sent = this.send({ type: 'viewTracks', views: views.slice(start, start + MAX_TRACK_VIEWS) }) && sent;
    }
    return sent;
  }

  /**
   * Announces the tracks that `offer` carries for the first time, before the offer itself:
   * the SFU forwards only tracks it was told about, by the ID the offer gives them.
   */
  private announce(pc: RTCPeerConnection, offer: string): void {
    const byMid = new Map(offeredTracks(offer).map((t) => [t.mid, t.track]));
    for (const published of this.published.values()) {
      if (published.trackId !== null) continue;
      const mid = pc.getTransceivers().find((t) => t.sender === published.sender)?.mid;
      const trackId = (mid != null ? byMid.get(mid) : undefined) ?? published.sender.track?.id;
      if (!trackId) continue;
      published.trackId = trackId;
      const muted = published.source === 'microphone' && this.local.microphoneMuted;
      this.send({ type: 'publish', trackId, source: published.source, muted });
    }
  }

  private async negotiatePublisher(): Promise<void> {
    const pc = this.publisher;
    if (!pc || (this.published.size === 0 && pc.getTransceivers().length === 0)) return;
    if (this.publisherBusy) {
      this.publisherDirty = true;
      return;
    }
    this.publisherBusy = true;
    this.publisherDirty = false;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sdp = pc.localDescription?.sdp ?? offer.sdp ?? '';
    this.announce(pc, sdp);
    this.send({ type: 'offer', sdp });
  }

  private async publisherAnswered(sdp: string): Promise<void> {
    const pc = this.publisher;
    if (!pc) return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    await this.flushCandidates('publisher', pc);
    this.publisherBusy = false;
    if (this.publisherDirty) await this.negotiatePublisher();
  }

  /** Runs a change of our media in order with the signaling messages. */
  private later(step: () => Promise<void>): Promise<void> {
    // Steps still queued when the meeting ends for us do nothing.
    const run = this.queue.then(() => (this.finished ? undefined : step()));
    this.queue = run.catch((error) => console.warn('media', error));
    return run;
  }

  private setLocal(change: Partial<LocalMedia>): void {
    this.local = { ...this.local, ...change };
    this.options.onLocal(this.local);
  }

  /** Mutes or unmutes the microphone (the SFU refuses unmuting a blocked microphone). */
  setMicrophoneMuted(muted: boolean): Promise<void> {
    return this.later(async () => {
      const track = this.local.microphone;
      if (!track) return;
      track.enabled = !muted;
      this.setLocal({ microphoneMuted: muted });
      const published = this.published.get('microphone');
      if (published?.trackId) this.send({ type: 'muteTrack', trackId: published.trackId, muted });
    });
  }

  /** Turns the camera on (asking for it again) or off (releasing the device). */
  setCamera(on: boolean): Promise<void> {
    return this.later(async () => {
      if (this.options.audioOnly) return;
      const published = this.published.get('camera');
      if (!on) {
        const track = this.local.camera;
        if (published) {
          await published.sender.replaceTrack(null);
          if (published.trackId) this.send({ type: 'muteTrack', trackId: published.trackId, muted: true });
        }
        track?.stop();
        this.setLocal({ camera: null });
        return;
      }
      if (this.local.camera) return;
      const track = await this.device('camera', this.local.cameraDevice);
      if (!track) return;
      this.setLocal({ camera: track, cameraProblem: null });
      if (published) {
        await published.sender.replaceTrack(track);
        if (published.trackId) this.send({ type: 'muteTrack', trackId: published.trackId, muted: false });
      } else if (this.publisher) {
        this.addPublished('camera', track);
        await this.negotiatePublisher();
      }
    });
  }

  /**
   * Switches to another microphone or camera during the meeting: the new device's track takes
   * the old one's place in the peer connection (no renegotiation, the others see no gap) and
   * the old device is released. A camera that is off only remembers the choice. When the new
   * device cannot be had, the old one stays in use and the problem is shown.
   */
  chooseDevice(kind: 'microphone' | 'camera', deviceId: string): Promise<void> {
    return this.later(async () => {
      if (kind === 'camera') {
        if (this.options.audioOnly) return;
        const old = this.local.camera;
        if (!old || this.local.cameraDevice === deviceId) {
          this.setLocal({ cameraDevice: deviceId });
          return;
        }
        const track = await this.device('camera', deviceId);
        if (!track) return;
        await this.published.get('camera')?.sender.replaceTrack(track);
        old.stop();
        this.setLocal({ camera: track, cameraDevice: deviceId, cameraProblem: null });
        return;
      }
      const old = this.local.microphone;
      if (old && this.local.microphoneDevice === deviceId) return;
      const track = await this.device('microphone', deviceId);
      if (!track) return;
      // Muted stays muted; a first microphone starts muted, the person unmutes it.
      const muted = old ? this.local.microphoneMuted : true;
      track.enabled = !muted;
      const published = this.published.get('microphone');
      this.setLocal({ microphone: track, microphoneMuted: muted, microphoneDevice: deviceId, microphoneProblem: null });
      if (published) {
        await published.sender.replaceTrack(track);
      } else if (this.publisher) {
        this.addPublished('microphone', track);
        await this.negotiatePublisher();
      }
      old?.stop();
    });
  }

  /** Shares a screen (getDisplayMedia); needs the `present` right. */
  startScreen(): Promise<void> {
    return this.later(async () => {
      if (this.local.screen) return;
      let track: MediaStreamTrack | undefined;
      try {
        const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
        track = stream.getVideoTracks()[0];
      } catch (error) {
        this.setLocal({ screenProblem: mediaProblem(error, 'screen') });
        return;
      }
      if (!track || this.over(track)) return;
      track.contentHint = 'detail';
      // The browser's own "Stop sharing" button ends the track.
      track.addEventListener('ended', () => void this.stopScreen(true));
      this.setLocal({ screen: track, screenProblem: null });
      if (this.publisher) {
        this.addPublished('screen', track);
        await this.negotiatePublisher();
      }
    });
  }

  /** Stops sharing; `tell`: unpublish (not needed when the SFU already removed it). */
  stopScreen(tell = true): Promise<void> {
    return this.later(async () => {
      const track = this.local.screen;
      if (!track) return;
      const published = this.published.get('screen');
      if (published) {
        if (tell && published.trackId) this.send({ type: 'unpublish', trackId: published.trackId });
        this.published.delete('screen');
        if (this.publisher && this.publisher.signalingState !== 'closed') {
          this.publisher.removeTrack(published.sender);
          await this.negotiatePublisher();
        }
      }
      track.stop();
      this.setLocal({ screen: null });
      // The SFU tells everyone else that the screen is gone, not us: our own tile goes here.
      this.options.dispatch({ kind: 'ownTrackEnded', source: 'screen' });
    });
  }

  // ---- room actions ------------------------------------------------------------------------

  chat(text: string, to?: string): boolean {
    return this.send(to ? { type: 'chat', text, to } : { type: 'chat', text });
  }

  setRole(participant: string, role: 'listener' | 'speaker' | 'moderator'): boolean {
    return this.send({ type: 'setRole', participant, role });
  }

  blockMicrophone(participant: string, blocked: boolean): boolean {
    return this.send({ type: 'blockMicrophone', participant, blocked });
  }

  exclude(participant: string): boolean {
    return this.send({ type: 'exclude', participant });
  }

  endMeeting(): boolean {
    return this.send({ type: 'endMeeting' });
  }

  /** Starts or stops the recording; the SFU checks the right and the conference's setting. */
  setRecording(active: boolean): boolean {
    return this.send({ type: 'setRecording', active });
  }

  /** Asks the SFU for an upload ticket (speakers and moderators get one). */
  requestUploadTicket(): Promise<string> {
    this.uploadWaiter?.reject(new Error('Another upload started.'));
    return new Promise((resolve, reject) => {
      if (!this.send({ type: 'requestPresentationUpload' })) {
        reject(new Error('Not connected to the meeting; try again in a moment.'));
        return;
      }
      this.uploadWaiter = { resolve, reject };
    });
  }

  showPresentation(descriptor: string): boolean {
    return this.send({ type: 'showPresentation', descriptor });
  }

  setPresentationPage(page: number): boolean {
    return this.send({ type: 'setPresentationPage', page });
  }

  handOverPresentation(participant: string): boolean {
    return this.send({ type: 'handOverPresentation', participant });
  }

  stopPresentation(): boolean {
    return this.send({ type: 'stopPresentation' });
  }

  /** Leaves: the SFU answers `closed {reason: left}`; without a connection we just stop. */
  leave(): void {
    this.leaving = true;
    if (!this.send({ type: 'leave' })) {
      this.finish();
      this.options.dispatch({ kind: 'server', message: { type: 'closed', reason: 'left' } });
    }
  }

  /** Tears everything down and releases the devices (the page went away). */
  destroy(): void {
    if (!this.finished && this.ws?.readyState === WebSocket.OPEN) this.send({ type: 'leave' });
    this.finish();
  }

  /** For tests: the network drops (the websocket closes without a goodbye). */
  dropConnection(): void {
    this.ws?.close();
  }

  /** For tests: what arrives, per received track (by room track ID when known). */
  async inbound(): Promise<Array<{ kind: string; track: string | null; framesDecoded: number; packetsReceived: number; bytesReceived: number; frameWidth: number; frameHeight: number }>> {
    const pc = this.subscriber;
    // Firefox may never settle getStats() on a closed connection.
    if (!pc || pc.signalingState === 'closed') return [];
    const byReceiverTrack = new Map([...this.remote].map(([room, track]) => [track.id, room]));
    const stats = await pc.getStats();
    const out: Array<{ kind: string; track: string | null; framesDecoded: number; packetsReceived: number; bytesReceived: number; frameWidth: number; frameHeight: number }> = [];
    stats.forEach((s) => {
      if (s.type !== 'inbound-rtp') return;
      out.push({
        kind: s.kind,
        track: byReceiverTrack.get(s.trackIdentifier) ?? null,
        framesDecoded: s.framesDecoded ?? 0,
        packetsReceived: s.packetsReceived ?? 0,
        bytesReceived: s.bytesReceived ?? 0,
        frameWidth: s.frameWidth ?? 0,
        frameHeight: s.frameHeight ?? 0,
      });
    });
    return out;
  }
}

/** Why a session the SFU closed with `reason` (one of RECONNECT_REASONS) is dropped. */
function lossOf(reason: CloseReason): Loss {
  if (reason === 'moved') return 'moved';
  if (reason === 'gone' || reason === 'shutdown' || reason === 'connectionFailed') return 'server';
  return 'client';
}

/**
 * The codecs this browser decodes, for `join`: the SFU then offers no track it could not play
 * (Debian's Firefox has no H.264) and says so instead. Nothing where the browser cannot tell.
 */
export function receiveCodecs(): { receiveCodecs?: string[] } {
  if (typeof RTCRtpReceiver === 'undefined' || typeof RTCRtpReceiver.getCapabilities !== 'function') return {};
  const codecs = ['audio', 'video'].flatMap((kind) => RTCRtpReceiver.getCapabilities(kind)?.codecs.map((c) => c.mimeType) ?? []);
  return codecs.length > 0 ? { receiveCodecs: [...new Set(codecs)] } : {};
}
