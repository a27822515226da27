import { describe, expect, it, vi } from 'vitest';
import type { Grants, ParticipantInfo, PresentationState, ServerMessage } from '../generated/signal';
import { acceptAttribute, checkFile, isTyping, pageForKey, pageUrl, renewIn, stageOf, uploadPresentation, UploadError } from './presentation';
import { initialRoom, reduce, type RoomState } from './room';

const grants: Grants = { chat: true, publishMedia: true, manageMicrophones: true, present: true, changeRoles: false, exclude: false, endMeeting: false, record: false };
const ada: ParticipantInfo = { id: 'p1', displayName: 'Ada', role: 'moderator', microphoneBlocked: false };
const bob: ParticipantInfo = { id: 'p2', displayName: 'Bob', role: 'listener', microphoneBlocked: false };
const cy: ParticipantInfo = { id: 'p3', displayName: 'Cy', role: 'speaker', microphoneBlocked: false };
const deck = (page: number, presenter = 'p3'): PresentationState => ({ id: 'ab'.repeat(16), title: 'Deck', pages: 3, page, presenter });

function apply(state: RoomState, ...messages: ServerMessage[]): RoomState {
  return messages.reduce((s, message) => reduce(s, { kind: 'server', message }), state);
}

function joined(you: ParticipantInfo, presentation: PresentationState | null = null): RoomState {
  return apply(initialRoom(), {
    type: 'joined',
    you: you.id,
    role: you.role,
    grants,
    participants: [ada, bob, cy],
    tracks: [],
    chat: [],
    recording: false,
    audioOnly: false,
    presentation,
  });
}

describe('the stage', () => {
  it('a late joiner sees the page shown when they joined, and follows later pages', () => {
    let state = joined(bob, deck(2));
    expect(stageOf(state)?.shown.page).toBe(2);
    state = apply(state, { type: 'presentation', presentation: deck(3), by: 'p3' });
    expect(stageOf(state)?.shown.page).toBe(3);
    state = apply(state, { type: 'presentation', presentation: null, by: null });
    expect(stageOf(state)).toBeNull();
  });

  it('only the presenter gets the page controls; a moderator may stop and hand over', () => {
    const presenter = stageOf(joined(cy, deck(1)))!;
    expect(presenter.presenting).toBe(true);
    expect(presenter.canStop).toBe(true);
    expect(presenter.candidates.map((p) => p.id)).toEqual(['p1']);
    const listener = stageOf(joined(bob, deck(1)))!;
    expect([listener.presenting, listener.canStop, listener.canHandOver]).toEqual([false, false, false]);
    expect(listener.presenterName).toBe('Cy');
    const moderator = stageOf(joined(ada, deck(1)))!;
    expect([moderator.presenting, moderator.canStop, moderator.canHandOver]).toEqual([false, true, true]);
  });

  it('keeps the view ticket the SFU sends', () => {
    const state = apply(joined(bob), { type: 'presentationAccess', ticket: 't', expiresAt: 100 });
    expect(state.viewTicket).toEqual({ ticket: 't', expiresAt: 100 });
  });
});

describe('turning pages', () => {
  it('arrows and page keys move one page within the presentation', () => {
    expect(pageForKey('ArrowRight', deck(1))).toBe(2);
    expect(pageForKey('PageDown', deck(2))).toBe(3);
    expect(pageForKey('PageDown', deck(3))).toBeNull();
    expect(pageForKey('ArrowLeft', deck(2))).toBe(1);
    expect(pageForKey('PageUp', deck(1))).toBeNull();
    expect(pageForKey('End', deck(1))).toBe(3);
    expect(pageForKey('Home', deck(3))).toBe(1);
    expect(pageForKey('a', deck(1))).toBeNull();
  });

  it('typing in a text field does not count', () => {
    expect(isTyping({ tagName: 'TEXTAREA' } as unknown as EventTarget)).toBe(true);
    expect(isTyping({ tagName: 'INPUT' } as unknown as EventTarget)).toBe(true);
    expect(isTyping({ tagName: 'DIV', isContentEditable: true } as unknown as EventTarget)).toBe(true);
    expect(isTyping({ tagName: 'BODY' } as unknown as EventTarget)).toBe(false);
    expect(isTyping(null)).toBe(false);
  });
});

describe('tickets and uploads', () => {
  it('renews the view ticket at half its life', () => {
    expect(renewIn(1000, 400_000)).toBe(300_000);
    expect(renewIn(1000, 999_000)).toBe(5_000);
  });

  it('page URLs carry no ticket', () => {
    expect(pageUrl('ab'.repeat(16), 2)).toBe(`/api/v1/presentations/${'ab'.repeat(16)}/pages/2`);
  });

  it('refuses empty and too large files before uploading, and offers what the server takes', () => {
    const accepted = { office: false, formats: 'PDF only on this server', extensions: ['.pdf'], maxBytes: 50_000_000, maxPages: 300 };
    expect(checkFile({ name: 'a.pdf', size: 0 }, accepted)).toMatch(/empty/);
    expect(checkFile({ name: 'a.pdf', size: 60_000_000 }, accepted)).toMatch(/larger than 50 MB/);
    expect(checkFile({ name: 'a.pdf', size: 1000 }, accepted)).toBeNull();
    expect(acceptAttribute(accepted)).toBe('.pdf');
    expect(acceptAttribute({ ...accepted, office: true, extensions: ['.pdf', '.pptx'] })).toBe('.pdf,.pptx');
  });

  it('uploads with the ticket as a bearer token and turns a refusal into its message', async () => {
    const file = new File([new Uint8Array([1, 2])], 'slides.pdf');
    const ok = vi.fn(async () => new Response(JSON.stringify({ presentation: { id: 'x', title: 'slides', pages: 3 }, descriptor: 'd' }), { status: 201 }));
    const uploaded = await uploadPresentation(file, 'T', ok as unknown as typeof fetch);
    expect(uploaded.descriptor).toBe('d');
    const [url, init] = ok.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/v1/presentations?filename=slides.pdf');
    expect((init.headers as Record<string, string>).authorization).toBe('Bearer T');
    const refused = vi.fn(async () => new Response(JSON.stringify({ error: { code: 'encrypted', message: 'the PDF is protected by a password' } }), { status: 422 }));
    const error = await uploadPresentation(file, 'T', refused as unknown as typeof fetch).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UploadError);
    expect((error as UploadError).code).toBe('encrypted');
    expect((error as UploadError).message).toBe('The PDF is protected by a password.');
  });
});
