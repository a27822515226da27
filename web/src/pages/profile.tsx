// One's profile: name, e-mail address and time zone ("Saved" when done), and the password
// change (current password, the new one twice; a wrong current password is said next to it).
import { useMemo, useState } from 'preact/hooks';
import { api, ApiError, type Account } from '../api';
import { useSession } from '../session';
import { clearErrorOnInput, Field, fieldIds, FormError, Notice, sentence, useTitle } from '../ui';
import { levelName, profileChanges, validatePasswordChange, validateProfile, type Errors, type PasswordValues, type ProfileValues } from '../logic/accounts';
import { timeZones } from '../logic/time';
import './pages.css';

function focusFirstError(form: HTMLFormElement | null) {
  // After Preact has rendered the errors.
  setTimeout(() => form?.querySelector<HTMLElement>('[aria-invalid="true"], .form-error')?.focus(), 0);
}

export function ProfilePage(_props: Record<string, unknown>) {
  useTitle('Profile');
  const { me, setMe } = useSession();
  if (!me) return null;
  return (
    <section class="page profile-page">
      <h1>Profile</h1>
      <p class="lead">
        Logged in as <strong>{me.login}</strong> · level {levelName(me.level)}
      </p>
      <div class="two-columns">
        <ProfileForm me={me} setMe={setMe} />
        <PasswordForm />
      </div>
    </section>
  );
}

function ProfileForm(props: { me: Account; setMe: (me: Account) => void }) {
  const initial = (a: Account): ProfileValues => ({ displayName: a.displayName, email: a.email, timeZone: a.timeZone });
  const [values, setValues] = useState(initial(props.me));
  const [errors, setErrors] = useState<Errors<keyof ProfileValues>>({});
  const [saved, setSaved] = useState<string>();
  const [busy, setBusy] = useState(false);
  const zones = useMemo(() => timeZones([props.me.timeZone]), [props.me.timeZone]);

  async function submit(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    setSaved(undefined);
    const found = validateProfile(values);
    setErrors(found);
    if (Object.keys(found).length) return focusFirstError(form);
    const changes = profileChanges(initial(props.me), values);
    if (!Object.keys(changes).length) {
      setSaved('Saved — nothing had changed.');
      return;
    }
    setBusy(true);
    try {
      const account = await api.patch<Account>('/me', changes);
      props.setMe(account);
      setValues(initial(account));
      setSaved(changes.email ? 'Saved. A notice went to your old and your new e-mail address.' : 'Saved.');
    } catch (err) {
      if (err instanceof ApiError && err.field && ['displayName', 'email', 'timeZone'].includes(err.field)) setErrors({ [err.field]: sentence(err.message) });
      else setErrors({ form: err instanceof Error ? sentence(err.message) : String(err) });
      focusFirstError(form);
    } finally {
      setBusy(false);
    }
  }

  const clearError = clearErrorOnInput(setErrors);
  return (
    <form class="panel" onSubmit={submit} onInput={clearError} onChange={clearError} noValidate aria-labelledby="profile-title">
      <h2 id="profile-title">Personal data</h2>
      <FormError error={errors.form} />
      <Field id="displayName" label="Display name" error={errors.displayName} hint="Others see it in meetings and invitations.">
        <input {...fieldIds('displayName', errors.displayName, true)} autoComplete="name" value={values.displayName} onInput={(e) => setValues({ ...values, displayName: e.currentTarget.value })} />
      </Field>
      <Field id="email" label="E-mail address" error={errors.email}>
        <input {...fieldIds('email', errors.email)} type="email" autoComplete="email" value={values.email} onInput={(e) => setValues({ ...values, email: e.currentTarget.value })} />
      </Field>
      <Field id="timeZone" label="Time zone" error={errors.timeZone} hint="New conferences start in it, and times are shown in it.">
        <select {...fieldIds('timeZone', errors.timeZone, true)} value={values.timeZone} onChange={(e) => setValues({ ...values, timeZone: e.currentTarget.value })}>
          {zones.map((z) => (
            <option key={z} value={z}>
              {z.replace(/_/g, ' ')}
            </option>
          ))}
        </select>
      </Field>
      <div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Saving…' : 'Save'}
        </button>
      </div>
      <Notice text={saved} />
    </form>
  );
}

function PasswordForm() {
  const empty: PasswordValues = { currentPassword: '', password: '', repeat: '' };
  const [values, setValues] = useState(empty);
  const [errors, setErrors] = useState<Errors<keyof PasswordValues>>({});
  const [saved, setSaved] = useState<string>();
  const [busy, setBusy] = useState(false);

  async function submit(e: Event) {
    e.preventDefault();
    const form = e.currentTarget as HTMLFormElement;
    setSaved(undefined);
    const found = validatePasswordChange(values);
    setErrors(found);
    if (Object.keys(found).length) return focusFirstError(form);
    setBusy(true);
    try {
      await api.patch<Account>('/me', { currentPassword: values.currentPassword, password: values.password });
      setValues(empty);
      setSaved('Password changed. Your other sessions were logged out.');
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) setErrors({ currentPassword: 'The current password is wrong.' });
      else if (err instanceof ApiError && err.field === 'currentPassword') setErrors({ currentPassword: sentence(err.message) });
      else if (err instanceof ApiError && err.field === 'password') setErrors({ password: sentence(err.message) });
      else setErrors({ form: err instanceof Error ? sentence(err.message) : String(err) });
      focusFirstError(form);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form class="panel" onSubmit={submit} onInput={clearErrorOnInput(setErrors, { newPassword: 'password', repeatPassword: 'repeat' })} noValidate aria-labelledby="password-title">
      <h2 id="password-title">Change password</h2>
      <FormError error={errors.form} />
      <Field id="currentPassword" label="Current password" error={errors.currentPassword}>
        <input
          {...fieldIds('currentPassword', errors.currentPassword)}
          type="password"
          autoComplete="current-password"
          value={values.currentPassword}
          onInput={(e) => setValues({ ...values, currentPassword: e.currentTarget.value })}
        />
      </Field>
      <Field id="newPassword" label="New password" error={errors.password} hint="At least 8 characters.">
        <input {...fieldIds('newPassword', errors.password, true)} type="password" autoComplete="new-password" value={values.password} onInput={(e) => setValues({ ...values, password: e.currentTarget.value })} />
      </Field>
      <Field id="repeatPassword" label="New password again" error={errors.repeat}>
        <input {...fieldIds('repeatPassword', errors.repeat)} type="password" autoComplete="new-password" value={values.repeat} onInput={(e) => setValues({ ...values, repeat: e.currentTarget.value })} />
      </Field>
      <div>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Changing…' : 'Change password'}
        </button>
      </div>
      <Notice text={saved} />
    </form>
  );
}
