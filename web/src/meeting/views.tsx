// Small media views shared by the preview and the meeting.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { canChooseSpeaker, deviceLabel } from './media';

/** Initials for a tile without video ("Ada Lovelace" → "AL"). */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : words;
  return letters.map((w) => [...w][0]?.toUpperCase() ?? '').join('') || '?';
}

/** A video element showing `track`, or the person's initials without one. */
export function VideoView(props: { track: MediaStreamTrack | null; mirror?: boolean; label: string; placeholder: string; fit?: 'cover' | 'contain' }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const video = ref.current;
    if (!video) return;
    if (props.track) {
      video.srcObject = new MediaStream([props.track]);
      void video.play().catch(() => {});
    } else video.srcObject = null;
  }, [props.track]);
  return (
    <div class="video-view">
      <video
        ref={ref}
        autoplay
        playsInline
        muted
        aria-label={props.label}
        class={`${props.mirror ? 'mirror' : ''} ${props.fit === 'contain' ? 'contain' : ''}`}
        hidden={!props.track}
      />
      {!props.track && (
        <div class="avatar" aria-hidden="true">
          {initials(props.placeholder)}
        </div>
      )}
    </div>
  );
}

/**
 * Plays a received audio track (hidden; one per remote microphone), on the chosen output
 * (`sinkId`; left alone while undefined) where the browser can choose one.
 */
export function AudioSink(props: { track: MediaStreamTrack; sinkId?: string; onSinkProblem?: (problem: string) => void }) {
  const ref = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    const audio = ref.current;
    if (!audio) return;
    audio.srcObject = new MediaStream([props.track]);
    void audio.play().catch(() => {});
  }, [props.track]);
  useEffect(() => {
    const audio = ref.current as (HTMLAudioElement & { setSinkId?: (id: string) => Promise<void> }) | null;
    if (!audio?.setSinkId || props.sinkId === undefined) return;
    audio.setSinkId(props.sinkId).catch(() => props.onSinkProblem?.('The chosen speaker cannot be used; the sound stays on the previous one.'));
  }, [props.sinkId]);
  return <audio ref={ref} autoplay />;
}

/** The microphone level as a meter (0–100). */
export function LevelMeter(props: { level: number; label: string }) {
  const level = Math.max(0, Math.min(100, Math.round(props.level)));
  return (
    <div class="level" role="meter" aria-label={props.label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={level}>
      <div class="level-bar" style={{ width: `${level}%` }} />
    </div>
  );
}

/**
 * A microphone or camera picker: the devices by name, "No microphone" when there is none, the
 * problem with the device (or a hint) below it, then `children` (the level meter).
 */
export function DeviceSelect(props: {
  id: string;
  what: 'Microphone' | 'Camera' | 'Speaker';
  devices: MediaDeviceInfo[];
  value: string;
  problem: string | null;
  hint?: string;
  onChoose: (deviceId: string) => void;
  children?: ComponentChildren;
}) {
  const note = props.problem ? `${props.id}-problem` : props.hint ? `${props.id}-hint` : undefined;
  return (
    <div class="field">
      <label for={props.id}>{props.what}</label>
      <select id={props.id} value={props.value} disabled={!props.devices.length} aria-describedby={note} onChange={(e) => props.onChoose(e.currentTarget.value)}>
        {!props.devices.length && <option value="">No {props.what.toLowerCase()}</option>}
        {props.devices.map((d, i) => (
          <option value={d.deviceId} key={d.deviceId}>
            {deviceLabel(d, i, props.what)}
          </option>
        ))}
      </select>
      {props.problem ? (
        <p class="field-error" id={`${props.id}-problem`} role="alert">
          {props.problem}
        </p>
      ) : (
        props.hint && (
          <p class="hint" id={`${props.id}-hint`}>
            {props.hint}
          </p>
        )
      )}
      {props.children}
    </div>
  );
}

/**
 * The speaker for everyone's voices: a picker where the browser can send sound to a chosen
 * output (setSinkId) and lists outputs, otherwise a short note instead of a control that
 * could not work (Firefox before 116 or with `media.setsinkid.enabled` off, Safari; Firefox
 * lists outputs only while the microphone is in use).
 */
export function SpeakerChoice(props: {
  speakers: MediaDeviceInfo[];
  /** The chosen output; undefined: the system's default. */
  value: string | undefined;
  problem: string | null;
  onChoose: (deviceId: string) => void;
  /** Whether the browser has setSinkId (passed in for tests). */
  canChoose?: boolean;
}) {
  const canChoose = props.canChoose ?? canChooseSpeaker();
  if (canChoose && props.speakers.length > 0) {
    return (
      <DeviceSelect
        id="meeting-speaker"
        what="Speaker"
        devices={props.speakers}
        value={props.value ?? (props.speakers.find((d) => d.deviceId === 'default') ?? props.speakers[0]).deviceId}
        problem={props.problem}
        onChoose={props.onChoose}
      />
    );
  }
  return (
    <p class="hint speaker-note" id="meeting-speaker-note">
      <strong>Speaker:</strong> sound plays on the system’s default output.{' '}
      {canChoose ? 'The browser lists no other one to choose.' : 'This browser cannot send it to another one; choose it in the system’s sound settings.'}
    </p>
  );
}
