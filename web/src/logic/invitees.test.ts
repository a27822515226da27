import { describe, expect, it } from 'vitest';
import { formatInvitees, inviteesError, isEmail, parseInvitees } from './invitees';

describe('invitee addresses', () => {
  it('splits lines, commas and semicolons and drops duplicates', () => {
    expect(parseInvitees('ada@example.org, bob@example.org\n\n carol@example.org;ADA@example.org')).toEqual({
      addresses: ['ada@example.org', 'bob@example.org', 'carol@example.org'],
      invalid: [],
    });
    expect(parseInvitees('  ')).toEqual({ addresses: [], invalid: [] });
  });

  it('names each address that is not one', () => {
    const parsed = parseInvitees('ada@example.org\nnot-an-address\nAda <ada@example.org>\nbob@example..org');
    expect(parsed.invalid).toEqual(['not-an-address', 'Ada <ada@example.org>', 'bob@example..org']);
    expect(inviteesError(parseInvitees('nobody'))).toBe('“nobody” is not an e-mail address like name@example.org.');
    expect(inviteesError(parsed)).toContain('“not-an-address”');
    expect(inviteesError(parseInvitees('a@example.org'))).toBeUndefined();
  });

  it('accepts only plain addresses', () => {
    expect(isEmail('first.last+tag@sub.example.org')).toBe(true);
    expect(isEmail('a@localhost')).toBe(true);
    expect(isEmail('a b@example.org')).toBe(false);
    expect(isEmail('a@example.org\r\nBcc: x@example.org')).toBe(false);
    expect(isEmail('.a@example.org')).toBe(false);
    expect(isEmail('a@-example.org')).toBe(false);
  });

  it('limits how many are invited at once', () => {
    const many = Array.from({ length: 201 }, (_, i) => `p${i}@example.org`).join(',');
    expect(inviteesError(parseInvitees(many))).toBe('Invite at most 200 addresses at once.');
  });

  it('writes one address per line', () => {
    expect(formatInvitees(['a@example.org', 'b@example.org'])).toBe('a@example.org\nb@example.org');
  });
});
