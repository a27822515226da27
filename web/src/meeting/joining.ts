// What the join page decides without touching the network: what a guest's browser remembers,
// how each refusal of POST /api/v1/join is told to the person, and how long to wait before
// trying again. Unit-tested in joining.test.ts.
import { ApiError } from '../api';

/** The keys this page keeps in localStorage. */
export const STORAGE_KEYS = { name: 'conclave.guestName', guestId: 'conclave.guestId' } as const;

/** The name a guest asked this computer to remember, if any. */
export function rememberedName(storage: Storage | null): string | null {
  try {
    const name = storage?.getItem(STORAGE_KEYS.name)?.trim();
    return name ? name : null;
  } catch {
    return null;
  }
}

/** Remembers the guest's name ("Remember me on this computer"), or forgets it. */
export function rememberName(storage: Storage | null, name: string | null): void {
  try {
    if (name && name.trim()) storage?.setItem(STORAGE_KEYS.name, name.trim());
    else storage?.removeItem(STORAGE_KEYS.name);
  } catch {
    // Storage may be disabled (private mode); the name is then asked every time.
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The guest's own stable ID: created once and kept, so that joining again (a reconnect, a
 * reload) replaces the old session in the room instead of adding a second one.
 */
export function guestId(storage: Storage | null, create: () => string): string {
  try {
    const known = storage?.getItem(STORAGE_KEYS.guestId);
    if (known && UUID.test(known)) return known;
    const id = create();
    storage?.setItem(STORAGE_KEYS.guestId, id);
    return id;
  } catch {
    return create();
  }
}

/** Where a refusal is shown: next to a field of the join form, or for the whole form. */
export interface JoinProblem {
  field?: 'meetingId' | 'password' | 'displayName';
  message: string;
  /** `conferenceNotStarted`: when it starts and when joining opens (Date). */
  startsAt?: Date;
  opensAt?: Date;
  /** Seconds until asking again makes sense (`tooManyAttempts`, `notPlacedYet`). */
  retryAfter?: number;
  /** The conference is placed in a moment: ask again by itself. */
  retrySoon?: boolean;
}

function dateFrom(value: unknown): Date | undefined {
  if (typeof value !== 'string') return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

function secondsFrom(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(n) && n >= 0 ? Math.ceil(n) : undefined;
}

/** A moment in the viewer's time zone, with the day when it is not today. */
export function localTime(date: Date, now: Date, locale?: string): string {
  const time = date.toLocaleTimeString(locale, { hour: '2-digit', minute: '2-digit' });
  const sameDay = date.toDateString() === now.toDateString();
  if (sameDay) return `today at ${time}`;
  const tomorrow = new Date(now);
  tomorrow.setDate(now.getDate() + 1);
  if (date.toDateString() === tomorrow.toDateString()) return `tomorrow at ${time}`;
  return `${date.toLocaleDateString(locale, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' })} at ${time}`;
}

/**
 * Turns a refusal of POST /join into what the person reads. `passwordAsked`: whether the form
 * shows the password field (a logged-in person first tries without).
 */
export function joinProblem(error: unknown, now: Date, passwordAsked: boolean): JoinProblem {
  if (!(error instanceof ApiError)) {
    return { message: error instanceof Error ? error.message : String(error) };
  }
  switch (error.code) {
    case 'network':
      return { message: 'Conclave cannot be reached. Check your connection and try again.' };
    case 'wrongMeetingCredentials':
      return passwordAsked
        ? { field: 'password', message: 'The meeting ID or the password is wrong. Check both and try again.' }
        : { field: 'password', message: 'This meeting needs its password.' };
    case 'conferenceNotStarted': {
      const startsAt = dateFrom(error.details.startsAt);
      const opensAt = dateFrom(error.details.opensAt);
      const when = startsAt ? ` It starts ${localTime(startsAt, now)}` : '';
      const open = opensAt ? `; you can join from ${localTime(opensAt, now)}.` : when ? '.' : '';
      return { message: `This conference has not started yet.${when}${open}`, startsAt, opensAt };
    }
    case 'conferenceEnded':
      return { message: 'This conference has ended.' };
    case 'notPlacedYet': {
      const retryAfter = secondsFrom(error.details.retryAfter) ?? 2;
      return { message: 'The conference is being prepared; joining in a moment…', retryAfter, retrySoon: true };
    }
    case 'noCapacity':
      return { message: 'There is no room for this conference on the media servers right now. Try again in a few minutes.' };
    case 'tooManyAttempts': {
      const retryAfter = secondsFrom(error.details.retryAfter);
      return {
        message: `Too many failed attempts. Try again in ${retryAfter !== undefined ? plural(retryAfter, 'second') : 'a while'}.`,
        retryAfter,
      };
    }
    case 'validation': {
      const field = error.field === 'meetingId' || error.field === 'password' || error.field === 'displayName' ? error.field : undefined;
      return { field, message: sentence(error.message) };
    }
    default:
      return { message: sentence(error.message) };
  }
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function sentence(message: string): string {
  const text = message.trim();
  if (!text) return 'Something went wrong.';
  const first = text[0].toUpperCase() + text.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** Checks the form before asking the API, with the same limits it has. */
export function checkJoinForm(
  form: { meetingId: string; password: string; displayName: string },
  needs: { password: boolean; name: boolean },
): Partial<Record<'meetingId' | 'password' | 'displayName', string>> {
  const errors: Partial<Record<'meetingId' | 'password' | 'displayName', string>> = {};
  const id = normalizeMeetingId(form.meetingId);
  if (!id) errors.meetingId = 'Enter the meeting ID.';
  else if (!/^\d{6,12}$/.test(id)) errors.meetingId = 'A meeting ID has 6 to 12 digits.';
  if (needs.password && !form.password.trim()) errors.password = 'Enter the meeting password.';
  if (needs.name) {
    const name = form.displayName.trim();
    if (!name) errors.displayName = 'Enter the name others will see.';
    else if ([...name].length > 64) errors.displayName = 'A name has at most 64 characters.';
  }
  return errors;
}

/** Meeting IDs are read aloud and typed with spaces or dashes; the API wants digits. */
export function normalizeMeetingId(value: string): string {
  return value.trim().replace(/[\s-]/g, '');
}

/**
 * Milliseconds to wait before reconnect attempt `attempt` (0-based): 0.5 s doubling to 10 s,
 * with up to 20 % jitter (`random` in [0, 1)) so a room that lost its SFU does not come back
 * all at once.
 */
export function backoff(attempt: number, random: number): number {
  const base = Math.min(10_000, 500 * 2 ** Math.max(0, attempt));
  return Math.round(base * (1 + 0.2 * random));
}

/** Milliseconds until `at`, never negative, capped so that timers stay exact enough. */
export function delayUntil(at: Date, now: Date): number {
  return Math.max(0, Math.min(at.getTime() - now.getTime(), 2 ** 31 - 1));
}

/** The invite link for a meeting ID on this portal. */
export function inviteLink(origin: string, meetingId: string): string {
  return `${origin}/join/${encodeURIComponent(meetingId)}`;
}

/**
 * The meeting password an invitation link carries in its fragment (`/join/{id}#pwd=…`), or
 * null. The fragment never leaves the browser: not in requests, server logs or Referer.
 */
export function linkPassword(hash: string): string | null {
  const pwd = new URLSearchParams(hash.replace(/^#/, '')).get('pwd');
  return pwd ? pwd : null;
}

/**
 * Takes the password out of an invitation link: returns it and removes the fragment from the
 * address bar (and this history entry), so it is not shown, bookmarked or shared on by
 * accident.
 */
export function takeLinkPassword(
  location: Pick<Location, 'hash' | 'pathname' | 'search'>,
  history: Pick<History, 'replaceState' | 'state'>,
): string | null {
  if (!location.hash) return null;
  const password = linkPassword(location.hash);
  history.replaceState(history.state, '', `${location.pathname}${location.search}`);
  return password;
}
