// The archive: past occurrences, newest first, each with its facts and who attended; repeat
// (the scheduling form, prefilled) and delete.
import { useState } from 'preact/hooks';
import { api, seg, type AnyConference, type ArchiveEntry } from '../api';
import { useSession, isAdmin } from '../session';
import { Link, LoadState, Notice, useLoad, useTitle } from '../ui';
import { takeFlash } from '../logic/flash';
import { ArchiveFacts, Attendance, DeleteDialog, Recordings, type DeleteTarget } from './info';
import './pages.css';

export function ArchivePage(_props: Record<string, unknown>) {
  useTitle('Archive');
  const { me } = useSession();
  const [all, setAll] = useState(false);
  const [message, setMessage] = useState<string | undefined>(takeFlash);
  const [deleting, setDeleting] = useState<DeleteTarget>();
  const loaded = useLoad(() => api.get<AnyConference[]>(`/conferences?view=archive${all ? '&all=true' : ''}`), [all]);
  const entries = (loaded.data ?? []).filter((e): e is ArchiveEntry => e.archived);

  return (
    <section class="page archive-page">
      <h1>Archive</h1>
      <p class="lead">Conferences that are over, with who attended. Repeat one to schedule it again with the same settings.</p>
      {isAdmin(me) && (
        <div class="field inline">
          <input id="archive-all" type="checkbox" checked={all} onChange={(e) => setAll(e.currentTarget.checked)} />
          <label for="archive-all">Show everyone’s past conferences</label>
        </div>
      )}
      <Notice text={message} onDone={() => setMessage(undefined)} />
      <LoadState loading={loaded.loading && !loaded.data} error={loaded.error} />
      {loaded.data && entries.length === 0 && (
        <div class="panel empty">
          <p>No past conferences yet. Conferences appear here once they are over.</p>
        </div>
      )}
      <ul class="archive-list">
        {entries.map((e) => (
          <li key={e.id} class="panel archive-entry">
            <h2 id={`archive-${e.id}`}>{e.topic}</h2>
            <ArchiveFacts entry={e} />
            <h3 id={`attendance-${e.id}`}>Attendance</h3>
            <Attendance entry={e} headingId={`attendance-${e.id}`} />
            {e.recordings.length > 0 && <h3>Recordings</h3>}
            <Recordings recordings={e.recordings} timeZone={e.timeZone} onChange={loaded.reload} />
            <div class="actions">
              <Link href={`/schedule?repeat=${seg(e.id)}`} class="button primary">
                Repeat<span class="sr-only"> {e.topic}</span>
              </Link>
              <button type="button" class="danger" onClick={() => setDeleting({ id: e.id, topic: e.topic, invitees: 0, archived: true })}>
                Delete<span class="sr-only"> {e.topic}</span>
              </button>
            </div>
          </li>
        ))}
      </ul>
      <DeleteDialog
        open={!!deleting}
        target={deleting}
        onCancel={() => setDeleting(undefined)}
        onDeleted={() => {
          setMessage(`“${deleting?.topic}” was removed from the archive.`);
          setDeleting(undefined);
          loaded.reload();
        }}
      />
    </section>
  );
}
