// Checks for the profile, the password change and the administrators' account form, made
// before anything is sent (the API checks again and its answer lands next to the same field).
import { isEmail } from './invitees';
import { isTimeZone } from './time';

export type Errors<K extends string> = Partial<Record<K | 'form', string>>;

/** Account levels, lowest first, with the names people read. */
export const LEVEL_NAMES: Record<string, string> = {
  audience: 'Audience',
  moderator: 'Moderator',
  moderatorPlus: 'Moderator plus (may record)',
  admin: 'Administrator',
};
export const LEVELS = Object.keys(LEVEL_NAMES);

/** The name people read for a level (the raw value for one this portal does not know). */
export function levelName(level: string): string {
  return LEVEL_NAMES[level] ?? level;
}

export const MIN_PASSWORD = 8;
export const MAX_PASSWORD = 256;

function passwordProblem(password: string): string | undefined {
  const length = [...password].length;
  if (length < MIN_PASSWORD) return `A password needs at least ${MIN_PASSWORD} characters.`;
  if (length > MAX_PASSWORD) return `A password has at most ${MAX_PASSWORD} characters.`;
  return undefined;
}

function nameProblem(name: string): string | undefined {
  const value = name.trim();
  if (!value) return 'Enter a name.';
  if ([...value].length > 100) return 'A name has at most 100 characters.';
  if (/[\u0000-\u001f\u007f]/.test(value)) return 'A name is a single line.';
  return undefined;
}

function emailProblem(email: string): string | undefined {
  if (!email.trim()) return 'Enter an e-mail address.';
  if (!isEmail(email)) return `“${email.trim()}” is not an e-mail address like name@example.org.`;
  return undefined;
}

export interface ProfileValues {
  displayName: string;
  email: string;
  timeZone: string;
}

export function validateProfile(v: ProfileValues): Errors<keyof ProfileValues> {
  const errors: Errors<keyof ProfileValues> = {};
  const name = nameProblem(v.displayName);
  if (name) errors.displayName = name;
  const email = emailProblem(v.email);
  if (email) errors.email = email;
  if (!isTimeZone(v.timeZone)) errors.timeZone = 'Choose a time zone.';
  return errors;
}

/** Only the profile fields that changed (trimmed), for `PATCH /me`. */
export function profileChanges(before: ProfileValues, after: ProfileValues): Partial<ProfileValues> {
  const changes: Partial<ProfileValues> = {};
  for (const key of ['displayName', 'email', 'timeZone'] as const) {
    if (after[key].trim() !== before[key]) changes[key] = after[key].trim();
  }
  return changes;
}

export interface PasswordValues {
  currentPassword: string;
  password: string;
  repeat: string;
}

export function validatePasswordChange(v: PasswordValues): Errors<keyof PasswordValues> {
  const errors: Errors<keyof PasswordValues> = {};
  if (!v.currentPassword) errors.currentPassword = 'Enter your current password.';
  const problem = passwordProblem(v.password);
  if (problem) errors.password = problem;
  else if (v.password === v.currentPassword) errors.password = 'The new password is the same as the current one.';
  if (!errors.password && v.repeat !== v.password) errors.repeat = 'The two new passwords differ; type the same password twice.';
  return errors;
}

export interface NewAccountValues {
  login: string;
  displayName: string;
  email: string;
  level: string;
  password: string;
}

export function validateNewAccount(v: NewAccountValues): Errors<keyof NewAccountValues> {
  const errors: Errors<keyof NewAccountValues> = {};
  const login = v.login.trim();
  if (!/^[A-Za-z0-9._@-]{2,64}$/.test(login)) {
    errors.login = "A login name has 2 to 64 characters: letters, digits, '.', '_', '-' or '@'.";
  }
  const name = nameProblem(v.displayName);
  if (name) errors.displayName = name;
  const email = emailProblem(v.email);
  if (email) errors.email = email;
  if (!LEVELS.includes(v.level)) errors.level = 'Choose a level.';
  const password = passwordProblem(v.password);
  if (password) errors.password = password;
  return errors;
}
