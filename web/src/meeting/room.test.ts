import { describe, expect, it } from 'vitest';
import type { Grants, ParticipantInfo, ServerMessage, TrackInfo } from '../generated/signal';
import { chatLines, initialRoom, layout, moderation, participantList, reduce, remoteTracks, tiles, type RoomState } from './room';

const listenerGrants: Grants = {
  chat: true,
  publishMedia: true,
  manageMicrophones: false,
  present: false,
  changeRoles: false,
  exclude: false,
  endMeeting: false,
  record: false,
};
const speakerGrants: Grants = { ...listenerGrants, manageMicrophones: true, present: true };
const moderatorGrants: Grants = { ...speakerGrants, changeRoles: true, exclude: true, endMeeting: true };

const ada: ParticipantInfo = { id: 'p1', displayName: 'Ada', role: 'moderator', microphoneBlocked: false };
const bob: ParticipantInfo = { id: 'p2', displayName: 'Bob', role: 'listener', microphoneBlocked: false };
const cy: ParticipantInfo = { id: 'p3', displayName: 'Cy', role: 'speaker', microphoneBlocked: false };

const track = (id: string, participant: string, source: TrackInfo['source'], muted = false): TrackInfo => ({
  id,
  participant,
  kind: source === 'microphone' || source === 'screenAudio' ? 'audio' : 'video',
  source,
  muted,
});

function apply(state: RoomState, ...messages: ServerMessage[]): RoomState {
  return messages.reduce((s, message) => reduce(s, { kind: 'server', message }), state);
}

function joinedAs(you: ParticipantInfo, grants: Grants, others: ParticipantInfo[] = [], tracks: TrackInfo[] = []): RoomState {
  return apply(initialRoom(), {
    type: 'joined',
    you: you.id,
    role: you.role,
    grants,
    participants: [you, ...others],
    tracks,
    chat: [],
    recording: false,
    audioOnly: false,
  });
}

