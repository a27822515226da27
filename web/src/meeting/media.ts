// The person's own camera and microphone: asking for them, listing devices, telling what went
// wrong in words, and measuring the microphone's level for the meter.
import { useEffect, useRef, useState } from 'preact/hooks';

export interface Devices {
  microphones: MediaDeviceInfo[];
  cameras: MediaDeviceInfo[];
  /** Audio outputs (speakers, headsets); empty where the browser cannot choose one. */
  speakers: MediaDeviceInfo[];
}

export const NO_DEVICES: Devices = { microphones: [], cameras: [], speakers: [] };

/** Whether this browser can send received audio to a chosen output (setSinkId). */
export function canChooseSpeaker(): boolean {
  return typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;
}

/** What asking for one kind of device brought: a track, or why not. */
export interface Acquired {
  track: MediaStreamTrack | null;
  problem: string | null;
}

/** Says in words why a device could not be used (the DOMException names of getUserMedia). */
export function mediaProblem(error: unknown, what: 'microphone' | 'camera' | 'screen'): string {
  const name = error instanceof DOMException || error instanceof Error ? error.name : '';
  const device = what === 'screen' ? 'screen sharing' : `the ${what}`;
  switch (name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
      return what === 'screen'
        ? 'Screen sharing was not allowed.'
        : `Access to ${device} was denied. You can join without it, or allow it in the browser's site settings and try again.`;
    case 'NotFoundError':
    case 'DevicesNotFoundError':
    case 'OverconstrainedError':
      return `No ${what} was found. You can join without one.`;
    case 'NotReadableError':
    case 'TrackStartError':
      return `The ${what} is in use by another program or could not be started.`;
    case 'SecurityError':
      return `This page may not use ${device} (it needs https).`;
    default:
      return `The ${what} could not be used${error instanceof Error && error.message ? `: ${error.message}` : '.'}`;
  }
}

function constraint(deviceId: string | undefined): MediaTrackConstraints | boolean {
  return deviceId ? { deviceId: { exact: deviceId } } : true;
}

/** Asks for one device (the default, or a chosen one). */
export async function acquire(kind: 'microphone' | 'camera', deviceId?: string): Promise<Acquired> {
  if (!navigator.mediaDevices?.getUserMedia) {
    return { track: null, problem: `This browser cannot use the ${kind} here (it needs https).` };
  }
  try {
    const video = kind === 'camera' ? constraint(deviceId) : false;
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: kind === 'microphone' ? { ...(deviceId ? { deviceId: { exact: deviceId } } : {}), echoCancellation: true, noiseSuppression: true } : false,
      video: video && typeof video === 'object' ? { ...video, width: { ideal: 1280 }, height: { ideal: 720 } } : video,
    });
    const track = kind === 'microphone' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
    return { track: track ?? null, problem: track ? null : `No ${kind} was found.` };
  } catch (error) {
    return { track: null, problem: mediaProblem(error, kind) };
  }
}

/** The microphones and cameras (with names once the person allowed access). */
export async function listDevices(): Promise<Devices> {
  if (!navigator.mediaDevices?.enumerateDevices) return NO_DEVICES;
  try {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      microphones: all.filter((d) => d.kind === 'audioinput' && d.deviceId),
      cameras: all.filter((d) => d.kind === 'videoinput' && d.deviceId),
      speakers: canChooseSpeaker() ? all.filter((d) => d.kind === 'audiooutput' && d.deviceId) : [],
    };
  } catch {
    return NO_DEVICES;
  }
}

/**
 * The devices, kept current as they are plugged in and out; `refresh` lists them again (their
 * names appear once the person allowed access).
 */
export function useDevices(): [Devices, () => Promise<void>] {
  const [devices, setDevices] = useState<Devices>(NO_DEVICES);
  const live = useRef(true);
  const refresh = async () => {
    const listed = await listDevices();
    if (live.current) setDevices(listed);
  };
  useEffect(() => {
    live.current = true;
    const changed = () => void refresh();
    changed();
    navigator.mediaDevices?.addEventListener?.('devicechange', changed);
    return () => {
      live.current = false;
      navigator.mediaDevices?.removeEventListener?.('devicechange', changed);
    };
  }, []);
  return [devices, refresh];
}

/** A device's name for a select; unnamed ones are numbered. */
export function deviceLabel(device: MediaDeviceInfo, index: number, what: string): string {
  return device.label || `${what} ${index + 1}`;
}

/** The loudness of a block of samples (-1…1) as 0–100, on a scale that suits speech. */
export function levelOf(samples: Float32Array): number {
  if (!samples.length) return 0;
  let sum = 0;
  for (const s of samples) sum += s * s;
  const rms = Math.sqrt(sum / samples.length);
  if (rms <= 0) return 0;
  // -60 dBFS (silence) … 0 dBFS (full scale).
  const db = 20 * Math.log10(rms);
  return Math.max(0, Math.min(100, Math.round(((db + 60) / 60) * 100)));
}

let sharedContext: AudioContext | null = null;

/** One AudioContext for the page, resumed on the next click when the browser started it suspended. */
export function audioContext(): AudioContext | null {
  if (sharedContext) return sharedContext;
  const Context = window.AudioContext ?? (window as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext;
  if (!Context) return null;
  sharedContext = new Context();
  if (sharedContext.state === 'suspended') {
    const resume = () => void sharedContext?.resume();
    document.addEventListener('click', resume, { once: true });
    document.addEventListener('keydown', resume, { once: true });
  }
  return sharedContext;
}

/** The live level (0–100) of an audio track, updated about ten times a second. */
export function useLevel(track: MediaStreamTrack | null, enabled = true): number {
  const [level, setLevel] = useState(0);
  useEffect(() => {
    setLevel(0);
    if (!track || !enabled || track.readyState === 'ended') return;
    const context = audioContext();
    if (!context) return;
    const source = context.createMediaStreamSource(new MediaStream([track]));
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const timer = setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      setLevel(levelOf(samples));
    }, 100);
    return () => {
      clearInterval(timer);
      source.disconnect();
      analyser.disconnect();
    };
  }, [track, enabled]);
  return level;
}

/**
 * Asks for the microphone and (unless the meeting is audio only) the camera. One request for
 * both first, so the browser asks once; when that fails, each alone, so a missing camera does
 * not cost the microphone.
 */
export async function acquireBoth(camera: boolean, devices: { microphone?: string; camera?: string } = {}): Promise<{ microphone: Acquired; camera: Acquired }> {
  const none: Acquired = { track: null, problem: null };
  if (camera && navigator.mediaDevices?.getUserMedia) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: devices.microphone ? { deviceId: { exact: devices.microphone } } : true,
        video: devices.camera ? { deviceId: { exact: devices.camera } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
      });
      const mic = stream.getAudioTracks()[0] ?? null;
      const cam = stream.getVideoTracks()[0] ?? null;
      return {
        microphone: { track: mic, problem: mic ? null : 'No microphone was found. You can join without one.' },
        camera: { track: cam, problem: cam ? null : 'No camera was found. You can join without one.' },
      };
    } catch {
      // Ask for each alone below to learn which one is the problem.
    }
  }
  const microphone = await acquire('microphone', devices.microphone);
  const cam = camera ? await acquire('camera', devices.camera) : none;
  return { microphone, camera: cam };
}
