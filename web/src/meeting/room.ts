// The meeting's state as the SFU describes it: a pure reducer from signaling messages
// (docs/signaling.md) to what the page shows. The WebRTC and websocket shell (session.ts)
// feeds it; components only read it. No clock, no DOM, no browser APIs: unit-tested in
// room.test.ts.
import type { ChatMessage, CloseReason, ErrorCode, Grants, ParticipantId, ParticipantInfo, PresentationState, Role, ServerMessage, TrackId, TrackInfo, TrackSource } from '../generated/signal';

/** Where the session stands. */
export type Phase =
  /** Opening the websocket and waiting for `joined`. */
  | 'connecting'
  /** In the waiting room (the owner is not there yet). */
  | 'waiting'
  /** In the room. */
  | 'joined'
  /** The connection dropped; a new one is being opened. */
  | 'reconnecting'
  /** Over: see `closed` (or `refused`). */
  | 'closed';

export interface RoomState {
  phase: Phase;
  /** Our participant ID once admitted. */
  you: ParticipantId | null;
  role: Role | null;
  grants: Grants | null;
  /** Everyone admitted, by ID. */
  participants: Record<ParticipantId, ParticipantInfo>;
  /** Participant IDs in the order they arrived (the grid's order). */
  order: ParticipantId[];
  /** Every published track in the room, ours included. */
  tracks: Record<TrackId, TrackInfo>;
  chat: ChatMessage[];
  /** Chat messages from others that arrived while the chat panel was closed. */
  unread: number;
  chatOpen: boolean;
  activeSpeaker: ParticipantId | null;
  /**
   * Everyone who has been the active speaker since we joined, the most recent first: when the
   * grid cannot show everyone, it shows the last speakers (see `layout`).
   */
  spoke: ParticipantId[];
  /** Set while a speaker or moderator keeps our microphone muted. */
  microphoneBlockedBy: ParticipantId | null;
  recording: boolean;
  /**
   * What everyone reads (and screen readers announce) when a recording starts or stops, or on
   * joining a meeting that is being recorded.
   */
  recordingNotice: string | null;
  audioOnly: boolean;
  /** The presentation on the stage, if any. */
  presentation: PresentationState | null;
  /** The ticket that opens the meeting's presentation pages (renewed before it expires). */
  viewTicket: { ticket: string; expiresAt: number } | null;
  /** Why the SFU ended the session (phase `closed`). */
  closed: CloseReason | null;
  /** A join the SFU refused (fatal error codes close the websocket). */
  refused: { code: ErrorCode; message: string } | null;
  /** The last error that left the session as it was (shown briefly). */
  notice: { code: ErrorCode; message: string } | null;
}

/** What changes the room: a message from the SFU, or something the page did. */
export type RoomAction =
  | { kind: 'server'; message: ServerMessage }
  | { kind: 'chatOpen'; open: boolean }
  | { kind: 'reconnecting' }
  | { kind: 'dismissNotice' }
  | { kind: 'dismissRecordingNotice' }
  /**
   * We stopped sending one of our tracks: the SFU tells the others (`trackUnpublished`) but
   * not us, so our own tile of it goes here.
   */
  | { kind: 'ownTrackEnded'; source: TrackSource };

export function initialRoom(): RoomState {
  return {
    phase: 'connecting',
    you: null,
    role: null,
    grants: null,
    participants: {},
    order: [],
    tracks: {},
    chat: [],
    unread: 0,
    chatOpen: false,
    activeSpeaker: null,
    spoke: [],
    microphoneBlockedBy: null,
    recording: false,
    recordingNotice: null,
    audioOnly: false,
    presentation: null,
    viewTicket: null,
    closed: null,
    refused: null,
    notice: null,
  };
}

/** Error codes with which the SFU refuses a join and closes the websocket. */
export const FATAL_CODES: readonly ErrorCode[] = ['invalidToken', 'tokenExpired', 'wrongConference', 'excluded', 'ended', 'roomFull', 'overloaded', 'tooManyGuests'];

/**
 * Close reasons after which the page reconnects by itself. After `revoked` (the account changed)
 * the new join decides: the new role, or the end of the meeting for a disabled account. After
 * `moved` (the meeting went to another media server) it joins again at once.
 */
