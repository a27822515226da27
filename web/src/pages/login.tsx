// Logging in. The API sets the session cookie; the account comes back in the answer.
import { useState } from 'preact/hooks';
import { api, ApiError, type Schemas } from '../api';
import { navigate, safeNext } from '../router';
import { useSession } from '../session';
import { clearErrorOnInput, Field, fieldIds, FormError, formErrorsFrom, Link, sentence, useTitle, type FormErrors } from '../ui';

type LoginResponse = Schemas['LoginResponse'];

export function LoginPage(props: { next: string | null; expired?: boolean; onLoggedIn?: () => void }) {
  useTitle('Log in');
  const { setMe } = useSession();
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

  return (
    <main id="main" class="narrow">
      <h1>Log in to Conclave</h1>
      {props.expired && (
        <p class="notice-box" role="status">
          Your login has ended (it expired, or you logged out elsewhere). Log in again to go on where you were.
        </p>
      )}
      <form onSubmit={submit} onInput={clearErrorOnInput(setErrors)} noValidate>
        <FormError error={errors.form} />
        <Field id="login" label="Login name" error={errors.login}>
          <input {...fieldIds('login', errors.login)} name="login" autoComplete="username" autoFocus value={login} onInput={(e) => setLogin(e.currentTarget.value)} />
        </Field>
        <Field id="password" label="Password" error={errors.password}>
          <input {...fieldIds('password', errors.password)} name="password" type="password" autoComplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
      <p>
        Invited to a meeting? <Link href="/join">Join with the meeting ID</Link>.
      </p>
    </main>
  );
}
