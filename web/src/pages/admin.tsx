// Administration: every account with its level and whether it is disabled (changed in place),
// a form to create accounts, and the setting whether level audience may schedule.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, seg, type Account, type Settings } from '../api';
import { isAdmin, useSession } from '../session';
import { clearErrorOnInput, Field, fieldIds, FormError, LoadState, Notice, sentence, useLoad, useTitle } from '../ui';
import { LEVEL_NAMES, LEVELS, levelName, validateNewAccount, type Errors, type NewAccountValues } from '../logic/accounts';
import './pages.css';

export function AdminPage(_props: Record<string, unknown>) {
  useTitle('Administration');
  const { me } = useSession();
  if (!isAdmin(me)) {
    return (
      <section class="page">
        <h1>Administration</h1>
        <p class="form-error" role="alert">
          Only administrators manage accounts. Ask an administrator if you need another level.
        </p>
      </section>
    );
  }
  return <Administration meId={me!.id} />;
}

function Administration(props: { meId: string }) {
  const users = useLoad(() => api.get<Account[]>('/users'), []);
  const [message, setMessage] = useState<string>();
  return (
    <section class="page admin-page">
      <h1>Administration</h1>
      <h2 id="accounts-title">Accounts</h2>
      <Notice text={message} onDone={() => setMessage(undefined)} />
      <LoadState loading={users.loading && !users.data} error={users.error} />
      {users.data && <Accounts accounts={users.data} meId={props.meId} onChanged={(text) => { setMessage(text); users.reload(); }} />}
      <div class="two-columns">
        <NewAccount onCreated={(a) => { setMessage(`Account “${a.login}” created.`); users.reload(); }} />
        <SettingsForm />
      </div>
    </section>
  );
}

