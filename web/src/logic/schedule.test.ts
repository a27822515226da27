import { describe, expect, it } from 'vitest';
import type { Conference } from '../api';
import {
  changedInput,
  describeLength,
  draftKey,
  keepDraft,
  takeDraft,
  fieldOfRefusal,
  fromConference,
  fromDraft,
  lengthOf,
  moveStart,
  newSchedule,
  startChanged,
  suggestDigits,
  timingChecks,
  toInput,
  validateSchedule,
  type ScheduleValues,
} from './schedule';

/** A predictable "random" source: bytes 0, 1, 2, … */
const counting = (bytes: Uint8Array) => {
  bytes.forEach((_, i) => (bytes[i] = i + 1));
  return bytes;
};

const NOW = new Date('2026-11-20T08:30:00Z');

function values(overrides: Partial<ScheduleValues> = {}): ScheduleValues {
  return { ...newSchedule('Europe/Berlin', NOW, counting), topic: 'Weekly sync', date: '2026-12-01', start: '10:00', end: '11:00', ...overrides };
}

function conference(overrides: Partial<Conference> = {}): Conference {
  return {
    id: 'c1',
    topic: 'Weekly sync',
    kind: 'scheduled',
    meetingId: '123456789',
    password: '424242',
    start: '2026-12-01T10:00:00+01:00',
    end: '2026-12-01T11:00:00+01:00',
    durationMinutes: 60,
    timeZone: 'Europe/Berlin',
    recurrence: 'FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=20270131T225959Z',
    maxParticipants: 20,
    allowJoinWithoutOwner: false,
    media: 'audioOnly',
    recordingAllowed: false,
    invitees: ['ada@example.org', 'bob@example.org'],
    owner: { id: 'a1', login: 'ada', displayName: 'Ada' },
    status: 'offline',
    phase: 'Scheduled',
    occurrence: null,
    participants: 0,
    sequence: 0,
    joinUrl: 'http://127.0.0.1/join/123456789',
    archived: false,
    createdAt: '2026-11-01T00:00:00Z',
    updatedAt: '2026-11-01T00:00:00Z',
    ...overrides,
  } as Conference;
}

describe('a new scheduling form', () => {
  it('starts at the next full hour for an hour, in the account zone, with suggestions', () => {
    const v = newSchedule('Europe/Berlin', NOW, counting);
    expect(v).toMatchObject({ date: '2026-11-20', start: '10:00', end: '11:00', timeZone: 'Europe/Berlin', allowJoinWithoutOwner: true, audioOnly: false });
    expect(v.recurrence.days).toEqual(['FR']);
    expect(v.meetingId).toMatch(/^[1-9]\d{8}$/);
    expect(v.password).toMatch(/^[1-9]\d{5}$/);
  });

  it('starts on the full hour of the zone’s own clock, also in half-hour zones and at midnight', () => {
    // NOW is 08:30Z: 14:00 in Kolkata (UTC+05:30), 14:15 in Kathmandu (UTC+05:45).
    expect(newSchedule('Asia/Kolkata', NOW)).toMatchObject({ date: '2026-11-20', start: '15:00', end: '16:00' });
    expect(newSchedule('Asia/Kathmandu', NOW)).toMatchObject({ start: '15:00', end: '16:00' });
    // 23:10 in Berlin: tomorrow at midnight.
    expect(newSchedule('Europe/Berlin', new Date('2026-11-20T22:10:00Z'))).toMatchObject({ date: '2026-11-21', start: '00:00', end: '01:00' });
    // 01:20 on the night the clocks skip 02:00–03:00: the next hour that exists.
    expect(newSchedule('Europe/Berlin', new Date('2027-03-28T00:20:00Z'))).toMatchObject({ date: '2027-03-28', start: '03:00' });
  });

  it('suggests digits without a leading zero', () => {
    expect(suggestDigits(9, counting)).toBe('123456789');
    const zeros = (bytes: Uint8Array) => {
      bytes.fill(0);
      bytes[bytes.length - 1] = 7;
      return bytes;
    };
    expect(suggestDigits(1, zeros)).toBe('7');
    for (let i = 0; i < 50; i++) expect(suggestDigits(6)).toMatch(/^[1-9]\d{5}$/);
  });

  it('moves the end with the start', () => {
    expect(moveStart(values(), '14:30')).toMatchObject({ start: '14:30', end: '15:30' });
    // Past midnight, the length is kept: the end is on the next day.
    expect(moveStart(values(), '23:30').end).toBe('00:30');
    expect(moveStart(values({ start: '10:00', end: '10:00' }), '12:00').end).toBe('10:00');
  });

  it('tells the length, and that an end before the start is on the next day', () => {
    expect(lengthOf(values())).toEqual({ minutes: 60, nextDay: false });
    expect(describeLength(values({ start: '10:00', end: '11:45' }))).toBe('1 h 45 min');
    expect(describeLength(values({ start: '10:00', end: '10:20' }))).toBe('20 min');
    expect(describeLength(values({ start: '23:00', end: '00:30' }))).toBe('Ends the next day · 1 h 30 min');
    expect(describeLength(values({ start: '10:00', end: '10:00' }))).toBeNull();
    expect(describeLength(values({ start: '10:00', end: '' }))).toBeNull();
  });
});

