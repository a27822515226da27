//! What the room's tick does for each receiver (docs/sfu.md, "Adapting to each receiver"):
//! which simulcast layer every subscriber gets ([`crate::simulcast::allocate`] from its
//! bandwidth estimate and tiles), which layers publishers keep encoding (dynacast), and, in
//! large rooms, which microphones everyone hears.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use proto::signal::{ServerMessage, TrackKind, VideoLayer};
use proto::{ParticipantId, TrackId};

use crate::media::{Downstream, Forwarder};
use crate::room::{Room, SessionId};
use crate::server::RoomHandle;
use crate::session::Command;
use crate::simulcast::{self, LAYERS, LayerState, Wanted};
use crate::speaker::SPEECH_LEVEL;
use tracing::debug;

/// One subscriber's copy of a track, with the track's forwarder.
type Subscribed<'a> = (&'a Arc<Forwarder>, Arc<Downstream>);

/// What the tick needs from the room's core, read in one go.
struct RoomView {
    admitted: u32,
    speaker: Option<ParticipantId>,
    cameras: Vec<TrackId>,
    microphones: Vec<TrackId>,
    caps: HashMap<(ParticipantId, TrackId), usize>,
    publishers: HashMap<TrackId, (SessionId, String)>,
}

impl RoomView {
    fn read(core: &Room, forwarders: &[Arc<Forwarder>]) -> Self {
        let mut view = Self {
            admitted: core.admitted(),
            speaker: core.active_speaker().cloned(),
            cameras: Vec::new(),
            microphones: Vec::new(),
            caps: HashMap::new(),
            publishers: HashMap::new(),
        };
        for forwarder in forwarders {
            let track = &forwarder.track;
            if core.is_camera(track) {
                view.cameras.push(track.clone());
            }
            if core.is_microphone(track) {
                view.microphones.push(track.clone());
            }
            if forwarder.kind == TrackKind::Video {
                if let Some(publisher) = core.publisher_of(track) {
                    view.publishers.insert(track.clone(), publisher);
                }
                for downstream in forwarder.downstreams() {
                    let cap = core.layer_cap(&downstream.subscriber, track).index();
                    view.caps
                        .insert((downstream.subscriber.clone(), track.clone()), cap);
                }
            }
        }
        view
    }
}

impl RoomHandle {
    /// One tick: audio levels and the core's own tick (deferred keyframes, the active
    /// speaker), then the large-room audio, the layers and dynacast.
    pub(crate) fn tick(self: &Arc<Self>, now: DateTime<Utc>, instant: Instant) {
        let forwarders: Vec<Arc<Forwarder>> = self.forwarders.lock().values().cloned().collect();
        let levels: Vec<(TrackId, u8)> = forwarders
            .iter()
            .filter(|f| f.kind == TrackKind::Audio)
            .map(|f| {
                let level = f.take_loudest();
                if level <= SPEECH_LEVEL {
                    f.heard_voice(instant);
                }
                (f.track.clone(), level)
            })
            .collect();
        let mut view = None;
        let _ = self.act(|core| {
            for (track, level) in &levels {
                core.audio_level(track, *level, now);
            }
            let effects = core.tick(now);
            view = Some(RoomView::read(core, &forwarders));
            Ok::<_, std::convert::Infallible>(effects)
        });
        let Some(view) = view else { return };
        self.choose_audible(&forwarders, &view);
        self.choose_layers(&forwarders, &view, instant);
        self.dynacast(&forwarders, &view, instant);
    }

    /// In a room larger than `--sfu-large-room-size`, everyone hears only the
    /// `--sfu-audible-speakers` microphones that carried speech most recently.
    fn choose_audible(&self, forwarders: &[Arc<Forwarder>], view: &RoomView) {
        let limits = &self.shared.wire;
        let large = limits.large_room_size > 0 && view.admitted > limits.large_room_size;
        let mut microphones: Vec<&Arc<Forwarder>> = forwarders
            .iter()
            .filter(|f| view.microphones.contains(&f.track))
            .collect();
        if !large {
            for microphone in microphones {
                microphone.set_audible(true);
            }
            return;
        }
        let audible = audible_speakers(
            &microphones
                .iter()
                .map(|f| (f.last_voice(), f.is_audible()))
                .collect::<Vec<_>>(),
            limits.audible_speakers as usize,
        );
        for (microphone, audible) in microphones.drain(..).zip(audible) {
            microphone.set_audible(audible);
        }
    }

