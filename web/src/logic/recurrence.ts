// The recurrence the scheduling form offers, and the RFC 5545 RRULE the API takes. The form
// builds a rule (`buildRule`) and reads one back for editing (`parseRule`); rules the form
// cannot show (written with kubectl, say) are kept as they are. UNTIL is sent in UTC, as the
// API expects when the start has a time zone: the end of the chosen day in the conference's zone.
import { addDays, icsUtc, localToInstant, parseDate, parseIcsUtc, splitInstant, weekdayOf } from './time';

export type Frequency = 'none' | 'daily' | 'weekly' | 'monthly';
/** RFC 5545 weekday codes, Monday first. */
export const WEEKDAYS = ['MO', 'TU', 'WE', 'TH', 'FR', 'SA', 'SU'] as const;
export type Weekday = (typeof WEEKDAYS)[number];
export const WEEKDAY_NAMES: Record<Weekday, string> = {
  MO: 'Monday',
  TU: 'Tuesday',
  WE: 'Wednesday',
  TH: 'Thursday',
  FR: 'Friday',
  SA: 'Saturday',
  SU: 'Sunday',
};

export type RecurrenceEnd = { kind: 'never' } | { kind: 'until'; date: string } | { kind: 'count'; count: number };

export interface Recurrence {
  freq: Frequency;
  /** Every `interval` days, weeks or months (1 = every). */
  interval: number;
  /** Weekly only: the days it happens on. */
  days: Weekday[];
  end: RecurrenceEnd;
}

export const NO_RECURRENCE: Recurrence = { freq: 'none', interval: 1, days: [], end: { kind: 'never' } };

/** The weekday code of a `YYYY-MM-DD` date. */
export function weekdayCode(date: string): Weekday {
  return WEEKDAYS[(weekdayOf(date) + 6) % 7];
}

/** Problems with a recurrence for a conference starting on `startDate`, by form field. */
export function recurrenceErrors(r: Recurrence, startDate: string): { days?: string; until?: string; count?: string; interval?: string } {
  const errors: { days?: string; until?: string; count?: string; interval?: string } = {};
  if (r.freq === 'none') return errors;
  if (!Number.isInteger(r.interval) || r.interval < 1 || r.interval > 99) errors.interval = 'Repeat every 1 to 99 periods.';
  if (r.freq === 'weekly' && r.days.length === 0) errors.days = 'Choose at least one weekday.';
  if (r.end.kind === 'until') {
    if (!parseDate(r.end.date)) errors.until = 'Enter the last date, like 2027-01-31.';
    else if (parseDate(startDate) && r.end.date < startDate) errors.until = 'The last date must not be before the first meeting.';
  }
  if (r.end.kind === 'count' && (!Number.isInteger(r.end.count) || r.end.count < 1 || r.end.count > 1000)) {
    errors.count = 'Enter how many times, from 1 to 1000.';
  }
  return errors;
}

/**
 * The RRULE for `r` (null for no recurrence). `timeZone` is the conference's: an UNTIL date
 * becomes the last second of that day there, in UTC.
 */
export function buildRule(r: Recurrence, timeZone: string): string | null {
  if (r.freq === 'none') return null;
  const parts = [`FREQ=${r.freq.toUpperCase()}`];
  if (r.interval > 1) parts.push(`INTERVAL=${r.interval}`);
  if (r.freq === 'weekly' && r.days.length) {
    const days = WEEKDAYS.filter((d) => r.days.includes(d));
    parts.push(`BYDAY=${days.join(',')}`);
  }
  if (r.end.kind === 'until') parts.push(`UNTIL=${icsUtc(localToInstant(r.end.date, '23:59', timeZone, 59))}`);
  if (r.end.kind === 'count') parts.push(`COUNT=${r.end.count}`);
  return parts.join(';');
}

/** What `parseRule` makes of a rule: the form's values, or the rule kept as text. */
export type ParsedRule = { ok: true; recurrence: Recurrence } | { ok: false; rule: string };

