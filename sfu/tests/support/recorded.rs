//! Reading what a recording left in a local file store: its tracks' segments, their JSON, and
//! their durations as `ffprobe` (Debian package `ffmpeg`) measures them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One stored segment.
#[derive(Debug)]
pub struct StoredSegment {
    pub file: PathBuf,
    /// Its JSON, when stored.
    pub json: Option<serde_json::Value>,
}

/// The single recording under `root/recordings/`.
pub fn only_recording(root: &Path) -> PathBuf {
    let recordings: Vec<PathBuf> = std::fs::read_dir(root.join("recordings"))
        .expect("a recordings folder")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    recordings[0].clone()
}

/// Segments by track, in order (`.partial` files of an interrupted write are skipped).
pub fn tracks(recording: &Path) -> BTreeMap<String, Vec<StoredSegment>> {
    let mut tracks = BTreeMap::new();
    for track in std::fs::read_dir(recording.join("tracks")).expect("tracks") {
        let track = track.expect("entry").path();
        let mut files: Vec<PathBuf> = std::fs::read_dir(&track)
            .expect("segments")
            .map(|e| e.expect("entry").path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("ogg" | "ivf" | "h264")
                )
            })
            .collect();
        files.sort();
        let segments = files
            .into_iter()
            .map(|file| {
                let json = std::fs::read(file.with_extension("json"))
                    .ok()
                    .map(|bytes| serde_json::from_slice(&bytes).expect("segment json"));
                StoredSegment { file, json }
            })
            .collect();
        let name = track
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a name")
            .to_owned();
        tracks.insert(name, segments);
    }
    tracks
}

/// A media file's duration in seconds, as ffprobe reports it.
pub fn duration(file: &Path) -> f64 {
    let output = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format"])
        .arg(file)
        .output()
        .expect("ffprobe (Debian package ffmpeg) must be installed");
    assert!(
        output.status.success(),
        "ffprobe read {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    json["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration for {}: {json}", file.display()))
}

/// Reads a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|err| {
        panic!("{}: {err}", path.display());
    }))
    .expect("json")
}
