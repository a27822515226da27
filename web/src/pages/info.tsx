// One conference with every fact people need to join or invite (meeting ID, password, the join
// link to copy, how to dial in by phone, the calendar download), sending invitations by e-mail with the invitation log,
// and edit and delete. An archive entry's ID shows the past occurrence with its attendance.
import { useState } from 'preact/hooks';
import { api, ApiError, seg, type AnyConference, type ArchiveEntry, type RecordingInfo, type Conference, type DialIn, type InvitationLogEntry, type InvitationsQueued } from '../api';
import { navigate } from '../router';
import { ConfirmDialog, Field, fieldIds, FormError, Link, LoadState, Notice, sentence, useLoad, useTitle } from '../ui';
import { flash, takeFlash } from '../logic/flash';
import { inviteesError, parseInvitees } from '../logic/invitees';
import { describeRule } from '../logic/recurrence';
import { formatMoment, formatSpan, formatZone, splitInstant } from '../logic/time';
import './pages.css';

/** How queued mail leaves, in words: ", written to the server's outbox folder". */
export function deliveryText(answer: InvitationsQueued): string {
  if (answer.delivery === 'folder') return ' — written to the server’s outbox folder, as no mail server is configured';
  return ' — handed to the mail server';
}

const KIND_NAMES: Record<string, string> = { scheduled: 'Scheduled', adHoc: 'Ad hoc', permanent: 'Permanent room' };
const PHASE_NAMES: Record<string, string> = {
  Scheduled: 'opens a few minutes before the start',
  Ready: 'open: people can join',
  Active: 'in progress',
  Ended: 'over',
};

/** The next (or running) occurrence, else the first. */
export function shownTimes(c: Conference): { start: string; end: string } | null {
  if (c.occurrence) return c.occurrence;
  if (c.start && c.end) return { start: c.start, end: c.end };
  return null;
}

export function StatusBadge(props: { status: string; phase?: string }) {
  const online = props.status === 'online';
  return (
    <span class={`badge ${online ? 'online' : 'offline'}`} title={props.phase ? `Phase: ${PHASE_NAMES[props.phase] ?? props.phase}` : undefined}>
      {online ? 'Online' : 'Offline'}
    </span>
  );
}

export function InfoPage(props: { id: string }) {
  const [message] = useState(takeFlash);
  const loaded = useLoad(() => api.get<AnyConference>(`/conferences/${seg(props.id)}`), [props.id]);
  const found = loaded.data;
  useTitle(found ? found.topic : 'Conference');
  return (
    <section class="page info-page">
      <Notice text={message} />
      <LoadState loading={loaded.loading && !found} error={loaded.error} />
      {found && !found.archived && <ConferenceInfo conference={found as Conference} reload={loaded.reload} />}
      {found && found.archived && <ArchivedInfo entry={found as ArchiveEntry} onChange={loaded.reload} />}
    </section>
  );
}

