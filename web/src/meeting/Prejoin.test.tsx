// The preview's device requests: an answer that arrives late (after a newer choice, after
// "Join now") is released, so no camera or microphone stays in use unseen.
import { h, render } from 'preact';
import { act } from 'preact/test-utils';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Prejoin } from './Prejoin';

function fakeTrack(id: string, kind: 'audio' | 'video') {
  return { id, kind, enabled: true, readyState: 'live', stop: vi.fn(), getSettings: () => ({ deviceId: id }) } as unknown as MediaStreamTrack;
}

type Pending = { constraints: MediaStreamConstraints; resolve: (tracks: MediaStreamTrack[]) => void };
let requests: Pending[] = [];
let root: HTMLElement;

beforeEach(() => {
  requests = [];
  vi.stubGlobal('MediaStream', class {});
  vi.stubGlobal('navigator', {
    mediaDevices: {
      getUserMedia: (constraints: MediaStreamConstraints) =>
        new Promise((resolve) =>
          requests.push({
            constraints,
            resolve: (tracks) =>
              resolve({ getAudioTracks: () => tracks.filter((t) => t.kind === 'audio'), getVideoTracks: () => tracks.filter((t) => t.kind === 'video') }),
          }),
        ),
      enumerateDevices: async () => [
        { kind: 'audioinput', deviceId: 'mic-a', label: 'Headset' },
        { kind: 'audioinput', deviceId: 'mic-b', label: 'Desk microphone' },
        { kind: 'videoinput', deviceId: 'cam-1', label: 'Camera' },
      ],
      addEventListener: () => {},
      removeEventListener: () => {},
    },
  });
  vi.spyOn(HTMLMediaElement.prototype, 'play').mockResolvedValue(undefined);
  root = document.createElement('div');
  document.body.append(root);
});

afterEach(() => {
  act(() => render(null, root));
  root.remove();
  vi.unstubAllGlobals();
  vi.restoreAllMocks();
});

const settle = () => act(async () => {
  await new Promise((resolve) => setTimeout(resolve, 0));
});

describe('the preview', () => {
  it('releases a device that arrives after a newer choice or after "Join now"', async () => {
    const entered = vi.fn();
    act(() => render(h(Prejoin, { topic: 'Sync', displayName: 'Gus', audioOnly: false, onEnter: entered, onBack: () => {} }), root));
    const first = { mic: fakeTrack('mic-a', 'audio'), cam: fakeTrack('cam-1', 'video') };
    requests[0].resolve([first.mic, first.cam]);
    await settle();
    const select = root.querySelector<HTMLSelectElement>('#prejoin-microphone')!;
    expect(select.disabled).toBe(false);

    // Two quick choices; the browser answers the second one first.
    const slow = fakeTrack('mic-b-slow', 'audio');
    const fast = fakeTrack('mic-a-fast', 'audio');
    act(() => {
      select.value = 'mic-b';
      select.dispatchEvent(new Event('change'));
    });
    act(() => {
      select.value = 'mic-a';
      select.dispatchEvent(new Event('change'));
    });
    expect(requests).toHaveLength(3);
    // While a request is open, "Join now" waits.
    expect(root.querySelector<HTMLButtonElement>('button[type="submit"]')!.disabled).toBe(true);
    requests[2].resolve([fast]);
    await settle();
    requests[1].resolve([slow]);
    await settle();
    expect(first.mic.stop).toHaveBeenCalled();
    expect(slow.stop).toHaveBeenCalled();
    expect(fast.stop).not.toHaveBeenCalled();

    // Camera off (released at once) and on again; the form is sent before the browser answers
    // (the button waits, but the form can still be submitted): the late camera is released.
    const toggle = root.querySelector<HTMLInputElement>('#prejoin-cam-on')!;
    act(() => {
      toggle.checked = false;
      toggle.dispatchEvent(new Event('change'));
    });
    expect(first.cam.stop).toHaveBeenCalled();
    act(() => {
      toggle.checked = true;
      toggle.dispatchEvent(new Event('change'));
    });
    act(() => {
      root.querySelector('form')!.dispatchEvent(new Event('submit', { cancelable: true }));
    });
    expect(entered).toHaveBeenCalledTimes(1);
    expect(entered.mock.calls[0][0]).toMatchObject({ microphone: fast, camera: null });
    const late = fakeTrack('cam-late', 'video');
    requests[3].resolve([late]);
    await settle();
    expect(late.stop).toHaveBeenCalled();
    expect(fast.stop).not.toHaveBeenCalled();
  });
});
