//! A real softphone: baresip calls the gateway's general address, hears the welcome, types the
//! meeting ID and the password on its keypad (RFC 4733, through baresip's console), and talks:
//! its WAV source is a 440 Hz tone, which a loadgen listener in the meeting receives in Opus;
//! a speaker in the meeting publishes 1 kHz, which baresip records (`sndfile`) with everything
//! else it heard. The recording holds the prompts in the order the menu plays them (found by
//! their energy envelopes) and then the speaker's 1 kHz without the phone's own 440 Hz.

mod support;
#[path = "support/api.rs"]
mod test_api;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sip::prompt::{Prompt, Prompts};
use sip::tone::{power, sine};
use support::{GATEWAY, TestGateway, config, decode_opus, init_tracing};

/// baresip's console (the `cons` module), where the test types.
const CONSOLE: &str = "127.0.0.1:5555";
/// How long the phone listens to the room once the prompts are over.
const LISTEN: Duration = Duration::from_secs(4);

#[test]
fn a_softphone_dials_in_types_the_id_and_password_and_talks_with_the_room() {
    if !loadgen::netns::isolate() {
        return;
    }
    init_tracing();
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let api = test_api::Api::start_with_sfu().await;
            let gateway = TestGateway::start(config(&api.url)).await;
            let prompts = Prompts::load(None).expect("the built-in prompts");

            let (listener, _) = api.join_listener("Listener").await;
            let speaking = api.speak("Speaker", 1_000.0, Duration::from_secs(90)).await;

            let dir = tempfile::tempdir().expect("tempdir");
            let mut phone = Baresip::start(dir.path());
            let console = tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("a socket");
            let typ = |keys: String| {
                let console = &console;
                async move {
                    console
                        .send_to(keys.as_bytes(), CONSOLE)
                        .await
                        .expect("typed");
                }
            };
            let digits = |n: f64| {
                gateway.wait_for_at_least(
                    "conclave_sip_dtmf_digits_total",
                    ("method", "rfc4733"),
                    n,
                )
            };

            // The whole welcome, then the ID; the whole password question, then the password.
            let plays = |prompt: Prompt| {
                gateway.wait_for_at_least(
                    "conclave_sip_prompt_plays_total",
                    ("prompt", prompt.name()),
                    1.0,
                )
            };
            plays(Prompt::Welcome).await;
            tokio::time::sleep(prompts.duration(Prompt::Welcome)).await;
            let mut typed = 0.0;
            for key in format!("{}#", api.meeting_id).chars() {
                typ(key.to_string()).await;
                typed += 1.0;
                digits(typed).await;
            }
            plays(Prompt::EnterPassword).await;
            tokio::time::sleep(prompts.duration(Prompt::EnterPassword)).await;
            for key in format!("{}#", api.password).chars() {
                typ(key.to_string()).await;
                typed += 1.0;
                digits(typed).await;
            }
            gateway
                .wait_for("conclave_sip_calls_total", Some(("outcome", "joined")), 1.0)
                .await;
            plays(Prompt::participants(2)).await;
            tokio::time::sleep(prompts.duration(Prompt::participants(2)) + LISTEN).await;

            // Phone → room: one of the listener's audio tracks carries 440 Hz.
            let carried = listener
                .received()
                .values()
                .filter(|t| !t.video)
                .any(|track| {
                    let pcm = decode_opus(&track.audio_payloads);
                    pcm.len() > 48_000 * 2 && {
                        let tail = &pcm[pcm.len() - 48_000 * 2..];
                        let at = power(tail, 48_000, 440.0);
                        at > 1_000_000.0
                            && [300.0, 1_000.0, 2_000.0]
                                .iter()
                                .all(|&f| at > 100.0 * power(tail, 48_000, f))
                    }
                });
            assert!(carried, "the softphone's 440 Hz reached the room");

            typ("/hangup\n".to_owned()).await;
            gateway
                .wait_for("conclave_sip_calls_active", None, 0.0)
                .await;
            let heard = phone.stop_and_read_heard();

            // The prompts, in the order the menu played them: each is found after the one
            // before it.
            let mut after = 0;
            for prompt in [
                Prompt::Welcome,
                Prompt::EnterPassword,
                Prompt::CorrectId,
                Prompt::participants(2),
            ] {
                let samples = prompts.samples(prompt);
                let (at, score) = find(&heard[after..], samples);
                assert!(
                    score > 0.8,
                    "{} is in the recording after {after} (best match {score:.2} at {})",
                    prompt.name(),
                    after + at
                );
                // A prompt cut short by a key is found by its beginning.
                after += at + samples.len().min(MATCHED) / 2;
            }
            // The comparison tells prompts apart: ones never played are not found.
            for never in [Prompt::ConferenceFull, Prompt::IncorrectId, Prompt::Error] {
                let (at, score) = find(&heard, prompts.samples(never));
                assert!(score < 0.8, "{} matched {score:.2} at {at}", never.name());
            }
            // Then the room: the speaker's 1 kHz, not the phone's own 440 Hz.
            let tail = &heard[heard.len().saturating_sub(8_000 * 3)..];
            let at_1k = power(tail, 8_000, 1_000.0);
            assert!(at_1k > 300_000.0, "the phone heard 1 kHz: {at_1k}");
            for other in [440.0, 300.0, 2_000.0] {
                let p = power(tail, 8_000, other);
                assert!(at_1k > 100.0 * p, "1 kHz {at_1k} vs {other} Hz {p}");
            }
            speaking.abort();
            listener.leave().await;
            gateway.gateway.stop().await;
        });
}

