//! What the composer makes of a recording's segments: one ffmpeg run that mixes every audio
//! track, lays the video tracks and the presentation pages out in a grid, and writes an MP4
//! (H.264 and AAC, plays in every browser, seekable over HTTP range requests) — and the chat as
//! a WebVTT sidecar the browser's player shows as captions.
//!
//! Pure: the segments (downloaded, with their timing) in, the ffmpeg arguments and the concat
//! lists out. The worker (`super::worker`) downloads, runs and uploads.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Segments further apart than this start a new run (the track paused, or the pod was lost).
pub const RUN_GAP_MS: i64 = 1_500;

/// The canvas of the composed video.
pub const WIDTH: u32 = 1280;
/// The canvas height.
pub const HEIGHT: u32 = 720;

/// Someone in the recording, as the SFU names them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// `account:<id>`, `guest:<id>`, `phone:…`.
    pub identity: String,
    /// The name shown.
    pub name: String,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A microphone.
    Audio,
    /// A camera.
    Video,
    /// A shared screen.
    Screen,
}

/// The JSON the SFU writes beside each segment (`tracks/{track}/{seq}.json`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentMeta {
    /// The track.
    pub track: String,
    /// What it carries.
    pub kind: Kind,
    /// `opus`, `vp8` or `h264`.
    pub codec: String,
    /// Whose it is.
    pub participant: Participant,
    /// Arrival of the first packet.
    pub start: DateTime<Utc>,
    /// Arrival of the last packet.
    pub end: DateTime<Utc>,
}

/// One downloaded segment with its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The local file.
    pub path: PathBuf,
    /// Its start.
    pub start: DateTime<Utc>,
    /// Its end.
    pub end: DateTime<Utc>,
}

/// One track's segments, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// The track's id.
    pub id: String,
    /// What it carries.
    pub kind: Kind,
    /// Its segments by start.
    pub segments: Vec<Segment>,
}

/// A presentation page shown from `start` to `end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The downloaded image.
    pub path: PathBuf,
    /// Shown from.
    pub start: DateTime<Utc>,
    /// Shown until.
    pub end: DateTime<Utc>,
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chat {
    /// Sent at.
    pub at: DateTime<Utc>,
    /// Sender's name.
    pub from: String,
    /// The text.
    pub text: String,
}

/// An ffmpeg run and the concat lists it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Arguments after `ffmpeg`.
    pub args: Vec<String>,
    /// Concat lists to write before the run: (file, contents).
    pub lists: Vec<(PathBuf, String)>,
    /// The composed duration.
    pub duration_ms: i64,
}

/// Consecutive segments of a track without a gap.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run<'a> {
    offset_ms: i64,
    segments: Vec<&'a Segment>,
}

fn runs(track: &Track, origin: DateTime<Utc>) -> Vec<Run<'_>> {
    let mut runs: Vec<Run<'_>> = Vec::new();
    let mut last_end: Option<DateTime<Utc>> = None;
    for segment in &track.segments {
        let joins = last_end.is_some_and(|end| (segment.start - end).num_milliseconds() < RUN_GAP_MS);
        match runs.last_mut() {
            Some(run) if joins => run.segments.push(segment),
            _ => runs.push(Run {
                offset_ms: (segment.start - origin).num_milliseconds().max(0),
                segments: vec![segment],
            }),
        }
        last_end = Some(segment.end);
    }
    runs
}

/// Columns and rows of a grid of `cells` tiles: as square as possible, wider than high.
pub fn grid(cells: usize) -> (u32, u32) {
    if cells == 0 {
        return (1, 1);
    }
    let mut columns = 1;
    while columns * columns < cells {
        columns += 1;
    }
    let rows = cells.div_ceil(columns);
    (columns as u32, rows as u32)
}

