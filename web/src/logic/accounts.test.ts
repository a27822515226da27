import { describe, expect, it } from 'vitest';
import { levelName, profileChanges, validateNewAccount, validatePasswordChange, validateProfile } from './accounts';

describe('profile checks', () => {
  it('wants a name, an address and a zone', () => {
    expect(validateProfile({ displayName: 'Ada', email: 'ada@example.org', timeZone: 'Europe/Berlin' })).toEqual({});
    expect(validateProfile({ displayName: ' ', email: 'ada', timeZone: 'Mars/Olympus' })).toEqual({
      displayName: 'Enter a name.',
      email: '“ada” is not an e-mail address like name@example.org.',
      timeZone: 'Choose a time zone.',
    });
  });

  it('sends only what changed', () => {
    const before = { displayName: 'Ada', email: 'ada@example.org', timeZone: 'UTC' };
    expect(profileChanges(before, { ...before })).toEqual({});
    expect(profileChanges(before, { ...before, displayName: ' Ada L. ' })).toEqual({ displayName: 'Ada L.' });
  });
});

describe('password change checks', () => {
  it('puts a mismatch next to the repeated password', () => {
    expect(validatePasswordChange({ currentPassword: 'old-secret', password: 'new-secret-1', repeat: 'new-secret-2' })).toEqual({
      repeat: 'The two new passwords differ; type the same password twice.',
    });
    expect(validatePasswordChange({ currentPassword: 'old-secret', password: 'new-secret-1', repeat: 'new-secret-1' })).toEqual({});
  });

  it('wants the current password and a long enough new one', () => {
    const errors = validatePasswordChange({ currentPassword: '', password: 'short', repeat: 'short' });
    expect(errors.currentPassword).toBeDefined();
    expect(errors.password).toMatch(/at least 8/);
    expect(errors.repeat).toBeUndefined();
  });
});

describe('new account checks', () => {
  it('checks login, name, address, level and password', () => {
    expect(validateNewAccount({ login: 'grace', displayName: 'Grace', email: 'grace@example.org', level: 'moderator', password: 'long-enough' })).toEqual({});
    expect(Object.keys(validateNewAccount({ login: 'g race', displayName: '', email: 'x', level: 'king', password: '1' })).sort()).toEqual([
      'displayName',
      'email',
      'level',
      'login',
      'password',
    ]);
  });

  it('names levels for people', () => {
    expect(levelName('moderatorPlus')).toBe('Moderator plus (may record)');
    expect(levelName('future')).toBe('future');
  });
});
