// Before entering: choose microphone and camera, see yourself, watch the microphone level, and
// decide to enter with either off. Works without devices (denied or missing): it says so and
// lets the person join without media. Audio-only meetings never ask for the camera.
import { useEffect, useRef, useState } from 'preact/hooks';
import { acquire, acquireBoth, useDevices, useLevel } from './media';
import { DeviceSelect, LevelMeter, VideoView } from './views';
import type { LocalMedia } from './session';
import './meeting.css';

export function Prejoin(props: { topic: string; displayName: string; audioOnly: boolean; onEnter: (local: LocalMedia) => void; onBack: () => void }) {
  const [microphone, setMicrophone] = useState<MediaStreamTrack | null>(null);
  const [camera, setCamera] = useState<MediaStreamTrack | null>(null);
  const [micProblem, setMicProblem] = useState<string | null>(null);
  const [camProblem, setCamProblem] = useState<string | null>(null);
  const [devices, refreshDevices] = useDevices();
  const [micDevice, setMicDevice] = useState<string | undefined>(undefined);
  const [camDevice, setCamDevice] = useState<string | undefined>(undefined);
  const [micOn, setMicOn] = useState(true);
  const [camOn, setCamOn] = useState(!props.audioOnly);
  const [loading, setLoading] = useState(true);
  // Tracks handed to the meeting must not be stopped when this page goes away.
  const handedOver = useRef(false);
  const tracks = useRef<{ mic: MediaStreamTrack | null; cam: MediaStreamTrack | null }>({ mic: null, cam: null });
  tracks.current = { mic: microphone, cam: camera };
  const level = useLevel(microphone);

  const live = useRef(true);
  // Each device request is numbered per kind: an answer that arrives after a newer request,
  // after "Join now" or after the page went away is released at once, never shown or leaked.
  const requests = useRef({ mic: 0, cam: 0 });
  const [pending, setPending] = useState(0);
  const current = (kind: 'mic' | 'cam', request: number) => live.current && !handedOver.current && requests.current[kind] === request;
  async function asking<T>(request: Promise<T>): Promise<T> {
    setPending((n) => n + 1);
    try {
      return await request;
    } finally {
      if (live.current) setPending((n) => n - 1);
    }
  }
  /** Shows `track` as the preview's microphone or camera, releasing the one it replaces. */
  function show(kind: 'mic' | 'cam', track: MediaStreamTrack | null) {
    if (tracks.current[kind] !== track) tracks.current[kind]?.stop();
    tracks.current[kind] = track;
    (kind === 'mic' ? setMicrophone : setCamera)(track);
  }

  /** Asks for the devices (again, after a refusal) and lists them. */
  async function ask() {
    const micRequest = ++requests.current.mic;
    const camRequest = ++requests.current.cam;
    setLoading(true);
    const got = await asking(acquireBoth(!props.audioOnly));
    await refreshDevices();
    if (current('mic', micRequest)) {
      show('mic', got.microphone.track);
      setMicProblem(got.microphone.problem);
      setMicDevice(got.microphone.track?.getSettings().deviceId);
      setMicOn(!!got.microphone.track);
    } else got.microphone.track?.stop();
    if (current('cam', camRequest)) {
      show('cam', got.camera.track);
      setCamProblem(got.camera.problem);
      setCamDevice(got.camera.track?.getSettings().deviceId);
      setCamOn(!!got.camera.track);
    } else got.camera.track?.stop();
    if (live.current) setLoading(false);
  }

  useEffect(() => {
    live.current = true;
    void ask();
    return () => {
      live.current = false;
      if (!handedOver.current) {
        tracks.current.mic?.stop();
        tracks.current.cam?.stop();
      }
    };
  }, []);

  async function chooseMicrophone(id: string) {
    const request = ++requests.current.mic;
    setMicDevice(id);
    const got = await asking(acquire('microphone', id));
    if (!current('mic', request)) {
      got.track?.stop();
      return;
    }
    show('mic', got.track);
    setMicProblem(got.problem);
    if (got.track) setMicOn(true);
  }

  async function chooseCamera(id: string) {
    const request = ++requests.current.cam;
    setCamDevice(id);
    show('cam', null);
    if (!camOn) return;
    const got = await asking(acquire('camera', id));
    if (!current('cam', request)) {
      got.track?.stop();
      return;
    }
    show('cam', got.track);
    setCamProblem(got.problem);
  }

  async function toggleCamera(on: boolean) {
    const request = ++requests.current.cam;
    setCamOn(on);
    if (!on) {
      // Off means off: the camera's light goes out.
      show('cam', null);
      return;
    }
    if (tracks.current.cam) return;
    const got = await asking(acquire('camera', camDevice));
    if (!current('cam', request)) {
      got.track?.stop();
      return;
    }
    show('cam', got.track);
    setCamProblem(got.problem);
    if (!got.track) setCamOn(false);
  }

  function enter(e: Event) {
    e.preventDefault();
    handedOver.current = true;
    if (microphone) microphone.enabled = micOn;
    const cam = camOn ? camera : null;
    if (!cam) camera?.stop();
    props.onEnter({
      microphone,
      microphoneMuted: !micOn || !microphone,
      camera: cam,
      screen: null,
      microphoneProblem: micProblem,
      cameraProblem: props.audioOnly ? null : camProblem,
      screenProblem: null,
      microphoneDevice: micDevice,
      cameraDevice: camDevice,
    });
  }

  return (
    <main id="main" class="prejoin">
      <h1>Ready to join “{props.topic}”?</h1>
      <p class="hint">
        You join as <strong>{props.displayName}</strong>
        {props.audioOnly ? '. This meeting is audio only.' : '.'}
      </p>
      <div class="prejoin-body">
        {!props.audioOnly && (
          <div class="prejoin-preview">
            <VideoView track={camOn ? camera : null} mirror label={`Preview of your camera`} placeholder={props.displayName} />
          </div>
        )}
        <form class="prejoin-settings" onSubmit={enter}>
          {loading && <p aria-busy="true">Asking for your microphone{props.audioOnly ? '' : ' and camera'}…</p>}
          <DeviceSelect id="prejoin-microphone" what="Microphone" devices={devices.microphones} value={micDevice ?? ''} problem={micProblem} onChoose={(id) => void chooseMicrophone(id)}>
            {microphone && <LevelMeter level={level} label="Microphone level" />}
          </DeviceSelect>
          {!props.audioOnly && (
            <DeviceSelect id="prejoin-camera" what="Camera" devices={devices.cameras} value={camDevice ?? ''} problem={camProblem} onChoose={(id) => void chooseCamera(id)} />
          )}
          <div class="field inline">
            <input type="checkbox" id="prejoin-mic-on" checked={micOn && !!microphone} disabled={!microphone} onChange={(e) => setMicOn(e.currentTarget.checked)} />
            <label for="prejoin-mic-on">Join with microphone on</label>
          </div>
          {!props.audioOnly && (
            <div class="field inline">
              <input
                type="checkbox"
                id="prejoin-cam-on"
                checked={camOn}
                disabled={!devices.cameras.length && !camera}
                onChange={(e) => void toggleCamera(e.currentTarget.checked)}
              />
              <label for="prejoin-cam-on">Join with camera on</label>
            </div>
          )}
          {!loading && (micProblem || camProblem) && (
            <div class="notice-box">
              <p>{!microphone && !camera ? 'You can still join: you will see and hear the others, and chat.' : 'You can join with what works.'}</p>
              <button type="button" onClick={() => void ask()}>
                Ask for the devices again
              </button>
            </div>
          )}
          <div class="actions">
            <button type="submit" class="primary" disabled={loading || pending > 0}>
              Join now
            </button>
            <button type="button" onClick={props.onBack}>
              Back
            </button>
          </div>
        </form>
      </div>
    </main>
  );
}
