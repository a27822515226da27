// Reading the SFU's subscriber offers: each media section carries `a=msid:<participant> <track>`
// (docs/signaling.md), which names the room's track sent on that section. Browsers do not all
// keep the msid as the remote track's ID, and a transceiver is reused when tracks come and go,
// so the page maps room tracks through the section's `mid` instead of trusting track IDs.

/** One sending media section of an offer. */
export interface OfferedTrack {
  mid: string;
  kind: string;
  /** The stream ID: the publishing participant. */
  participant: string;
  /** The track ID: the room's track ID. */
  track: string;
}

/**
 * Every media section of `sdp` that sends a track (has an msid, is not inactive/recvonly and
 * not rejected). Also reads the page's own offers: the msid's track ID is what the SFU learns
 * a published track by, and Firefox does not use `MediaStreamTrack.id` there.
 */
export function offeredTracks(sdp: string): OfferedTrack[] {
  const sections = sdp.split(/\r?\nm=/).slice(1);
  const out: OfferedTrack[] = [];
  for (const section of sections) {
    const lines = section.split(/\r?\n/);
    const [kind, port] = lines[0].split(' ');
    let mid: string | undefined;
    let msid: [string, string] | undefined;
    // A rejected section has port 0; a section that shares the bundle's transport
    // (`a=bundle-only`, as Firefox offers with max-bundle) has port 0 too and is not rejected.
    let rejected = port === '0';
    let sending = true;
    for (const line of lines) {
      if (line === 'a=bundle-only') rejected = false;
      else if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
      else if (line.startsWith('a=msid:')) {
        const [stream, track] = line.slice(7).trim().split(/\s+/);
        if (stream && track) msid = [stream, track];
      } else if (line === 'a=inactive' || line === 'a=recvonly') sending = false;
    }
    if (mid !== undefined && msid && sending && !rejected) out.push({ mid, kind, participant: msid[0], track: msid[1] });
  }
  return out;
}
