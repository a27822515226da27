// Scheduling, editing and repeating a conference: one form for all three. New conferences
// start at the next full hour in the account's zone with a suggested meeting ID and password;
// an edit is prefilled from the conference and sends only what changed (then offers to notify
// the invitees); a repeat is prefilled from the archive entry's draft and posts `repeatOf`.
// Every refusal — ours or the API's — is shown next to its field.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, ApiError, seg, type AnyConference, type Conference, type InvitationsQueued, type RepeatDraft } from '../api';
import { navigate } from '../router';
import { useSession } from '../session';
import { browserStorage, clearErrorOnInput, Field, fieldIds, FormError, Link, LoadState, Notice, sentence, useLoad, useTitle } from '../ui';
import { flash } from '../logic/flash';
import { defaultUntil, WEEKDAY_NAMES, WEEKDAYS, weekdayCode, type Frequency, type Recurrence, type Weekday } from '../logic/recurrence';
import {
  changedInput,
  describeLength,
  draftKey,
  keepDraft,
  takeDraft,
  fieldOfRefusal,
  fromConference,
  fromDraft,
  moveStart,
  newSchedule,
  suggestDigits,
  timingChecks,
  toInput,
  validateSchedule,
  type ScheduleErrors,
  type ScheduleValues,
} from '../logic/schedule';
import { browserTimeZone, timeZones } from '../logic/time';
import { deliveryText } from './info';
import './pages.css';

type Mode = { kind: 'create' } | { kind: 'repeat'; repeatOf: string } | { kind: 'edit'; conference: Conference };

function formKey(mode: Mode): string {
  return draftKey(mode.kind, mode.kind === 'edit' ? mode.conference.id : mode.kind === 'repeat' ? mode.repeatOf : undefined);
}

export function SchedulePage(props: { repeatOf?: string; editId?: string }) {
  const { me } = useSession();
  const zone = me?.timeZone || browserTimeZone();
  const title = props.editId ? 'Edit conference' : props.repeatOf ? 'Schedule again' : 'Schedule a conference';
  useTitle(title);

  const loaded = useLoad<{ mode: Mode; values: ScheduleValues; restored: boolean } | { archived: true }>(async () => {
    const kept = (mode: Mode, values: ScheduleValues) => {
      const draft = takeDraft(browserStorage('sessionStorage'), formKey(mode));
      return { mode, values: draft ?? values, restored: !!draft };
    };
    if (props.editId) {
      const found = await api.get<AnyConference>(`/conferences/${seg(props.editId)}`);
      if (found.archived) return { archived: true };
      const conference = found as Conference;
      return kept({ kind: 'edit', conference }, fromConference(conference));
    }
    if (props.repeatOf) {
      const { draft } = await api.post<RepeatDraft>(`/conferences/${seg(props.repeatOf)}/repeat`);
      return kept({ kind: 'repeat', repeatOf: props.repeatOf }, fromDraft(draft, zone));
    }
    return kept({ kind: 'create' }, newSchedule(zone, new Date()));
  }, [props.editId, props.repeatOf]);

  const data = loaded.data;
  return (
    <section class="page schedule-page">
      <h1>{title}</h1>
      <LoadState loading={loaded.loading} error={loaded.error} />
      {data && 'archived' in data && (
        <p class="form-error" role="alert">
          This is a past occurrence in the archive; it cannot be edited. <Link href={`/schedule?repeat=${seg(props.editId ?? '')}`}>Schedule it again</Link>.
        </p>
      )}
      {data && 'mode' in data && (
        <>
          {data.mode.kind === 'create' && <StartNow />}
          {data.mode.kind === 'repeat' && <p class="lead">The values of the past conference are filled in, on the same weekday and time next time. Change what you like.</p>}
          {data.restored && (
            <p class="notice-box" role="status">
              Your login had ended before this form was sent; what you had filled in is back. Check it and send it again.
            </p>
          )}
          <ScheduleForm key={props.editId ?? props.repeatOf ?? 'new'} mode={data.mode} initial={data.values} />
        </>
      )}
    </section>
  );
}

