// The scheduling form as plain data: its values, the checks made before anything is sent, the
// body of `POST /conferences`, the smallest `PATCH` for an edit, and the values prefilled from
// a conference (edit) or a repeat draft. No DOM here, so all of it is unit-tested.
import type { Conference, ConferenceInput } from '../api';
import { parseInvitees, inviteesError, formatInvitees } from './invitees';
import { buildRule, NO_RECURRENCE, parseRule, recurrenceErrors, weekdayCode, type Recurrence } from './recurrence';
import { addDays, formatClock, isTimeZone, localIso, localTimeExists, localToInstant, parseDate, parseTime, splitInstant, splitLocalIso } from './time';

const DAY_MINUTES = 24 * 60;

export interface ScheduleValues {
  topic: string;
  /** `YYYY-MM-DD`, local in `timeZone`. */
  date: string;
  /** `HH:MM`. */
  start: string;
  /** `HH:MM`: after `start` on the same day, or, when earlier than `start`, on the next day. */
  end: string;
  timeZone: string;
  recurrence: Recurrence;
  /** A rule the form cannot show, kept as it is while `recurrence.freq` is `none` and untouched. */
  keptRule: string | null;
  /** Digits, or empty for no limit. */
  maxParticipants: string;
  allowJoinWithoutOwner: boolean;
  audioOnly: boolean;
  /** Whether moderators of level moderatorPlus may record the meeting. */
  recordingAllowed: boolean;
  meetingId: string;
  password: string;
  /** Addresses, one per line or separated by commas. */
  invitees: string;
}

/** Field names of the form; errors are keyed by them. */
export type ScheduleField =
  | 'topic'
  | 'date'
  | 'start'
  | 'end'
  | 'timeZone'
  | 'recurrence'
  | 'interval'
  | 'days'
  | 'until'
  | 'count'
  | 'maxParticipants'
  | 'allowJoinWithoutOwner'
  | 'audioOnly'
  | 'recordingAllowed'
  | 'meetingId'
  | 'password'
  | 'invitees';

export type ScheduleErrors = Partial<Record<ScheduleField | 'form', string>>;

/** Where the API's field names land in the form. */
export const API_FIELDS: Record<string, ScheduleField> = {
  topic: 'topic',
  start: 'start',
  end: 'end',
  durationMinutes: 'end',
  timeZone: 'timeZone',
  recurrence: 'recurrence',
  permanent: 'start',
  maxParticipants: 'maxParticipants',
  allowJoinWithoutOwner: 'allowJoinWithoutOwner',
  media: 'audioOnly',
  recordingAllowed: 'recordingAllowed',
  meetingId: 'meetingId',
  password: 'password',
  invitees: 'invitees',
};

/** The form field a refusal (status, code, field) belongs to, or undefined for the form. */
export function fieldOfRefusal(code: string, field: string | undefined): ScheduleField | undefined {
  if (code === 'meetingIdTaken') return 'meetingId';
  return field ? API_FIELDS[field] : undefined;
}

/** `length` random digits, not starting with 0 (as the API generates them). */
export function suggestDigits(length: number, random: (bytes: Uint8Array) => Uint8Array = (b) => crypto.getRandomValues(b)): string {
  const digits: string[] = [];
  while (digits.length < length) {
    for (const byte of random(new Uint8Array(length * 2))) {
      // Rejection sampling keeps every digit equally likely.
      if (byte >= 250) continue;
      const digit = byte % 10;
      if (digits.length === 0 && digit === 0) continue;
      digits.push(String(digit));
      if (digits.length === length) break;
    }
  }
  return digits.join('');
}

