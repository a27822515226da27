// The API client: one `request` that speaks JSON to /api/v1 and turns every refusal into an
// `ApiError` carrying the server's code, message and offending field. Types come from the
// OpenAPI document the Rust crates generate (src/generated/api.ts).
import type { components } from './generated/api';

export type Schemas = components['schemas'];
export type Account = Schemas['Account'];
export type AccountLevel = Account['level'];
export type Conference = Schemas['ConferenceView'];
export type ArchiveEntry = Schemas['ArchiveView'];
export type RecordingInfo = Schemas['RecordingView'];
export type AnyConference = Schemas['AnyView'];
export type ConferenceInput = Schemas['ConferenceInput'];
export type RepeatDraft = Schemas['RepeatDraft'];
export type JoinRequest = Schemas['JoinRequest'];
export type JoinResponse = Schemas['JoinResponse'];
export type InvitationsQueued = Schemas['InvitationsQueued'];
export type InvitationLogEntry = Schemas['LogEntry'];
export type Settings = Schemas['Settings'];
export type DialIn = Schemas['DialIn'];

/** A refusal from the API (or no answer at all: `status` 0, code `network`). */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** The offending field of a `validation` error, as the API names it (camelCase). */
  readonly field?: string;
  /** Everything else the error carried (`retryAfter`, `startsAt`, `opensAt`). */
  readonly details: Record<string, unknown>;

  constructor(status: number, code: string, message: string, field?: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.field = field;
    this.details = details;
  }
}

type Listener = () => void;
const unauthenticatedListeners = new Set<Listener>();

/** Called whenever the API says the session is gone (401), so the app can show the login. */
export function onUnauthenticated(listener: Listener): () => void {
  unauthenticatedListeners.add(listener);
  return () => unauthenticatedListeners.delete(listener);
}

/** Reads an error body, whatever shape it has. */
export async function errorFrom(response: Response): Promise<ApiError> {
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  const error = (body as { error?: Record<string, unknown> } | undefined)?.error;
  if (error && typeof error.code === 'string' && typeof error.message === 'string') {
    const { code, message, field, ...details } = error;
    return new ApiError(response.status, code, message, typeof field === 'string' ? field : undefined, details);
  }
  return new ApiError(response.status, 'http', `The server answered ${response.status} ${response.statusText}.`);
}

/**
 * The header that marks a request as the portal's own: the API refuses a state-changing request
 * that carries neither it nor a JSON body (403 `csrfHeaderMissing`), because another site's
 * page can send a body-less or form POST with the session cookie but cannot set this header.
 */
export const REQUEST_HEADER = { 'x-conclave-request': '1' } as const;

/** Sends one request to `/api/v1{path}`; resolves with the parsed body (undefined for 204). */
export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, {
      method,
      credentials: 'same-origin',
      headers:
        body === undefined
          ? { accept: 'application/json', ...REQUEST_HEADER }
          : { accept: 'application/json', 'content-type': 'application/json', ...REQUEST_HEADER },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, 'network', 'Conclave cannot be reached. Check your connection and try again.');
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 && path !== '/auth/login') unauthenticatedListeners.forEach((l) => l());
    throw error;
  }
  if (response.status === 204) return undefined as T;
  const type = response.headers.get('content-type') ?? '';
  return (type.includes('json') ? await response.json() : await response.text()) as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body: unknown = {}) => request<T>('POST', path, body),
  patch: <T>(path: string, body: unknown) => request<T>('PATCH', path, body),
  del: <T = void>(path: string) => request<T>('DELETE', path),
};

/** Path segment escaping for IDs put into URLs. */
export const seg = (value: string) => encodeURIComponent(value);
