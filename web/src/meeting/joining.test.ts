import { describe, expect, it } from 'vitest';
import { ApiError } from '../api';
import { backoff, checkJoinForm, delayUntil, guestId, inviteLink, joinProblem, linkPassword, localTime, normalizeMeetingId, rememberedName, rememberName, STORAGE_KEYS, takeLinkPassword } from './joining';

class MemoryStorage implements Storage {
  private items = new Map<string, string>();
  get length() {
    return this.items.size;
  }
  clear() {
    this.items.clear();
  }
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  key(index: number) {
    return [...this.items.keys()][index] ?? null;
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
  setItem(key: string, value: string) {
    this.items.set(key, value);
  }
}

describe('what a guest’s browser remembers', () => {
  it('keeps the name only when asked to, and forgets it', () => {
    const storage = new MemoryStorage();
    expect(rememberedName(storage)).toBeNull();
    rememberName(storage, '  Grace Hopper ');
    expect(rememberedName(storage)).toBe('Grace Hopper');
    rememberName(storage, null);
    expect(rememberedName(storage)).toBeNull();
    expect(storage.getItem(STORAGE_KEYS.name)).toBeNull();
  });

  it('creates the guest ID once and keeps it', () => {
    const storage = new MemoryStorage();
    let n = 0;
    const create = () => `0000000${++n}-0000-4000-8000-000000000000`;
    const first = guestId(storage, create);
    expect(guestId(storage, create)).toBe(first);
    expect(n).toBe(1);
    storage.setItem(STORAGE_KEYS.guestId, 'not a uuid');
    expect(guestId(storage, create)).toBe('00000002-0000-4000-8000-000000000000');
  });

  it('works without storage (private mode)', () => {
    const broken = {
      getItem() {
        throw new Error('denied');
      },
      setItem() {
        throw new Error('denied');
      },
      removeItem() {
        throw new Error('denied');
      },
    } as unknown as Storage;
    expect(rememberedName(broken)).toBeNull();
    rememberName(broken, 'x');
    expect(guestId(broken, () => 'fresh')).toBe('fresh');
    expect(rememberedName(null)).toBeNull();
  });
});

describe('refusals of POST /join', () => {
  const now = new Date(2026, 5, 10, 9, 0);

  it('puts wrong credentials next to the password', () => {
    const error = new ApiError(403, 'wrongMeetingCredentials', 'wrong meeting ID or password');
    expect(joinProblem(error, now, true)).toMatchObject({ field: 'password', message: expect.stringContaining('password is wrong') });
    expect(joinProblem(error, now, false)).toEqual({ field: 'password', message: 'This meeting needs its password.' });
  });

  it('says when a conference starts and when it opens, in local time', () => {
    const startsAt = new Date(2026, 5, 11, 14, 30);
    const opensAt = new Date(2026, 5, 11, 14, 25);
    const error = new ApiError(409, 'conferenceNotStarted', 'not started', undefined, { startsAt: startsAt.toISOString(), opensAt: opensAt.toISOString() });
    const problem = joinProblem(error, now, true);
    expect(problem.message).toContain('has not started yet');
    expect(problem.message).toContain(`tomorrow at ${startsAt.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })}`);
    expect(problem.opensAt?.getTime()).toBe(opensAt.getTime());
    expect(problem.field).toBeUndefined();
  });

  it('tells ended, throttled, not placed, validation and network apart', () => {
    expect(joinProblem(new ApiError(409, 'conferenceEnded', 'ended'), now, true).message).toBe('This conference has ended.');
    expect(joinProblem(new ApiError(429, 'tooManyAttempts', 'slow down', undefined, { retryAfter: 8 }), now, true)).toMatchObject({
      message: 'Too many failed attempts. Try again in 8 seconds.',
      retryAfter: 8,
    });
    expect(joinProblem(new ApiError(409, 'notPlacedYet', 'wait', undefined, { retryAfter: 2 }), now, true)).toMatchObject({ retrySoon: true, retryAfter: 2 });
    expect(joinProblem(new ApiError(422, 'validation', 'guests give a name of 1 to 64 characters', 'displayName'), now, true)).toEqual({
      field: 'displayName',
      message: 'Guests give a name of 1 to 64 characters.',
    });
    expect(joinProblem(new ApiError(422, 'validation', 'a guest ID is a UUID', 'guestId'), now, true).field).toBeUndefined();
    expect(joinProblem(new ApiError(0, 'network', 'offline'), now, true).message).toContain('cannot be reached');
  });
});

describe('the join form', () => {
  it('checks what the API would refuse', () => {
    expect(checkJoinForm({ meetingId: '', password: '', displayName: '' }, { password: true, name: true })).toEqual({
      meetingId: 'Enter the meeting ID.',
      password: 'Enter the meeting password.',
      displayName: 'Enter the name others will see.',
    });
    expect(checkJoinForm({ meetingId: '12a', password: '1', displayName: 'x'.repeat(65) }, { password: true, name: true })).toEqual({
      meetingId: 'A meeting ID has 6 to 12 digits.',
      displayName: 'A name has at most 64 characters.',
    });
    expect(checkJoinForm({ meetingId: '123 456 789', password: '', displayName: '' }, { password: false, name: false })).toEqual({});
  });

  it('reads meeting IDs with spaces and dashes', () => {
    expect(normalizeMeetingId(' 123-456 789 ')).toBe('123456789');
  });
});

describe('times and links', () => {
  it('says today, tomorrow, or the date', () => {
    const now = new Date(2026, 0, 31, 23, 0);
    const hm = (d: Date) => d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
    const today = new Date(2026, 0, 31, 23, 30);
    const tomorrow = new Date(2026, 1, 1, 9, 0);
    const later = new Date(2026, 1, 3, 9, 0);
    expect(localTime(today, now)).toBe(`today at ${hm(today)}`);
    expect(localTime(tomorrow, now)).toBe(`tomorrow at ${hm(tomorrow)}`);
    expect(localTime(later, now)).toContain('2026');
  });

  it('backs off from half a second to ten, with jitter', () => {
    expect(backoff(0, 0)).toBe(500);
    expect(backoff(1, 0)).toBe(1000);
    expect(backoff(3, 0)).toBe(4000);
    expect(backoff(10, 0)).toBe(10_000);
    expect(backoff(0, 0.99)).toBeLessThanOrEqual(600);
  });

  it('never waits a negative time', () => {
    const now = new Date(2026, 0, 1);
    expect(delayUntil(new Date(2025, 0, 1), now)).toBe(0);
    expect(delayUntil(new Date(now.getTime() + 5000), now)).toBe(5000);
  });

  it('builds the invite link', () => {
    expect(inviteLink('https://meet.example.org', '123456789')).toBe('https://meet.example.org/join/123456789');
  });
});

describe('the password an invitation link carries', () => {
  it('is read from the fragment, decoded', () => {
    expect(linkPassword('#pwd=482913')).toBe('482913');
    expect(linkPassword('#pwd=a%20b%2B%23%26c')).toBe('a b+#&c');
    expect(linkPassword('')).toBeNull();
    expect(linkPassword('#pwd=')).toBeNull();
    expect(linkPassword('#other=1')).toBeNull();
  });

  it('is taken out of the address bar, keeping path and query', () => {
    const calls: unknown[][] = [];
    const history = { state: { kept: true }, replaceState: (...args: unknown[]) => void calls.push(args) };
    const password = takeLinkPassword({ hash: '#pwd=482913', pathname: '/join/123456789', search: '?x=1' }, history);
    expect(password).toBe('482913');
    expect(calls).toEqual([[{ kept: true }, '', '/join/123456789?x=1']]);
  });

  it('leaves a link without a fragment alone', () => {
    const calls: unknown[][] = [];
    const history = { state: null, replaceState: (...args: unknown[]) => void calls.push(args) };
    expect(takeLinkPassword({ hash: '', pathname: '/join/123456789', search: '' }, history)).toBeNull();
    expect(calls).toEqual([]);
  });
});
