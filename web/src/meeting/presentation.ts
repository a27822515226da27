// Presentations in the meeting (docs/presentations.md): what the stage shows, who may do what
// with it, the keys that turn pages, and the two HTTP calls (upload with the SFU's upload
// ticket, pages with its view ticket). Pure except `uploadPresentation` and `fetchPage`.
import type { ParticipantId, ParticipantInfo, PresentationState } from '../generated/signal';
import type { RoomState } from './room';

/** What the portal learns from GET /api/v1/presentations/accepted. */
export interface Accepted {
  office: boolean;
  formats: string;
  extensions: string[];
  maxBytes: number;
  maxPages: number;
}

/** The stage as the page shows it, and what we may do there. */
export interface Stage {
  shown: PresentationState;
  presenterName: string;
  /** We present: we turn the pages and may hand over or stop. */
  presenting: boolean;
  canStop: boolean;
  canHandOver: boolean;
  /** People who may take the presentation over (they hold `present`), ourselves excluded. */
  candidates: ParticipantInfo[];
}

export function stageOf(state: RoomState): Stage | null {
  const shown = state.presentation;
  if (!shown) return null;
  const presenting = shown.presenter === state.you;
  const moderator = state.role === 'moderator';
  const candidates = state.order
    .map((id) => state.participants[id])
    .filter((p): p is ParticipantInfo => !!p && p.id !== shown.presenter && p.role !== 'listener');
  return {
    shown,
    presenterName: state.participants[shown.presenter]?.displayName ?? 'someone',
    presenting,
    canStop: presenting || moderator,
    canHandOver: (presenting || moderator) && candidates.length > 0,
    candidates,
  };
}

/** The page a key press asks for, or `null` when the key is not ours or the page would not change. */
export function pageForKey(key: string, shown: PresentationState): number | null {
  let page: number;
  switch (key) {
    case 'ArrowRight':
    case 'ArrowDown':
    case 'PageDown':
    case ' ':
      page = shown.page + 1;
      break;
    case 'ArrowLeft':
    case 'ArrowUp':
    case 'PageUp':
      page = shown.page - 1;
      break;
    case 'Home':
      page = 1;
      break;
    case 'End':
      page = shown.pages;
      break;
    default:
      return null;
  }
  page = Math.min(Math.max(page, 1), shown.pages);
  return page === shown.page ? null : page;
}

/** Whether a key press belongs to a text field (typing in the chat must not turn pages). */
export function isTyping(target: EventTarget | null): boolean {
  const element = target as { tagName?: string; isContentEditable?: boolean } | null;
  if (!element?.tagName) return false;
  return ['INPUT', 'TEXTAREA', 'SELECT'].includes(element.tagName) || !!element.isContentEditable;
}

/** The URL of one page image (fetched with the view ticket; never put the ticket in a URL). */
export function pageUrl(id: string, page: number): string {
  return `/api/v1/presentations/${encodeURIComponent(id)}/pages/${page}`;
}

/** Milliseconds until the view ticket should be renewed: at half its life, at least in 5 s. */
export function renewIn(expiresAt: number, nowMs: number): number {
  const left = expiresAt * 1000 - nowMs;
  return Math.max(5_000, left / 2);
}

/** A refusal before the upload starts (too large), or `null`. */
export function checkFile(file: { name: string; size: number }, accepted: Accepted | null): string | null {
  if (!accepted) return null;
  if (file.size === 0) return 'The file is empty.';
  if (file.size > accepted.maxBytes) return `The file is larger than ${Math.floor(accepted.maxBytes / 1_000_000)} MB, the most this server takes.`;
  return null;
}

/** What the file picker offers. */
export function acceptAttribute(accepted: Accepted | null): string {
  return (accepted?.extensions ?? ['.pdf']).join(',');
}

/** Something an upload went wrong with, for people. */
export class UploadError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** What the upload answers. */
export interface Uploaded {
  presentation: { id: string; title: string; pages: number };
  descriptor: string;
}

/** Uploads `file` with the SFU's upload ticket; the answer's descriptor shows it. */
export async function uploadPresentation(file: File, ticket: string, fetchImpl: typeof fetch = fetch): Promise<Uploaded> {
  let response: Response;
  try {
    response = await fetchImpl(`/api/v1/presentations?filename=${encodeURIComponent(file.name)}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ticket}`, 'content-type': 'application/octet-stream', 'x-conclave-request': '1' },
      body: file,
    });
  } catch {
    throw new UploadError('network', 'The upload failed: the server could not be reached.');
  }
  if (response.ok) return (await response.json()) as Uploaded;
  let code = 'unknown';
  let message = `The upload failed (HTTP ${response.status}).`;
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string } };
    if (body.error?.code) code = body.error.code;
    if (body.error?.message) message = body.error.message.charAt(0).toUpperCase() + body.error.message.slice(1) + '.';
  } catch {
    // Not JSON: keep the status.
  }
  throw new UploadError(code, message);
}

/** One page image as an object URL (the caller revokes it). */
export async function fetchPage(id: string, page: number, ticket: string, fetchImpl: typeof fetch = fetch): Promise<string> {
  const response = await fetchImpl(pageUrl(id, page), { headers: { authorization: `Bearer ${ticket}` } });
  if (!response.ok) throw new Error(`page ${page}: HTTP ${response.status}`);
  return URL.createObjectURL(await response.blob());
}

/** Everyone's name by ID, for the hand-over list. */
export function presenterChoices(stage: Stage): { id: ParticipantId; name: string }[] {
  return stage.candidates.map((p) => ({ id: p.id, name: p.displayName }));
}
