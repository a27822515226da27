//! Voice prompts: the built-in English WAV files (sip/prompts/, made by
//! scripts/make-prompts.sh) and the ones a `--sip-prompts-dir` folder puts in their place.

use std::collections::HashMap;
use std::path::Path;

use crate::{Error, Result};

/// Sample rate every prompt has: what G.711 carries, so no resampling on the way out.
pub const SAMPLE_RATE: u32 = 8000;

/// Every prompt the gateway plays. The file of each is `<name>.wav`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prompt {
    /// "Welcome to Conclave. Please enter the meeting ID, followed by the pound key."
    Welcome,
    /// "Please enter the meeting ID, followed by the pound key." (asked again)
    EnterId,
    /// The meeting ID or password was not right.
    IncorrectId,
    /// "Please try again later."
    TryAgain,
    /// "Goodbye."
    Bye,
    /// The meeting ID (and password) were right.
    CorrectId,
    /// "Please enter the meeting password, followed by the pound key."
    EnterPassword,
    /// The meeting has not started yet, or has ended.
    NotActive,
    /// The meeting is full.
    ConferenceFull,
    /// Something went wrong on our side.
    Error,
    /// How many others are in the meeting: 0 to 5, then "more than five".
    Participants(u8),
    /// The caller, the organiser, started the meeting.
    Started,
    /// A short tone when someone joins.
    NewParticipant,
    /// The caller muted themselves.
    Muted,
    /// The caller unmuted themselves.
    Unmuted,
    /// "This meeting is being recorded." (when a recording starts, or on entering a meeting
    /// that is being recorded)
    Recording,
}

impl Prompt {
    /// Every prompt, in the order of the documentation.
    pub const ALL: [Prompt; 22] = [
        Prompt::Welcome,
        Prompt::EnterId,
        Prompt::IncorrectId,
        Prompt::TryAgain,
        Prompt::Bye,
        Prompt::CorrectId,
        Prompt::EnterPassword,
        Prompt::NotActive,
        Prompt::ConferenceFull,
        Prompt::Error,
        Prompt::Participants(0),
        Prompt::Participants(1),
        Prompt::Participants(2),
        Prompt::Participants(3),
        Prompt::Participants(4),
        Prompt::Participants(5),
        Prompt::Participants(6),
        Prompt::Started,
        Prompt::NewParticipant,
        Prompt::Muted,
        Prompt::Unmuted,
        Prompt::Recording,
    ];

    /// The prompt's name: its file is `<name>.wav`, its metric label the same.
    pub fn name(self) -> &'static str {
        match self {
            Prompt::Welcome => "welcome",
            Prompt::EnterId => "enter-id",
            Prompt::IncorrectId => "incorrect-id",
            Prompt::TryAgain => "try-again",
            Prompt::Bye => "bye",
            Prompt::CorrectId => "correct-id",
            Prompt::EnterPassword => "enter-password",
            Prompt::NotActive => "not-active",
            Prompt::ConferenceFull => "conference-full",
            Prompt::Error => "error",
            Prompt::Participants(0) => "participants-0",
            Prompt::Participants(1) => "participants-1",
            Prompt::Participants(2) => "participants-2",
            Prompt::Participants(3) => "participants-3",
            Prompt::Participants(4) => "participants-4",
            Prompt::Participants(5) => "participants-5",
            Prompt::Participants(_) => "participants-more",
            Prompt::Started => "started",
            Prompt::NewParticipant => "new-participant",
            Prompt::Muted => "muted",
            Prompt::Unmuted => "unmuted",
            Prompt::Recording => "recording",
        }
    }

    /// The prompt saying how many others are in the meeting (six and up share one).
    pub fn participants(others: u32) -> Prompt {
        Prompt::Participants(u8::try_from(others.min(6)).unwrap_or(6))
    }

    fn builtin(self) -> &'static [u8] {
        macro_rules! wav {
            ($name:literal) => {
                include_bytes!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/prompts/",
                    $name,
                    ".wav"
                ))
                .as_slice()
            };
        }
        match self {
            Prompt::Welcome => wav!("welcome"),
            Prompt::EnterId => wav!("enter-id"),
            Prompt::IncorrectId => wav!("incorrect-id"),
            Prompt::TryAgain => wav!("try-again"),
            Prompt::Bye => wav!("bye"),
            Prompt::CorrectId => wav!("correct-id"),
            Prompt::EnterPassword => wav!("enter-password"),
            Prompt::NotActive => wav!("not-active"),
            Prompt::ConferenceFull => wav!("conference-full"),
            Prompt::Error => wav!("error"),
            Prompt::Participants(0) => wav!("participants-0"),
            Prompt::Participants(1) => wav!("participants-1"),
            Prompt::Participants(2) => wav!("participants-2"),
            Prompt::Participants(3) => wav!("participants-3"),
            Prompt::Participants(4) => wav!("participants-4"),
            Prompt::Participants(5) => wav!("participants-5"),
            Prompt::Participants(_) => wav!("participants-more"),
            Prompt::Started => wav!("started"),
            Prompt::NewParticipant => wav!("new-participant"),
            Prompt::Muted => wav!("muted"),
            Prompt::Unmuted => wav!("unmuted"),
            Prompt::Recording => wav!("recording"),
        }
    }
}

