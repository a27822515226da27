import { afterEach, describe, expect, it, vi } from 'vitest';
import { h, render } from 'preact';
import { act } from 'preact/test-utils';
import { LoginPage, oidcStartUrl } from './login';

/** Answers `GET /api/v1/auth/methods` with `methods`. */
function methodsAre(methods: unknown) {
  vi.stubGlobal(
    'fetch',
    vi.fn(async () => new Response(JSON.stringify(methods), { status: 200, headers: { 'content-type': 'application/json' } })),
  );
}

async function shown(props: { next: string | null; error?: string | null }) {
  const root = document.createElement('div');
  document.body.append(root);
  await act(async () => {
    render(h(LoginPage, props), root);
  });
  // Let the methods request settle and the page render its answer.
  await act(async () => {
    await new Promise((resolve) => setTimeout(resolve, 0));
  });
  return root;
}

afterEach(() => {
  vi.unstubAllGlobals();
  document.body.innerHTML = '';
});

describe('the login page', () => {
  it('starts the company login at the provider, coming back to a same-site path only', () => {
    expect(oidcStartUrl('/api/v1/auth/oidc/start', '/conferences/1?x=2')).toBe('/api/v1/auth/oidc/start?returnTo=%2Fconferences%2F1%3Fx%3D2');
    expect(oidcStartUrl('/api/v1/auth/oidc/start', 'https://evil.example/')).toBe('/api/v1/auth/oidc/start?returnTo=%2F');
    expect(oidcStartUrl('/api/v1/auth/oidc/start', null)).toBe('/api/v1/auth/oidc/start?returnTo=%2F');
  });

  it('offers the provider first and folds the password form away when it is for administrators only', async () => {
    methodsAre({ password: 'administratorsOnly', ldap: false, oidc: { name: 'Keycloak', startUrl: '/api/v1/auth/oidc/start' } });
    const root = await shown({ next: '/schedule', error: 'the login took too long' });
    const link = [...root.querySelectorAll('a')].find((a) => a.textContent === 'Log in with Keycloak');
    expect(link?.getAttribute('href')).toBe('/api/v1/auth/oidc/start?returnTo=%2Fschedule');
    expect(root.querySelector('input[type=password]')).toBeNull();
    expect(root.querySelector('[role=alert]')?.textContent).toBe('The login took too long.');
    const unfold = [...root.querySelectorAll('button')].find((b) => b.textContent?.startsWith('Administrator login'));
    await act(async () => unfold?.click());
    expect(root.querySelector('input[type=password]')).not.toBeNull();
  });

  it('says the password form takes company passwords when LDAP is on', async () => {
    methodsAre({ password: 'everyone', ldap: true, oidc: null });
    const root = await shown({ next: null });
    expect(root.querySelector('input[type=password]')).not.toBeNull();
    expect(root.textContent).toContain('Use your company login name and password');
  });

  it('shows only the password form when no provider is configured', async () => {
    methodsAre({ password: 'everyone', ldap: false, oidc: null });
    const root = await shown({ next: null });
    expect([...root.querySelectorAll('a')].some((a) => a.textContent?.startsWith('Log in with'))).toBe(false);
    expect(root.querySelector('input[type=password]')).not.toBeNull();
    expect([...root.querySelectorAll('button')].map((b) => b.textContent)).toContain('Log in');
  });
});