describe('checks before sending', () => {
  it('accepts a good form', () => {
    expect(validateSchedule(values(), NOW)).toEqual({});
  });

  it('wants a topic on one line', () => {
    expect(validateSchedule(values({ topic: '  ' }), NOW).topic).toBe('Enter a topic.');
    expect(validateSchedule(values({ topic: 'a\nb' }), NOW).topic).toBeDefined();
    expect(validateSchedule(values({ topic: 'x'.repeat(201) }), NOW).topic).toBeDefined();
  });

  it('puts "end after start" next to the end when the two are equal', () => {
    expect(validateSchedule(values({ start: '11:00', end: '11:00' }), NOW)).toEqual({ end: 'The end must be after the start.' });
    expect(validateSchedule(values({ start: '11:00', end: '' }), NOW).end).toBe('Enter the end time, like 11:00.');
    // Earlier than the start: the next day, a conference running past midnight.
    expect(validateSchedule(values({ start: '23:00', end: '00:30' }), NOW)).toEqual({});
  });

  it('checks in an edit only the timing it sends', () => {
    // An ad hoc conference running past midnight, started in the past: a new topic is fine.
    const before = values({ date: '2026-11-19', start: '23:50', end: '00:20' });
    expect(validateSchedule({ ...before, topic: 'Late' }, NOW, timingChecks(before, { ...before, topic: 'Late' }))).toEqual({});
    // A longer meeting: the end is checked, the start is not.
    const longer = { ...before, end: '01:00' };
    expect(timingChecks(before, longer)).toEqual({ start: false, end: true });
    expect(validateSchedule(longer, NOW, timingChecks(before, longer))).toEqual({});
    expect(changedInput(before, longer)).toEqual({ end: '2026-11-20T01:00' });
    expect(validateSchedule({ ...before, end: '23:50' }, NOW, timingChecks(before, { ...before, end: '23:50' })).end).toBeDefined();
  });

  it('knows when the start moved (and is then checked)', () => {
    const before = values();
    expect(startChanged(before, { ...before, end: '12:00' })).toBe(false);
    expect(startChanged(before, { ...before, start: '10:30' })).toBe(true);
    expect(startChanged(before, { ...before, timeZone: 'UTC' })).toBe(true);
    expect(startChanged(before, { ...before, date: '2026-12-02' })).toBe(true);
  });

  it('refuses the past and times the clocks skip, unless the start is left alone', () => {
    expect(validateSchedule(values({ date: '2026-11-19' }), NOW).start).toMatch(/past/);
    expect(validateSchedule(values({ date: '2026-11-19' }), NOW, { start: false, end: true })).toEqual({});
    expect(validateSchedule(values({ date: '2027-03-28', start: '02:30', end: '04:00' }), NOW).start).toMatch(/does not exist/);
  });

  it('checks limits, meeting ID, password and invitees', () => {
    const errors = validateSchedule(values({ maxParticipants: '1', meetingId: '12345', password: '12ab', invitees: 'ada@example.org, nope' }), NOW);
    expect(Object.keys(errors).sort()).toEqual(['invitees', 'maxParticipants', 'meetingId', 'password']);
    expect(errors.invitees).toContain('“nope”');
    expect(validateSchedule(values({ maxParticipants: '' }), NOW)).toEqual({});
  });

  it('checks the recurrence choices', () => {
    const r = { freq: 'weekly' as const, interval: 1, days: [], end: { kind: 'count' as const, count: 0 } };
    expect(Object.keys(validateSchedule(values({ recurrence: r }), NOW)).sort()).toEqual(['count', 'days']);
  });
});