/// The prompts in force: 8 kHz linear samples, one entry per name.
#[derive(Debug, Clone)]
pub struct Prompts {
    samples: HashMap<&'static str, Vec<i16>>,
}

impl Prompts {
    /// The built-in prompts, each replaced by `<dir>/<name>.wav` when that file exists.
    ///
    /// # Errors
    /// [`Error::Prompt`] naming the file when one cannot be read or is not 8000 Hz mono
    /// 16-bit PCM; a folder that cannot be listed is an error too.
    pub fn load(dir: Option<&Path>) -> Result<Prompts> {
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(Error::Prompt(format!(
                "--sip-prompts-dir {}: not a folder",
                dir.display()
            )));
        }
        let mut samples = HashMap::new();
        for prompt in Prompt::ALL {
            let name = prompt.name();
            let custom = dir
                .map(|dir| dir.join(format!("{name}.wav")))
                .filter(|path| path.exists());
            let decoded = match custom {
                Some(path) => {
                    let bytes = std::fs::read(&path).map_err(|err| {
                        Error::Prompt(format!("cannot read prompt {}: {err}", path.display()))
                    })?;
                    decode(&bytes)
                        .map_err(|why| Error::Prompt(format!("prompt {}: {why}", path.display())))?
                }
                None => decode(prompt.builtin())
                    .map_err(|why| Error::Prompt(format!("built-in prompt {name}.wav: {why}")))?,
            };
            samples.insert(name, decoded);
        }
        Ok(Prompts { samples })
    }

    /// How long `prompt` plays.
    pub fn duration(&self, prompt: Prompt) -> std::time::Duration {
        let samples = u64::try_from(self.samples(prompt).len()).unwrap_or(u64::MAX);
        std::time::Duration::from_micros(samples * 1_000_000 / u64::from(SAMPLE_RATE))
    }

    /// The 8 kHz samples of `prompt`.
    pub fn samples(&self, prompt: Prompt) -> &[i16] {
        self.samples
            .get(prompt.name())
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Decodes a WAV file that must be 8000 Hz, mono, 16-bit integer PCM.
fn decode(bytes: &[u8]) -> Result<Vec<i16>, String> {
    const EXPECTED: &str = "expected WAV, 8000 Hz, mono, 16-bit PCM (e.g. sox in.wav -r 8000 -c 1 -b 16 -e signed-integer out.wav)";
    let reader = hound::WavReader::new(bytes)
        .map_err(|err| format!("not a WAV file ({err}); {EXPECTED}"))?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE
        || spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(format!(
            "{} Hz, {} channel(s), {}-bit {:?}; {EXPECTED}",
            spec.sample_rate, spec.channels, spec.bits_per_sample, spec.sample_format
        ));
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| format!("damaged WAV data ({err})"))?;
    if samples.is_empty() {
        return Err("the file holds no audio".into());
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(path, spec).expect("create wav");
        for s in samples {
            writer.write_sample(*s).expect("sample");
        }
        writer.finalize().expect("finalize");
    }

    #[test]
    fn every_built_in_prompt_loads_and_is_short() {
        let prompts = Prompts::load(None).expect("built-in prompts");
        for prompt in Prompt::ALL {
            let len = prompts.samples(prompt).len();
            assert!(len > 800, "{} is {len} samples", prompt.name());
            assert!(len < 8000 * 10, "{} is {len} samples", prompt.name());
        }
        assert_eq!(Prompt::participants(9), Prompt::Participants(6));
        assert_eq!(Prompt::participants(9).name(), "participants-more");
    }

    #[test]
    fn a_folder_replaces_one_prompt_and_keeps_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let custom = vec![1234i16; 4000];
        write_wav(&dir.path().join("welcome.wav"), 8000, 1, &custom);
        std::fs::write(dir.path().join("README.txt"), "not a prompt").expect("write");
        let prompts = Prompts::load(Some(dir.path())).expect("prompts");
        let builtin = Prompts::load(None).expect("built-in");
        assert_eq!(prompts.samples(Prompt::Welcome), custom.as_slice());
        assert_eq!(prompts.samples(Prompt::Bye), builtin.samples(Prompt::Bye));
    }

    #[test]
    fn a_prompt_in_the_wrong_format_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_wav(&dir.path().join("bye.wav"), 16000, 1, &[0; 1600]);
        let err = Prompts::load(Some(dir.path()))
            .expect_err("16 kHz refused")
            .to_string();
        assert!(err.contains("bye.wav"), "{err}");
        assert!(err.contains("16000 Hz"), "{err}");
        assert!(err.contains("8000 Hz, mono, 16-bit"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        write_wav(&dir.path().join("error.wav"), 8000, 2, &[0; 1600]);
        let err = Prompts::load(Some(dir.path()))
            .expect_err("stereo refused")
            .to_string();
        assert!(
            err.contains("error.wav") && err.contains("2 channel"),
            "{err}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("muted.wav"), b"RIFF nonsense").expect("write");
        let err = Prompts::load(Some(dir.path()))
            .expect_err("garbage refused")
            .to_string();
        assert!(
            err.contains("muted.wav") && err.contains("not a WAV"),
            "{err}"
        );

        let err = Prompts::load(Some(Path::new("/nonexistent/prompts")))
            .expect_err("missing folder")
            .to_string();
        assert!(err.contains("not a folder"), "{err}");
    }
}