function ConferenceInfo(props: { conference: Conference; reload: () => void }) {
  const c = props.conference;
  const tz = c.timeZone;
  const times = shownTimes(c);
  const [deleting, setDeleting] = useState(false);
  const firstDate = c.start ? splitInstant(c.start, tz).date : undefined;
  return (
    <>
      <h1 class="topic">{c.topic}</h1>
      <div class="actions top-actions">
        <Link href={`/join/${seg(c.meetingId)}`} class="button primary">
          Join
        </Link>
        {c.kind !== 'permanent' && (
          <a class="button" href={`/api/v1/conferences/${seg(c.id)}/calendar.ics`} download="conference.ics">
            Add to calendar
          </a>
        )}
        <Link href={`/conferences/${seg(c.id)}/edit`} class="button">
          Edit
        </Link>
        <button type="button" class="danger" onClick={() => setDeleting(true)}>
          Delete
        </button>
      </div>
      <div class="panel">
        <dl class="facts">
          <dt>{c.recurrence ? 'Next' : 'When'}</dt>
          <dd>{times ? formatSpan(times.start, times.end, tz) : 'Always available'}</dd>
          {c.recurrence && c.start && c.end && times && c.start !== times.start && (
            <>
              <dt>First</dt>
              <dd>{formatSpan(c.start, c.end, tz)}</dd>
            </>
          )}
          <dt>Repeats</dt>
          <dd>{c.kind === 'permanent' ? 'Always available (permanent room)' : describeRule(c.recurrence, tz, firstDate)}</dd>
          <dt>Time zone</dt>
          <dd>{formatZone(times?.start ?? new Date(), tz)}</dd>
          <dt>Meeting ID</dt>
          <dd class="secret" data-testid="meeting-id">
            {c.meetingId}
          </dd>
          <dt>Password</dt>
          <dd class="secret" data-testid="meeting-password">
            {c.password}
          </dd>
          <dt>Join link</dt>
          <dd>
            <CopyLink url={c.joinUrl} />
          </dd>
          {c.dialIn && <DialInFacts dialIn={c.dialIn} />}
          <dt>Owner</dt>
          <dd>
            {c.owner.displayName || c.owner.login || 'Unknown account'}
            {c.owner.login && c.owner.displayName ? ` (${c.owner.login})` : ''}
          </dd>
          <dt>Status</dt>
          <dd>
            <StatusBadge status={c.status} phase={c.phase} /> {PHASE_NAMES[c.phase] ?? c.phase}
            {c.kind !== 'scheduled' && ` · ${KIND_NAMES[c.kind] ?? c.kind}`}
          </dd>
          <dt>Participants</dt>
          <dd>
            {c.participants} in it now{c.maxParticipants ? `, at most ${c.maxParticipants}` : ', no limit'}
          </dd>
          <dt>Joining</dt>
          <dd>{c.allowJoinWithoutOwner ? 'Open even when the owner is absent' : 'People wait until the owner is in'}</dd>
          <dt>Media</dt>
          <dd>{c.media === 'audioOnly' ? 'Audio only' : 'Audio and video'}</dd>
          <dt>Invitees</dt>
          <dd>{c.invitees.length ? c.invitees.join(', ') : 'Nobody yet'}</dd>
        </dl>
      </div>
      {c.kind !== 'permanent' && <Invitations conference={c} onInvited={props.reload} />}
      <DeleteDialog
        open={deleting}
        target={{ id: c.id, topic: c.topic, invitees: c.invitees.length, archived: false }}
        onCancel={() => setDeleting(false)}
        onDeleted={() => {
          flash(`“${c.topic}” was deleted.`);
          navigate('/');
        }}
      />
    </>
  );
}

/** The join link with a copy button (the text stays selectable when the clipboard is refused). */
/** How to join by phone: the number and the SIP address with the keys to type, and a SIP link
 * that skips the gateway's questions. */
function DialInFacts(props: { dialIn: DialIn }) {
  const d = props.dialIn;
  const keys = d.passwordKeys
    ? `then type the meeting ID ${d.meetingIdKeys} and then the password ${d.passwordKeys}`
    : `then type the meeting ID ${d.meetingIdKeys}`;
  return (
    <>
      {d.number && (
        <>
          <dt>Dial in</dt>
          <dd data-testid="dial-in-number">
            <a href={`tel:${d.number.replace(/[^+\d]/g, '')}`}>{d.number}</a>, {keys}
          </dd>
        </>
      )}
      {d.sipAddress && (
        <>
          <dt>Dial in by SIP</dt>
          <dd data-testid="dial-in-sip">
            {d.sipAddress}, {keys}
          </dd>
        </>
      )}
      {d.sipUri && (
        <>
          <dt>SIP link</dt>
          <dd>
            <a href={d.sipUri} data-testid="dial-in-sip-link">
              {d.sipUri}
            </a>
          </dd>
        </>
      )}
    </>
  );
}