function Accounts(props: { accounts: Account[]; meId: string; onChanged: (text: string) => void }) {
  const { setMe } = useSession();
  // Errors per account, shown in its row.
  const [errors, setErrors] = useState<Record<string, string>>({});
  // Changes on their way: the controls show them at once, until the list is read again.
  const [pending, setPending] = useState<Record<string, { level?: string; disabled?: boolean }>>({});
  useEffect(() => setPending({}), [props.accounts]);
  async function change(account: Account, patch: { level?: string; disabled?: boolean }, done: string) {
    setErrors((e) => ({ ...e, [account.id]: '' }));
    setPending((p) => ({ ...p, [account.id]: { ...p[account.id], ...patch } }));
    try {
      const updated = await api.patch<Account>(`/users/${seg(account.id)}`, patch);
      // Administrators changing their own level lose (or keep) this page at once.
      if (updated.id === props.meId) setMe(updated);
      props.onChanged(done);
    } catch (err) {
      setPending((p) => ({ ...p, [account.id]: {} }));
      const text =
        err instanceof ApiError && err.code === 'lastAdministrator'
          ? 'This is the last enabled administrator; make someone else an administrator first.'
          : err instanceof Error
            ? sentence(err.message)
            : String(err);
      setErrors((e) => ({ ...e, [account.id]: text }));
      props.onChanged('');
    }
  }
  return (
    <table class="responsive accounts" aria-labelledby="accounts-title">
      <thead>
        <tr>
          <th scope="col">Login</th>
          <th scope="col">Name</th>
          <th scope="col">E-mail</th>
          <th scope="col">Level</th>
          <th scope="col">Disabled</th>
        </tr>
      </thead>
      <tbody>
        {props.accounts.map((stored) => {
          const a = { ...stored, ...pending[stored.id] };
          const error = errors[a.id];
          return (
            <tr key={a.id} class={a.disabled ? 'disabled' : undefined} data-login={a.login}>
              <td data-label="Login">
                {a.login}
                {a.id === props.meId && <span class="sub">(you)</span>}
              </td>
              <td data-label="Name">{a.displayName}</td>
              <td data-label="E-mail">{a.email}</td>
              <td data-label="Level">
                <select
                  aria-label={`Level of ${a.login}`}
                  aria-invalid={error ? 'true' : undefined}
                  aria-describedby={error ? `row-error-${a.id}` : undefined}
                  value={a.level}
                  onChange={(e) => change(stored, { level: e.currentTarget.value }, `${a.login} is now ${levelName(e.currentTarget.value)}.`)}
                >
                  {LEVELS.map((level) => (
                    <option key={level} value={level}>
                      {LEVEL_NAMES[level]}
                    </option>
                  ))}
                </select>
                {error && (
                  <p class="field-error" id={`row-error-${a.id}`} role="alert">
                    {error}
                  </p>
                )}
              </td>
              <td data-label="Disabled">
                <input
                  type="checkbox"
                  aria-label={`${a.login} disabled`}
                  checked={a.disabled}
                  onChange={(e) => {
                    const disabled = e.currentTarget.checked;
                    change(stored, { disabled }, disabled ? `${a.login} is disabled and can no longer log in.` : `${a.login} is enabled again.`);
                  }}
                />
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

/** The new-account form's element ids, by the error they show. */
const NEW_ACCOUNT_IDS = { 'new-login': 'login', 'new-name': 'displayName', 'new-email': 'email', 'new-level': 'level', 'new-password': 'password' };

function NewAccount(props: { onCreated: (account: Account) => void }) {
  const empty: NewAccountValues = { login: '', displayName: '', email: '', level: 'audience', password: '' };
  const [values, setValues] = useState(empty);
  const [errors, setErrors] = useState<Errors<keyof NewAccountValues>>({});
  const [busy, setBusy] = useState(false);
  const set = (key: keyof NewAccountValues) => (e: { currentTarget: HTMLInputElement | HTMLSelectElement }) => setValues({ ...values, [key]: e.currentTarget.value });

  async function submit(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    const found = validateNewAccount(values);
    setErrors(found);
    const focus = () => setTimeout(() => form.querySelector<HTMLElement>('[aria-invalid="true"], .form-error')?.focus(), 0);
    if (Object.keys(found).length) return focus();
    setBusy(true);
    try {
      const account = await api.post<Account>('/users', { ...values, login: values.login.trim(), displayName: values.displayName.trim(), email: values.email.trim() });
      setValues(empty);
      props.onCreated(account);
    } catch (err) {
      if (err instanceof ApiError && err.code === 'loginTaken') setErrors({ login: `The login name “${values.login.trim()}” is taken; choose another.` });
      else if (err instanceof ApiError && err.field && err.field in empty) setErrors({ [err.field]: sentence(err.message) });
      else setErrors({ form: err instanceof Error ? sentence(err.message) : String(err) });
      focus();
    } finally {
      setBusy(false);
    }
  }

  const clearError = clearErrorOnInput(setErrors, NEW_ACCOUNT_IDS);
  return (
    <form
      class="panel"
      onSubmit={submit}
      onInput={clearError}
      onChange={clearError}
      noValidate
      aria-labelledby="new-account-title"
    >
      <h2 id="new-account-title">Create an account</h2>
      <FormError error={errors.form} />
      <Field id="new-login" label="Login name" error={errors.login}>
        <input {...fieldIds('new-login', errors.login)} autoComplete="off" value={values.login} onInput={set('login')} />
      </Field>
      <Field id="new-name" label="Display name" error={errors.displayName}>
        <input {...fieldIds('new-name', errors.displayName)} autoComplete="off" value={values.displayName} onInput={set('displayName')} />
      </Field>
      <Field id="new-email" label="E-mail address" error={errors.email}>
        <input {...fieldIds('new-email', errors.email)} type="email" autoComplete="off" value={values.email} onInput={set('email')} />
      </Field>
      <Field id="new-level" label="Level" error={errors.level}>
        <select {...fieldIds('new-level', errors.level)} value={values.level} onChange={set('level')}>
          {LEVELS.map((level) => (
            <option key={level} value={level}>
              {LEVEL_NAMES[level]}
            </option>
          ))}
        </select>
      </Field>
      <Field id="new-password" label="Initial password" error={errors.password} hint="At least 8 characters; tell it to the person, who can change it in their profile.">
        <input {...fieldIds('new-password', errors.password, true)} type="password" autoComplete="new-password" value={values.password} onInput={set('password')} />
      </Field>
      <div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Creating…' : 'Create account'}
        </button>
      </div>
    </form>
  );
}

function SettingsForm() {
  const loaded = useLoad(() => api.get<Settings>('/settings'), []);
  const [audience, setAudience] = useState<boolean>();
  const [adminsOnly, setAdminsOnly] = useState<boolean>();
  const [saved, setSaved] = useState<string>();
  const [error, setError] = useState<string>();
  const audienceMaySchedule = audience ?? loaded.data?.audienceMaySchedule ?? true;
  const localLoginAdminsOnly = adminsOnly ?? loaded.data?.localLoginAdminsOnly ?? false;

  async function submit(e: Event) {
    e.preventDefault();
    setSaved(undefined);
    setError(undefined);
    try {
      const answer = await api.patch<Settings>('/settings', { audienceMaySchedule, localLoginAdminsOnly });
      setAudience(answer.audienceMaySchedule);
      setAdminsOnly(answer.localLoginAdminsOnly);
      setSaved('Saved.');
    } catch (err) {
      setError(err instanceof Error ? sentence(err.message) : String(err));
    }
  }

  return (
    <form class="panel" onSubmit={submit} noValidate aria-labelledby="settings-title">
      <h2 id="settings-title">Settings</h2>
      <LoadState loading={loaded.loading} error={loaded.error} />
      <FormError error={error} />
      {loaded.data && (
        <>
          <div class="field inline">
            <input id="audienceMaySchedule" type="checkbox" aria-describedby="audienceMaySchedule-hint" checked={audienceMaySchedule} onChange={(e) => setAudience(e.currentTarget.checked)} />
            <label for="audienceMaySchedule">Accounts of level Audience may schedule conferences</label>
          </div>
          <p class="hint" id="audienceMaySchedule-hint">
            When off, only moderators and administrators schedule and start conferences.
          </p>
          <div class="field inline">
            <input id="localLoginAdminsOnly" type="checkbox" aria-describedby="localLoginAdminsOnly-hint" checked={localLoginAdminsOnly} onChange={(e) => setAdminsOnly(e.currentTarget.checked)} />
            <label for="localLoginAdminsOnly">Only administrators may log in with a Conclave password</label>
          </div>
          <p class="hint" id="localLoginAdminsOnly-hint">
            Everyone else logs in with their company account (LDAP or single sign-on). Administrators keep their Conclave password for when the company directory is down.
          </p>
          <div>
            <button type="submit" class="primary">
              Save settings
            </button>
          </div>
          <Notice text={saved} />
        </>
      )}
    </form>
  );
}
