// The meeting: the video grid, the controls, and the side panels (participants, chat, meeting
// info). State comes from the pure room reducer; the MeetingSession does the networking.
import { useEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import type { ApiError, JoinResponse } from '../api';
import type { ParticipantId, TrackId } from '../generated/signal';
import { ConfirmDialog, Link, useTitle } from '../ui';
import { inviteLink } from './joining';
import { useDevices, useLevel } from './media';
import { chatLines, initialRoom, isSpeaking, layout, moderation, participantList, reduce, remoteTracks, roleName, tiles, type RoomState, type Tile } from './room';
import { MeetingSession, type LocalMedia } from './session';
import { AudioSink, DeviceSelect, LevelMeter, SpeakerChoice, VideoView } from './views';
import { measureGrid, watchTiles } from './tiles';
import { PresentButton, StageView } from './Stage';
import './meeting.css';

type Panel = 'participants' | 'chat' | 'info' | 'devices' | null;

const PANEL_TITLES = { participants: 'Participants', chat: 'Chat', info: 'Meeting info', devices: 'Devices' } as const;

declare global {
  interface Window {
    /** The meeting's session and state, for the end-to-end tests (web/e2e). */
    __conclave?: { session: MeetingSession; state: () => RoomState };
  }
}

export function Meeting(props: {
  ticket: JoinResponse;
  local: LocalMedia;
  /** Asks POST /join again with the same credentials (naming the SFU pod just lost, if any). */
  rejoin: (lostPod?: string) => Promise<JoinResponse>;
  /** The meeting password when known (typed by a guest, or the owner's conference). */
  password: string | null;
  loggedIn: boolean;
  /** Back to the join page ("Join again"). */
  onAgain: () => void;
}) {
  const { ticket } = props;
  useTitle(ticket.conference.topic);
  const [room, dispatch] = useReducer(reduce, undefined, initialRoom);
  const [remote, setRemote] = useState<Map<TrackId, MediaStreamTrack>>(new Map());
  const [local, setLocal] = useState<LocalMedia>(props.local);
  const [panel, setPanel] = useState<Panel>(null);
  const [gaveUp, setGaveUp] = useState<ApiError | null>(null);
  const [confirmEnd, setConfirmEnd] = useState(false);
  const [confirmLeave, setConfirmLeave] = useState(false);
  // The chat's recipient lives here so that "Message" in the participant list can set it.
  const [chatTo, setChatTo] = useState<ParticipantId | ''>('');
  // The audio output for everyone's voices (undefined: the system's default, left alone).
  const [speaker, setSpeaker] = useState<string>();
  const [speakerProblem, setSpeakerProblem] = useState<string | null>(null);
  const [presentProblem, setPresentProblem] = useState<string | null>(null);
  const session = useRef<MeetingSession | null>(null);
  const roomRef = useRef(room);
  roomRef.current = room;
  const audioOnly = ticket.conference.media === 'audioOnly';
  const meetingRoot = useRef<HTMLDivElement>(null);

  // How we show the video we receive decides which simulcast layer the SFU sends us.
  useEffect(() => {
    const root = meetingRoot.current;
    if (!root) return;
    return watchTiles(root, (views) => session.current?.viewTracks(views));
  }, []);

  useEffect(() => {
    const s = new MeetingSession({
      ticket,
      rejoin: props.rejoin,
      dispatch,
      onRemoteTracks: (tracks) => setRemote(new Map(tracks)),
      onLocal: setLocal,
      onGiveUp: setGaveUp,
      local: props.local,
      audioOnly,
    });
    session.current = s;
    window.__conclave = { session: s, state: () => roomRef.current };
    s.start();
    const leaveOnUnload = () => s.destroy();
    window.addEventListener('pagehide', leaveOnUnload);
    return () => {
      window.removeEventListener('pagehide', leaveOnUnload);
      s.destroy();
      session.current = null;
      if (window.__conclave?.session === s) delete window.__conclave;
    };
  }, []);

  function openPanel(next: Panel) {
    const value = panel === next ? null : next;
    setPanel(value);
    dispatch({ kind: 'chatOpen', open: value === 'chat' });
  }

  // Keyboard users land in the panel they opened (the chat's message box, otherwise its
  // heading); Escape closes it and returns them to its button.
  const panelHeading = useRef<HTMLHeadingElement>(null);
  const lastPanel = useRef<Panel>(null);
  useEffect(() => {
    if (panel && panel !== lastPanel.current) {
      const target = panel === 'chat' ? document.getElementById('chat-text') : panelHeading.current;
      target?.focus();
    } else if (!panel && lastPanel.current) {
      document.querySelector<HTMLElement>(`[data-panel="${lastPanel.current}"]`)?.focus();
    }
    lastPanel.current = panel;
  }, [panel]);

  function openChatTo(id: ParticipantId) {
    setChatTo(id);
    setPanel('chat');
    dispatch({ kind: 'chatOpen', open: true });
  }

  const grid = useMemo(() => tiles(room), [room]);
  // The grid shows as many tiles as fit without scrolling: the last speakers first when that
  // is not everyone (the others get no video from the SFU; `watchTiles` tells it).
  const gridRef = useRef<HTMLElement>(null);
  const [capacity, setCapacity] = useState(Number.POSITIVE_INFINITY);
  const presenting = room.presentation !== null;
  const screens = grid.filter((tile) => tile.kind === 'screen').length;
  useEffect(() => {
    const element = gridRef.current;
    // The strip beside a presentation scrolls; the tiles out of view get no video.
    if (!element || presenting) {
      setCapacity(Number.POSITIVE_INFINITY);
      return;
    }
    const measure = () => setCapacity(measureGrid(element));
    measure();
    const resizes = new ResizeObserver(measure);
    resizes.observe(element);
    return () => resizes.disconnect();
  }, [presenting, room.phase, screens]);
  const { shown, more } = useMemo(() => layout(grid, room.spoke, capacity), [grid, room.spoke, capacity]);
  const shownKeys = useMemo(() => new Set(shown.map((tile) => tile.key)), [shown]);
  const audioTracks = useMemo(
    () =>
      remoteTracks(room)
        .filter((t) => t.kind === 'audio' && remote.has(t.id))
        .map((t) => ({ id: t.id, track: remote.get(t.id)! })),
    [room, remote],
  );

  if (gaveUp || room.phase === 'closed') {
    return <Ended room={room} gaveUp={gaveUp} loggedIn={props.loggedIn} meetingId={ticket.conference.meetingId} onAgain={props.onAgain} />;
  }

  const s = session.current;
  const grants = room.grants;
  const admitted = room.phase === 'joined' || room.phase === 'reconnecting';
  const blockedBy = room.microphoneBlockedBy ? (room.participants[room.microphoneBlockedBy]?.displayName ?? 'a moderator') : null;

  return (
    <div class={`meeting${panel ? ' with-panel' : ''}`} ref={meetingRoot}>
      <header class="meeting-top">
        <h1>{ticket.conference.topic}</h1>
        {room.recording && (
          <span class="badge recording" title="This meeting is being recorded">
            Recording
          </span>
        )}
        <p class="meeting-status visually-hidden" role="status" aria-live="polite">
          {room.phase === 'connecting' && 'Connecting…'}
          {room.phase === 'reconnecting' && 'Reconnecting…'}
        </p>
      </header>

      {room.phase === 'waiting' ? (
        <section class="meeting-waiting" aria-labelledby="waiting-title">
          <h2 id="waiting-title">Waiting for the host</h2>
          <p>The meeting starts when its owner arrives. You will be let in automatically.</p>
          {local.camera && (
            <div class="waiting-self">
              <VideoView track={local.camera} mirror label="Your camera" placeholder={ticket.displayName} />
            </div>
          )}
        </section>
      ) : room.presentation ? (
        <div class="stage-layout">
          <StageView room={room} session={s} />
          <section class="grid strip" aria-label="Participants' videos" data-count={grid.length}>
            {grid.map((tile) => (
              <TileView key={tile.key} tile={tile} local={local} remote={remote} />
            ))}
          </section>
        </div>
      ) : (
        <section class="grid" ref={gridRef} aria-label="Participants' videos" data-count={shown.length + (more.length > 0 ? 1 : 0)}>
          {grid.map((tile) => (
            <TileView key={tile.key} tile={tile} local={local} remote={remote} hidden={!shownKeys.has(tile.key)} />
          ))}
          {more.length > 0 && (
            <button
              type="button"
              class="tile more-tiles"
              aria-label={`${more.length} more ${more.length === 1 ? 'participant' : 'participants'}: show the list`}
              onClick={() => panel !== 'participants' && openPanel('participants')}
            >
              <span class="more-count">+{more.length}</span>
              <span class="more-names">{more.slice(0, 3).map((tile) => (tile.isYou ? 'you' : tile.participant.displayName)).join(', ')}{more.length > 3 ? ', …' : ''}</span>
            </button>
          )}
        </section>
      )}

      {(room.phase === 'reconnecting' || room.phase === 'connecting') && (
        <div class="reconnecting" aria-hidden="true">
          {room.phase === 'connecting' ? 'Connecting…' : 'Reconnecting…'}
        </div>
      )}

      {audioTracks.map((a) => (
        <AudioSink key={a.id} track={a.track} sinkId={speaker} onSinkProblem={setSpeakerProblem} />
      ))}

      {panel && (
        <aside
          class="panel-side"
          aria-label={PANEL_TITLES[panel]}
          onKeyDown={(e) => {
            if (e.key === 'Escape' && !(e.target as HTMLElement).closest('dialog')) openPanel(null);
          }}
        >
          <div class="panel-head">
            <h2 tabIndex={-1} ref={panelHeading}>
              {panel === 'participants' ? `Participants (${room.order.length})` : PANEL_TITLES[panel]}
            </h2>
            <button type="button" class="icon" aria-label="Close panel" onClick={() => openPanel(null)}>
              ✕
            </button>
          </div>
          {panel === 'participants' && <Participants room={room} session={s} onMessage={(id) => openChatTo(id)} />}
          {panel === 'chat' && <Chat room={room} session={s} to={chatTo} setTo={setChatTo} />}
          {panel === 'info' && <Info ticket={ticket} password={props.password} />}
          {panel === 'devices' && (
            <DevicesPanel
              local={local}
              session={s}
              audioOnly={audioOnly}
              speaker={speaker}
              speakerProblem={speakerProblem}
              onSpeaker={(id) => {
                setSpeakerProblem(null);
                setSpeaker(id);
              }}
            />
          )}
        </aside>
      )}

      {/* Chat from others is announced while the chat panel is closed too. */}
      <ChatAnnouncer room={room} />

      {room.recordingNotice && (
        <div class="toast recording-notice" role="status" aria-live="polite">
          <span>{room.recordingNotice}</span>
          <button type="button" class="icon" aria-label="Dismiss" onClick={() => dispatch({ kind: 'dismissRecordingNotice' })}>
            ✕
          </button>
        </div>
      )}
      {room.notice && (
        <div class="toast" role="alert">
          <span>{room.notice.message}</span>
          <button type="button" class="icon" aria-label="Dismiss" onClick={() => dispatch({ kind: 'dismissNotice' })}>
            ✕
          </button>
        </div>
      )}
      {presentProblem && (
        <div class="toast" role="alert" data-testid="present-problem">
          <span>{presentProblem}</span>
          <button type="button" class="icon" aria-label="Dismiss" onClick={() => setPresentProblem(null)}>
            ✕
          </button>
        </div>
      )}
      {(local.screenProblem || local.cameraProblem) && room.phase === 'joined' && (
        <p class="toast subtle" role="status">
          {local.screenProblem ?? local.cameraProblem}
        </p>
      )}

      <nav class="controls" aria-label="Meeting controls">
        {/* Before admission there is nobody to talk to: only the info and the way out. */}
        {admitted && (
          <div class="control-group">
            <button
              type="button"
              class={`control${local.microphoneMuted ? ' off' : ''}`}
              aria-disabled={!local.microphone || (!!blockedBy && local.microphoneMuted)}
              aria-describedby={blockedBy ? 'mic-blocked' : local.microphoneProblem ? 'mic-problem' : undefined}
              onClick={() => {
                if (!local.microphone || (blockedBy && local.microphoneMuted)) return;
                void s?.setMicrophoneMuted(!local.microphoneMuted);
              }}
            >
              {!local.microphone ? 'No microphone' : local.microphoneMuted ? 'Unmute microphone' : 'Mute microphone'}
            </button>
            {!audioOnly && (
              <button
                type="button"
                class={`control${local.camera ? '' : ' off'}`}
                aria-describedby={local.cameraProblem ? 'cam-problem' : undefined}
                onClick={() => void s?.setCamera(!local.camera)}
              >
                {local.camera ? 'Stop camera' : 'Start camera'}
              </button>
            )}
            <button type="button" class="control" aria-expanded={panel === 'devices'} data-panel="devices" onClick={() => openPanel('devices')}>
              Devices
            </button>
            {grants?.present && !audioOnly && (
              <button type="button" class={`control${local.screen ? ' active' : ''}`} onClick={() => void (local.screen ? s?.stopScreen() : s?.startScreen())}>
                {local.screen ? 'Stop sharing' : 'Share screen'}
              </button>
            )}
            {grants?.present && <PresentButton session={s} onProblem={setPresentProblem} />}
          </div>
        )}
        <div class="control-group">
          {admitted && (
            <button type="button" class="control" aria-expanded={panel === 'participants'} data-panel="participants" onClick={() => openPanel('participants')}>
              Participants <span class="count">{room.order.length}</span>
            </button>
          )}
          {admitted && (
            <button
              type="button"
              class="control"
              aria-expanded={panel === 'chat'}
              data-panel="chat"
              aria-label={room.unread ? `Chat, ${room.unread} unread` : 'Chat'}
              onClick={() => openPanel('chat')}
            >
              Chat{' '}
              {room.unread > 0 && (
                <span class="count unread" data-testid="unread">
                  {room.unread}
                </span>
              )}
            </button>
          )}
          <button type="button" class="control" aria-expanded={panel === 'info'} data-panel="info" onClick={() => openPanel('info')}>
            Meeting info
          </button>
        </div>
        <div class="control-group">
          {grants?.record && admitted && (
            <button type="button" class={`control${room.recording ? ' danger-outline' : ''}`} aria-pressed={room.recording} onClick={() => s?.setRecording(!room.recording)}>
              {room.recording ? 'Stop recording' : 'Start recording'}
            </button>
          )}
          {grants?.endMeeting && (
            <button type="button" class="control danger-outline" onClick={() => setConfirmEnd(true)}>
              End meeting
            </button>
          )}
          <button type="button" class="control danger" onClick={() => (room.phase === 'joined' ? setConfirmLeave(true) : s?.leave())}>
            Leave
          </button>
        </div>
        {blockedBy && local.microphoneMuted && (
          <p class="control-note" id="mic-blocked">
            {blockedBy} muted your microphone. You can unmute when they allow you to speak again.
          </p>
        )}
        {!blockedBy && local.microphoneProblem && (
          <p class="control-note" id="mic-problem">
            {local.microphoneProblem}
          </p>
        )}
        {local.cameraProblem && !audioOnly && (
          <p class="control-note visually-hidden" id="cam-problem">
            {local.cameraProblem}
          </p>
        )}
      </nav>

      {confirmEnd && (
        <ConfirmDialog
          open={confirmEnd}
          title="End the meeting for everyone?"
          confirmLabel="End meeting"
          danger
          onConfirm={() => {
            setConfirmEnd(false);
            s?.endMeeting();
          }}
          onCancel={() => setConfirmEnd(false)}
        >
          <p>Everyone is taken out of the meeting, and it cannot be joined again.</p>
        </ConfirmDialog>
      )}
      {confirmLeave && (
        <ConfirmDialog
          open={confirmLeave}
          title="Leave the meeting?"
          confirmLabel="Leave"
          onConfirm={() => {
            setConfirmLeave(false);
            s?.leave();
          }}
          onCancel={() => setConfirmLeave(false)}
        >
          <p>The meeting goes on without you; you can join again.</p>
        </ConfirmDialog>
      )}
    </div>
  );
}

function TileView(props: { tile: Tile; local: LocalMedia; remote: Map<TrackId, MediaStreamTrack>; hidden?: boolean }) {
  const { tile, local, remote } = props;
  let track: MediaStreamTrack | null = null;
  // A tile not shown plays nothing (in a room of hundreds, hundreds of idle video elements).
  if (props.hidden) track = null;
  else if (tile.isYou) track = tile.kind === 'screen' ? local.screen : local.camera;
  else if (tile.video) track = remote.get(tile.video.id) ?? null;
  const name = tile.participant.displayName;
  // Our own microphone is known here before the SFU confirms it.
  const micMuted = tile.isYou ? !local.microphone || local.microphoneMuted : !tile.microphone || tile.microphone.muted;
  const what = tile.kind === 'screen' ? `${name}'s screen` : `${name}${tile.isYou ? ' (you)' : ''}`;
  return (
    <figure
      class={`tile${tile.kind === 'screen' ? ' screen' : ''}${tile.speaking ? ' speaking' : ''}`}
      aria-label={`${what}${tile.speaking ? ', speaking' : ''}`}
      data-participant={tile.participant.id}
      data-track={tile.video?.id}
      data-view={tile.isYou ? undefined : tile.video?.id}
      hidden={props.hidden}
    >
      <VideoView track={track} mirror={tile.isYou && tile.kind === 'camera'} label={what} placeholder={name} fit={tile.kind === 'screen' ? 'contain' : 'cover'} />
      <figcaption>
        <span class="tile-name">{what}</span>
        {tile.kind === 'camera' && micMuted && (
          <span class="tile-muted" title="Microphone off">
            {tile.participant.microphoneBlocked ? 'muted by a moderator' : 'mic off'}
          </span>
        )}
        {tile.speaking && <span class="tile-speaking">speaking</span>}
      </figcaption>
    </figure>
  );
}

function Participants(props: { room: RoomState; session: MeetingSession | null; onMessage: (id: ParticipantId) => void }) {
  const { room, session } = props;
  const [excluding, setExcluding] = useState<{ id: ParticipantId; name: string } | null>(null);
  const people = participantList(room);
  return (
    <div class="panel-body">
      <ul class="people">
        {people.map((p) => {
          const may = moderation(room, p.id);
          const mic = Object.values(room.tracks).find((t) => t.participant === p.id && t.source === 'microphone');
          return (
            <li key={p.id} data-participant={p.id}>
              <div class="person">
                <span class="person-name">
                  {p.displayName}
                  {p.id === room.you && ' (you)'}
                </span>
                <span class="badge role">{roleName(p.role)}</span>
                {p.microphoneBlocked ? <span class="badge muted">microphone blocked</span> : (!mic || mic.muted) && <span class="badge muted">mic off</span>}
                {isSpeaking(room, p.id) && <span class="badge speaking">speaking</span>}
              </div>
              {(may.setRole || may.blockMicrophone || may.exclude || may.privateMessage) && (
                <div class="person-actions">
                  {may.privateMessage && (
                    <button type="button" class="small" aria-label={`Send a private message to ${p.displayName}`} onClick={() => props.onMessage(p.id)}>
                      Message
                    </button>
                  )}
                  {may.setRole && p.role !== 'moderator' && (
                    <button
                      type="button"
                      class="small"
                      aria-label={p.role === 'speaker' ? `Make ${p.displayName} a listener` : `Make ${p.displayName} a speaker`}
                      onClick={() => session?.setRole(p.id, p.role === 'speaker' ? 'listener' : 'speaker')}
                    >
                      {p.role === 'speaker' ? 'Make listener' : 'Make speaker'}
                    </button>
                  )}
                  {may.blockMicrophone && (
                    <button
                      type="button"
                      class="small"
                      aria-label={p.microphoneBlocked ? `Allow ${p.displayName} to speak` : `Mute ${p.displayName}'s microphone`}
                      onClick={() => session?.blockMicrophone(p.id, !p.microphoneBlocked)}
                    >
                      {p.microphoneBlocked ? 'Allow to speak' : 'Mute'}
                    </button>
                  )}
                  {may.exclude && (
                    <button
                      type="button"
                      class="small danger-outline"
                      aria-label={`Remove ${p.displayName} from the meeting`}
                      onClick={() => setExcluding({ id: p.id, name: p.displayName })}
                    >
                      Remove
                    </button>
                  )}
                </div>
              )}
            </li>
          );
        })}
      </ul>
      {excluding && (
        <ConfirmDialog
          open={!!excluding}
          title={excluding ? `Remove ${excluding.name}?` : 'Remove?'}
          confirmLabel="Remove"
          danger
          onConfirm={() => {
            if (excluding) session?.exclude(excluding.id);
            setExcluding(null);
          }}
          onCancel={() => setExcluding(null)}
        >
          <p>They leave the meeting at once and cannot join it again.</p>
        </ConfirmDialog>
      )}
    </div>
  );
}

function time(at: string): string {
  const date = new Date(at);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

function Chat(props: { room: RoomState; session: MeetingSession | null; to: ParticipantId | ''; setTo: (to: ParticipantId | '') => void }) {
  const { room, session } = props;
  const [text, setText] = useState('');
  const [error, setError] = useState<string | null>(null);
  const log = useRef<HTMLDivElement>(null);
  const lines = chatLines(room);
  const others = participantList(room).filter((p) => p.id !== room.you);
  const to = props.to && room.participants[props.to] ? props.to : '';

  useEffect(() => {
    const el = log.current;
    if (el) el.scrollTop = el.scrollHeight;
  }, [lines.length]);

  function send(e: Event) {
    e.preventDefault();
    const message = text.trim();
    if (!message) {
      setError('Write a message first.');
      return;
    }
    if (new TextEncoder().encode(message).length > 4096) {
      setError('A message holds at most 4096 bytes; shorten it.');
      return;
    }
    if (!session?.chat(message, to || undefined)) {
      setError('Not connected; the message was not sent. Try again in a moment.');
      return;
    }
    setError(null);
    setText('');
  }

  return (
    <div class="panel-body chat">
      <div class="chat-log" role="log" aria-live="polite" aria-label="Chat messages" ref={log} tabIndex={0}>
        {lines.length === 0 && <p class="hint">No messages yet.</p>}
        {lines.map((line, i) => (
          <div class={`chat-line${line.mine ? ' mine' : ''}${line.privateWith ? ' private' : ''}`} key={`${line.message.at}-${i}`}>
            <div class="chat-meta">
              <strong>{line.mine ? 'You' : line.message.fromName}</strong>
              {line.privateWith && <span class="chat-private">{line.mine ? ` privately to ${line.privateWith.name}` : ' privately to you'}</span>}
              <time dateTime={line.message.at}>{time(line.message.at)}</time>
            </div>
            <p class="chat-text">{line.message.text}</p>
          </div>
        ))}
      </div>
      {room.grants?.chat !== false && (
        <form class="chat-form" onSubmit={send}>
          <div class="field">
            <label for="chat-to">To</label>
            <select id="chat-to" value={to} onChange={(e) => props.setTo(e.currentTarget.value)}>
              <option value="">Everyone</option>
              {others.map((p) => (
                <option value={p.id} key={p.id}>
                  {p.displayName} (privately)
                </option>
              ))}
            </select>
          </div>
          <div class={`field${error ? ' has-error' : ''}`}>
            <label for="chat-text">Message</label>
            <textarea
              id="chat-text"
              rows={2}
              value={text}
              aria-invalid={error ? 'true' : undefined}
              aria-describedby={error ? 'chat-error' : 'chat-hint'}
              onInput={(e) => setText(e.currentTarget.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) send(e);
              }}
            />
            <p class="hint" id="chat-hint">
              Enter sends; Shift+Enter starts a new line.
            </p>
            {error && (
              <p class="field-error" id="chat-error" role="alert">
                {error}
              </p>
            )}
          </div>
          <button type="submit" class="primary">
            Send
          </button>
        </form>
      )}
    </div>
  );
}

/** Announces chat from others while the chat panel is closed (the open log announces itself). */
function ChatAnnouncer(props: { room: RoomState }) {
  const { room } = props;
  const last = room.chat[room.chat.length - 1];
  const [seen, setSeen] = useState(room.chat.length);
  const [text, setText] = useState('');
  useEffect(() => {
    if (room.chat.length > seen && last && last.from !== room.you && !room.chatOpen) {
      setText(`${last.to ? 'Private message from' : 'Message from'} ${last.fromName}: ${last.text}`);
    }
    setSeen(room.chat.length);
  }, [room.chat.length]);
  return (
    <p class="visually-hidden" role="status" aria-live="polite">
      {text}
    </p>
  );
}

function CopyRow(props: { label: string; copyLabel: string; value: string; id: string }) {
  const [copied, setCopied] = useState<string | null>(null);
  async function copy() {
    try {
      await navigator.clipboard.writeText(props.value);
      setCopied('Copied.');
    } catch {
      // Without clipboard access, select the text so Ctrl+C copies it.
      const el = document.getElementById(props.id) as HTMLInputElement | null;
      el?.select();
      setCopied('Selected: press Ctrl+C to copy.');
    }
  }
  return (
    <div class="copy-row">
      <label for={props.id}>{props.label}</label>
      <div class="copy-field">
        <input id={props.id} readOnly value={props.value} onFocus={(e) => e.currentTarget.select()} />
        <button type="button" class="small" aria-label={props.copyLabel} onClick={() => void copy()}>
          Copy
        </button>
      </div>
      <p class="hint" role="status" aria-live="polite">
        {copied ?? ''}
      </p>
    </div>
  );
}

/** Another microphone, camera or speaker during the meeting, with the microphone's level. */
function DevicesPanel(props: {
  local: LocalMedia;
  session: MeetingSession | null;
  audioOnly: boolean;
  speaker: string | undefined;
  speakerProblem: string | null;
  onSpeaker: (deviceId: string) => void;
}) {
  const { local, session } = props;
  const [devices] = useDevices();
  const level = useLevel(local.microphone, !local.microphoneMuted);
  const micId = local.microphone?.getSettings().deviceId ?? local.microphoneDevice ?? '';
  const camId = local.camera?.getSettings().deviceId ?? local.cameraDevice ?? '';
  return (
    <div class="panel-body devices">
      <DeviceSelect
        id="meeting-microphone"
        what="Microphone"
        devices={devices.microphones}
        value={micId}
        problem={local.microphoneProblem}
        hint={local.microphone && local.microphoneMuted ? 'Your microphone is muted.' : undefined}
        onChoose={(id) => void session?.chooseDevice('microphone', id)}
      >
        {local.microphone && !local.microphoneMuted && <LevelMeter level={level} label="Microphone level" />}
      </DeviceSelect>
      {!props.audioOnly && (
        <DeviceSelect
          id="meeting-camera"
          what="Camera"
          devices={devices.cameras}
          value={camId}
          problem={local.cameraProblem}
          hint={local.camera ? undefined : 'Your camera is off; the chosen one is used when you start it.'}
          onChoose={(id) => void session?.chooseDevice('camera', id)}
        />
      )}
      <SpeakerChoice speakers={devices.speakers} value={props.speaker} problem={props.speakerProblem} onChoose={props.onSpeaker} />
    </div>
  );
}

function Info(props: { ticket: JoinResponse; password: string | null }) {
  const { conference } = props.ticket;
  const ends = conference.endsAt ? new Date(conference.endsAt) : null;
  return (
    <div class="panel-body info">
      <p>
        <strong>{conference.topic}</strong>
        {ends && !Number.isNaN(ends.getTime()) && <> · ends at {ends.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })}</>}
      </p>
      <CopyRow label="Meeting ID" copyLabel="Copy the meeting ID" id="info-meeting-id" value={conference.meetingId} />
      {props.password && <CopyRow label="Password" copyLabel="Copy the password" id="info-password" value={props.password} />}
      <CopyRow label="Invite link" copyLabel="Copy the invite link" id="info-link" value={inviteLink(location.origin, conference.meetingId)} />
      <p class="hint">Guests open the link, type the password and their name.</p>
    </div>
  );
}