export const RECONNECT_REASONS: readonly CloseReason[] = ['gone', 'shutdown', 'moved', 'connectionFailed', 'tooSlow', 'unresponsive', 'revoked'];

export function reduce(state: RoomState, action: RoomAction): RoomState {
  switch (action.kind) {
    case 'chatOpen':
      return { ...state, chatOpen: action.open, unread: action.open ? 0 : state.unread };
    case 'reconnecting':
      return state.phase === 'closed' ? state : { ...state, phase: 'reconnecting', activeSpeaker: null };
    case 'dismissNotice':
      return { ...state, notice: null };
    case 'dismissRecordingNotice':
      return { ...state, recordingNotice: null };
    case 'ownTrackEnded': {
      const tracks = Object.fromEntries(Object.entries(state.tracks).filter(([, t]) => t.participant !== state.you || t.source !== action.source));
      return Object.keys(tracks).length === Object.keys(state.tracks).length ? state : { ...state, tracks };
    }
    case 'server':
      return onMessage(state, action.message);
  }
}

function withParticipant(state: RoomState, info: ParticipantInfo): RoomState {
  const known = info.id in state.participants;
  return {
    ...state,
    participants: { ...state.participants, [info.id]: info },
    order: known ? state.order : [...state.order, info.id],
  };
}

function onMessage(state: RoomState, message: ServerMessage): RoomState {
  switch (message.type) {
    case 'waiting':
      return { ...state, phase: 'waiting' };
    case 'joined': {
      const participants: Record<ParticipantId, ParticipantInfo> = {};
      for (const p of message.participants) participants[p.id] = p;
      const tracks: Record<TrackId, TrackInfo> = {};
      for (const t of message.tracks) tracks[t.id] = t;
      // Keep the grid's order across a reconnect; newcomers go to the end.
      const order = [...state.order.filter((id) => id in participants), ...message.participants.map((p) => p.id).filter((id) => !state.order.includes(id))];
      const me = participants[message.you];
      return {
        ...state,
        phase: 'joined',
        you: message.you,
        role: message.role,
        grants: message.grants,
        participants,
        order,
        tracks,
        chat: message.chat,
        activeSpeaker: message.activeSpeaker && message.activeSpeaker in participants ? message.activeSpeaker : null,
        // The room's recent speakers first (also those of the time we were away), then ours.
        spoke: [...new Set([...(message.speakers ?? []), ...state.spoke])].filter((id) => id in participants),
        microphoneBlockedBy: me?.microphoneBlocked ? (state.microphoneBlockedBy ?? message.you) : null,
        recording: message.recording,
        // Told once on arrival; a reconnect into the same recording says nothing new.
        recordingNotice: message.recording && !state.recording ? 'This meeting is being recorded.' : message.recording ? state.recordingNotice : null,
        audioOnly: message.audioOnly,
        presentation: message.presentation ?? null,
        closed: null,
        refused: null,
      };
    }
    case 'participantJoined':
      return withParticipant(state, message.participant);
    case 'participantUpdated': {
      const next = withParticipant(state, message.participant);
      if (message.participant.id === state.you) {
        next.role = message.participant.role;
        if (!message.participant.microphoneBlocked) next.microphoneBlockedBy = null;
      }
      return next;
    }
    case 'participantLeft': {
      const participants = { ...state.participants };
      delete participants[message.participant];
      const tracks: Record<TrackId, TrackInfo> = {};
      for (const t of Object.values(state.tracks)) if (t.participant !== message.participant) tracks[t.id] = t;
      return {
        ...state,
        participants,
        tracks,
        order: state.order.filter((id) => id !== message.participant),
        activeSpeaker: state.activeSpeaker === message.participant ? null : state.activeSpeaker,
        spoke: state.spoke.filter((id) => id !== message.participant),
      };
    }
    case 'roleChanged': {
      const me = state.you ? state.participants[state.you] : undefined;
      return {
        ...state,
        role: message.role,
        grants: message.grants,
        participants: me ? { ...state.participants, [me.id]: { ...me, role: message.role } } : state.participants,
      };
    }
    case 'trackPublished':
      return { ...state, tracks: { ...state.tracks, [message.track.id]: message.track } };
    case 'trackUnpublished': {
      if (!(message.track in state.tracks)) return state;
      const tracks = { ...state.tracks };
      delete tracks[message.track];
      return { ...state, tracks };
    }
    case 'trackMuted': {
      const track = state.tracks[message.track];
      if (!track) return state;
      return { ...state, tracks: { ...state.tracks, [track.id]: { ...track, muted: message.muted } } };
    }
    case 'microphoneBlocked': {
      const me = state.you ? state.participants[state.you] : undefined;
      return {
        ...state,
        microphoneBlockedBy: message.blocked ? message.by : null,
        participants: me ? { ...state.participants, [me.id]: { ...me, microphoneBlocked: message.blocked } } : state.participants,
      };
    }
    case 'activeSpeaker': {
      const speaker = message.participant ?? null;
      if (speaker === null || !(speaker in state.participants)) return { ...state, activeSpeaker: speaker };
      return { ...state, activeSpeaker: speaker, spoke: [speaker, ...state.spoke.filter((id) => id !== speaker)] };
    }
    case 'chat': {
      const fromOther = message.message.from !== state.you;
      return {
        ...state,
        chat: [...state.chat, message.message],
        unread: !state.chatOpen && fromOther ? state.unread + 1 : state.unread,
      };
    }
    case 'recording': {
      const who = message.by === state.you ? 'you' : (state.participants[message.by]?.displayName ?? 'a moderator');
      return { ...state, recording: message.active, recordingNotice: `Recording ${message.active ? 'started' : 'stopped'} by ${who}.` };
    }
    case 'presentation':
      return { ...state, presentation: message.presentation ?? null };
    case 'presentationAccess':
      return { ...state, viewTicket: { ticket: message.ticket, expiresAt: message.expiresAt } };
    case 'presentationUploadTicket':
      // The session hands it to the upload that asked for it.
      return state;
    case 'error':
      if (FATAL_CODES.includes(message.code)) {
        return { ...state, phase: 'closed', refused: { code: message.code, message: message.message } };
      }
      return { ...state, notice: { code: message.code, message: message.message } };
    case 'closed':
      // A refusal already said why; the close that follows it adds nothing.
      if (state.refused) return state;
      if (RECONNECT_REASONS.includes(message.reason)) return { ...state, phase: 'reconnecting', activeSpeaker: null };
      return { ...state, phase: 'closed', closed: message.reason };
    case 'answer':
    case 'offer':
    case 'candidate':
    case 'layersWanted':
      // Negotiation and what the publisher encodes are the shell's business.
      return state;
  }
}

