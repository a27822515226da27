// Joining a meeting, by link (/join/{meetingId}) or by typing the meeting ID (/join).
// Guests give meeting ID, password and a name (an invitation link fills in the password from its
// fragment, `#pwd=…`, so they only type a name) ("Remember me on this computer" keeps the name and
// skips the question next time); logged-in people join with the meeting ID alone and are asked
// for the password only when the API wants it. Then the preview (devices, self view, level),
// then the meeting itself.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, seg, type Conference, type JoinRequest, type JoinResponse } from '../api';
import { navigate } from '../router';
import { useSession } from '../session';
import { browserStorage, clearErrorOnInput, Field, fieldIds, FormError, Link, useTitle } from '../ui';
import { checkJoinForm, delayUntil, guestId, joinProblem, localTime, normalizeMeetingId, rememberedName, rememberName, takeLinkPassword, type JoinProblem } from '../meeting/joining';
import { Meeting } from '../meeting/Meeting';
import { Prejoin } from '../meeting/Prejoin';
import type { LocalMedia } from '../meeting/session';

type Step = { kind: 'form' } | { kind: 'preview'; ticket: JoinResponse } | { kind: 'meeting'; ticket: JoinResponse; local: LocalMedia };

type FieldName = 'meetingId' | 'password' | 'displayName';

/** How often "Join automatically" asks again when the server says it is still too early. */
const AUTO_JOIN_RETRY_MS = 5_000;