describe('the room reducer', () => {
  it('starts connecting and enters the waiting room, then the room', () => {
    let state = initialRoom();
    expect(state.phase).toBe('connecting');
    state = apply(state, { type: 'waiting' });
    expect(state.phase).toBe('waiting');
    state = apply(state, {
      type: 'joined',
      you: 'p2',
      role: 'listener',
      grants: listenerGrants,
      participants: [ada, bob],
      tracks: [track('t1', 'p1', 'camera')],
      chat: [{ from: 'p1', fromName: 'Ada', at: '2026-01-01T10:00:00Z', text: 'hello' }],
      recording: true,
      audioOnly: false,
    });
    expect(state.phase).toBe('joined');
    expect(state.you).toBe('p2');
    expect(state.order).toEqual(['p1', 'p2']);
    expect(Object.keys(state.tracks)).toEqual(['t1']);
    expect(state.chat).toHaveLength(1);
    expect(state.unread).toBe(0);
    expect(state.recording).toBe(true);
    expect(state.recordingNotice).toBe('This meeting is being recorded.');
  });

  it('tells everyone who started and stopped a recording', () => {
    let state = joinedAs(bob, listenerGrants, [ada]);
    expect(state.recordingNotice).toBeNull();
    state = apply(state, { type: 'recording', active: true, by: 'p1' });
    expect(state.recording).toBe(true);
    expect(state.recordingNotice).toBe('Recording started by Ada.');
    state = reduce(state, { kind: 'dismissRecordingNotice' });
    expect(state.recordingNotice).toBeNull();
    expect(state.recording).toBe(true);
    state = apply(state, { type: 'recording', active: false, by: 'p2' });
    expect(state.recording).toBe(false);
    expect(state.recordingNotice).toBe('Recording stopped by you.');
  });

  it('shows a refused recording start as a notice with the server\'s reason', () => {
    const message = 'recording is not allowed for this conference; its owner can allow it in the conference\'s settings';
    const state = apply(joinedAs(ada, moderatorGrants), { type: 'error', code: 'recordingNotAllowed', message });
    expect(state.phase).toBe('joined');
    expect(state.notice).toEqual({ code: 'recordingNotAllowed', message });
    expect(state.recording).toBe(false);
  });

  it('adds, updates and removes participants with their tracks', () => {
    let state = joinedAs(ada, moderatorGrants);
    state = apply(state, { type: 'participantJoined', participant: bob }, { type: 'trackPublished', track: track('t2', 'p2', 'microphone') });
    expect(state.order).toEqual(['p1', 'p2']);
    state = apply(state, { type: 'participantUpdated', participant: { ...bob, role: 'speaker' } });
    expect(state.participants.p2.role).toBe('speaker');
    expect(state.order).toEqual(['p1', 'p2']);
    state = apply(state, { type: 'activeSpeaker', participant: 'p2' }, { type: 'participantLeft', participant: 'p2', reason: 'left' });
    expect(state.order).toEqual(['p1']);
    expect(state.tracks).toEqual({});
    expect(state.activeSpeaker).toBeNull();
  });

  it('tracks mute and unpublish', () => {
    let state = joinedAs(ada, moderatorGrants, [bob], [track('t1', 'p2', 'camera')]);
    state = apply(state, { type: 'trackMuted', track: 't1', muted: true });
    expect(state.tracks.t1.muted).toBe(true);
    state = apply(state, { type: 'trackUnpublished', track: 't1' }, { type: 'trackMuted', track: 'tX', muted: true });
    expect(state.tracks).toEqual({});
  });

  it('drops our own screen tile when we stop sharing (the SFU tells only the others)', () => {
    let state = joinedAs(cy, speakerGrants, [bob], [track('s-bob', 'p2', 'screen'), track('c-cy', 'p3', 'camera')]);
    state = apply(state, { type: 'trackPublished', track: track('s-cy', 'p3', 'screen') });
    expect(tiles(state).filter((t) => t.kind === 'screen').map((t) => t.key).sort()).toEqual(['screen-s-bob', 'screen-s-cy']);
    state = reduce(state, { kind: 'ownTrackEnded', source: 'screen' });
    expect(Object.keys(state.tracks).sort()).toEqual(['c-cy', 's-bob']);
    expect(tiles(state).filter((t) => t.kind === 'screen').map((t) => t.key)).toEqual(['screen-s-bob']);
    // Nothing of ours to drop: the same state.
    expect(reduce(state, { kind: 'ownTrackEnded', source: 'screen' })).toBe(state);
  });

  it('counts unread chat from others only while the chat is closed', () => {
    let state = joinedAs(bob, listenerGrants, [ada]);
    const from = (who: ParticipantInfo, text: string): ServerMessage => ({ type: 'chat', message: { from: who.id, fromName: who.displayName, at: '2026-01-01T10:00:00Z', text } });
    state = apply(state, from(ada, 'one'), from(ada, 'two'), from(bob, 'mine'));
    expect(state.unread).toBe(2);
    state = reduce(state, { kind: 'chatOpen', open: true });
    expect(state.unread).toBe(0);
    state = apply(state, from(ada, 'three'));
    expect(state.unread).toBe(0);
    state = reduce(state, { kind: 'chatOpen', open: false });
    state = apply(state, from(ada, 'four'));
    expect(state.unread).toBe(1);
    expect(state.chat.map((c) => c.text)).toEqual(['one', 'two', 'mine', 'three', 'four']);
  });

  it('shows private messages with whom they were exchanged', () => {
    let state = joinedAs(ada, moderatorGrants, [bob]);
    state = apply(
      state,
      { type: 'chat', message: { from: 'p1', fromName: 'Ada', at: '2026-01-01T10:00:00Z', text: 'psst', to: 'p2' } },
      { type: 'chat', message: { from: 'p2', fromName: 'Bob', at: '2026-01-01T10:01:00Z', text: 'yes?', to: 'p1' } },
      { type: 'chat', message: { from: 'p2', fromName: 'Bob', at: '2026-01-01T10:02:00Z', text: 'all' } },
    );
    const lines = chatLines(state);
    expect(lines[0]).toMatchObject({ mine: true, privateWith: { id: 'p2', name: 'Bob' } });
    expect(lines[1]).toMatchObject({ mine: false, privateWith: { id: 'p2', name: 'Bob' } });
    expect(lines[2].privateWith).toBeNull();
  });

  it('applies our own role change and its new rights', () => {
    let state = joinedAs(bob, listenerGrants, [ada]);
    expect(state.grants?.present).toBe(false);
    state = apply(state, { type: 'roleChanged', role: 'speaker', grants: speakerGrants });
    expect(state.role).toBe('speaker');
    expect(state.grants?.present).toBe(true);
    expect(state.participants.p2.role).toBe('speaker');
  });

  it('remembers who blocked our microphone until we may speak again', () => {
    let state = joinedAs(bob, listenerGrants, [ada], [track('t1', 'p2', 'microphone')]);
    state = apply(state, { type: 'microphoneBlocked', blocked: true, by: 'p1' }, { type: 'trackMuted', track: 't1', muted: true });
    expect(state.microphoneBlockedBy).toBe('p1');
    expect(state.participants.p2.microphoneBlocked).toBe(true);
    state = apply(state, { type: 'microphoneBlocked', blocked: false, by: 'p1' });
    expect(state.microphoneBlockedBy).toBeNull();
  });

  it('ends on excluded, ended and replaced, but reconnects on gone, shutdown, moved, tooSlow and unresponsive', () => {
    const joined = joinedAs(bob, listenerGrants, [ada]);
    for (const reason of ['excluded', 'ended', 'replaced', 'left'] as const) {
      const state = apply(joined, { type: 'closed', reason });
      expect(state.phase).toBe('closed');
      expect(state.closed).toBe(reason);
    }
    for (const reason of ['gone', 'shutdown', 'moved', 'tooSlow', 'unresponsive'] as const) {
      const state = apply(joined, { type: 'closed', reason });
      expect(state.phase).toBe('reconnecting');
      expect(state.closed).toBeNull();
    }
  });

  it('a failed media connection says why and reconnects', () => {
    const message = 'the sending media connection failed: no network path to the media server’s UDP ports 47000-47099 was found';
    const state = apply(joinedAs(bob, listenerGrants), { type: 'error', code: 'connectionFailed', message }, { type: 'closed', reason: 'connectionFailed' });
    expect(state.phase).toBe('reconnecting');
    expect(state.notice).toEqual({ code: 'connectionFailed', message });
  });

  it('a refused join closes with its code; other errors are only a notice', () => {
    let state = apply(initialRoom(), { type: 'error', code: 'roomFull', message: 'the meeting is full (2 participants)' }, { type: 'closed', reason: 'gone' });
    expect(state.phase).toBe('closed');
    expect(state.refused?.code).toBe('roomFull');
    state = apply(initialRoom(), { type: 'error', code: 'tooManyGuests', message: '20 guests from your network are in this meeting already' });
    expect(state.phase).toBe('closed');
    expect(state.refused?.code).toBe('tooManyGuests');
    state = apply(joinedAs(bob, listenerGrants), { type: 'error', code: 'rateLimited', message: 'too many chat messages in a short time' });
    expect(state.phase).toBe('joined');
    expect(state.notice?.code).toBe('rateLimited');
    state = apply(joinedAs(bob, listenerGrants), { type: 'error', code: 'forbidden', message: 'a listener may not do this' });
    expect(state.phase).toBe('joined');
    expect(state.notice?.code).toBe('forbidden');
    state = reduce(state, { kind: 'dismissNotice' });
    expect(state.notice).toBeNull();
  });

  it('keeps the grid order across a reconnect', () => {
    let state = joinedAs(ada, moderatorGrants, [bob, cy]);
    state = reduce(state, { kind: 'reconnecting' });
    expect(state.phase).toBe('reconnecting');
    state = apply(state, {
      type: 'joined',
      you: 'p1',
      role: 'moderator',
      grants: moderatorGrants,
      participants: [cy, ada],
      tracks: [],
      chat: [],
      recording: false,
      audioOnly: false,
    });
    expect(state.order).toEqual(['p1', 'p3']);
    expect(state.phase).toBe('joined');
  });
});