/** One tile of the video grid. */
export interface Tile {
  /** Unique within the grid. */
  key: string;
  participant: ParticipantInfo;
  /** `camera` tiles show the person; `screen` tiles a shared screen. */
  kind: 'camera' | 'screen';
  /** The video track to show (camera or screen), if any and not muted. */
  video: TrackInfo | null;
  /** The participant's microphone track, if published. */
  microphone: TrackInfo | null;
  isYou: boolean;
  speaking: boolean;
}

function trackOf(state: RoomState, participant: ParticipantId, source: TrackInfo['source']): TrackInfo | null {
  for (const t of Object.values(state.tracks)) if (t.participant === participant && t.source === source) return t;
  return null;
}

/** The grid: shared screens first (they are what people look at), then everyone in order. */
export function tiles(state: RoomState): Tile[] {
  const screens: Tile[] = [];
  const people: Tile[] = [];
  for (const id of state.order) {
    const participant = state.participants[id];
    if (!participant) continue;
    const microphone = trackOf(state, id, 'microphone');
    const camera = trackOf(state, id, 'camera');
    const screen = trackOf(state, id, 'screen');
    const common = { participant, microphone, isYou: id === state.you };
    if (screen) screens.push({ ...common, key: `screen-${screen.id}`, kind: 'screen', video: screen, speaking: false });
    people.push({ ...common, key: `camera-${id}`, kind: 'camera', video: camera && !camera.muted ? camera : null, speaking: isSpeaking(state, id) });
  }
  return [...screens, ...people];
}

/** The tiles a grid with room for `capacity` tiles shows, and those it has no room for. */
export interface Layout {
  /** In the grid's order (shared screens first, then people in the order they came). */
  shown: Tile[];
  /** Not shown: the grid ends with a tile that counts them. */
  more: Tile[];
}