/** A fresh form: the next full hour for an hour, in `timeZone`, with suggested ID and password. */
export function newSchedule(timeZone: string, now: Date, random?: (bytes: Uint8Array) => Uint8Array): ScheduleValues {
  // The next full hour on the zone's clock (in Asia/Kolkata a UTC hour starts at :30).
  const here = splitInstant(now, timeZone);
  let date = here.date;
  let hour = Math.floor(parseTime(here.time)! / 60) + 1;
  for (;;) {
    if (hour >= 24) {
      date = addDays(date, 1);
      hour -= 24;
    }
    // An hour the clocks skip (spring forward) is passed over.
    if (localTimeExists(date, formatClock(hour * 60), timeZone)) break;
    hour += 1;
  }
  const start = { date, time: formatClock(hour * 60) };
  const startMinutes = hour * 60;
  return {
    topic: '',
    date: start.date,
    start: start.time,
    end: formatClock(startMinutes + 60),
    timeZone,
    recurrence: { ...NO_RECURRENCE, days: [weekdayCode(start.date)] },
    keptRule: null,
    maxParticipants: '',
    allowJoinWithoutOwner: true,
    audioOnly: false,
    recordingAllowed: true,
    meetingId: suggestDigits(9, random),
    password: suggestDigits(6, random),
    invitees: '',
  };
}

/** The values of an existing conference, for editing; times in the conference's zone. */
export function fromConference(c: Conference): ScheduleValues {
  const tz = c.timeZone;
  const start = c.start ? splitInstant(c.start, tz) : { date: '', time: '' };
  const end = c.end ? splitInstant(c.end, tz) : { date: '', time: '' };
  const parsed = parseRule(c.recurrence, tz);
  return {
    topic: c.topic,
    date: start.date,
    start: start.time,
    end: end.time,
    timeZone: tz,
    recurrence: withDefaultDay(parsed.ok ? parsed.recurrence : { ...NO_RECURRENCE }, start.date),
    keptRule: parsed.ok ? null : parsed.rule,
    maxParticipants: c.maxParticipants == null ? '' : String(c.maxParticipants),
    allowJoinWithoutOwner: c.allowJoinWithoutOwner,
    audioOnly: c.media === 'audioOnly',
    recordingAllowed: c.recordingAllowed,
    meetingId: c.meetingId,
    password: c.password,
    invitees: formatInvitees(c.invitees),
  };
}

/**
 * The values of a repeat draft (`POST /conferences/{id}/repeat`): its local start and duration,
 * in its zone. The meeting ID and password are new suggestions (the old ones may be in use).
 */
export function fromDraft(draft: ConferenceInput, fallbackTimeZone: string, random?: (bytes: Uint8Array) => Uint8Array): ScheduleValues {
  const tz = draft.timeZone && isTimeZone(draft.timeZone) ? draft.timeZone : fallbackTimeZone;
  const start = (draft.start && (splitLocalIso(draft.start) ?? splitInstant(draft.start, tz))) || { date: '', time: '' };
  const startMinutes = parseTime(start.time);
  // An occurrence ended by its moderator right after it began lasted 0 minutes: offer the
  // ad hoc length instead of an end that equals the start.
  const duration = draft.durationMinutes && draft.durationMinutes >= 1 ? draft.durationMinutes : 30;
  const parsed = parseRule(draft.recurrence ?? null, tz);
  return {
    topic: draft.topic ?? '',
    date: start.date,
    start: start.time,
    end: startMinutes === null ? '' : formatClock(startMinutes + Math.min(duration, DAY_MINUTES - 1)),
    timeZone: tz,
    recurrence: withDefaultDay(parsed.ok ? parsed.recurrence : { ...NO_RECURRENCE }, start.date),
    keptRule: parsed.ok ? null : parsed.rule,
    maxParticipants: draft.maxParticipants == null ? '' : String(draft.maxParticipants),
    allowJoinWithoutOwner: draft.allowJoinWithoutOwner ?? true,
    audioOnly: draft.media === 'audioOnly',
    recordingAllowed: draft.recordingAllowed ?? true,
    meetingId: draft.meetingId || suggestDigits(9, random),
    password: draft.password || suggestDigits(6, random),
    invitees: formatInvitees(draft.invitees ?? []),
  };
}

/** A weekly rule without days means the start's weekday; the checkboxes show it. */
function withDefaultDay(r: Recurrence, date: string): Recurrence {
  if (r.days.length || !parseDate(date)) return r;
  return { ...r, days: [weekdayCode(date)] };
}

/**
 * How long the form's conference lasts: an end earlier than the start is on the next day
 * (23:00 to 00:30 is an hour and a half). Null when a time is missing or the two are equal.
 */