function CopyLink(props: { url: string }) {
  const [copied, setCopied] = useState<string>();
  async function copy() {
    try {
      await navigator.clipboard.writeText(props.url);
      setCopied('Link copied.');
    } catch {
      const input = document.getElementById('join-link') as HTMLInputElement | null;
      input?.select();
      setCopied('Copying was refused by the browser; the link is selected, press Ctrl+C.');
    }
  }
  return (
    <div class="copy-link">
      <input id="join-link" aria-label="Join link" readOnly value={props.url} onFocus={(e) => e.currentTarget.select()} />
      <button type="button" onClick={copy}>
        Copy link
      </button>
      <Notice text={copied} onDone={() => setCopied(undefined)} />
    </div>
  );
}

const LOG_KIND: Record<string, string> = { invitation: 'Invitation', update: 'Update', cancellation: 'Cancellation', notice: 'Notice' };
const LOG_STATUS: Record<string, string> = { pending: 'Pending', sent: 'Sent', written: 'Written to outbox', failed: 'Failed' };

function Invitations(props: { conference: Conference; onInvited: () => void }) {
  const c = props.conference;
  const log = useLoad(() => api.get<InvitationLogEntry[]>(`/conferences/${seg(c.id)}/invitations`), [c.id, c.sequence]);
  const [text, setText] = useState('');
  const [error, setError] = useState<string>();
  const [formError, setFormError] = useState<string>();
  const [done, setDone] = useState<string>();
  const [busy, setBusy] = useState(false);

  async function send(e: Event) {
    e.preventDefault();
    setDone(undefined);
    setFormError(undefined);
    const parsed = parseInvitees(text);
    const problem = parsed.addresses.length || parsed.invalid.length ? inviteesError(parsed) : 'Enter at least one e-mail address.';
    setError(problem);
    if (problem) {
      document.getElementById('invite-emails')?.focus();
      return;
    }
    setBusy(true);
    try {
      const answer = await api.post<InvitationsQueued>(`/conferences/${seg(c.id)}/invitations`, { emails: parsed.addresses });
      setText('');
      setDone(`Invitation queued for ${answer.queued} ${answer.queued === 1 ? 'address' : 'addresses'}${deliveryText(answer)}.`);
      log.reload();
      props.onInvited();
    } catch (err) {
      if (err instanceof ApiError && err.field === 'emails') setError(sentence(err.message));
      else setFormError(err instanceof Error ? sentence(err.message) : String(err));
    } finally {
      setBusy(false);
    }
  }

  const entries = log.data ?? [];
  return (
    <section class="invitations" aria-labelledby="invite-title">
      <h2 id="invite-title">Send invitation e-mail</h2>
      <form class="panel" onSubmit={send} noValidate>
        <FormError error={formError} />
        <Field id="invite-emails" label="E-mail addresses" error={error} hint="One per line or separated by commas. Each gets the details and a calendar event.">
          <textarea {...fieldIds('invite-emails', error, true)} rows={3} value={text} onInput={(e) => {
              setText(e.currentTarget.value);
              setError(undefined);
            }}
          />
        </Field>
        <div>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? 'Sending…' : 'Send invitation'}
          </button>
        </div>
        <Notice text={done} />
      </form>
      <h2 id="log-title">Invitation log</h2>
      <LoadState loading={log.loading && !log.data} error={log.error} />
      {log.data && !entries.length && <p class="empty">No invitations sent yet.</p>}
      {entries.length > 0 && (
        <table class="responsive invitation-log" aria-labelledby="log-title">
          <thead>
            <tr>
              <th scope="col">Recipient</th>
              <th scope="col">Kind</th>
              <th scope="col">Version</th>
              <th scope="col">Status</th>
              <th scope="col">Queued</th>
              <th scope="col">Delivered</th>
            </tr>
          </thead>
          <tbody>
            {entries.map((entry, i) => (
              <tr key={i}>
                <td data-label="Recipient">{entry.recipient}</td>
                <td data-label="Kind">{LOG_KIND[entry.kind] ?? entry.kind}</td>
                <td data-label="Version">{entry.sequence ?? '—'}</td>
                <td data-label="Status">
                  {LOG_STATUS[entry.status] ?? entry.status}
                  {entry.attempts > 1 ? ` (${entry.attempts} attempts)` : ''}
                  {entry.lastError && <span class="log-error"> — {entry.lastError}</span>}
                </td>
                <td data-label="Queued">{formatMoment(entry.createdAt, c.timeZone)}</td>
                <td data-label="Delivered">{entry.deliveredAt ? formatMoment(entry.deliveredAt, c.timeZone) : entry.nextAttemptAt ? `next try ${formatMoment(entry.nextAttemptAt, c.timeZone)}` : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** What the delete dialog deletes. */
export interface DeleteTarget {
  id: string;
  topic: string;
  /** Invitees who could be told (0 hides the choice). */
  invitees: number;
  archived: boolean;
}

/** Confirms a delete; a scheduled conference with invitees may send them a cancellation. */
export function DeleteDialog(props: { open: boolean; target?: DeleteTarget; onCancel: () => void; onDeleted: () => void }) {
  const [notify, setNotify] = useState(true);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const t = props.target;
  async function confirm() {
    if (!t || busy) return;
    setBusy(true);
    setError(undefined);
    try {
      const query = !t.archived && t.invitees > 0 && notify ? '?notify=true' : '';
      await api.del(`/conferences/${seg(t.id)}${query}`);
      setBusy(false);
      props.onDeleted();
    } catch (err) {
      setBusy(false);
      setError(err instanceof Error ? sentence(err.message) : String(err));
    }
  }
  return (
    <ConfirmDialog
      open={props.open}
      title={t?.archived ? 'Delete this archive entry?' : 'Delete this conference?'}
      confirmLabel={busy ? 'Deleting…' : 'Delete'}
      danger
      onConfirm={confirm}
      onCancel={() => {
        setError(undefined);
        props.onCancel();
      }}
    >
      <p>
        “{t?.topic}” {t?.archived ? 'and its attendance will be removed from the archive.' : 'will be deleted, with all its occurrences. Its meeting ID becomes free.'}
      </p>
      {t && !t.archived && t.invitees > 0 && (
        <div class="field inline">
          <input id="delete-notify" type="checkbox" checked={notify} onChange={(e) => setNotify(e.currentTarget.checked)} />
          <label for="delete-notify">
            Notify invitees ({t.invitees}) with a cancellation
          </label>
        </div>
      )}
      <FormError error={error} />
    </ConfirmDialog>
  );
}

/** The attendance of a past occurrence. */
export function Attendance(props: { entry: ArchiveEntry; headingId: string }) {
  const e = props.entry;
  if (!e.attendance.length) return <p class="empty">Nobody joined.</p>;
  return (
    <table class="responsive attendance" aria-labelledby={props.headingId}>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Kind</th>
          <th scope="col">Joined</th>
          <th scope="col">Left</th>
          <th scope="col">Minutes</th>
        </tr>
      </thead>
      <tbody>
        {e.attendance.map((a, i) => (
          <tr key={i}>
            <td data-label="Name">{a.displayName}</td>
            <td data-label="Kind">{a.via === 'phone' ? 'Phone' : a.kind === 'account' ? 'Account' : 'Guest'}</td>
            <td data-label="Joined">{formatMoment(a.joinedAt, e.timeZone)}</td>
            <td data-label="Left">{a.leftAt ? formatMoment(a.leftAt, e.timeZone) : 'until the end'}</td>
            <td data-label="Minutes">{a.minutes}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const RECORDING_STATES: Record<string, string> = {
  recording: 'still recording',
  stopped: 'waiting to be prepared',
  composing: 'being prepared',
  failed: 'could not be prepared',
};

/** Bytes in words: "12.3 MB". */
export function formatSize(bytes: number): string {
  if (bytes < 1e6) return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
  if (bytes < 1e9) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e9).toFixed(2)} GB`;
}

/** Seconds in words: "1:02:03" or "4:05". */
export function formatLength(seconds: number): string {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/** The recordings of a past occurrence: play (seekable), the chat as captions, download, delete. */
export function Recordings(props: { recordings: RecordingInfo[]; timeZone: string; onChange: () => void }) {
  const [error, setError] = useState<unknown>();
  const [busy, setBusy] = useState<string>();
  if (!props.recordings.length) return null;
  const remove = async (r: RecordingInfo) => {
    if (!window.confirm(`Delete the recording started by ${r.startedBy.displayName}? This cannot be undone.`)) return;
    setBusy(r.id);
    setError(undefined);
    try {
      await api.del(`/recordings/${seg(r.id)}`);
      props.onChange();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(undefined);
    }
  };
  return (
    <ul class="recordings">
      {props.recordings.map((r) => (
        <li key={r.id} class="recording" data-recording={r.id}>
          <p class="recording-facts">
            Recorded {formatMoment(r.startedAt, props.timeZone)} by {r.startedBy.displayName}
            {r.durationSeconds != null && <> · {formatLength(r.durationSeconds)}</>}
            {r.sizeBytes != null && <> · {formatSize(r.sizeBytes)}</>}
            {r.state !== 'ready' && <> · {RECORDING_STATES[r.state] ?? r.state}</>}
          </p>
          {r.state === 'failed' && r.error && <p class="error">{r.error}</p>}
          {r.mediaUrl && (
            <video controls preload="metadata" src={r.mediaUrl} aria-label={`Recording started by ${r.startedBy.displayName}`}>
              {r.chatUrl && <track kind="captions" src={r.chatUrl} srclang="en" label="Chat" />}
            </video>
          )}
          <div class="actions">
            {r.downloadUrl && (
              <a class="button" href={r.downloadUrl} download>
                Download
              </a>
            )}
            {r.state !== 'recording' && r.state !== 'composing' && (
              <button type="button" class="danger" disabled={busy === r.id} onClick={() => remove(r)}>
                Delete recording
              </button>
            )}
          </div>
        </li>
      ))}
      <FormError error={error} />
    </ul>
  );
}

/** The facts of a past occurrence. */
export function ArchiveFacts(props: { entry: ArchiveEntry }) {
  const e = props.entry;
  return (
    <dl class="facts">
      <dt>When</dt>
      <dd>{formatSpan(e.start, e.end, e.timeZone)}</dd>
      <dt>Length</dt>
      <dd>{e.durationMinutes} minutes</dd>
      {e.recurrence && (
        <>
          <dt>Repeated</dt>
          <dd>{describeRule(e.recurrence, e.timeZone, splitInstant(e.start, e.timeZone).date)}</dd>
        </>
      )}
      <dt>Meeting ID</dt>
      <dd>{e.meetingId}</dd>
      <dt>Owner</dt>
      <dd>{e.owner.displayName || e.owner.login || 'Unknown account'}</dd>
      <dt>Attendance</dt>
      <dd>
        {e.attendance.length} {e.attendance.length === 1 ? 'person' : 'people'}
      </dd>
    </dl>
  );
}

function ArchivedInfo(props: { entry: ArchiveEntry; onChange: () => void }) {
  const e = props.entry;
  const [deleting, setDeleting] = useState(false);
  return (
    <>
      <h1 class="topic">{e.topic}</h1>
      <p class="lead">This conference is over; it is in the archive.</p>
      <div class="actions top-actions">
        <Link href={`/schedule?repeat=${seg(e.id)}`} class="button primary">
          Repeat
        </Link>
        <button type="button" class="danger" onClick={() => setDeleting(true)}>
          Delete
        </button>
      </div>
      <div class="panel">
        <ArchiveFacts entry={e} />
      </div>
      <h2 id="attendance-title">Attendance</h2>
      <Attendance entry={e} headingId="attendance-title" />
      {e.recordings.length > 0 && <h2>Recordings</h2>}
      <Recordings recordings={e.recordings} timeZone={e.timeZone} onChange={props.onChange} />
      <DeleteDialog
        open={deleting}
        target={{ id: e.id, topic: e.topic, invitees: 0, archived: true }}
        onCancel={() => setDeleting(false)}
        onDeleted={() => {
          flash(`“${e.topic}” was removed from the archive.`);
          navigate('/archive');
        }}
      />
    </>
  );
}