fn quote_concat(path: &Path) -> String {
    // ffconcat quoting: single quotes, a quote inside as '\''.
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// The ffmpeg run that composes the recording that started at `origin` and lasted
/// `duration_ms` into `output` (an `.mp4`). Concat lists go into `work`.
pub fn plan(
    origin: DateTime<Utc>,
    duration_ms: i64,
    tracks: &[Track],
    pages: &[Page],
    work: &Path,
    output: &Path,
) -> Plan {
    let duration_ms = duration_ms.max(1);
    let seconds = format!("{:.3}", duration_ms as f64 / 1000.0);
    let mut args: Vec<String> = ["-hide_banner", "-nostdin", "-y", "-loglevel", "error"]
        .map(String::from)
        .to_vec();
    let mut lists = Vec::new();
    let mut filters: Vec<String> = Vec::new();
    let mut input = 0usize;
    let mut audio = Vec::new();
    // Video cells: each video/screen track, then the presentation.
    let video_tracks: Vec<&Track> = tracks.iter().filter(|t| t.kind != Kind::Audio).collect();
    let cells = video_tracks.len() + usize::from(!pages.is_empty());
    let (columns, rows) = grid(cells);
    let cell_width = (WIDTH / columns) & !1;
    let cell_height = (HEIGHT / rows) & !1;
    let cell_at = |cell: usize| -> (u32, u32) {
        let column = cell as u32 % columns;
        let row = cell as u32 / columns;
        (column * cell_width, row * cell_height)
    };
    // (input label, cell) of every video piece, overlaid in order.
    let mut pieces: Vec<(String, usize)> = Vec::new();

    for track in tracks {
        let cell = video_tracks.iter().position(|t| t.id == track.id);
        for (n, run) in runs(track, origin).into_iter().enumerate() {
            let list = work.join(format!("{}-{n}.ffconcat", track.id));
            let mut text = String::from("ffconcat version 1.0\n");
            for segment in &run.segments {
                let _ = writeln!(text, "file {}", quote_concat(&segment.path));
            }
            lists.push((list.clone(), text));
            args.extend(["-f", "concat", "-safe", "0", "-i"].map(String::from));
            args.push(list.display().to_string());
            let offset = run.offset_ms;
            match (track.kind, cell) {
                (Kind::Audio, _) => {
                    let label = format!("a{input}");
                    filters.push(format!(
                        "[{input}:a]aresample=48000,asetpts=PTS-STARTPTS,adelay={offset}:all=1[{label}]"
                    ));
                    audio.push(label);
                }
                (_, Some(cell)) => {
                    let label = format!("v{input}");
                    filters.push(format!(
                        "[{input}:v]setpts=PTS-STARTPTS+{}/TB,scale={cell_width}:{cell_height}:force_original_aspect_ratio=decrease,pad={cell_width}:{cell_height}:(ow-iw)/2:(oh-ih)/2,setsar=1[{label}]",
                        offset as f64 / 1000.0
                    ));
                    pieces.push((label, cell));
                }
                (_, None) => {}
            }
            input += 1;
        }
    }
    let presentation_cell = video_tracks.len();
    for page in pages {
        let offset_ms = (page.start - origin).num_milliseconds().clamp(0, duration_ms);
        let shown_ms = (page.end - page.start).num_milliseconds().clamp(1, duration_ms - offset_ms + 1);
        args.extend(["-loop", "1", "-framerate", "2", "-t"].map(String::from));
        args.push(format!("{:.3}", shown_ms as f64 / 1000.0));
        args.push("-i".into());
        args.push(page.path.display().to_string());
        let label = format!("v{input}");
        filters.push(format!(
            "[{input}:v]setpts=PTS-STARTPTS+{}/TB,scale={cell_width}:{cell_height}:force_original_aspect_ratio=decrease,pad={cell_width}:{cell_height}:(ow-iw)/2:(oh-ih)/2:color=white,setsar=1,format=yuv420p[{label}]",
            offset_ms as f64 / 1000.0
        ));
        pieces.push((label, presentation_cell));
        input += 1;
    }

    // Video: the pieces overlaid on a black canvas, each in its cell, only while it has frames.
    filters.push(format!("color=c=black:s={WIDTH}x{HEIGHT}:r=25:d={seconds},format=yuv420p[base0]"));
    let mut base = "base0".to_owned();
    for (n, (label, cell)) in pieces.iter().enumerate() {
        let (x, y) = cell_at(*cell);
        let next = format!("base{}", n + 1);
        filters.push(format!("[{base}][{label}]overlay=x={x}:y={y}:eof_action=pass:repeatlast=0[{next}]"));
        base = next;
    }
    filters.push(format!("[{base}]null[vout]"));

    // Audio: every run mixed; silence when nobody spoke.
    if audio.is_empty() {
        filters.push(format!("anullsrc=r=48000:cl=stereo,atrim=0:{seconds}[aout]"));
    } else {
        let inputs: String = audio.iter().map(|label| format!("[{label}]")).collect();
        filters.push(format!(
            "{inputs}amix=inputs={}:duration=longest:dropout_transition=0:normalize=0,apad,atrim=0:{seconds}[aout]",
            audio.len()
        ));
    }

    args.push("-filter_complex".into());
    args.push(filters.join(";\n"));
    args.extend(
        [
            "-map", "[vout]", "-map", "[aout]", "-c:v", "libx264", "-preset", "veryfast", "-crf",
            "27", "-pix_fmt", "yuv420p", "-g", "50", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
            "-movflags", "+faststart", "-t",
        ]
        .map(String::from),
    );
    args.push(seconds);
    args.push(output.display().to_string());
    Plan { args, lists, duration_ms }
}

fn vtt_time(ms: i64) -> String {
    let ms = ms.max(0);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// How long a chat message stays on screen as a caption.
const CHAT_SHOWN_MS: i64 = 6_000;

/// The chat as WebVTT: each message a cue of a few seconds from when it was sent.
pub fn chat_vtt(origin: DateTime<Utc>, chat: &[Chat]) -> String {
    let mut vtt = String::from("WEBVTT\n\n");
    for (n, message) in chat.iter().enumerate() {
        let start = (message.at - origin).num_milliseconds().max(0);
        // A cue's text may not hold "-->" or a blank line; tags are escaped.
        let escape = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .lines()
                .filter(|line| !line.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let _ = write!(
            vtt,
            "{}\n{} --> {}\n<v {}>{}\n\n",
            n + 1,
            vtt_time(start),
            vtt_time(start + CHAT_SHOWN_MS),
            escape(&message.from),
            escape(&message.text)
        );
    }
    vtt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).expect("time")
    }

    fn segment(name: &str, start: i64, end: i64) -> Segment {
        Segment { path: PathBuf::from(format!("/w/{name}")), start: at(start), end: at(end) }
    }

    #[test]
    fn grids_are_as_square_as_possible() {
        assert_eq!(grid(0), (1, 1));
        assert_eq!(grid(1), (1, 1));
        assert_eq!(grid(2), (2, 1));
        assert_eq!(grid(3), (2, 2));
        assert_eq!(grid(5), (3, 2));
        assert_eq!(grid(9), (3, 3));
        assert_eq!(grid(10), (4, 3));
    }

    #[test]
    fn a_gap_in_a_track_starts_a_new_run_at_its_own_offset() {
        let track = Track {
            id: "001-video".into(),
            kind: Kind::Video,
            segments: vec![
                segment("a", 200, 5_200),
                segment("b", 5_220, 10_100),
                // The camera was off for 20 s.
                segment("c", 30_000, 35_000),
            ],
        };
        let runs = runs(&track, at(0));
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].offset_ms, 200);
        assert_eq!(runs[0].segments.len(), 2);
        assert_eq!(runs[1].offset_ms, 30_000);
    }

    #[test]
    fn the_plan_mixes_every_audio_run_and_places_each_video_in_its_cell() {
        let tracks = vec![
            Track { id: "001-audio".into(), kind: Kind::Audio, segments: vec![segment("1.ogg", 0, 5_000), segment("2.ogg", 5_000, 9_000)] },
            Track { id: "002-video".into(), kind: Kind::Video, segments: vec![segment("1.ivf", 100, 9_000)] },
            Track { id: "003-audio".into(), kind: Kind::Audio, segments: vec![segment("3.ogg", 2_000, 9_000)] },
            Track { id: "004-video".into(), kind: Kind::Video, segments: vec![segment("4.ivf", 2_000, 9_000)] },
        ];
        let pages = vec![Page { path: "/w/page-2.png".into(), start: at(3_000), end: at(6_000) }];
        let plan = plan(at(0), 10_000, &tracks, &pages, Path::new("/w"), Path::new("/w/out.mp4"));
        assert_eq!(plan.lists.len(), 4, "one concat list per run");
        assert!(plan.lists[0].1.contains("file '/w/1.ogg'\nfile '/w/2.ogg'"), "{}", plan.lists[0].1);
        let graph = &plan.args[plan.args.iter().position(|a| a == "-filter_complex").expect("graph") + 1];
        assert!(graph.contains("[0:a]aresample=48000,asetpts=PTS-STARTPTS,adelay=0:all=1[a0]"), "{graph}");
        assert!(graph.contains("[2:a]aresample=48000,asetpts=PTS-STARTPTS,adelay=2000:all=1[a2]"), "{graph}");
        assert!(graph.contains("[a0][a2]amix=inputs=2"), "{graph}");
        // Three cells (two cameras, the presentation): a 2x2 grid of 640x360.
        assert!(graph.contains("[1:v]setpts=PTS-STARTPTS+0.1/TB,scale=640:360"), "{graph}");
        assert!(graph.contains("[base0][v1]overlay=x=0:y=0"), "{graph}");
        assert!(graph.contains("[base1][v3]overlay=x=640:y=0"), "{graph}");
        assert!(graph.contains("[4:v]setpts=PTS-STARTPTS+3/TB"), "{graph}");
        assert!(graph.contains("[base2][v4]overlay=x=0:y=360"), "{graph}");
        let page_input = plan.args.iter().position(|a| a == "/w/page-2.png").expect("page input");
        assert_eq!(plan.args[page_input - 2], "3.000", "the page is shown for 3 s");
        assert_eq!(plan.args.last().map(String::as_str), Some("/w/out.mp4"));
        assert_eq!(plan.args[plan.args.len() - 2], "10.000");
    }

    #[test]
    fn a_recording_without_sound_gets_silence() {
        let tracks = vec![Track { id: "001-video".into(), kind: Kind::Video, segments: vec![segment("1.ivf", 0, 4_000)] }];
        let plan = plan(at(0), 4_000, &tracks, &[], Path::new("/w"), Path::new("/w/out.mp4"));
        let graph = &plan.args[plan.args.iter().position(|a| a == "-filter_complex").expect("graph") + 1];
        assert!(graph.contains("anullsrc=r=48000:cl=stereo,atrim=0:4.000[aout]"), "{graph}");
        assert!(graph.contains("scale=1280:720"), "one cell fills the canvas: {graph}");
    }

    #[test]
    fn chat_becomes_webvtt_cues_without_markup() {
        let vtt = chat_vtt(
            at(0),
            &[
                Chat { at: at(1_500), from: "Ada".into(), text: "hello <b>all</b>".into() },
                Chat { at: at(3_723_004), from: "B & C".into(), text: "line one\n\nline --> two".into() },
            ],
        );
        assert!(vtt.starts_with("WEBVTT\n\n1\n00:00:01.500 --> 00:00:07.500\n<v Ada>hello &lt;b&gt;all&lt;/b&gt;\n\n"), "{vtt}");
        assert!(vtt.contains("2\n01:02:03.004 --> 01:02:09.004\n<v B &amp; C>line one\nline --&gt; two\n"), "{vtt}");
    }
}
