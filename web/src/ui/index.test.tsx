import { describe, expect, it } from 'vitest';
import { h, render } from 'preact';
import { act } from 'preact/test-utils';
import { clearErrorOnInput, ConfirmDialog } from './index';

/** Runs the handler against a state holder, as Preact's setState would. */
function harness<T extends object>(initial: T, keys?: Record<string, string>) {
  let state = initial;
  const handler = clearErrorOnInput<T>((update) => (state = update(state)), keys);
  const input = (id: string) => {
    const target = document.createElement('input');
    target.id = id;
    handler({ target } as unknown as Event);
    return state;
  };
  return { input, state: () => state };
}

describe('form errors after a correction', () => {
  it('drops the message of the field being changed, and only that one', () => {
    const h = harness<Record<string, string | undefined>>({ topic: 'Enter a topic.', end: 'The end must be after the start.', form: 'Saving failed.' });
    expect(h.input('topic')).toEqual({ topic: undefined, end: 'The end must be after the start.', form: 'Saving failed.' });
  });

  it('maps element ids to error keys', () => {
    const h = harness<Record<string, string | undefined>>({ password: 'A meeting password has 4 to 16 digits.' }, { meetingPassword: 'password' });
    expect(h.input('meetingPassword').password).toBeUndefined();
  });

  it('keeps the same state object when there was nothing to clear', () => {
    const before = { topic: undefined, end: 'x' };
    const h = harness<Record<string, string | undefined>>(before);
    expect(h.input('topic')).toBe(before);
    expect(h.input('')).toBe(before);
  });
});

describe('confirmation dialogs', () => {
  it('give the focus back to what opened them, when closed or taken off the page', () => {
    const root = document.createElement('div');
    document.body.append(root);
    const opener = document.createElement('button');
    document.body.append(opener);
    opener.focus();
    const dialog = (open: boolean) => h(ConfirmDialog, { open, title: 'Leave?', confirmLabel: 'Leave', onConfirm: () => {}, onCancel: () => {} });
    act(() => render(dialog(true), root));
    root.querySelector<HTMLButtonElement>('dialog button')!.focus();
    expect(document.activeElement).not.toBe(opener);
    act(() => render(dialog(false), root));
    expect(document.activeElement).toBe(opener);
    // Rendered only while open (as the meeting does): unmounting restores the focus too.
    act(() => render(dialog(true), root));
    root.querySelector<HTMLButtonElement>('dialog button')!.focus();
    act(() => render(null, root));
    expect(document.activeElement).toBe(opener);
  });
});