export function lengthOf(values: Pick<ScheduleValues, 'start' | 'end'>): { minutes: number; nextDay: boolean } | null {
  const start = parseTime(values.start);
  const end = parseTime(values.end);
  if (start === null || end === null || start === end) return null;
  return { minutes: (end - start + DAY_MINUTES) % DAY_MINUTES, nextDay: end < start };
}

/** The hint under the end: "1 h 30 min", or "Ends the next day · 1 h 30 min". */
export function describeLength(values: Pick<ScheduleValues, 'start' | 'end'>): string | null {
  const length = lengthOf(values);
  if (!length) return null;
  const hours = Math.floor(length.minutes / 60);
  const minutes = length.minutes % 60;
  const text = [hours ? `${hours} h` : '', minutes ? `${minutes} min` : ''].filter(Boolean).join(' ');
  return length.nextDay ? `Ends the next day · ${text}` : text;
}

/** Moves the end with the start, keeping the length (as calendars do), past midnight if need be. */
export function moveStart(values: ScheduleValues, start: string): ScheduleValues {
  const after = parseTime(start);
  const length = lengthOf(values);
  if (after === null || !length) return { ...values, start };
  return { ...values, start, end: formatClock((after + length.minutes) % DAY_MINUTES) };
}

/** The rule the form stands for: built from its choices, or the kept one. */
export function ruleOf(values: ScheduleValues): string | null {
  if (values.recurrence.freq === 'none') return values.keptRule;
  return buildRule(values.recurrence, values.timeZone);
}

/** Which parts of the timing an edit sends (a new conference sends all). */
export interface TimingChecks {
  /** The start: not in the past, not in a daylight-saving gap. */
  start: boolean;
  /** The end: after the start on the same day. */
  end: boolean;
}

/** What an edit from `before` to `after` sends of the timing, and so what is checked. */
export function timingChecks(before: ScheduleValues, after: ScheduleValues): TimingChecks {
  const start = startChanged(before, after);
  return { start, end: start || before.end !== after.end };
}

/**
 * Checks made before sending. An edit checks only the timing it sends: a running conference
 * has started in the past, and may be made longer without moving its start.
 */
export function validateSchedule(values: ScheduleValues, now: Date, checks: TimingChecks = { start: true, end: true }): ScheduleErrors {
  const errors: ScheduleErrors = {};
  const topic = values.topic.trim();
  if (!topic) errors.topic = 'Enter a topic.';
  else if ([...topic].length > 200) errors.topic = 'A topic has at most 200 characters.';
  else if (/[\u0000-\u001f\u007f]/.test(topic)) errors.topic = 'A topic is a single line.';

  if (!isTimeZone(values.timeZone)) errors.timeZone = 'Choose a time zone.';
  const date = parseDate(values.date);
  const start = parseTime(values.start);
  const end = parseTime(values.end);
  if (!date) errors.date = 'Enter the date, like 2026-12-01.';
  if (start === null) errors.start = 'Enter the start time, like 10:00.';
  if (end === null) errors.end = 'Enter the end time, like 11:00.';
  else if (checks.end && start !== null && end === start) errors.end = 'The end must be after the start.';
  if (checks.start && date && start !== null && !errors.timeZone) {
    if (!localTimeExists(values.date, values.start, values.timeZone)) {
      errors.start = `${values.start} does not exist on that day in ${values.timeZone} (the clocks skip it); pick another time.`;
    } else if (localToInstant(values.date, values.start, values.timeZone).getTime() < now.getTime() - 5 * 60_000) {
      errors.start = 'The start lies in the past; pick a later time or start a conference now.';
    }
  }
  if (values.recurrence.freq !== 'none') {
    const r = recurrenceErrors(values.recurrence, values.date);
    Object.assign(errors, r);
  }

  const max = values.maxParticipants.trim();
  if (max && (!/^\d+$/.test(max) || Number(max) < 2 || Number(max) > 1000)) {
    errors.maxParticipants = 'Allow 2 to 1000 participants, or leave it empty for no limit.';
  }
  if (!/^\d{6,12}$/.test(values.meetingId.trim())) errors.meetingId = 'A meeting ID has 6 to 12 digits and nothing else.';
  if (!/^\d{4,16}$/.test(values.password.trim())) errors.password = 'A meeting password has 4 to 16 digits, so that phone callers can type it.';
  const invitees = inviteesError(parseInvitees(values.invitees));
  if (invitees) errors.invitees = invitees;
  return errors;
}