    /// Points every subscriber's copy of every video track at the layer the allocator chose,
    /// and asks for the keyframes the switches wait for.
    fn choose_layers(&self, forwarders: &[Arc<Forwarder>], view: &RoomView, instant: Instant) {
        let mut by_subscriber: HashMap<ParticipantId, Vec<Subscribed<'_>>> = HashMap::new();
        let mut states: HashMap<TrackId, [LayerState; LAYERS]> = HashMap::new();
        for forwarder in forwarders.iter().filter(|f| f.kind == TrackKind::Video) {
            states.insert(forwarder.track.clone(), forwarder.layer_states(instant));
            for downstream in forwarder.downstreams() {
                by_subscriber
                    .entry(downstream.subscriber.clone())
                    .or_default()
                    .push((forwarder, downstream));
            }
        }
        for (subscriber, copies) in by_subscriber {
            let wanted: Vec<Wanted> = copies
                .iter()
                .map(|(forwarder, downstream)| {
                    let track = &forwarder.track;
                    let shown = downstream.link.view(track);
                    let layers = states.get(track).copied().unwrap_or_default();
                    let asked = view
                        .caps
                        .get(&(subscriber.clone(), track.clone()))
                        .copied()
                        .unwrap_or(LAYERS - 1);
                    Wanted {
                        layers,
                        visible: shown.as_ref().is_none_or(|v| v.visible),
                        height: shown.map(|v| v.height).filter(|h| *h > 0),
                        cap: lag_cap(
                            asked,
                            &layers,
                            downstream.link.backlog().lagged_within(LAG_WINDOW, instant),
                        ),
                        speaker: view.speaker.as_ref() == Some(&forwarder.publisher)
                            && view.cameras.contains(track),
                    }
                })
                .collect();
            let Some(link) = copies.first().map(|(_, d)| Arc::clone(&d.link)) else {
                continue;
            };
            let current: Vec<Option<usize>> = copies.iter().map(|(_, d)| d.current()).collect();
            let sent: u64 = wanted
                .iter()
                .zip(&current)
                .filter_map(|(w, layer)| layer.map(|l| w.bitrate_of(l)))
                .sum();
            let budget = budget(
                link.estimate(),
                sent,
                link.fell_within(FALL_WINDOW, instant),
                link.may_probe(instant),
            );
            let targets = simulcast::allocate(budget.bps, &wanted);
            if budget.limited
                && forced_down(&targets, &simulcast::allocate(None, &wanted), &current)
            {
                link.hold_probing(instant + PROBE_HOLD);
            }
            if targets
                .iter()
                .zip(&copies)
                .any(|(t, (_, d))| *t != d.target())
            {
                debug!(
                    %subscriber,
                    estimate = ?link.estimate(),
                    budget = ?budget.bps,
                    ?current,
                    ?targets,
                    layers = ?wanted.iter().map(|w| w.layers).collect::<Vec<_>>(),
                    "layers chosen"
                );
            }
            for ((forwarder, downstream), target) in copies.into_iter().zip(targets) {
                let target = downstream.steer(target, instant);
                if let Some(layer) = target
                    && downstream.current() != Some(layer)
                {
                    let forwarder = Arc::clone(forwarder);
                    tokio::spawn(async move {
                        forwarder.request_layer_keyframe(layer, instant).await;
                    });
                }
            }
        }
    }

    /// Tells publishers which of their simulcast layers someone receives.
    fn dynacast(&self, forwarders: &[Arc<Forwarder>], view: &RoomView, instant: Instant) {
        for forwarder in forwarders.iter().filter(|f| f.kind == TrackKind::Video) {
            let Some(send) = forwarder.layers_to_send(instant) else {
                continue;
            };
            let Some((session, track_id)) = view.publishers.get(&forwarder.track) else {
                continue;
            };
            let layers = (0..LAYERS)
                .filter(|&l| send[l])
                .map(|l| VideoLayer::ALL[l])
                .collect();
            self.command(
                *session,
                Command::Send(Box::new(ServerMessage::LayersWanted {
                    track_id: track_id.clone(),
                    layers,
                })),
            );
        }
    }
}

