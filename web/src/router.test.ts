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
    // Browsers drop tabs and line breaks from URLs: these must not become //evil.example.
    expect(safeNext('/\t/evil.example')).toBe('/');
    expect(safeNext('/\n/evil.example')).toBe('/');
    expect(safeNext('/\r\n/evil.example/x')).toBe('/');
    expect(safeNext('/join/123456789?x=1#y')).toBe('/join/123456789?x=1#y');
  });
});