/** The body of `POST /conferences` (with `repeatOf` when scheduling an archive entry again). */
export function toInput(values: ScheduleValues, repeatOf?: string): ConferenceInput {
  const max = values.maxParticipants.trim();
  const input: ConferenceInput = {
    topic: values.topic.trim(),
    start: localIso(values.date, values.start),
    end: localIso(lengthOf(values)?.nextDay ? addDays(values.date, 1) : values.date, values.end),
    timeZone: values.timeZone,
    recurrence: ruleOf(values),
    maxParticipants: max ? Number(max) : null,
    allowJoinWithoutOwner: values.allowJoinWithoutOwner,
    media: values.audioOnly ? 'audioOnly' : 'audioVideo',
    recordingAllowed: values.recordingAllowed,
    meetingId: values.meetingId.trim(),
    password: values.password.trim(),
    invitees: parseInvitees(values.invitees).addresses,
  };
  if (repeatOf) input.repeatOf = repeatOf;
  return input;
}

/**
 * Whether the date, start or zone differ: the start is then sent, and must not lie in the past.
 * A new end alone is not (so a running conference can be made longer).
 */
export function startChanged(before: ScheduleValues, after: ScheduleValues): boolean {
  return before.date !== after.date || before.start !== after.start || before.timeZone !== after.timeZone;
}

/**
 * The smallest `PATCH /conferences/{id}` from `before` (as loaded) to `after`: only what
 * changed. A new date, start or zone sends start and end (so the length is what the form
 * shows); a new end alone sends the end.
 */
export function changedInput(before: ScheduleValues, after: ScheduleValues): ConferenceInput {
  const a = toInput(after);
  const b = toInput(before);
  const patch: ConferenceInput = {};
  if (a.topic !== b.topic) patch.topic = a.topic;
  if (after.timeZone !== before.timeZone) patch.timeZone = a.timeZone;
  if (startChanged(before, after)) {
    patch.start = a.start;
    patch.end = a.end;
  } else if (before.end !== after.end) patch.end = a.end;
  if (a.recurrence !== b.recurrence) patch.recurrence = a.recurrence;
  if (a.maxParticipants !== b.maxParticipants) patch.maxParticipants = a.maxParticipants;
  if (a.allowJoinWithoutOwner !== b.allowJoinWithoutOwner) patch.allowJoinWithoutOwner = a.allowJoinWithoutOwner;
  if (a.media !== b.media) patch.media = a.media;
  if (a.recordingAllowed !== b.recordingAllowed) patch.recordingAllowed = a.recordingAllowed;
  if (a.meetingId !== b.meetingId) patch.meetingId = a.meetingId;
  if (a.password !== b.password) patch.password = a.password;
  const lower = (list: string[] | null | undefined) => (list ?? []).map((x) => x.toLowerCase()).join('\n');
  if (lower(a.invitees) !== lower(b.invitees)) patch.invitees = a.invitees;
  return patch;
}

/**
 * A form the person could not send because their login ended is kept for this tab
 * (sessionStorage) and given back once, after they logged in again.
 */
export function draftKey(kind: 'create' | 'repeat' | 'edit', id?: string): string {
  return `conclave.scheduleDraft.${kind}${id ? `.${id}` : ''}`;
}

export function keepDraft(storage: Storage | null, key: string, values: ScheduleValues): void {
  try {
    storage?.setItem(key, JSON.stringify(values));
  } catch {
    // Storage full or disabled: the form is lost as before.
  }
}

export function takeDraft(storage: Storage | null, key: string): ScheduleValues | null {
  try {
    const text = storage?.getItem(key);
    storage?.removeItem(key);
    if (!text) return null;
    const v = JSON.parse(text) as Partial<ScheduleValues>;
    const strings = ['topic', 'date', 'start', 'end', 'timeZone', 'maxParticipants', 'meetingId', 'password', 'invitees'] as const;
    if (!v || typeof v !== 'object' || strings.some((k) => typeof v[k] !== 'string') || typeof v.recurrence !== 'object' || v.recurrence === null) return null;
    return v as ScheduleValues;
  } catch {
    return null;
  }
}
