// The stage: the presentation's current page next to the video tiles, the presenter's
// controls (buttons and keys), and the upload button for speakers.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { RoomState } from './room';
import { acceptAttribute, checkFile, fetchPage, isTyping, pageForKey, stageOf, uploadPresentation, type Accepted } from './presentation';
import type { MeetingSession } from './session';

/** The current page, fetched with the view ticket; the next page is fetched ahead. */
export function StageView(props: { room: RoomState; session: MeetingSession | null }) {
  const { room, session } = props;
  const stage = stageOf(room);
  const ticket = room.viewTicket?.ticket ?? null;
  const cache = useRef(new Map<string, Promise<string>>());
  // The image shown and the page it is (the previous page stays until the next one arrived).
  const [src, setSrc] = useState<{ url: string; page: number } | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [handOver, setHandOver] = useState('');
  const id = stage?.shown.id;
  const page = stage?.shown.page;
  const pages = stage?.shown.pages;

  useEffect(() => {
    if (!id || !page || !ticket) return;
    let current = true;
    const load = (n: number) => {
      const key = `${id}/${n}`;
      let entry = cache.current.get(key);
      if (!entry) {
        entry = fetchPage(id, n, ticket);
        // A failed page is asked for again next time.
        entry.catch(() => cache.current.delete(key));
        cache.current.set(key, entry);
      }
      return entry;
    };
    load(page).then(
      (url) => {
        if (current) {
          setSrc({ url, page });
          setProblem(null);
        }
      },
      () => current && setProblem('This page could not be loaded.'),
    );
    if (pages && page < pages) void load(page + 1).catch(() => undefined);
    return () => {
      current = false;
    };
  }, [id, page, ticket]);

  // A presentation that is gone takes its pages with it.
  useEffect(() => {
    if (id) return;
    for (const entry of cache.current.values()) void entry.then((url) => URL.revokeObjectURL(url)).catch(() => undefined);
    cache.current.clear();
    setSrc(null);
  }, [id]);

  // The page the presenter's keys asked for last, until the room shows a page: a key pressed
  // before the room's answer to the one before goes on from there, not from the page shown.
  const asked = useRef<number | null>(null);
  useEffect(() => {
    asked.current = null;
  }, [stage?.shown.page]);

  // The presenter turns pages with the arrow keys and PageUp/PageDown (not while typing).
  useEffect(() => {
    if (!stage?.presenting) return;
    const onKey = (e: KeyboardEvent) => {
      if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || isTyping(e.target)) return;
      const next = pageForKey(e.key, { ...stage.shown, page: asked.current ?? stage.shown.page });
      if (next === null) return;
      e.preventDefault();
      asked.current = next;
      session?.setPresentationPage(next);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [stage?.presenting, stage?.shown.page, stage?.shown.pages, session]);

  if (!stage) return null;
  const { shown } = stage;
  return (
    <section class="stage" aria-label={`Presentation ${shown.title}`} data-presentation={shown.id} data-page={shown.page}>
      <div class="stage-page">
        {src ? <img src={src.url} alt={`${shown.title}, page ${src.page} of ${shown.pages}`} data-page={src.page} /> : <p class="stage-loading">{problem ?? 'Loading the page…'}</p>}
      </div>
      <div class="stage-bar">
        <span class="stage-title">
          {shown.title} · {stage.presenting ? 'you present' : `${stage.presenterName} presents`}
        </span>
        {stage.presenting && (
          <button type="button" class="small" aria-label="Previous page" disabled={shown.page <= 1} onClick={() => session?.setPresentationPage(shown.page - 1)}>
            ‹ Previous
          </button>
        )}
        <span class="stage-count" aria-live="polite">
          Page {shown.page} of {shown.pages}
        </span>
        {stage.presenting && (
          <button type="button" class="small" aria-label="Next page" disabled={shown.page >= shown.pages} onClick={() => session?.setPresentationPage(shown.page + 1)}>
            Next ›
          </button>
        )}
        {stage.canHandOver && (
          <form
            class="stage-handover"
            onSubmit={(e) => {
              e.preventDefault();
              if (handOver) session?.handOverPresentation(handOver);
              setHandOver('');
            }}
          >
            <label>
              <span class="visually-hidden">Hand the presentation to</span>
              <select value={handOver} onChange={(e) => setHandOver((e.target as HTMLSelectElement).value)}>
                <option value="">Hand over to…</option>
                {stage.candidates.map((p) => (
                  <option key={p.id} value={p.id}>
                    {p.displayName}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit" class="small" disabled={!handOver}>
              Hand over
            </button>
          </form>
        )}
        {stage.canStop && (
          <button type="button" class="small danger-outline" onClick={() => session?.stopPresentation()}>
            Stop presenting
          </button>
        )}
      </div>
    </section>
  );
}

/** The "Present" button: pick a file, get an upload ticket from the SFU, upload, show. */
export function PresentButton(props: { session: MeetingSession | null; onProblem: (message: string | null) => void }) {
  const [accepted, setAccepted] = useState<Accepted | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const input = useRef<HTMLInputElement>(null);

  useEffect(() => {
    fetch('/api/v1/presentations/accepted')
      .then((r) => (r.ok ? (r.json() as Promise<Accepted>) : null))
      .then(setAccepted, () => setAccepted(null));
  }, []);

  async function present(file: File) {
    const session = props.session;
    if (!session) return;
    const early = checkFile(file, accepted);
    if (early) {
      props.onProblem(early);
      return;
    }
    props.onProblem(null);
    try {
      setBusy('Preparing…');
      const ticket = await session.requestUploadTicket();
      setBusy('Uploading and converting…');
      const uploaded = await uploadPresentation(file, ticket);
      session.showPresentation(uploaded.descriptor);
    } catch (error) {
      props.onProblem(error instanceof Error ? error.message : String(error));
    } finally {
      setBusy(null);
    }
  }

  return (
    <>
      <button type="button" class="control" aria-describedby="present-formats" disabled={!!busy} onClick={() => input.current?.click()}>
        {busy ?? 'Present a file'}
      </button>
      <span class="visually-hidden" id="present-formats">
        {accepted ? accepted.formats : 'PDF'}
      </span>
      <input
        ref={input}
        type="file"
        class="visually-hidden"
        aria-label="Presentation file"
        data-testid="presentation-file"
        tabIndex={-1}
        accept={acceptAttribute(accepted)}
        onChange={(e) => {
          const target = e.target as HTMLInputElement;
          const file = target.files?.[0];
          target.value = '';
          if (file) void present(file);
        }}
      />
      {accepted && !accepted.office && <span class="control-hint">PDF only on this server</span>}
    </>
  );
}
