import { describe, expect, it } from 'vitest';
import {
  addDays,
  formatOffset,
  formatSpan,
  formatZone,
  icsUtc,
  localTimeExists,
  localToInstant,
  offsetMinutes,
  parseDate,
  parseIcsUtc,
  parseTime,
  splitInstant,
  splitLocalIso,
  timeZones,
  weekdayOf,
} from './time';

describe('splitting instants into local date and time', () => {
  it('shows an instant on the wall clock of the conference zone', () => {
    expect(splitInstant('2026-12-01T09:00:00Z', 'Europe/Berlin')).toEqual({ date: '2026-12-01', time: '10:00' });
    expect(splitInstant('2026-12-01T09:00:00+00:00', 'America/New_York')).toEqual({ date: '2026-12-01', time: '04:00' });
    expect(splitInstant('2026-12-01T23:30:00Z', 'Asia/Kolkata')).toEqual({ date: '2026-12-02', time: '05:00' });
  });

  it('reads offsets in both directions and across daylight saving', () => {
    expect(offsetMinutes(new Date('2026-12-01T09:00:00Z'), 'Europe/Berlin')).toBe(60);
    expect(offsetMinutes(new Date('2026-07-01T09:00:00Z'), 'Europe/Berlin')).toBe(120);
    expect(offsetMinutes(new Date('2026-07-01T09:00:00Z'), 'America/St_Johns')).toBe(-150);
    expect(formatOffset(new Date('2026-07-01T09:00:00Z'), 'America/St_Johns')).toBe('UTC−02:30');
    expect(formatOffset(new Date('2026-12-01T09:00:00Z'), 'Asia/Kolkata')).toBe('UTC+05:30');
    expect(formatOffset(new Date('2026-12-01T09:00:00Z'), 'UTC')).toBe('UTC±00:00');
  });
});

describe('local times back to instants', () => {
  it('turns a local time into the instant the API stores', () => {
    expect(localToInstant('2026-12-01', '10:00', 'Europe/Berlin').toISOString()).toBe('2026-12-01T09:00:00.000Z');
    expect(localToInstant('2026-07-01', '10:00', 'Europe/Berlin').toISOString()).toBe('2026-07-01T08:00:00.000Z');
    expect(localToInstant('2026-12-01', '23:59', 'America/Los_Angeles', 59).toISOString()).toBe('2026-12-02T07:59:59.000Z');
  });

  it('takes the first instance of an ambiguous time, like the API', () => {
    // 25 October 2026, 02:30 happens twice in Berlin: first at UTC+2.
    expect(localToInstant('2026-10-25', '02:30', 'Europe/Berlin').toISOString()).toBe('2026-10-25T00:30:00.000Z');
    expect(localTimeExists('2026-10-25', '02:30', 'Europe/Berlin')).toBe(true);
  });

  it('knows the times the clocks skip', () => {
    expect(localTimeExists('2026-03-29', '02:30', 'Europe/Berlin')).toBe(false);
    expect(localTimeExists('2026-03-29', '03:30', 'Europe/Berlin')).toBe(true);
    expect(localTimeExists('2026-03-08', '02:15', 'America/New_York')).toBe(false);
  });
});

describe('parsing and formatting pieces', () => {
  it('accepts only real dates and times', () => {
    expect(parseDate('2026-02-29')).toBeNull();
    expect(parseDate('2028-02-29')).toEqual({ year: 2028, month: 2, day: 29 });
    expect(parseDate('1.12.2026')).toBeNull();
    expect(parseTime('09:05')).toBe(545);
    expect(parseTime('24:00')).toBeNull();
    expect(parseTime('9:60')).toBeNull();
  });

  it('splits the local times of repeat drafts', () => {
    expect(splitLocalIso('2026-12-08T10:00')).toEqual({ date: '2026-12-08', time: '10:00' });
    expect(splitLocalIso('2026-12-08T10:00:00')).toEqual({ date: '2026-12-08', time: '10:00' });
    expect(splitLocalIso('2026-12-08T10:00:00+01:00')).toBeNull();
  });

  it('counts days and weekdays on the calendar', () => {
    expect(addDays('2026-12-30', 3)).toBe('2027-01-02');
    expect(weekdayOf('2026-12-01')).toBe(2); // a Tuesday
  });

  it('writes and reads the UTC form of UNTIL', () => {
    expect(icsUtc(new Date('2027-01-31T22:59:59Z'))).toBe('20270131T225959Z');
    expect(parseIcsUtc('20270131T225959Z')?.toISOString()).toBe('2027-01-31T22:59:59.000Z');
    expect(parseIcsUtc('20270131')?.toISOString()).toBe('2027-01-31T00:00:00.000Z');
    expect(parseIcsUtc('2027-01-31')).toBeNull();
  });

  it('shows spans with the zone and its offset', () => {
    const text = formatSpan('2026-12-01T09:00:00Z', '2026-12-01T10:00:00Z', 'Europe/Berlin');
    expect(text).toContain('10:00–11:00 Europe/Berlin (UTC+01:00)');
    expect(text).toContain('2026');
    const overnight = formatSpan('2026-12-01T22:00:00Z', '2026-12-02T00:30:00Z', 'UTC');
    expect(overnight).toMatch(/22:00–.*2026, 00:30 UTC \(UTC±00:00\)$/);
    expect(formatZone('2026-07-01T09:00:00Z', 'Europe/Berlin')).toBe('Europe/Berlin (UTC+02:00)');
  });

  it('lists IANA zones and keeps the current value', () => {
    const zones = timeZones(['Etc/GMT+5']);
    expect(zones).toContain('Europe/Berlin');
    expect(zones).toContain('UTC');
    expect(zones).toContain('Etc/GMT+5');
  });
});
