// A small history router: paths are the portal's state, so links can be shared and reloaded.
import { useEffect, useState } from 'preact/hooks';

const listeners = new Set<() => void>();

/** Goes to `path` (same origin) without reloading the page. */
export function navigate(path: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  listeners.forEach((l) => l());
  window.scrollTo?.(0, 0);
}

window.addEventListener('popstate', () => listeners.forEach((l) => l()));

/** The current location; re-renders on navigation. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const listener = () => setTick((t) => t + 1);
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

/**
 * Matches `path` against a pattern like `/conferences/:id/edit`; returns the decoded
 * parameters, or null when it does not match.
 */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const have = path.split('/').filter(Boolean);
  if (want.length !== have.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(':')) {
      try {
        params[want[i].slice(1)] = decodeURIComponent(have[i]);
      } catch {
        return null;
      }
    } else if (want[i] !== have[i]) return null;
  }
  return params;
}

/** Click handler for in-app links: plain clicks navigate, modified clicks open as usual. */
export function linkClick(event: MouseEvent, path: string): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(path);
}

/** Only same-site paths are followed after login (no open redirect). */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith('/')) return '/';
  // Resolve as the browser would (it drops tabs and newlines, reads \ as /) against a stand-in
  // origin: only a path that stays on it is kept, in its resolved form.
  const here = 'http://portal.invalid';
  let url: URL;
  try {
    url = new URL(next, here);
  } catch {
    return '/';
  }
  return url.origin === here ? `${url.pathname}${url.search}${url.hash}` : '/';
}