describe('the grid', () => {
  it('puts shared screens first and shows cameras that are not muted', () => {
    let state = joinedAs(
      ada,
      moderatorGrants,
      [bob, cy],
      [track('t1', 'p2', 'camera'), track('t2', 'p3', 'camera', true), track('t3', 'p3', 'screen'), track('t4', 'p2', 'microphone')],
    );
    state = apply(state, { type: 'activeSpeaker', participant: 'p2' });
    const grid = tiles(state);
    expect(grid.map((t) => t.key)).toEqual(['screen-t3', 'camera-p1', 'camera-p2', 'camera-p3']);
    expect(grid[0].kind).toBe('screen');
    expect(grid[1].isYou).toBe(true);
    expect(grid[2].video?.id).toBe('t1');
    expect(grid[2].microphone?.id).toBe('t4');
    expect(grid[2].speaking).toBe(true);
    expect(grid[3].video).toBeNull();
  });

  it('does not show a muted participant as speaking', () => {
    let state = joinedAs(ada, moderatorGrants, [bob], [track('t4', 'p2', 'microphone', true)]);
    state = apply(state, { type: 'activeSpeaker', participant: 'p2' });
    expect(tiles(state).find((t) => t.participant.id === 'p2')?.speaking).toBe(false);
    state = apply(state, { type: 'trackMuted', track: 't4', muted: false });
    expect(tiles(state).find((t) => t.participant.id === 'p2')?.speaking).toBe(true);
  });

  it('shows the last speakers when it has no room for everyone, and counts the rest', () => {
    const people: ParticipantInfo[] = Array.from({ length: 8 }, (_, i) => ({ id: `q${i}`, displayName: `Q${i}`, role: 'speaker', microphoneBlocked: false }));
    // q5 and q6 have their camera on; nobody has spoken yet.
    let state = joinedAs(ada, moderatorGrants, people, [track('c5', 'q5', 'camera'), track('c6', 'q6', 'camera'), track('s7', 'q7', 'screen')]);
    const keys = (tiles: { key: string }[]) => tiles.map((t) => t.key);
    // Everything fits: everything is shown, in the grid's order.
    expect(layout(tiles(state), state.spoke, 10)).toEqual({ shown: tiles(state), more: [] });
    // Five places: four tiles and the count. The screen, ourselves, then cameras that are on.
    let grid = layout(tiles(state), state.spoke, 5);
    expect(keys(grid.shown)).toEqual(['screen-s7', 'camera-p1', 'camera-q5', 'camera-q6']);
    expect(grid.more).toHaveLength(6);
    // q2 speaks, then q3: the most recent speakers come before cameras, in the grid's order.
    state = apply(state, { type: 'activeSpeaker', participant: 'q2' }, { type: 'activeSpeaker', participant: null }, { type: 'activeSpeaker', participant: 'q3' });
    expect(state.spoke).toEqual(['q3', 'q2']);
    grid = layout(tiles(state), state.spoke, 5);
    expect(keys(grid.shown)).toEqual(['screen-s7', 'camera-p1', 'camera-q2', 'camera-q3']);
    // q6 speaks: it takes the place of the speaker heard longest ago; the others stay.
    state = apply(state, { type: 'activeSpeaker', participant: 'q6' });
    grid = layout(tiles(state), state.spoke, 5);
    expect(keys(grid.shown)).toEqual(['screen-s7', 'camera-p1', 'camera-q3', 'camera-q6']);
    expect(keys(grid.more)).toContain('camera-q2');
    // A narrow grid shows the one who speaks rather than ourselves.
    expect(keys(layout(tiles(state), state.spoke, 3).shown)).toEqual(['screen-s7', 'camera-q6']);
    // Someone who left is no longer a recent speaker; a reconnect keeps the others.
    state = apply(state, { type: 'participantLeft', participant: 'q3', reason: 'left' });
    expect(state.spoke).toEqual(['q6', 'q2']);
    // Back after a reconnect, with what the SFU's `joined` says of speakers.
    const rejoin = (speakers?: { speakers: string[]; activeSpeaker: string }) =>
      apply(reduce(state, { kind: 'reconnecting' }), {
        type: 'joined',
        you: ada.id,
        role: ada.role,
        grants: moderatorGrants,
        participants: [ada, ...people.filter((p) => p.id !== 'q3')],
        tracks: [],
        chat: [],
        recording: false,
        audioOnly: false,
        ...speakers,
      });
    state = rejoin();
    expect(state.spoke).toEqual(['q6', 'q2']);
    // The SFU names who spoke while we were away, and who speaks now.
    state = rejoin({ speakers: ['q4', 'q2', 'gone'], activeSpeaker: 'q4' });
    expect(state.spoke).toEqual(['q4', 'q2', 'q6']);
    expect(state.activeSpeaker).toBe('q4');
    // A grid with room for one tile still shows one.
    expect(layout(tiles(state), state.spoke, 0).shown).toHaveLength(1);
  });

  it('receives everyone’s tracks but ours', () => {
    const state = joinedAs(ada, moderatorGrants, [bob], [track('t1', 'p1', 'camera'), track('t2', 'p2', 'camera')]);
    expect(remoteTracks(state).map((t) => t.id)).toEqual(['t2']);
  });
});

describe('the participant list', () => {
  it('offers moderation by rights, never on ourselves', () => {
    const asModerator = joinedAs(ada, moderatorGrants, [bob]);
    expect(moderation(asModerator, 'p2')).toEqual({ setRole: true, blockMicrophone: true, exclude: true, privateMessage: true });
    expect(moderation(asModerator, 'p1')).toEqual({ setRole: false, blockMicrophone: false, exclude: false, privateMessage: false });
    const asSpeaker = joinedAs(cy, speakerGrants, [bob]);
    expect(moderation(asSpeaker, 'p2')).toEqual({ setRole: false, blockMicrophone: true, exclude: false, privateMessage: true });
    const asListener = joinedAs(bob, listenerGrants, [ada]);
    expect(moderation(asListener, 'p1')).toEqual({ setRole: false, blockMicrophone: false, exclude: false, privateMessage: true });
  });

  it('lists us first, then by role and name', () => {
    const zed: ParticipantInfo = { id: 'p4', displayName: 'Zed', role: 'moderator', microphoneBlocked: false };
    const state = joinedAs(bob, listenerGrants, [cy, ada, zed]);
    expect(participantList(state).map((p) => p.displayName)).toEqual(['Bob', 'Ada', 'Zed', 'Cy']);
  });
});
