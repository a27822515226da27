// The speaker choice: a picker where the browser can send sound to a chosen output, and a
// short note instead where it cannot (no setSinkId, or no output listed) — never a control
// that does nothing.
import { h, render } from 'preact';
import { act } from 'preact/test-utils';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SpeakerChoice } from './views';

let root: HTMLElement;
const output = (deviceId: string, label: string) => ({ kind: 'audiooutput', deviceId, label, groupId: '', toJSON: () => ({}) }) as MediaDeviceInfo;

beforeEach(() => {
  root = document.createElement('div');
  document.body.append(root);
});

afterEach(() => {
  act(() => render(null, root));
  root.remove();
});

describe('SpeakerChoice', () => {
  it('offers the outputs where the browser can choose one, the preferred first', () => {
    const onChoose = vi.fn();
    const speakers = [output('out-1', 'Fake Audio Output 1 (PREFERRED)'), output('out-2', 'Fake Audio Output 2')];
    act(() => render(h(SpeakerChoice, { speakers, value: undefined, problem: null, onChoose, canChoose: true }), root));
    const select = root.querySelector<HTMLSelectElement>('select#meeting-speaker')!;
    expect(select).not.toBeNull();
    expect(root.querySelector('label[for="meeting-speaker"]')?.textContent).toBe('Speaker');
    expect([...select.options].map((o) => o.textContent)).toEqual(['Fake Audio Output 1 (PREFERRED)', 'Fake Audio Output 2']);
    expect(select.value).toBe('out-1');
    select.value = 'out-2';
    act(() => void select.dispatchEvent(new Event('change', { bubbles: true })));
    expect(onChoose).toHaveBeenCalledWith('out-2');
    expect(root.querySelector('#meeting-speaker-note')).toBeNull();
  });

  it('shows the system default as chosen when the browser lists one', () => {
    const speakers = [output('headset', 'Headset'), output('default', 'Default')];
    act(() => render(h(SpeakerChoice, { speakers, value: undefined, problem: null, onChoose: () => {}, canChoose: true }), root));
    expect(root.querySelector<HTMLSelectElement>('select')!.value).toBe('default');
  });

  it('says why there is no choice without setSinkId (Firefox with it off, Safari)', () => {
    act(() => render(h(SpeakerChoice, { speakers: [output('out-1', 'Speakers')], value: undefined, problem: null, onChoose: () => {}, canChoose: false }), root));
    expect(root.querySelector('select')).toBeNull();
    const note = root.querySelector('#meeting-speaker-note')!;
    expect(note.textContent).toContain('default output');
    expect(note.textContent).toContain('This browser cannot send it to another one');
  });

  it('says so when the browser can choose but lists no output', () => {
    act(() => render(h(SpeakerChoice, { speakers: [], value: undefined, problem: null, onChoose: () => {}, canChoose: true }), root));
    expect(root.querySelector('select')).toBeNull();
    expect(root.querySelector('#meeting-speaker-note')!.textContent).toContain('The browser lists no other one to choose.');
  });

  it('asks the browser whether it has setSinkId when not told', () => {
    const had = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, 'setSinkId');
    try {
      delete (HTMLMediaElement.prototype as unknown as Record<string, unknown>).setSinkId;
      act(() => render(h(SpeakerChoice, { speakers: [output('out-1', 'Speakers')], value: undefined, problem: null, onChoose: () => {} }), root));
      expect(root.querySelector('select')).toBeNull();
      expect(root.querySelector('#meeting-speaker-note')).not.toBeNull();
    } finally {
      if (had) Object.defineProperty(HTMLMediaElement.prototype, 'setSinkId', had);
    }
  });
});