/// After the estimate forced a step down, no step up beyond the estimate for this long.
const PROBE_HOLD: std::time::Duration = std::time::Duration::from_secs(8);
/// A fall of the estimate this recent is news of congestion.
const FALL_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// A subscriber connection that lagged within this gets only the lowest layers
/// ([`lag_cap`]).
const LAG_WINDOW: std::time::Duration = std::time::Duration::from_secs(5);

/// The highest layer a subscriber gets of a track: what it asked for, and — while the pod
/// could not send it everything in time (its connection lagged, see `sfu::backlog`) — the
/// track's lowest layer: a pod past its CPU sends a fifth of the packets to such a subscriber
/// rather than shedding whole frames of the high layer.
fn lag_cap(asked: usize, layers: &[LayerState; LAYERS], lagged: bool) -> usize {
    match layers.iter().position(|l| l.available) {
        Some(lowest) if lagged => asked.min(lowest),
        _ => asked,
    }
}

/// The bandwidth the allocator may spend on a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    /// Bits per second (`None`: no limit).
    bps: Option<u64>,
    /// The estimate itself limits the choice (congestion).
    limited: bool,
}

/// What the allocator may spend on a subscriber that is sent `sent` bits per second now.
///
/// A receiver's estimate (REMB) is capped at about 1.5 times what it receives and climbs
/// slowly (Chromium: some 8 % a second): an estimate below what is sent is not in itself a
/// sign of a weak link — after a step up it lags for many seconds. Congestion shows as a
/// *fall* of the estimate (`fell`: by a tenth or more from the one before, within the last
/// [`FALL_WINDOW`]) below what is sent: then the estimate is the budget. After such a step down,
/// for [`PROBE_HOLD`] (`may_probe` false), the budget is the estimate or what is sent, whichever
/// is more: no step up beyond the estimate, and no further step down without a new fall.
/// Otherwise there is no limit, and every tile gets its ideal layer.
fn budget(estimate: Option<u64>, sent: u64, fell: bool, may_probe: bool) -> Budget {
    match estimate {
        Some(estimate) if fell && estimate < sent => Budget {
            bps: Some(estimate),
            limited: true,
        },
        Some(estimate) if !may_probe => Budget {
            bps: Some(estimate.max(sent)),
            limited: false,
        },
        _ => Budget {
            bps: None,
            limited: false,
        },
    }
}

/// Whether the bandwidth estimate, not the tiles, took a subscriber below a layer it is sent
/// now: `targets` (within the estimate) lower than both `current` and `unlimited` (what the
/// tiles alone would get).
fn forced_down(
    targets: &[Option<usize>],
    unlimited: &[Option<usize>],
    current: &[Option<usize>],
) -> bool {
    targets
        .iter()
        .zip(unlimited)
        .zip(current)
        .any(|((target, unlimited), current)| {
            let below = |other: &Option<usize>| match (target, other) {
                (Some(t), Some(o)) => t < o,
                (None, Some(_)) => true,
                _ => false,
            };
            below(current) && below(unlimited)
        })
}