/** Reads an RRULE back into the form's values (UNTIL shown as a date in `timeZone`). */
export function parseRule(rule: string | null | undefined, timeZone: string): ParsedRule {
  if (!rule || !rule.trim()) return { ok: true, recurrence: { ...NO_RECURRENCE } };
  const text = rule.trim().replace(/^RRULE:/i, '');
  const fields = new Map<string, string>();
  for (const part of text.split(';')) {
    if (!part) continue;
    const eq = part.indexOf('=');
    if (eq < 1) return { ok: false, rule };
    const key = part.slice(0, eq).toUpperCase();
    if (fields.has(key)) return { ok: false, rule };
    fields.set(key, part.slice(eq + 1).toUpperCase());
  }
  const freqText = fields.get('FREQ');
  const freq = ({ DAILY: 'daily', WEEKLY: 'weekly', MONTHLY: 'monthly' } as const)[freqText as 'DAILY' | 'WEEKLY' | 'MONTHLY'];
  if (!freq) return { ok: false, rule };
  const known = new Set(['FREQ', 'INTERVAL', 'BYDAY', 'UNTIL', 'COUNT', 'WKST']);
  if ([...fields.keys()].some((k) => !known.has(k))) return { ok: false, rule };
  if (fields.has('WKST') && fields.get('WKST') !== 'MO') return { ok: false, rule };
  let interval = 1;
  if (fields.has('INTERVAL')) {
    interval = Number(fields.get('INTERVAL'));
    if (!Number.isInteger(interval) || interval < 1) return { ok: false, rule };
  }
  let days: Weekday[] = [];
  if (fields.has('BYDAY')) {
    if (freq !== 'weekly') return { ok: false, rule };
    const codes = fields.get('BYDAY')!.split(',');
    if (!codes.every((c): c is Weekday => (WEEKDAYS as readonly string[]).includes(c))) return { ok: false, rule };
    days = WEEKDAYS.filter((d) => codes.includes(d));
  }
  let end: RecurrenceEnd = { kind: 'never' };
  if (fields.has('UNTIL') && fields.has('COUNT')) return { ok: false, rule };
  if (fields.has('UNTIL')) {
    const until = fields.get('UNTIL')!;
    const instant = parseIcsUtc(until);
    if (!instant) return { ok: false, rule };
    // A bare date or a floating time names the local day itself; a UTC time is shown in the zone.
    const date = until.endsWith('Z') ? splitInstant(instant, timeZone).date : `${until.slice(0, 4)}-${until.slice(4, 6)}-${until.slice(6, 8)}`;
    end = { kind: 'until', date };
  }
  if (fields.has('COUNT')) {
    const count = Number(fields.get('COUNT'));
    if (!Number.isInteger(count) || count < 1) return { ok: false, rule };
    end = { kind: 'count', count };
  }
  return { ok: true, recurrence: { freq, interval, days, end } };
}

function list(words: string[]): string {
  if (words.length <= 1) return words.join('');
  return `${words.slice(0, -1).join(', ')} and ${words[words.length - 1]}`;
}

/**
 * The rule in words, for the info page and the log: "Every week on Monday and Wednesday,
 * until 31 Jan 2027". `startDate` (local, `YYYY-MM-DD`) names the day a monthly rule keeps.
 */
export function describeRule(rule: string | null | undefined, timeZone: string, startDate?: string): string {
  if (!rule) return 'Does not repeat';
  const parsed = parseRule(rule, timeZone);
  if (!parsed.ok) return `Custom rule: ${rule}`;
  const r = parsed.recurrence;
  const unit = { daily: 'day', weekly: 'week', monthly: 'month', none: '' }[r.freq];
  let text = r.interval > 1 ? `Every ${r.interval} ${unit}s` : `Every ${unit}`;
  if (r.freq === 'weekly') {
    const days = r.days.length ? r.days : startDate ? [weekdayCode(startDate)] : [];
    if (days.length) text += ` on ${list(days.map((d) => WEEKDAY_NAMES[d]))}`;
  }
  if (r.freq === 'monthly' && startDate && parseDate(startDate)) text += ` on day ${Number(startDate.slice(8, 10))}`;
  if (r.end.kind === 'until') {
    const d = parseDate(r.end.date)!;
    const shown = new Intl.DateTimeFormat(undefined, { timeZone: 'UTC', day: 'numeric', month: 'short', year: 'numeric' }).format(
      new Date(Date.UTC(d.year, d.month - 1, d.day)),
    );
    text += `, until ${shown}`;
  }
  if (r.end.kind === 'count') text += r.end.count === 1 ? ', once' : `, ${r.end.count} times`;
  return text;
}

/** A sensible end date to offer when someone picks "until a date": four weeks after the start. */
export function defaultUntil(startDate: string): string {
  return parseDate(startDate) ? addDays(startDate, 28) : '';
}