/** "Start conference now": an ad hoc conference for 30 minutes, straight to its join page. */
function StartNow() {
  const [topic, setTopic] = useState('');
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  async function start(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const conference = await api.post<Conference>('/conferences/adhoc', topic.trim() ? { topic: topic.trim() } : {});
      navigate(`/join/${seg(conference.meetingId)}`);
    } catch (err) {
      setError(err instanceof ApiError || err instanceof Error ? sentence(err.message) : String(err));
      setBusy(false);
    }
  }
  return (
    <form class="panel start-now" onSubmit={start} noValidate aria-labelledby="start-now-title">
      <h2 id="start-now-title">Meet now</h2>
      <div class="start-now-row">
        <Field id="adhoc-topic" label="Topic (optional)" error={error}>
          <input {...fieldIds('adhoc-topic', error)} value={topic} maxLength={200} placeholder="Ad hoc conference" onInput={(e) => setTopic(e.currentTarget.value)} />
        </Field>
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Starting…' : 'Start conference now'}
        </button>
      </div>
      <p class="hint">Starts at once for 30 minutes and takes you to the meeting.</p>
    </form>
  );
}

const FREQUENCIES: { value: Frequency; label: string; unit: string }[] = [
  { value: 'none', label: 'Does not repeat', unit: '' },
  { value: 'daily', label: 'Daily', unit: 'days' },
  { value: 'weekly', label: 'Weekly', unit: 'weeks' },
  { value: 'monthly', label: 'Monthly', unit: 'months' },
];

