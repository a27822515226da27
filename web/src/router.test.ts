import { describe, expect, it } from 'vitest';
import { match, safeNext } from './router';

describe('match', () => {
  it('extracts and decodes parameters', () => {
    expect(match('/conferences/:id/edit', '/conferences/a%2Fb/edit')).toEqual({ id: 'a/b' });
    expect(match('/join/:meetingId', '/join/123456789/')).toEqual({ meetingId: '123456789' });
  });

  it('refuses other shapes and broken escapes', () => {
    expect(match('/conferences/:id', '/conferences/1/edit')).toBeNull();
    expect(match('/archive', '/admin')).toBeNull();
    expect(match('/join/:meetingId', '/join/%E0%A4%A')).toBeNull();
  });
});

describe('safeNext', () => {
  it('follows only same-site paths after login', () => {
    expect(safeNext('/conferences/1')).toBe('/conferences/1');
    expect(safeNext('https://evil.example/')).toBe('/');
    expect(safeNext('//evil.example/x')).toBe('/');
    expect(safeNext('/\\evil.example')).toBe('/');
    expect(safeNext(null)).toBe('/');
  });
});