function Ended(props: { room: RoomState; gaveUp: ApiError | null; loggedIn: boolean; meetingId: string; onAgain: () => void }) {
  const { room, gaveUp } = props;
  let title = 'You left the meeting';
  let text = 'You can join again while the meeting goes on.';
  let again = true;
  const reason = room.closed ?? room.refused?.code ?? gaveUp?.code;
  switch (reason) {
    case 'ended':
    case 'conferenceEnded':
      title = 'The conference has ended';
      text = 'A moderator ended the meeting for everyone.';
      again = false;
      break;
    case 'excluded':
      title = 'You were removed from the conference';
      text = 'A moderator removed you from this meeting. You cannot join it again.';
      again = false;
      break;
    case 'replaced':
      title = 'You joined from somewhere else';
      text = 'This meeting goes on in another window or on another device.';
      break;
    case 'roomFull':
      title = 'The meeting is full';
      text = 'No more participants fit in. Try again later.';
      break;
    case 'overloaded':
      title = 'The media server is full';
      text = 'Try again in a few minutes.';
      break;
    case 'tooManyGuests':
      title = 'Too many guests from your network';
      text = 'As many guests as one network may bring are in this meeting already. Log in with an account, or try again when someone has left.';
      break;
    case 'unauthenticated':
      // The login ran out (or the password was changed elsewhere) while reconnecting.
      title = 'Your login has ended';
      text = 'Log in again to return to the meeting.';
      again = false;
      break;
    case 'left':
      break;
    default:
      if (room.refused || gaveUp) {
        title = 'You could not stay in the meeting';
        text = room.refused?.message ?? gaveUp?.message ?? '';
      }
  }
  useTitle(title);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), []);
  return (
    <main id="main" class="narrow meeting-over">
      <h1 tabIndex={-1} ref={heading}>
        {title}
      </h1>
      <p>{text}</p>
      <div class="actions">
        {again && (
          <button type="button" class="primary" onClick={props.onAgain}>
            Join again
          </button>
        )}
        {reason === 'unauthenticated' && (
          <Link class="button primary" href={`/login?next=${encodeURIComponent(`/join/${props.meetingId}`)}`}>
            Log in again
          </Link>
        )}
        {props.loggedIn ? <Link href="/">Go to my conferences</Link> : <Link href="/join">Join another meeting</Link>}
      </div>
    </main>
  );
}