function ScheduleForm(props: { mode: Mode; initial: ScheduleValues }) {
  const { mode } = props;
  const [values, setValues] = useState(props.initial);
  // What the server holds now (an edit compares against it; it moves after each save).
  const [saved, setSaved] = useState(props.initial);
  const [errors, setErrors] = useState<ScheduleErrors>({});
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<string>();
  const [savedEdit, setSavedEdit] = useState<Conference>();
  const [focusTick, setFocusTick] = useState(0);
  const formRef = useRef<HTMLFormElement>(null);
  const zones = useMemo(() => timeZones([props.initial.timeZone]), [props.initial.timeZone]);
  const permanent = mode.kind === 'edit' && mode.conference.kind === 'permanent';

  // After a refused submit, focus goes to the first field with an error.
  useEffect(() => {
    if (!focusTick) return;
    const first = formRef.current?.querySelector<HTMLElement>('[aria-invalid="true"]') ?? formRef.current?.querySelector<HTMLElement>('.form-error');
    first?.focus();
  }, [focusTick]);

  const length = permanent ? null : describeLength(values);
  const clearError = clearErrorOnInput(setErrors, { meetingPassword: 'password' });
  const set = <K extends keyof ScheduleValues>(key: K, value: ScheduleValues[K]) => setValues((v) => ({ ...v, [key]: value }));
  const setRecurrence = (change: Partial<Recurrence>) => setValues((v) => ({ ...v, recurrence: { ...v.recurrence, ...change }, keptRule: null }));

  function refuse(next: ScheduleErrors) {
    setErrors(next);
    setFocusTick((t) => t + 1);
  }

  async function submit(e: Event) {
    e.preventDefault();
    setNotice(undefined);
    setSavedEdit(undefined);
    const checks = mode.kind === 'edit' ? timingChecks(saved, values) : { start: true, end: true };
    const found = validateSchedule(values, new Date(), permanent ? { start: false, end: false } : checks);
    if (permanent) {
      delete found.date;
      delete found.start;
      delete found.end;
    }
    if (Object.keys(found).length) return refuse(found);
    setErrors({});
    setBusy(true);
    try {
      if (mode.kind === 'edit') {
        const patch = changedInput(saved, values);
        if (permanent) {
          delete patch.start;
          delete patch.end;
        }
        if (!Object.keys(patch).length) {
          setNotice('Nothing changed.');
          return;
        }
        const updated = await api.patch<Conference>(`/conferences/${seg(mode.conference.id)}`, patch);
        const now = fromConference(updated);
        setSaved(now);
        setValues(now);
        setSavedEdit(updated);
        setNotice('Changes saved.');
      } else {
        const created = await api.post<Conference>('/conferences', toInput(values, mode.kind === 'repeat' ? mode.repeatOf : undefined));
        flash(created.invitees.length ? `Conference scheduled. Invitations to ${created.invitees.length} ${created.invitees.length === 1 ? 'address are' : 'addresses are'} on their way.` : 'Conference scheduled.');
        navigate(`/conferences/${seg(created.id)}`);
      }
    } catch (err) {
      // The login ended: the app shows the login page; keep the form for the way back.
      if (err instanceof ApiError && err.status === 401) keepDraft(browserStorage('sessionStorage'), formKey(mode), values);
      if (err instanceof ApiError) {
        const field = fieldOfRefusal(err.code, err.field);
        refuse(field ? { [field]: sentence(err.message) } : { form: sentence(err.message) });
      } else refuse({ form: err instanceof Error ? err.message : String(err) });
    } finally {
      setBusy(false);
    }
  }

  const r = values.recurrence;
  const unit = FREQUENCIES.find((f) => f.value === r.freq)?.unit ?? '';
  return (
    <>
      <form ref={formRef} class="schedule-form" onSubmit={submit} onInput={clearError} onChange={clearError} noValidate aria-label={mode.kind === 'edit' ? 'Edit conference' : 'Schedule a conference'}>
        <FormError error={errors.form} />
        <Field id="topic" label="Topic" error={errors.topic}>
          <input {...fieldIds('topic', errors.topic)} name="topic" value={values.topic} maxLength={200} autoComplete="off" onInput={(e) => set('topic', e.currentTarget.value)} />
        </Field>

        {permanent ? (
          <p class="hint">This is a permanent room: it is always available and has no date.</p>
        ) : (
          <fieldset>
            <legend>When</legend>
            <div class="row when-row">
              <Field id="date" label="Date" error={errors.date}>
                <input
                  {...fieldIds('date', errors.date)}
                  type="date"
                  name="date"
                  value={values.date}
                  onInput={(e) => {
                    const date = e.currentTarget.value;
                    setValues((v) => ({ ...v, date, recurrence: v.recurrence.freq === 'none' && date ? { ...v.recurrence, days: [weekdayCode(date)] } : v.recurrence }));
                  }}
                />
              </Field>
              <Field id="start" label="Start" error={errors.start}>
                <input {...fieldIds('start', errors.start)} type="time" name="start" value={values.start} onInput={(e) => setValues((v) => moveStart(v, e.currentTarget.value))} />
              </Field>
              <Field id="end" label="End" error={errors.end} hint={length}>
                <input {...fieldIds('end', errors.end, !!length)} type="time" name="end" value={values.end} onInput={(e) => set('end', e.currentTarget.value)} />
              </Field>
            </div>
            <Field id="timeZone" label="Time zone" error={errors.timeZone}>
              <select {...fieldIds('timeZone', errors.timeZone)} name="timeZone" value={values.timeZone} onChange={(e) => set('timeZone', e.currentTarget.value)}>
                {zones.map((z) => (
                  <option key={z} value={z}>
                    {z.replace(/_/g, ' ')}
                  </option>
                ))}
              </select>
            </Field>
          </fieldset>
        )}

        {!permanent && (
          <fieldset class="recurrence">
            <legend>Repeats</legend>
            <div class="row">
              <Field id="recurrence" label="Repeat" error={errors.recurrence}>
                <select
                  {...fieldIds('recurrence', errors.recurrence, !!values.keptRule)}
                  name="recurrence"
                  value={values.keptRule && r.freq === 'none' ? 'kept' : r.freq}
                  onChange={(e) => {
                    const value = e.currentTarget.value;
                    if (value === 'kept') return;
                    setRecurrence({ freq: value as Frequency, days: r.days.length ? r.days : values.date ? [weekdayCode(values.date)] : [] });
                  }}
                >
                  {values.keptRule && r.freq === 'none' && <option value="kept">Custom rule (kept)</option>}
                  {FREQUENCIES.map((f) => (
                    <option key={f.value} value={f.value}>
                      {f.label}
                    </option>
                  ))}
                </select>
              </Field>
              {r.freq !== 'none' && (
                <Field id="interval" label={`Every how many ${unit}`} error={errors.interval}>
                  <input
                    {...fieldIds('interval', errors.interval)}
                    type="number"
                    min={1}
                    max={99}
                    inputMode="numeric"
                    value={String(r.interval)}
                    onInput={(e) => setRecurrence({ interval: Number(e.currentTarget.value) })}
                  />
                </Field>
              )}
            </div>
            {values.keptRule && r.freq === 'none' && (
              <p class="hint" id="recurrence-hint">
                This conference repeats by a rule this form cannot show: <code>{values.keptRule}</code>. It stays as it is unless you choose another.
              </p>
            )}
            {r.freq === 'weekly' && (
              <fieldset class="weekdays" aria-describedby={errors.days ? 'days-error' : undefined}>
                <legend>On</legend>
                <div class="weekday-boxes">
                  {WEEKDAYS.map((day) => (
                    <label key={day} class="check">
                      <input
                        type="checkbox"
                        name="days"
                        value={day}
                        checked={r.days.includes(day)}
                        onChange={(e) => {
                          const on = e.currentTarget.checked;
                          setRecurrence({ days: on ? [...r.days, day] : r.days.filter((d: Weekday) => d !== day) });
                        }}
                      />
                      {WEEKDAY_NAMES[day]}
                    </label>
                  ))}
                </div>
                {errors.days && (
                  <p class="field-error" id="days-error" role="alert">
                    {errors.days}
                  </p>
                )}
              </fieldset>
            )}
            {r.freq !== 'none' && (
              <fieldset class="ends">
                <legend>Ends</legend>
                <label class="check">
                  <input type="radio" name="ends" checked={r.end.kind === 'never'} onChange={() => setRecurrence({ end: { kind: 'never' } })} />
                  Never
                </label>
                <div class="end-choice">
                  <label class="check">
                    <input
                      type="radio"
                      name="ends"
                      checked={r.end.kind === 'until'}
                      onChange={() => setRecurrence({ end: { kind: 'until', date: defaultUntil(values.date) } })}
                    />
                    On a date
                  </label>
                  {r.end.kind === 'until' && (
                    <Field id="until" label="Last date" error={errors.until}>
                      <input
                        {...fieldIds('until', errors.until)}
                        type="date"
                        name="until"
                        value={r.end.date}
                        onInput={(e) => setRecurrence({ end: { kind: 'until', date: e.currentTarget.value } })}
                      />
                    </Field>
                  )}
                </div>
                <div class="end-choice">
                  <label class="check">
                    <input type="radio" name="ends" checked={r.end.kind === 'count'} onChange={() => setRecurrence({ end: { kind: 'count', count: 10 } })} />
                    After a number of times
                  </label>
                  {r.end.kind === 'count' && (
                    <Field id="count" label="How many times" error={errors.count}>
                      <input
                        {...fieldIds('count', errors.count)}
                        type="number"
                        name="count"
                        min={1}
                        max={1000}
                        inputMode="numeric"
                        value={String(r.end.count)}
                        onInput={(e) => setRecurrence({ end: { kind: 'count', count: Number(e.currentTarget.value) } })}
                      />
                    </Field>
                  )}
                </div>
              </fieldset>
            )}
          </fieldset>
        )}

        <fieldset>
          <legend>Room</legend>
          <div class="row">
            <Field id="meetingId" label="Meeting ID" error={errors.meetingId} hint="6 to 12 digits; people type it to join.">
              <input
                {...fieldIds('meetingId', errors.meetingId, true)}
                name="meetingId"
                inputMode="numeric"
                autoComplete="off"
                value={values.meetingId}
                onInput={(e) => set('meetingId', e.currentTarget.value)}
              />
            </Field>
            <Field id="meetingPassword" label="Meeting password" error={errors.password} hint="4 to 16 digits, so that phone callers can type it.">
              <input
                {...fieldIds('meetingPassword', errors.password, true)}
                name="meetingPassword"
                inputMode="numeric"
                autoComplete="off"
                value={values.password}
                onInput={(e) => set('password', e.currentTarget.value)}
              />
            </Field>
            <Field id="maxParticipants" label="Maximum participants" error={errors.maxParticipants} hint="2 to 1000; empty for no limit.">
              <input
                {...fieldIds('maxParticipants', errors.maxParticipants, true)}
                type="number"
                name="maxParticipants"
                min={2}
                max={1000}
                inputMode="numeric"
                value={values.maxParticipants}
                onInput={(e) => set('maxParticipants', e.currentTarget.value)}
              />
            </Field>
          </div>
          {mode.kind !== 'edit' && (
            <div>
              <button type="button" class="link" onClick={() => setValues((v) => ({ ...v, meetingId: suggestDigits(9), password: suggestDigits(6) }))}>
                Suggest another meeting ID and password
              </button>
            </div>
          )}
          <CheckField id="allowJoinWithoutOwner" label="Allow joining in the absence of the conference owner" checked={values.allowJoinWithoutOwner} error={errors.allowJoinWithoutOwner} onChange={(v) => set('allowJoinWithoutOwner', v)} />
          <CheckField id="audioOnly" label="Audio only (no cameras or screen sharing)" checked={values.audioOnly} error={errors.audioOnly} onChange={(v) => set('audioOnly', v)} />
          <CheckField id="recordingAllowed" label="Allow recording (by moderators of level moderator+)" checked={values.recordingAllowed} error={errors.recordingAllowed} onChange={(v) => set('recordingAllowed', v)} />
        </fieldset>

        {!permanent && (
          <Field
            id="invitees"
            label="Invitees"
            error={errors.invitees}
            hint={mode.kind === 'edit' ? 'E-mail addresses, one per line or separated by commas. Use “Notify participants” after saving to send them the update.' : 'E-mail addresses, one per line or separated by commas. Each gets an invitation with a calendar event.'}
          >
            <textarea {...fieldIds('invitees', errors.invitees, true)} name="invitees" rows={4} value={values.invitees} onInput={(e) => set('invitees', e.currentTarget.value)} />
          </Field>
        )}

        <div class="actions">
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Saving…' : mode.kind === 'edit' ? 'Save changes' : 'Schedule'}
          </button>
          <Link href={mode.kind === 'edit' ? `/conferences/${seg(mode.conference.id)}` : mode.kind === 'repeat' ? '/archive' : '/'} class="button">
            {mode.kind === 'edit' ? 'Back to the conference' : 'Cancel'}
          </Link>
        </div>
        <Notice text={notice} />
      </form>
      {savedEdit && <NotifyOffer conference={savedEdit} />}
    </>
  );
}