describe('what is sent', () => {
  it('sends local times with the zone, the rule and the options', () => {
    const v = values({
      recurrence: { freq: 'weekly', interval: 1, days: ['TH', 'TU'], end: { kind: 'until', date: '2027-01-31' } },
      maxParticipants: '20',
      allowJoinWithoutOwner: false,
      audioOnly: true,
      recordingAllowed: false,
      invitees: 'ada@example.org\nbob@example.org, ada@example.org',
    });
    expect(toInput(v)).toEqual({
      topic: 'Weekly sync',
      start: '2026-12-01T10:00',
      end: '2026-12-01T11:00',
      timeZone: 'Europe/Berlin',
      recurrence: 'FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=20270131T225959Z',
      maxParticipants: 20,
      allowJoinWithoutOwner: false,
      media: 'audioOnly',
      recordingAllowed: false,
      meetingId: '123456789',
      password: '123456',
      invitees: ['ada@example.org', 'bob@example.org'],
    });
    expect(toInput(values(), 'arch-1').repeatOf).toBe('arch-1');
    expect(toInput(values()).recurrence).toBeNull();
    expect(toInput(values()).maxParticipants).toBeNull();
    // Past midnight (and past the month's end): the end carries the next day's date.
    expect(toInput(values({ date: '2026-12-31', start: '23:30', end: '00:15' }))).toMatchObject({ start: '2026-12-31T23:30', end: '2027-01-01T00:15' });
  });

  it('prefills an edit from the conference, in its zone', () => {
    const v = fromConference(conference());
    expect(v).toMatchObject({
      topic: 'Weekly sync',
      date: '2026-12-01',
      start: '10:00',
      end: '11:00',
      timeZone: 'Europe/Berlin',
      maxParticipants: '20',
      allowJoinWithoutOwner: false,
      audioOnly: true,
      recordingAllowed: false,
      meetingId: '123456789',
      password: '424242',
      invitees: 'ada@example.org\nbob@example.org',
      keptRule: null,
    });
    expect(v.recurrence).toEqual({ freq: 'weekly', interval: 1, days: ['TU', 'TH'], end: { kind: 'until', date: '2027-01-31' } });
    // The API answers in the viewer's zone; the form shows the conference's.
    expect(fromConference(conference({ start: '2026-12-01T04:00:00-05:00', end: '2026-12-01T05:00:00-05:00' }))).toMatchObject({ start: '10:00', end: '11:00' });
  });

  it('patches only what changed', () => {
    const before = fromConference(conference());
    expect(changedInput(before, before)).toEqual({});
    expect(changedInput(before, { ...before, topic: 'Renamed' })).toEqual({ topic: 'Renamed' });
    expect(changedInput(before, moveStart(before, '12:00'))).toEqual({ start: '2026-12-01T12:00', end: '2026-12-01T13:00' });
    expect(changedInput(before, { ...before, end: '11:30' })).toEqual({ end: '2026-12-01T11:30' });
    expect(changedInput(before, { ...before, recurrence: { ...before.recurrence, freq: 'none' } })).toEqual({ recurrence: null });
    expect(changedInput(before, { ...before, maxParticipants: '' })).toEqual({ maxParticipants: null });
    expect(changedInput(before, { ...before, invitees: 'BOB@example.org, carol@example.org' })).toEqual({
      invitees: ['BOB@example.org', 'carol@example.org'],
    });
    expect(changedInput(before, { ...before, invitees: 'ADA@example.org, bob@example.org' })).toEqual({});
    // A new zone moves the wall times with it, and the UNTIL instant too.
    const moved = changedInput(before, { ...before, timeZone: 'America/New_York' });
    expect(moved).toMatchObject({ timeZone: 'America/New_York', start: '2026-12-01T10:00', end: '2026-12-01T11:00' });
    expect(moved.recurrence).toBe('FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=20270201T045959Z');
  });

  it('keeps a rule the form cannot show', () => {
    const before = fromConference(conference({ recurrence: 'FREQ=MONTHLY;BYMONTHDAY=1' }));
    expect(before.keptRule).toBe('FREQ=MONTHLY;BYMONTHDAY=1');
    expect(toInput(before).recurrence).toBe('FREQ=MONTHLY;BYMONTHDAY=1');
    expect(changedInput(before, { ...before, topic: 'x' })).toEqual({ topic: 'x' });
  });

  it('prefills a repeat from its draft with fresh suggestions', () => {
    const v = fromDraft(
      { topic: 'Retro', start: '2026-12-08T10:00', durationMinutes: 45, timeZone: 'Europe/Berlin', recurrence: null, maxParticipants: null, allowJoinWithoutOwner: true, media: 'audioVideo', invitees: ['ada@example.org'] },
      'UTC',
      counting,
    );
    expect(v).toMatchObject({ topic: 'Retro', date: '2026-12-08', start: '10:00', end: '10:45', timeZone: 'Europe/Berlin', invitees: 'ada@example.org', meetingId: '123456789' });
  });

  it('offers half an hour when the repeated occurrence lasted no time', () => {
    const v = fromDraft({ topic: 'Stand-up', start: '2026-11-29T09:38', durationMinutes: 0, timeZone: 'Europe/Berlin' }, 'UTC', counting);
    expect(v).toMatchObject({ start: '09:38', end: '10:08' });
    expect(validateSchedule(v, NOW)).toEqual({});
  });

  it('places API refusals next to their fields', () => {
    expect(fieldOfRefusal('meetingIdTaken', undefined)).toBe('meetingId');
    expect(fieldOfRefusal('validation', 'durationMinutes')).toBe('end');
    expect(fieldOfRefusal('validation', 'invitees')).toBe('invitees');
    expect(fieldOfRefusal('validation', 'somethingElse')).toBeUndefined();
  });
});

describe('a form kept while the person logs in again', () => {
  it('is given back once, and only when it looks like a form', () => {
    const storage = new Map<string, string>();
    const fake = {
      getItem: (k: string) => storage.get(k) ?? null,
      setItem: (k: string, v: string) => void storage.set(k, v),
      removeItem: (k: string) => void storage.delete(k),
    } as unknown as Storage;
    const key = draftKey('edit', 'c1');
    expect(key).toBe('conclave.scheduleDraft.edit.c1');
    expect(draftKey('create')).toBe('conclave.scheduleDraft.create');
    const v = values({ topic: 'Budget review' });
    keepDraft(fake, key, v);
    expect(takeDraft(fake, key)).toEqual(v);
    expect(takeDraft(fake, key)).toBeNull();
    storage.set(key, '{"topic": 1}');
    expect(takeDraft(fake, key)).toBeNull();
    storage.set(key, 'not json');
    expect(takeDraft(fake, key)).toBeNull();
    expect(takeDraft(null, key)).toBeNull();
  });
});