/**
 * Which tiles a grid with room for `capacity` tiles shows (the SFU sends the others no video).
 * All of them if they fit. Otherwise one place goes to a tile that counts the rest, and the
 * others, in this order of precedence: shared screens, the last speaker, our own tile, the
 * speakers before (the most recent first, `state.spoke`), people whose camera is on, everyone
 * else in the order they came.
 * The tiles shown keep the grid's order, so a new speaker takes a place without the others
 * moving around.
 */
export function layout(all: Tile[], spoke: readonly ParticipantId[], capacity: number): Layout {
  if (all.length <= Math.max(1, capacity)) return { shown: all, more: [] };
  const places = Math.max(1, capacity - 1);
  const recency = new Map(spoke.map((id, index) => [id, index]));
  const rank = (tile: Tile): number[] => {
    const spokeAt = recency.get(tile.participant.id);
    // The last speaker before ourselves: in a narrow window the one talking matters most.
    const group = spokeAt === 0 ? 0 : tile.isYou ? 1 : 2;
    return [tile.kind === 'screen' ? 0 : 1, group, spokeAt ?? spoke.length, tile.video ? 0 : 1];
  };
  const before = (a: number[], b: number[]) => {
    for (let i = 0; i < a.length; i += 1) if (a[i] !== b[i]) return a[i] - b[i];
    return 0;
  };
  // A stable sort: among equals the grid's order decides.
  const chosen = new Set(
    all
      .map((tile, index) => ({ tile, index, rank: rank(tile) }))
      .sort((a, b) => before(a.rank, b.rank) || a.index - b.index)
      .slice(0, places)
      .map((entry) => entry.tile),
  );
  return { shown: all.filter((tile) => chosen.has(tile)), more: all.filter((tile) => !chosen.has(tile)) };
}

/** The active speaker, unless their microphone is off (the SFU's level hold may lag a mute). */
export function isSpeaking(state: RoomState, id: ParticipantId): boolean {
  if (state.activeSpeaker !== id) return false;
  const microphone = trackOf(state, id, 'microphone');
  return !!microphone && !microphone.muted;
}

/** Tracks that arrive on the subscriber connection: everyone's but ours. */
export function remoteTracks(state: RoomState): TrackInfo[] {
  return Object.values(state.tracks).filter((t) => t.participant !== state.you);
}

/** What we may do to `target` in the participant list. */
export interface Moderation {
  setRole: boolean;
  blockMicrophone: boolean;
  exclude: boolean;
  privateMessage: boolean;
}

export function moderation(state: RoomState, target: ParticipantId): Moderation {
  const grants = state.grants;
  const other = target !== state.you && target in state.participants;
  return {
    setRole: other && !!grants?.changeRoles,
    blockMicrophone: other && !!grants?.manageMicrophones,
    exclude: other && !!grants?.exclude,
    privateMessage: other && !!grants?.chat,
  };
}

/** A chat message as the page shows it. */
export interface ChatLine {
  message: ChatMessage;
  mine: boolean;
  /** `null` for everyone; otherwise whom the private message went to (or came from). */
  privateWith: { id: ParticipantId; name: string } | null;
}

export function chatLines(state: RoomState): ChatLine[] {
  return state.chat.map((message) => {
    const mine = message.from === state.you;
    let privateWith: ChatLine['privateWith'] = null;
    if (message.to) {
      const id = mine ? message.to : message.from;
      privateWith = { id, name: mine ? (state.participants[id]?.displayName ?? 'someone who left') : message.fromName };
    }
    return { message, mine, privateWith };
  });
}

const ROLE_NAMES: Record<Role, string> = { listener: 'Listener', speaker: 'Speaker', moderator: 'Moderator' };

export function roleName(role: Role): string {
  return ROLE_NAMES[role];
}

/** Participants for the list: ourselves first, then moderators, speakers, listeners, by name. */
export function participantList(state: RoomState): ParticipantInfo[] {
  const rank: Record<Role, number> = { moderator: 0, speaker: 1, listener: 2 };
  return state.order
    .map((id) => state.participants[id])
    .filter((p): p is ParticipantInfo => !!p)
    .sort((a, b) => {
      if (a.id === state.you) return -1;
      if (b.id === state.you) return 1;
      return rank[a.role] - rank[b.role] || a.displayName.localeCompare(b.displayName);
    });
}