/// Samples of a prompt compared with the recording (its first 0.6 s).
const MATCHED: usize = 4_800;

/// Where `prompt` is in `heard` (in samples) and how well it matches there: the normalised
/// correlation of their energy envelopes (10 ms blocks) over the prompt's first [`MATCHED`]
/// samples.
fn find(heard: &[i16], prompt: &[i16]) -> (usize, f64) {
    const BLOCK: usize = 80;
    let envelope = |samples: &[i16]| -> Vec<f64> {
        samples
            .chunks(BLOCK)
            .map(|b| b.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>().sqrt())
            .collect()
    };
    let wanted = envelope(&prompt[..prompt.len().min(MATCHED)]);
    let have = envelope(heard);
    let centred = |v: &[f64]| {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let centred: Vec<f64> = v.iter().map(|x| x - mean).collect();
        let norm = centred.iter().map(|x| x * x).sum::<f64>().sqrt();
        (centred, norm)
    };
    let (wanted, wanted_norm) = centred(&wanted);
    let mut best = (0, f64::MIN);
    for start in 0..have.len().saturating_sub(wanted.len()) {
        let (window, norm) = centred(&have[start..start + wanted.len()]);
        if norm == 0.0 {
            continue;
        }
        let score =
            window.iter().zip(&wanted).map(|(a, b)| a * b).sum::<f64>() / (norm * wanted_norm);
        if score > best.1 {
            best = (start * BLOCK, score);
        }
    }
    best
}

/// baresip 1.0 (Debian `baresip-core`), headless: its source a 440 Hz WAV, its player a null
/// sink, `sndfile` recording what it hears, its console on UDP [`CONSOLE`]; it dials the
/// gateway's general address at start.
struct Baresip {
    child: Child,
    records: PathBuf,
}

impl Baresip {
    fn start(dir: &Path) -> Baresip {
        let records = dir.join("records");
        std::fs::create_dir_all(&records).expect("the records folder");
        // baresip hangs up when its source ends: a minute is longer than the call.
        let source = dir.join("tone.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(&source, spec).expect("the source WAV");
        for sample in sine(440.0, 8_000, 8_000 * 60, 8_000) {
            wav.write_sample(sample).expect("a sample");
        }
        wav.finalize().expect("the source WAV");
        let config = format!(
            "sip_listen 127.0.0.1:5062\n\
             net_interface 127.0.0.1\n\
             audio_source aufile,{source}\n\
             audio_player aubridge,nil\n\
             audio_alert aubridge,nil\n\
             module_path /usr/lib/baresip/modules\n\
             module cons.so\n\
             module g711.so\n\
             module aufile.so\n\
             module aubridge.so\n\
             module sndfile.so\n\
             module_tmp uuid.so\n\
             module_tmp account.so\n\
             module_app menu.so\n\
             cons_listen {CONSOLE}\n\
             snd_path {records}\n",
            source = source.display(),
            records = records.display(),
        );
        std::fs::write(dir.join("config"), config).expect("baresip's config");
        std::fs::write(
            dir.join("accounts"),
            "<sip:+15550001234@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU/8000/1\n",
        )
        .expect("baresip's accounts");
        let log = std::fs::File::create(dir.join("baresip.log")).expect("a log file");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(dir)
            .args(["-e", &format!("/dial sip:conference@{GATEWAY}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("baresip (Debian package baresip-core) is needed for this test: {err}")
            });
        Baresip { child, records }
    }

    /// Stops baresip and reads what it heard (`dump-…-dec.wav`), from the data chunk on (the
    /// header's sizes may not be final).
    fn stop_and_read_heard(&mut self) -> Vec<i16> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let file = std::fs::read_dir(&self.records)
            .expect("the records folder")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
            .unwrap_or_else(|| panic!("baresip recorded nothing in {}", self.records.display()));
        let bytes = std::fs::read(&file).expect("the recording");
        let data = bytes
            .windows(4)
            .position(|w| w == b"data")
            .expect("a data chunk")
            + 8;
        bytes[data..]
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
