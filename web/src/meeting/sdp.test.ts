import { afterEach, describe, expect, it, vi } from 'vitest';
import { offeredTracks } from './sdp';
import { initials } from './views';
import { listDevices, levelOf, mediaProblem } from './media';

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

  it('reads Firefox’s own max-bundle offer: a bundle-only section at port 0 is not rejected', () => {
    const firefox = [
      'v=0',
      'a=group:BUNDLE 0 1',
      'm=audio 9 UDP/TLS/RTP/SAVPF 109',
      'a=sendrecv',
      'a=mid:0',
      'a=msid:{s1} {a1}',
      'm=video 0 UDP/TLS/RTP/SAVPF 120',
      'a=bundle-only',
      'a=sendrecv',
      'a=mid:1',
      'a=msid:{s1} {v1}',
      '',
    ].join('\r\n');
    expect(offeredTracks(firefox).map((t) => [t.mid, t.track])).toEqual([
      ['0', '{a1}'],
      ['1', '{v1}'],
    ]);
  });

  it('reads an offer without media', () => {
    expect(offeredTracks('v=0\r\ns=-\r\n')).toEqual([]);
  });
});

describe('media helpers', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
  });

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

  it('lists microphones, cameras and (where the browser can choose one) speakers', async () => {
    const device = (kind: string, deviceId: string) => ({ kind, deviceId, label: deviceId }) as MediaDeviceInfo;
    const all = [device('audioinput', 'mic'), device('videoinput', 'cam'), device('audiooutput', 'default'), device('audiooutput', 'headset'), device('audioinput', '')];
    vi.stubGlobal('navigator', { mediaDevices: { enumerateDevices: async () => all } });
    const withSink = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'setSinkId');
    Object.defineProperty(HTMLMediaElement.prototype, 'setSinkId', { value: async () => {}, configurable: true });
    const listed = await listDevices();
    expect(listed.microphones.map((d) => d.deviceId)).toEqual(['mic']);
    expect(listed.cameras.map((d) => d.deviceId)).toEqual(['cam']);
    expect(listed.speakers.map((d) => d.deviceId)).toEqual(['default', 'headset']);
    // Without setSinkId (Firefox before 116, Safari) no speaker choice is offered.
    if (withSink) Object.defineProperty(HTMLMediaElement.prototype, 'setSinkId', withSink);
    else delete (HTMLMediaElement.prototype as unknown as Record<string, unknown>).setSinkId;
    expect((await listDevices()).speakers).toEqual([]);
  });

  it('makes initials for tiles without video', () => {
    expect(initials('Ada Lovelace')).toBe('AL');
    expect(initials('grace')).toBe('G');
    expect(initials('  ')).toBe('?');
    expect(initials('<img src=x onerror=alert(1)>')).toBe('<O');
  });
});
