import { describe, expect, it } from 'vitest';
import { offeredTracks } from './sdp';
import { initials } from './views';
import { levelOf, mediaProblem } from './media';

const offer = [
  'v=0',
  'o=- 1 2 IN IP4 0.0.0.0',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0 1 2 3',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'a=mid:0',
  'a=msid:p2 t4',
  'a=sendonly',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'a=mid:1',
  'a=msid:p2 t5',
  'a=sendonly',
  'm=video 9 UDP/TLS/RTP/SAVPF 96',
  'a=mid:2',
  'a=inactive',
  'm=video 0 UDP/TLS/RTP/SAVPF 96',
  'a=mid:3',
  'a=msid:p3 t9',
  '',
].join('\r\n');

describe('reading the SFU’s subscriber offer', () => {
  it('maps each sending section to its room track and publisher', () => {
    expect(offeredTracks(offer)).toEqual([
      { mid: '0', kind: 'audio', participant: 'p2', track: 't4' },
      { mid: '1', kind: 'video', participant: 'p2', track: 't5' },
    ]);
  });

  it('reads an offer without media', () => {
    expect(offeredTracks('v=0\r\ns=-\r\n')).toEqual([]);
  });
});

describe('media helpers', () => {
  it('measures silence as 0 and a full-scale signal as 100', () => {
    expect(levelOf(new Float32Array(128))).toBe(0);
    expect(levelOf(new Float32Array(128).fill(1))).toBe(100);
    const quiet = levelOf(new Float32Array(128).fill(0.01));
    expect(quiet).toBeGreaterThan(0);
    expect(quiet).toBeLessThan(50);
  });

  it('says why a device cannot be used', () => {
    expect(mediaProblem(new DOMException('denied', 'NotAllowedError'), 'camera')).toContain('denied');
    expect(mediaProblem(new DOMException('none', 'NotFoundError'), 'microphone')).toBe('No microphone was found. You can join without one.');
    expect(mediaProblem(new DOMException('busy', 'NotReadableError'), 'camera')).toContain('in use');
    expect(mediaProblem(new DOMException('cancelled', 'NotAllowedError'), 'screen')).toBe('Screen sharing was not allowed.');
  });

  it('makes initials for tiles without video', () => {
    expect(initials('Ada Lovelace')).toBe('AL');
    expect(initials('grace')).toBe('G');
    expect(initials('  ')).toBe('?');
    expect(initials('<img src=x onerror=alert(1)>')).toBe('<O');
  });
});
