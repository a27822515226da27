// Dates and times in a conference's IANA time zone, with nothing but Intl: splitting an instant
// into the local date and time the form shows, turning a local date and time back into an
// instant, and the texts people read ("Tue, 1 Dec 2026, 10:00–11:00 Europe/Berlin (UTC+01:00)").

/** A local calendar date `YYYY-MM-DD` and wall time `HH:MM`. */
export interface LocalDateTime {
  date: string;
  time: string;
}

const partsFormatters = new Map<string, Intl.DateTimeFormat>();

function partsFormatter(timeZone: string): Intl.DateTimeFormat {
  let formatter = partsFormatters.get(timeZone);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
    });
    partsFormatters.set(timeZone, formatter);
  }
  return formatter;
}

/** Whether `timeZone` is an IANA name this browser knows. */
export function isTimeZone(timeZone: string): boolean {
  if (!timeZone) return false;
  try {
    partsFormatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** The wall clock in `timeZone` at `instant`, to the second. */
function wallClock(instant: Date, timeZone: string) {
  const parts: Record<string, number> = {};
  for (const part of partsFormatter(timeZone).formatToParts(instant)) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  return { year: parts.year, month: parts.month, day: parts.day, hour: parts.hour % 24, minute: parts.minute, second: parts.second };
}

/** The zone's offset from UTC at `instant`, in minutes (east positive: Berlin in winter is 60). */
export function offsetMinutes(instant: Date, timeZone: string): number {
  const w = wallClock(instant, timeZone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  const whole = Math.floor(instant.getTime() / 1000) * 1000;
  return Math.round((asUtc - whole) / 60_000);
}

/** `UTC+01:00`, `UTC−03:30` (a real minus sign), `UTC±00:00` for UTC itself. */
export function formatOffset(instant: Date, timeZone: string): string {
  const minutes = offsetMinutes(instant, timeZone);
  if (minutes === 0) return 'UTC±00:00';
  const sign = minutes > 0 ? '+' : '−';
  const abs = Math.abs(minutes);
  return `UTC${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

/** The local date and time of `instant` (a Date or an RFC 3339 text) in `timeZone`. */
export function splitInstant(instant: Date | string, timeZone: string): LocalDateTime {
  const w = wallClock(typeof instant === 'string' ? new Date(instant) : instant, timeZone);
  return { date: `${pad(w.year, 4)}-${pad(w.month)}-${pad(w.day)}`, time: `${pad(w.hour)}:${pad(w.minute)}` };
}

/** Parses `YYYY-MM-DD`; null when it is not a real calendar date. */
export function parseDate(date: string): { year: number; month: number; day: number } | null {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date.trim());
  if (!m) return null;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const check = new Date(Date.UTC(year, month - 1, day));
  if (check.getUTCFullYear() !== year || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) return null;
  return { year, month, day };
}

/** Parses `HH:MM` (24-hour); minutes since midnight, or null. */
export function parseTime(time: string): number | null {
  const m = /^(\d{1,2}):(\d{2})$/.exec(time.trim());
  if (!m) return null;
  const [hour, minute] = [Number(m[1]), Number(m[2])];
  if (hour > 23 || minute > 59) return null;
  return hour * 60 + minute;
}

/** `HH:MM` for minutes since midnight (wrapping around the day). */
export function formatClock(minutes: number): string {
  const m = ((minutes % 1440) + 1440) % 1440;
  return `${pad(Math.floor(m / 60))}:${pad(m % 60)}`;
}

/** The local time the API takes with a `timeZone`: `2026-12-01T10:00`. */
export function localIso(date: string, time: string): string {
  return `${date}T${time}`;
}

/** Splits the API's local time `2026-12-01T10:00[:00]` into date and time. */
export function splitLocalIso(value: string): LocalDateTime | null {
  const m = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(?::\d{2})?$/.exec(value.trim());
  return m ? { date: m[1], time: m[2] } : null;
}

/** Adds days to a `YYYY-MM-DD` date. */
export function addDays(date: string, days: number): string {
  const d = parseDate(date);
  if (!d) return date;
  const t = new Date(Date.UTC(d.year, d.month - 1, d.day + days));
  return `${pad(t.getUTCFullYear(), 4)}-${pad(t.getUTCMonth() + 1)}-${pad(t.getUTCDate())}`;
}

/** 0 = Sunday … 6 = Saturday, for a `YYYY-MM-DD` date. */
export function weekdayOf(date: string): number {
  const d = parseDate(date);
  return d ? new Date(Date.UTC(d.year, d.month - 1, d.day)).getUTCDay() : 0;
}

/**
 * The instant when the wall clock in `timeZone` shows `date` `time` (seconds optional). A time
 * the clocks skip moves forward by the gap; an ambiguous one means its first instance — the
 * same rules as the API.
 */
export function localToInstant(date: string, time: string, timeZone: string, seconds = 0): Date {
  const d = parseDate(date);
  const minutes = parseTime(time);
  if (!d || minutes === null) throw new RangeError(`not a local time: ${date} ${time}`);
  const wall = Date.UTC(d.year, d.month - 1, d.day, Math.floor(minutes / 60), minutes % 60, seconds);
  // Try the offsets around the wanted wall time; the first (earliest) that fits wins.
  const candidates = [offsetMinutes(new Date(wall - 86_400_000), timeZone), offsetMinutes(new Date(wall + 86_400_000), timeZone)];
  const fits = candidates
    .map((offset) => new Date(wall - offset * 60_000))
    .filter((instant) => offsetMinutes(instant, timeZone) * 60_000 === wall - instant.getTime())
    .sort((a, b) => a.getTime() - b.getTime());
  if (fits.length) return fits[0];
  // In a gap: shift by the later offset, as clocks do.
  const before = candidates[0];
  return new Date(wall - before * 60_000);
}

/** Whether the wall time exists in `timeZone` (false inside a daylight-saving gap). */
export function localTimeExists(date: string, time: string, timeZone: string): boolean {
  const instant = localToInstant(date, time, timeZone);
  const back = splitInstant(instant, timeZone);
  return back.date === date && back.time === time;
}

/** `20270131T225959Z`, the UTC form RFC 5545 uses in UNTIL. */
export function icsUtc(instant: Date): string {
  return instant.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

/** Parses `20270131T225959Z` (or a date `20270131`); null otherwise. */
export function parseIcsUtc(value: string): Date | null {
  const m = /^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2})(Z)?)?$/.exec(value.trim());
  if (!m) return null;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (m[4] === undefined) return new Date(Date.UTC(y, mo - 1, d));
  return new Date(Date.UTC(y, mo - 1, d, Number(m[4]), Number(m[5]), Number(m[6])));
}

const LOCALE = undefined; // the browser's language

/** "Tue, 1 Dec 2026" in `timeZone`. */
export function formatDate(instant: Date | string, timeZone: string): string {
  return new Intl.DateTimeFormat(LOCALE, { timeZone, weekday: 'short', day: 'numeric', month: 'short', year: 'numeric' }).format(
    new Date(instant),
  );
}

/** "10:00" in `timeZone` (24-hour). */
export function formatTime(instant: Date | string, timeZone: string): string {
  return splitInstant(new Date(instant), timeZone).time;
}

/** "Europe/Berlin (UTC+01:00)": the zone and its offset at `instant`. */
export function formatZone(instant: Date | string, timeZone: string): string {
  return `${timeZone} (${formatOffset(new Date(instant), timeZone)})`;
}

/**
 * A span in the conference's zone: "Tue, 1 Dec 2026, 10:00–11:00 Europe/Berlin (UTC+01:00)";
 * the end date is named when it falls on another day.
 */
export function formatSpan(start: Date | string, end: Date | string, timeZone: string): string {
  const s = new Date(start);
  const e = new Date(end);
  const sameDay = splitInstant(s, timeZone).date === splitInstant(e, timeZone).date;
  const endText = sameDay ? formatTime(e, timeZone) : `${formatDate(e, timeZone)}, ${formatTime(e, timeZone)}`;
  return `${formatDate(s, timeZone)}, ${formatTime(s, timeZone)}–${endText} ${formatZone(s, timeZone)}`;
}

/** "1 Dec 2026, 10:04" in `timeZone`, for log lines and attendance. */
export function formatMoment(instant: Date | string, timeZone: string): string {
  const d = new Date(instant);
  return `${new Intl.DateTimeFormat(LOCALE, { timeZone, day: 'numeric', month: 'short', year: 'numeric' }).format(d)}, ${formatTime(d, timeZone)}`;
}

/** Every IANA zone the browser knows, with `keep` (the current value) always among them. */
export function timeZones(keep: string[] = []): string[] {
  let zones: string[] = [];
  try {
    zones = (Intl as unknown as { supportedValuesOf?: (key: string) => string[] }).supportedValuesOf?.('timeZone') ?? [];
  } catch {
    zones = [];
  }
  const all = new Set(zones);
  all.add('UTC');
  for (const zone of keep) if (zone) all.add(zone);
  return [...all].sort((a, b) => a.localeCompare(b));
}

/** The browser's own zone (a fallback when an account has none). */
export function browserTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
}