function CheckField(props: { id: string; label: string; checked: boolean; error?: string; onChange: (checked: boolean) => void }) {
  return (
    <div class={`field inline${props.error ? ' has-error' : ''}`}>
      <input {...fieldIds(props.id, props.error)} type="checkbox" name={props.id} checked={props.checked} onChange={(e) => props.onChange(e.currentTarget.checked)} />
      <label for={props.id}>{props.label}</label>
      {props.error && (
        <p class="field-error" id={`${props.id}-error`} role="alert">
          {props.error}
        </p>
      )}
    </div>
  );
}

/** After an edit: send the update to the invitees. */
function NotifyOffer(props: { conference: Conference }) {
  const [state, setState] = useState<{ busy?: boolean; done?: string; error?: string }>({});
  async function notify() {
    setState({ busy: true });
    try {
      const answer = await api.post<InvitationsQueued>(`/conferences/${seg(props.conference.id)}/notify`);
      setState({ done: `Update sent to ${answer.queued} ${answer.queued === 1 ? 'participant' : 'participants'}${deliveryText(answer)}.` });
    } catch (err) {
      if (err instanceof ApiError && err.code === 'noInvitees') setState({ error: 'Nobody is invited to this conference, so there is nobody to notify. Add invitees first.' });
      else setState({ error: err instanceof Error ? sentence(err.message) : String(err) });
    }
  }
  return (
    <section class="panel notify-offer" aria-labelledby="notify-title">
      <h2 id="notify-title">Tell the participants?</h2>
      <p>Invitees still have the old details in their calendars. Send them the updated invitation.</p>
      <div class="actions">
        <button type="button" class="primary" onClick={notify} disabled={state.busy || !!state.done}>
          {state.busy ? 'Sending…' : 'Notify participants'}
        </button>
        <Link href={`/conferences/${seg(props.conference.id)}`} class="button">
          View the conference
        </Link>
      </div>
      {state.error && (
        <p class="form-error" role="alert">
          {state.error}
        </p>
      )}
      <Notice text={state.done} />
    </section>
  );
}
