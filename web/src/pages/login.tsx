// Logging in: with the company account (OpenID Connect, when on: a button that leaves for the
// provider and comes back logged in) and/or with a password stored in Conclave. The API sets the
// session cookie; `GET /auth/methods` says which methods are on.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, type Schemas } from '../api';
import { navigate, safeNext } from '../router';
import { useSession } from '../session';
import { clearErrorOnInput, Field, fieldIds, FormError, formErrorsFrom, Link, sentence, useTitle, type FormErrors } from '../ui';

type LoginResponse = Schemas['LoginResponse'];
type AuthMethods = Schemas['AuthMethods'];

/** The provider's URL to start at, coming back to `next` (a same-site path) after login. */
export function oidcStartUrl(startUrl: string, next: string | null): string {
  return `${startUrl}?returnTo=${encodeURIComponent(safeNext(next))}`;
}

export function LoginPage(props: { next: string | null; expired?: boolean; error?: string | null; onLoggedIn?: () => void }) {
  useTitle('Log in');
  const { setMe } = useSession();
  const [methods, setMethods] = useState<AuthMethods | null>(null);
  // With a company login and password login for administrators only, the form stays folded.
  const [showPassword, setShowPassword] = useState(false);
  useEffect(() => {
    api
      .get<AuthMethods>('/auth/methods')
      // Without an answer the password form is what is known to work.
      .then(setMethods, () => setMethods({ password: 'everyone', ldap: false, oidc: null }));
  }, []);
  const [login, setLogin] = useState('');
  const [password, setPassword] = useState('');
  const [errors, setErrors] = useState<FormErrors>({});
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    const missing: FormErrors = {};
    if (!login.trim()) missing.login = 'Enter your login name.';
    if (!password) missing.password = 'Enter your password.';
    setErrors(missing);
    if (Object.keys(missing).length) return;
    setBusy(true);
    try {
      // The answer is the account itself, with the session token beside its fields.
      const { sessionToken: _token, sessionExpiresAt: _expires, ...account } = await api.post<LoginResponse>('/auth/login', { login: login.trim(), password });
      setMe(account);
      props.onLoggedIn?.();
      navigate(safeNext(props.next), { replace: true });
    } catch (error) {
      if (error instanceof ApiError && error.code === 'tooManyAttempts') {
        setErrors({ form: `Too many failed attempts. Try again in ${error.details.retryAfter ?? 'a few'} seconds.` });
      } else if (error instanceof ApiError && error.status === 403) {
        // A wrong login name or password (the API does not say which), or a disabled account.
        setErrors({ password: sentence(error.message) });
      } else setErrors(formErrorsFrom(error, { login: 'login', password: 'password' }));
    } finally {
      setBusy(false);
    }
  }

  const oidc = methods?.oidc ?? null;
  const passwordSecondary = oidc !== null && methods?.password === 'administratorsOnly';
  const form = (
    <form onSubmit={submit} onInput={clearErrorOnInput(setErrors)} noValidate>
      <FormError error={errors.form} />
      {methods?.ldap && <p class="hint">Use your company login name and password, or your Conclave account.</p>}
      <Field id="login" label="Login name" error={errors.login}>
        <input {...fieldIds('login', errors.login)} name="login" autoComplete="username" autoFocus={!oidc} value={login} onInput={(e) => setLogin(e.currentTarget.value)} />
      </Field>
      <Field id="password" label="Password" error={errors.password}>
        <input {...fieldIds('password', errors.password)} name="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
      </Field>
      <button type="submit" class={oidc ? undefined : 'primary'} disabled={busy}>
        {busy ? 'Logging in…' : oidc ? 'Log in with password' : 'Log in'}
      </button>
    </form>
  );

  return (
    <main id="main" class="narrow">
      <h1>Log in to Conclave</h1>
      {props.expired && (
        <p class="notice-box" role="status">
          Your login has ended (it expired, or you logged out elsewhere). Log in again to go on where you were.
        </p>
      )}
      {props.error && <FormError error={sentence(props.error)} />}
      {oidc && (
        <p>
          <a class="button primary" href={oidcStartUrl(oidc.startUrl, props.next)}>
            Log in with {oidc.name}
          </a>
        </p>
      )}
      {methods && passwordSecondary && !showPassword && (
        <p>
          <button type="button" class="link" onClick={() => setShowPassword(true)}>
            Administrator login with a Conclave password
          </button>
        </p>
      )}
      {methods && (!passwordSecondary || showPassword) && (
        <>
          {oidc && <h2>{passwordSecondary ? 'Administrator login' : methods.ldap ? 'Or with your password' : 'Or with a Conclave password'}</h2>}
          {form}
        </>
      )}
      <p>
        Invited to a meeting? <Link href="/join">Join with the meeting ID</Link>.
      </p>
    </main>
  );
}
