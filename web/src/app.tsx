// The portal's shell: loads who is logged in, routes by path, and lays out the navigation.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, ApiError, onUnauthenticated, type Account } from './api';
import { match, navigate, safeNext, useLocation } from './router';
import { isAdmin, SessionContext } from './session';
import { FormError, Link } from './ui';
import { LoginPage } from './pages/login';
import { ConferencesPage } from './pages/conferences';
import { SchedulePage } from './pages/schedule';
import { InfoPage } from './pages/info';
import { ArchivePage } from './pages/archive';
import { AdminPage } from './pages/admin';
import { ProfilePage } from './pages/profile';
import { JoinPage } from './pages/join';

export function App() {
  const [me, setMe] = useState<Account | null | undefined>(undefined);
  const [logoutProblem, setLogoutProblem] = useState<string>();
  // The API ended the session under a logged-in person (expired, or ended elsewhere).
  const [expired, setExpired] = useState(false);
  const loggedIn = useRef(false);
  loggedIn.current = !!me;
  const { path, query } = useLocation();

  useEffect(() => {
    api.get<Account>('/me').then(setMe, (e) => {
      setMe(null);
      if (!(e instanceof ApiError) || e.status !== 401) console.warn('could not load the account', e);
    });
    return onUnauthenticated(() => {
      if (loggedIn.current) setExpired(true);
      setMe(null);
    });
  }, []);

  if (me === undefined) return <p aria-busy="true">Loading…</p>;

  // Join pages (and the meeting) are open to guests and use the whole screen.
  const join = match('/join/:meetingId', path) ?? match('/join', path);
  if (join) {
    return (
      <SessionContext.Provider value={{ me, setMe }}>
        <JoinPage meetingId={join.meetingId} />
      </SessionContext.Provider>
    );
  }

  if (!me) {
    if (path !== '/login') {
      const next = path + location.search;
      navigate(`/login${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`, { replace: true });
    }
    return (
      <SessionContext.Provider value={{ me, setMe }}>
        <LoginPage next={query.get('next')} expired={expired} error={query.get('error')} onLoggedIn={() => setExpired(false)} />
      </SessionContext.Provider>
    );
  }
  if (path === '/login') {
    navigate(safeNext(query.get('next')), { replace: true });
    return null;
  }

  return (
    <SessionContext.Provider value={{ me, setMe }}>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <Link href="/" class="brand">
          Conclave
        </Link>
        <nav aria-label="Main">
          <NavLink href="/" path={path} label="My conferences" />
          <NavLink href="/schedule" path={path} label="Schedule" />
          <NavLink href="/archive" path={path} label="Archive" />
          <NavLink href="/join" path={path} label="Join by ID" />
          {isAdmin(me) && <NavLink href="/admin" path={path} label="Administration" />}
          <NavLink href="/profile" path={path} label={me.displayName} />
          <button type="button" class="link" onClick={() => void logout(setMe, setLogoutProblem)}>
            Log out
          </button>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <FormError error={logoutProblem} />
        <Route path={path} query={query} />
      </main>
    </SessionContext.Provider>
  );
}

function Route(props: { path: string; query: URLSearchParams }) {
  const { path, query } = props;
  let params: Record<string, string> | null;
  if (path === '/' || path === '/conferences') return <ConferencesPage />;
  if (path === '/schedule') return <SchedulePage repeatOf={query.get('repeat') ?? undefined} />;
  if ((params = match('/conferences/:id/edit', path))) return <SchedulePage editId={params.id} />;
  if ((params = match('/conferences/:id', path))) return <InfoPage id={params.id} />;
  if (path === '/archive') return <ArchivePage />;
  if (path === '/admin') return <AdminPage />;
  if (path === '/profile') return <ProfilePage />;
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is nothing at this address. <Link href="/">Go to your conferences</Link>.
      </p>
    </section>
  );
}

function NavLink(props: { href: string; path: string; label: string }) {
  const current = props.href === '/' ? props.path === '/' || props.path.startsWith('/conferences') : props.path.startsWith(props.href);
  return (
    <Link href={props.href} aria-current={current ? 'page' : undefined}>
      {props.label}
    </Link>
  );
}

/**
 * Ends the session on the server. Only when the server confirms (or the session was already
 * gone) does the page forget the person: the cookie is HttpOnly, so a logout the server never
 * heard would leave the next person at this computer logged in.
 */
async function logout(setMe: (me: Account | null) => void, setProblem: (problem: string | undefined) => void) {
  setProblem(undefined);
  try {
    // An account from the OpenID Connect provider may have the provider's session ended too.
    const answer = await api.post<{ providerLogoutUrl?: string } | undefined>('/auth/logout');
    if (answer?.providerLogoutUrl) {
      setMe(null);
      location.assign(answer.providerLogoutUrl);
      return;
    }
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) {
      setProblem('Logging out failed, so you are still logged in. Check your connection and try again.');
      return;
    }
  }
  setMe(null);
  navigate('/login');
}