/// Which of the microphones (when each last carried speech, whether it is heard now) stay
/// heard: the `count` that spoke last; on a tie the one heard already, so the choice does not
/// flicker while several people speak at once.
fn audible_speakers(microphones: &[(Option<Instant>, bool)], count: usize) -> Vec<bool> {
    let mut order: Vec<usize> = (0..microphones.len()).collect();
    order.sort_by(|&a, &b| {
        let (voice_a, heard_a) = microphones[a];
        let (voice_b, heard_b) = microphones[b];
        voice_b.cmp(&voice_a).then(heard_b.cmp(&heard_a))
    });
    let mut audible = vec![false; microphones.len()];
    for &index in order.iter().take(count) {
        audible[index] = microphones[index].0.is_some();
    }
    audible
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn wanted(bitrates: [u64; LAYERS]) -> Wanted {
        let mut layers = [LayerState::default(); LAYERS];
        for (layer, bitrate) in layers.iter_mut().zip(bitrates) {
            layer.available = true;
            layer.bitrate = bitrate;
        }
        Wanted {
            layers,
            visible: true,
            height: None,
            cap: LAYERS - 1,
            speaker: false,
        }
    }

    #[test]
    fn a_lagging_subscriber_is_capped_at_the_lowest_layer_the_track_has() {
        let layer = |available| LayerState {
            available,
            ..LayerState::default()
        };
        let simulcast = [layer(true), layer(true), layer(true)];
        assert_eq!(lag_cap(2, &simulcast, false), 2);
        assert_eq!(lag_cap(2, &simulcast, true), 0);
        assert_eq!(lag_cap(1, &simulcast, true), 0);
        // A track without simulcast has its one layer on top: it keeps it.
        let single = [layer(false), layer(false), layer(true)];
        assert_eq!(lag_cap(2, &single, true), 2);
        assert_eq!(lag_cap(2, &[layer(false); LAYERS], true), 2);
    }

    #[test]
    fn only_a_falling_estimate_below_what_is_sent_limits_the_layers() {
        let tiles = [wanted([150_000, 500_000, 1_500_000])];
        // A fresh fall below the high layer being sent: the estimate is the budget.
        let congested = budget(Some(200_000), 1_500_000, true, true);
        assert_eq!(
            congested,
            Budget {
                bps: Some(200_000),
                limited: true
            }
        );
        assert_eq!(simulcast::allocate(congested.bps, &tiles), vec![Some(0)]);
        // An estimate lagging after a step up (below what is sent, but not falling): no limit.
        let lagging = budget(Some(300_000), 1_500_000, false, true);
        assert_eq!(lagging.bps, None);
        assert_eq!(simulcast::allocate(lagging.bps, &tiles), vec![Some(2)]);
        // A fall that stays above what is sent (the tile got smaller): no limit.
        assert_eq!(budget(Some(235_000), 150_000, true, true).bps, None);
        // Held after a forced step down: no step beyond the estimate, none below what is sent.
        let held = budget(Some(235_000), 150_000, false, false);
        assert_eq!(
            held,
            Budget {
                bps: Some(235_000),
                limited: false
            }
        );
        assert_eq!(simulcast::allocate(held.bps, &tiles), vec![Some(0)]);
        assert_eq!(
            budget(Some(10_000_000), 150_000, false, false).bps,
            Some(10_000_000)
        );
        // No estimate: no limit.
        assert_eq!(budget(None, 150_000, true, true).bps, None);
    }

    #[test]
    fn only_the_estimate_holds_probing_back_not_a_hidden_or_smaller_tile() {
        // A hidden tile (the tiles alone want nothing): not forced by the estimate.
        assert!(!forced_down(&[None], &[None], &[Some(0)]));
        // A smaller tile: neither.
        assert!(!forced_down(&[Some(0)], &[Some(0)], &[Some(2)]));
        // The estimate takes the high layer away from a large tile: forced.
        assert!(forced_down(&[Some(0)], &[Some(2)], &[Some(2)]));
        // Going up, or staying: not forced.
        assert!(!forced_down(&[Some(1)], &[Some(2)], &[Some(0)]));
        assert!(!forced_down(&[Some(1)], &[Some(2)], &[None]));
    }

    #[test]
    fn the_last_speakers_are_heard_and_ties_keep_who_is_heard() {
        let start = Instant::now();
        let at = |ms: u64| Some(start + Duration::from_millis(ms));
        assert_eq!(
            audible_speakers(
                &[
                    (at(100), false),
                    (None, true),
                    (at(300), false),
                    (at(200), false)
                ],
                2
            ),
            vec![false, false, true, true]
        );
        // Four speak in the same tick: the two heard already stay heard.
        assert_eq!(
            audible_speakers(
                &[(at(5), false), (at(5), true), (at(5), false), (at(5), true)],
                2
            ),
            vec![false, true, false, true]
        );
        // Nobody spoke yet: nobody is heard.
        assert_eq!(
            audible_speakers(&[(None, false), (None, false)], 3),
            vec![false, false]
        );
    }
}
