import { describe, expect, it } from 'vitest';
import { buildRule, describeRule, NO_RECURRENCE, parseRule, recurrenceErrors, weekdayCode, type Recurrence } from './recurrence';

const weekly = (days: Recurrence['days'], end: Recurrence['end'] = { kind: 'never' }): Recurrence => ({ freq: 'weekly', interval: 1, days, end });

describe('building RRULEs', () => {
  it('builds nothing when the conference does not repeat', () => {
    expect(buildRule(NO_RECURRENCE, 'Europe/Berlin')).toBeNull();
  });

  it('builds daily, weekly and monthly rules', () => {
    expect(buildRule({ ...NO_RECURRENCE, freq: 'daily' }, 'UTC')).toBe('FREQ=DAILY');
    expect(buildRule({ ...NO_RECURRENCE, freq: 'monthly' }, 'UTC')).toBe('FREQ=MONTHLY');
    expect(buildRule({ ...NO_RECURRENCE, freq: 'weekly', interval: 2, days: ['FR'] }, 'UTC')).toBe('FREQ=WEEKLY;INTERVAL=2;BYDAY=FR');
  });

  it('lists the chosen weekdays in calendar order', () => {
    expect(buildRule(weekly(['WE', 'MO']), 'UTC')).toBe('FREQ=WEEKLY;BYDAY=MO,WE');
  });

  it('ends UNTIL at the last second of the chosen day in the conference zone, in UTC', () => {
    expect(buildRule(weekly(['TU', 'TH'], { kind: 'until', date: '2027-01-31' }), 'Europe/Berlin')).toBe(
      'FREQ=WEEKLY;BYDAY=TU,TH;UNTIL=20270131T225959Z',
    );
    // Summer time: UTC+2.
    expect(buildRule({ ...NO_RECURRENCE, freq: 'daily', end: { kind: 'until', date: '2027-07-01' } }, 'Europe/Berlin')).toBe(
      'FREQ=DAILY;UNTIL=20270701T215959Z',
    );
    // West of UTC the day ends on the next UTC date.
    expect(buildRule({ ...NO_RECURRENCE, freq: 'daily', end: { kind: 'until', date: '2027-01-31' } }, 'America/New_York')).toBe(
      'FREQ=DAILY;UNTIL=20270201T045959Z',
    );
  });

  it('builds COUNT', () => {
    expect(buildRule({ ...NO_RECURRENCE, freq: 'daily', end: { kind: 'count', count: 10 } }, 'UTC')).toBe('FREQ=DAILY;COUNT=10');
  });
});

describe('parsing RRULEs back for editing', () => {
  it('round-trips what the form builds', () => {
    const cases: Recurrence[] = [
      weekly(['MO', 'WE'], { kind: 'until', date: '2027-01-31' }),
      weekly(['SU'], { kind: 'count', count: 5 }),
      { freq: 'daily', interval: 1, days: [], end: { kind: 'never' } },
      { freq: 'monthly', interval: 3, days: [], end: { kind: 'count', count: 4 } },
    ];
    for (const zone of ['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'UTC']) {
      for (const r of cases) {
        const rule = buildRule(r, zone)!;
        expect(parseRule(rule, zone), `${rule} in ${zone}`).toEqual({ ok: true, recurrence: r });
      }
    }
  });

  it('reads rules as the API normalises them (upper case, RRULE: prefix)', () => {
    expect(parseRule('RRULE:freq=weekly;byday=fr,mo', 'UTC')).toEqual({ ok: true, recurrence: weekly(['MO', 'FR']) });
    expect(parseRule('', 'UTC')).toEqual({ ok: true, recurrence: NO_RECURRENCE });
    expect(parseRule(null, 'UTC')).toEqual({ ok: true, recurrence: NO_RECURRENCE });
  });

  it('reads a date-only UNTIL as that date', () => {
    expect(parseRule('FREQ=DAILY;UNTIL=20270131', 'America/New_York')).toEqual({
      ok: true,
      recurrence: { freq: 'daily', interval: 1, days: [], end: { kind: 'until', date: '2027-01-31' } },
    });
  });

  it('keeps rules the form cannot show as text', () => {
    for (const rule of ['FREQ=MONTHLY;BYMONTHDAY=15', 'FREQ=YEARLY', 'FREQ=WEEKLY;BYDAY=1MO', 'FREQ=DAILY;COUNT=3;UNTIL=20270101T000000Z', 'garbage']) {
      expect(parseRule(rule, 'UTC')).toEqual({ ok: false, rule });
    }
  });
});

describe('describing rules in words', () => {
  it('names days, ends and counts', () => {
    expect(describeRule(null, 'UTC')).toBe('Does not repeat');
    expect(describeRule('FREQ=WEEKLY;BYDAY=MO,WE,FR', 'UTC')).toBe('Every week on Monday, Wednesday and Friday');
    expect(describeRule('FREQ=WEEKLY', 'UTC', '2026-12-01')).toBe('Every week on Tuesday');
    expect(describeRule('FREQ=DAILY;COUNT=10', 'UTC')).toBe('Every day, 10 times');
    expect(describeRule('FREQ=MONTHLY;INTERVAL=2', 'UTC', '2026-12-15')).toBe('Every 2 months on day 15');
    expect(describeRule('FREQ=WEEKLY;BYDAY=TU;UNTIL=20270131T225959Z', 'Europe/Berlin')).toMatch(/^Every week on Tuesday, until (31 Jan\w* 2027|Jan\w* 31, 2027)$/);
    expect(describeRule('FREQ=YEARLY', 'UTC')).toBe('Custom rule: FREQ=YEARLY');
  });
});

describe('checking the recurrence choices', () => {
  it('wants a weekday, an end date not before the start and a sane count', () => {
    expect(recurrenceErrors(weekly([]), '2026-12-01').days).toBeDefined();
    expect(recurrenceErrors(weekly(['MO'], { kind: 'until', date: '2026-11-30' }), '2026-12-01').until).toBeDefined();
    expect(recurrenceErrors(weekly(['MO'], { kind: 'until', date: '2026-12-01' }), '2026-12-01')).toEqual({});
    expect(recurrenceErrors(weekly(['MO'], { kind: 'count', count: 0 }), '2026-12-01').count).toBeDefined();
    expect(recurrenceErrors(NO_RECURRENCE, '')).toEqual({});
  });

  it('knows the weekday of a date', () => {
    expect(weekdayCode('2026-12-01')).toBe('TU');
    expect(weekdayCode('2026-12-06')).toBe('SU');
  });
});