export function JoinPage(props: { meetingId?: string }) {
  const { me } = useSession();
  const [step, setStep] = useState<Step>({ kind: 'form' });
  const [meetingId, setMeetingId] = useState(props.meetingId ?? '');
  // An invitation link carries the password in its fragment (`#pwd=…`): taken once, and out
  // of the address bar at once.
  const [fromLink] = useState(() => (props.meetingId ? takeLinkPassword(window.location, window.history) : null));
  const [password, setPassword] = useState(fromLink ?? '');
  const remembered = me ? null : rememberedName(browserStorage('localStorage'));
  const [name, setName] = useState(remembered ?? '');
  const [changingName, setChangingName] = useState(!remembered);
  const [remember, setRemember] = useState(!!remembered);
  // Logged-in people are asked for the password only when the API wants it.
  const [passwordAsked, setPasswordAsked] = useState(!me);
  // Why a logged-in person is asked for the password (the API wanted it).
  const [passwordHint, setPasswordHint] = useState<string | null>(null);
  const [errors, setErrors] = useState<Partial<Record<FieldName, string>>>({});
  const [problem, setProblem] = useState<JoinProblem | null>(null);
  const [busy, setBusy] = useState(false);
  const [waitUntil, setWaitUntil] = useState<Date | null>(null);
  const [meetingPassword, setMeetingPassword] = useState<string | null>(null);
  const lastRequest = useRef<JoinRequest | null>(null);
  const retryTimer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  // Set while "Join automatically when it opens" sends the form.
  const autoJoin = useRef(false);

  useTitle(step.kind === 'form' ? 'Join a meeting' : step.kind === 'preview' ? 'Ready to join?' : '');

  const askName = !me;
  const showNameField = askName && changingName;

  function request(): JoinRequest {
    const body: JoinRequest = { meetingId: normalizeMeetingId(meetingId) };
    if ((passwordAsked || fromLink) && password.trim()) body.password = password.trim();
    if (askName) {
      body.displayName = name.trim();
      body.guestId = guestId(browserStorage('localStorage'), () => crypto.randomUUID());
    }
    return body;
  }

  async function submit(e?: Event) {
    e?.preventDefault();
    const automatic = autoJoin.current;
    autoJoin.current = false;
    clearTimeout(retryTimer.current);
    setWaitUntil(null);
    const found = checkJoinForm({ meetingId, password, displayName: name }, { password: passwordAsked, name: askName });
    setErrors(found);
    setProblem(null);
    if (Object.keys(found).length) {
      if (found.displayName) setChangingName(true);
      focusFirstError(found);
      return;
    }
    const body = request();
    setBusy(true);
    try {
      const ticket = await api.post<JoinResponse>('/join', body);
      lastRequest.current = body;
      if (askName) rememberName(browserStorage('localStorage'), remember ? (body.displayName ?? null) : null);
      setMeetingPassword(body.password ?? null);
      if (props.meetingId !== ticket.conference.meetingId) navigate(`/join/${seg(ticket.conference.meetingId)}`, { replace: true });
      setStep({ kind: 'preview', ticket });
    } catch (error) {
      const found = joinProblem(error, new Date(), passwordAsked);
      if (automatic && found.opensAt) {
        // This computer's clock runs ahead of the server's: keep waiting, asking every few seconds.
        setProblem(found);
        setWaitUntil(new Date(Date.now() + AUTO_JOIN_RETRY_MS));
        return;
      }
      if (found.field === 'password' && !passwordAsked) {
        // The API wants the password from this account: ask for it, without an alarm.
        setPasswordAsked(true);
        setPasswordHint(`${found.message} Ask its owner for it.`);
        setTimeout(() => document.getElementById('join-password')?.focus());
      } else if (found.field) {
        setErrors({ [found.field]: found.message });
        if (found.field === 'displayName') setChangingName(true);
        focusFirstError({ [found.field]: found.message });
      } else {
        setProblem(found);
        if (found.retrySoon && found.retryAfter !== undefined) {
          retryTimer.current = setTimeout(() => void submit(), found.retryAfter * 1000);
        }
      }
    } finally {
      setBusy(false);
    }
  }

  // A logged-in person who followed a link joins straight away; others start typing where
  // something is missing.
  useEffect(() => {
    if (me && props.meetingId) void submit();
    else document.getElementById(props.meetingId ? (passwordAsked && !fromLink ? 'join-password' : 'join-name') : 'join-meeting-id')?.focus();
    return () => clearTimeout(retryTimer.current);
  }, []);

  // "Join automatically when it opens".
  useEffect(() => {
    if (!waitUntil) return;
    const timer = setTimeout(() => {
      autoJoin.current = true;
      void submit();
    }, delayUntil(waitUntil, new Date()) + 1000);
    return () => clearTimeout(timer);
  }, [waitUntil]);

  // The owner sees the meeting's password in the meeting info, to pass it on.
  useEffect(() => {
    if (step.kind !== 'meeting' || !me || meetingPassword) return;
    api
      .get<Conference>(`/conferences/${seg(step.ticket.conference.id)}`)
      .then((c) => c.password && setMeetingPassword(c.password))
      .catch(() => {
        // Not the owner (404): the password stays unknown here.
      });
  }, [step.kind]);

  /** Asks for a fresh ticket with the same credentials; `lostPod`: the SFU pod just lost. */
  async function rejoin(lostPod?: string): Promise<JoinResponse> {
    const body = lastRequest.current ?? request();
    return api.post<JoinResponse>('/join', lostPod ? { ...body, lostPod } : body);
  }

  if (step.kind === 'meeting') {
    return (
      <Meeting
        ticket={step.ticket}
        local={step.local}
        rejoin={rejoin}
        password={meetingPassword}
        loggedIn={!!me}
        onAgain={() => {
          setStep({ kind: 'form' });
          void submit();
        }}
      />
    );
  }
  if (step.kind === 'preview') {
    return (
      <Prejoin
        topic={step.ticket.conference.topic}
        displayName={step.ticket.displayName}
        audioOnly={step.ticket.conference.media === 'audioOnly'}
        onEnter={(local) => setStep({ kind: 'meeting', ticket: step.ticket, local })}
        onBack={() => setStep({ kind: 'form' })}
      />
    );
  }

  const linked = !!props.meetingId;
  return (
    <main id="main" class="narrow join">
      <h1>Join a meeting</h1>
      {me ? (
        <p class="hint">
          Logged in as <strong>{me.displayName}</strong>. <Link href="/">Back to my conferences</Link>
        </p>
      ) : (
        <p class="hint">
          Have an account? <Link href={`/login?next=${encodeURIComponent(location.pathname)}`}>Log in</Link> to join without the password.
        </p>
      )}
      <form onSubmit={submit} onInput={clearErrorOnInput(setErrors, { 'join-meeting-id': 'meetingId', 'join-password': 'password', 'join-name': 'displayName' })} noValidate>
        <FormError error={problem && !waitUntil ? problem.message : undefined} />
        {problem?.opensAt && !waitUntil && (
          <button type="button" onClick={() => setWaitUntil(problem.opensAt ?? null)}>
            Join automatically when it opens
          </button>
        )}
        {waitUntil && (
          <div class="notice-box" role="status">
            <p>
              {problem?.message} Waiting: you will join automatically {localTime(waitUntil, new Date())}. Keep this page open.
            </p>
            <button type="button" onClick={() => setWaitUntil(null)}>
              Stop waiting
            </button>
          </div>
        )}
        <Field id="join-meeting-id" label="Meeting ID" error={errors.meetingId} hint={linked ? undefined : 'The digits from your invitation.'}>
          <input
            {...fieldIds('join-meeting-id', errors.meetingId, !linked)}
            name="meetingId"
            inputMode="numeric"
            autoComplete="off"
            value={meetingId}
            onInput={(e) => setMeetingId(e.currentTarget.value)}
          />
        </Field>
        {passwordAsked && (
          <Field id="join-password" label="Meeting password" error={errors.password} hint={passwordHint ?? undefined}>
            <input
              {...fieldIds('join-password', errors.password, !!passwordHint)}
              name="password"
              type="password"
              inputMode="numeric"
              autoComplete="off"
              value={password}
              onInput={(e) => setPassword(e.currentTarget.value)}
            />
          </Field>
        )}
        {askName && !showNameField && (
          <p class="join-as">
            You join as <strong>{name}</strong>.{' '}
            <button
              type="button"
              class="link"
              onClick={() => {
                setChangingName(true);
                setTimeout(() => document.getElementById('join-name')?.focus());
              }}
            >
              Change name
            </button>
          </p>
        )}
        {showNameField && (
          <>
            <Field id="join-name" label="Your name" error={errors.displayName} hint="Others in the meeting see this name.">
              <input
                {...fieldIds('join-name', errors.displayName, true)}
                name="displayName"
                autoComplete="name"
                maxLength={64}
                value={name}
                onInput={(e) => setName(e.currentTarget.value)}
              />
            </Field>
            <div class="field inline">
              <input type="checkbox" id="join-remember" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
              <label for="join-remember">Remember me on this computer</label>
            </div>
          </>
        )}
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Joining…' : 'Continue'}
        </button>
      </form>
    </main>
  );
}

function focusFirstError(errors: Partial<Record<FieldName, string>>) {
  const ids: Record<FieldName, string> = { meetingId: 'join-meeting-id', password: 'join-password', displayName: 'join-name' };
  const first = (Object.keys(ids) as FieldName[]).find((f) => errors[f]);
  if (first) setTimeout(() => document.getElementById(ids[first])?.focus());
}
