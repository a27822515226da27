import { afterEach, describe, expect, it, vi } from 'vitest';
import { api, ApiError, onUnauthenticated } from './api';
import { formErrorsFrom, sentence } from './ui';

function answer(status: number, body: unknown) {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json' },
  });
}

afterEach(() => vi.unstubAllGlobals());

describe('request', () => {
  it('turns an error body into an ApiError with its field and details', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => answer(409, { error: { code: 'conferenceNotStarted', message: 'not yet', startsAt: '2026-12-01T09:00:00Z' } })));
    const error = (await api.post('/join', {}).catch((e: unknown) => e)) as ApiError;
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(409);
    expect(error.code).toBe('conferenceNotStarted');
    expect(error.details.startsAt).toBe('2026-12-01T09:00:00Z');
  });

  it('says so when the server cannot be reached', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    const error = (await api.get('/me').catch((e: unknown) => e)) as ApiError;
    expect(error.code).toBe('network');
    expect(error.message).toMatch(/cannot be reached/);
  });

  it('tells listeners when the session is gone, except for a failed login', async () => {
    const gone = vi.fn();
    const stop = onUnauthenticated(gone);
    vi.stubGlobal('fetch', vi.fn(async () => answer(401, { error: { code: 'unauthenticated', message: 'log in' } })));
    await api.get('/conferences').catch(() => {});
    await api.post('/auth/login', {}).catch(() => {});
    stop();
    expect(gone).toHaveBeenCalledTimes(1);
  });

  it('sends JSON and reads 204 as nothing', async () => {
    const fetch = vi.fn(async () => new Response(null, { status: 204 }));
    vi.stubGlobal('fetch', fetch);
    expect(await api.patch('/me', { displayName: 'Ada' })).toBeUndefined();
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/api/v1/me');
    expect(init.body).toBe('{"displayName":"Ada"}');
    expect((init.headers as Record<string, string>)['content-type']).toBe('application/json');
  });

  it('marks every request as the portal’s own, body-less ones included', async () => {
    const fetch = vi.fn(async () => new Response(null, { status: 204 }));
    vi.stubGlobal('fetch', fetch);
    await api.post('/auth/logout', undefined);
    await api.del('/conferences/c1');
    await api.get('/me');
    for (const call of fetch.mock.calls as unknown as [string, RequestInit][]) {
      expect((call[1].headers as Record<string, string>)['x-conclave-request']).toBe('1');
    }
    expect(fetch).toHaveBeenCalledTimes(3);
  });
});

describe('form errors', () => {
  it('puts a validation error next to its field and anything else on the form', () => {
    const field = new ApiError(422, 'validation', 'the topic must not be empty', 'topic');
    expect(formErrorsFrom(field, { topic: 'topic' })).toEqual({ topic: 'The topic must not be empty.' });
    const mapped = new ApiError(422, 'validation', 'bad', 'durationMinutes');
    expect(formErrorsFrom(mapped, { durationMinutes: 'end' })).toEqual({ end: 'Bad.' });
    const unknown = new ApiError(422, 'validation', 'bad thing', 'somethingElse');
    expect(formErrorsFrom(unknown, { topic: 'topic' })).toEqual({ form: 'Bad thing.' });
  });

  it('writes messages as sentences', () => {
    expect(sentence('wrong password')).toBe('Wrong password.');
    expect(sentence('Done!')).toBe('Done!');
  });
});
