// My conferences: the log of scheduled and running conferences, next first, with join, info,
// edit and delete. Administrators may list everyone's. On phones the table becomes cards.
import { useState } from 'preact/hooks';
import { api, seg, type AnyConference, type Conference } from '../api';
import { useSession, isAdmin } from '../session';
import { Link, LoadState, Notice, useLoad, useTitle } from '../ui';
import { takeFlash } from '../logic/flash';
import { describeRule } from '../logic/recurrence';
import { formatDate, formatTime, formatZone, splitInstant } from '../logic/time';
import { DeleteDialog, shownTimes, StatusBadge, type DeleteTarget } from './info';
import './pages.css';

export function ConferencesPage(_props: Record<string, unknown>) {
  useTitle('My conferences');
  const { me } = useSession();
  const admin = isAdmin(me);
  const [all, setAll] = useState(false);
  const [message, setMessage] = useState<string | undefined>(takeFlash);
  const [deleting, setDeleting] = useState<DeleteTarget>();
  const loaded = useLoad(() => api.get<AnyConference[]>(`/conferences?view=scheduled${all ? '&all=true' : ''}`), [all]);
  const conferences = (loaded.data ?? []).filter((c): c is Conference => !c.archived);

  return (
    <section class="page conferences-page">
      <div class="page-head">
        <h1>{all ? 'All conferences' : 'My conferences'}</h1>
        <div class="actions">
          <Link href="/schedule" class="button primary">
            Schedule a conference
          </Link>
        </div>
      </div>
      {admin && (
        <div class="field inline">
          <input id="show-all" type="checkbox" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} />
          <label for="show-all">Show everyone’s conferences</label>
        </div>
      )}
      <Notice text={message} onDone={() => setMessage(undefined)} />
      <LoadState loading={loaded.loading && !loaded.data} error={loaded.error} />
      {loaded.data && conferences.length === 0 && (
        <div class="panel empty">
          <p>{all ? 'Nobody has a conference scheduled.' : 'You have no conferences scheduled.'}</p>
          <p>
            <Link href="/schedule">Schedule one</Link>, or start one right away from the same page.
          </p>
        </div>
      )}
      {conferences.length > 0 && (
        <table class="responsive conference-log" aria-label={all ? 'All conferences' : 'My conferences'}>
          <thead>
            <tr>
              <th scope="col">Date</th>
              <th scope="col">Start</th>
              <th scope="col">End</th>
              <th scope="col">Topic</th>
              {all && <th scope="col">Owner</th>}
              <th scope="col">Status</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {conferences.map((c) => (
              <LogRow
                key={c.id}
                conference={c}
                showOwner={all}
                onDelete={() => setDeleting({ id: c.id, topic: c.topic, invitees: c.invitees.length, archived: false })}
              />
            ))}
          </tbody>
        </table>
      )}
      <DeleteDialog
        open={!!deleting}
        target={deleting}
        onCancel={() => setDeleting(undefined)}
        onDeleted={() => {
          setMessage(`“${deleting?.topic}” was deleted.`);
          setDeleting(undefined);
          loaded.reload();
        }}
      />
    </section>
  );
}

function LogRow(props: { conference: Conference; showOwner: boolean; onDelete: () => void }) {
  const c = props.conference;
  const tz = c.timeZone;
  const times = shownTimes(c);
  return (
    <tr>
      <td data-label="Date">
        {times ? formatDate(times.start, tz) : 'Always available'}
        {times && <span class="sub">{formatZone(times.start, tz)}</span>}
        {c.recurrence && c.start && <span class="sub">{describeRule(c.recurrence, tz, splitInstant(c.start, tz).date)}</span>}
      </td>
      <td data-label="Start">{times ? formatTime(times.start, tz) : '—'}</td>
      <td data-label="End">{times ? formatTime(times.end, tz) : '—'}</td>
      <td data-label="Topic" class="topic-cell">
        <Link href={`/conferences/${seg(c.id)}`}>{c.topic}</Link>
      </td>
      {props.showOwner && <td data-label="Owner">{c.owner.displayName || c.owner.login}</td>}
      <td data-label="Status">
        <StatusBadge status={c.status} phase={c.phase} />
      </td>
      <td class="row-actions">
        <Link href={`/join/${seg(c.meetingId)}`} class="button small primary">
          Join<span class="sr-only"> {c.topic}</span>
        </Link>
        <Link href={`/conferences/${seg(c.id)}`} class="button small">
          Info<span class="sr-only"> about {c.topic}</span>
        </Link>
        <Link href={`/conferences/${seg(c.id)}/edit`} class="button small">
          Edit<span class="sr-only"> {c.topic}</span>
        </Link>
        <button type="button" class="small danger" onClick={props.onDelete}>
          Delete<span class="sr-only"> {c.topic}</span>
        </button>
      </td>
    </tr>
  );
}
