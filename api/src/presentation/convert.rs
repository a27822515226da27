//! Turning an uploaded file into page images with poppler (and LibreOffice for PowerPoint and
//! ODP), each tool in its own process group under resource limits.
//!
//! A hostile document must not take the API down, so every tool runs:
//! - through `prlimit` (util-linux) with a cap on address space, CPU seconds and file size;
//! - in a new process group that is killed as a whole when the wall-clock timeout passes
//!   (LibreOffice starts helpers of its own);
//! - only while holding one of `--presentation-conversions` slots.
//!
//! The file's kind is told by its first bytes, never by its name alone: a renamed program is
//! refused before any tool sees it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio::sync::Semaphore;

/// The most output of a tool that is read (pdfinfo's report, error messages).
const MAX_TOOL_OUTPUT: u64 = 64 * 1024;

/// Limits of one conversion.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest upload, in bytes.
    pub max_bytes: u64,
    /// Most pages a presentation may have.
    pub max_pages: u32,
    /// Longer side of a page image, in pixels.
    pub page_pixels: u32,
    /// Wall-clock time one conversion (all of its tools together) may take.
    pub timeout: Duration,
    /// Address space of poppler's tools, in bytes.
    pub memory_bytes: u64,
    /// Address space of LibreOffice, in bytes (it maps far more than it uses).
    pub office_memory_bytes: u64,
    /// Largest file a tool may write (a page image, the converted PDF), in bytes.
    pub max_output_bytes: u64,
}

/// Why a document was refused: a code for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// `unsupportedFormat`, `encrypted`, `noPages`, `tooManyPages`, `brokenDocument`,
    /// `conversionTimeout`, `tooLarge`.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Refused {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Why a conversion did not produce pages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document is refused (4xx).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// Every conversion slot stayed taken (503).
    #[error("every conversion slot is busy")]
    Busy,
    /// A tool could not be started, or the disk failed (500).
    #[error("running {tool} failed")]
    Io {
        /// Which tool or step.
        tool: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The kinds of file accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A PDF document.
    Pdf,
    /// A presentation LibreOffice converts to PDF first; the extension it is saved with.
    Office(&'static str),
}

/// Extensions of presentations LibreOffice opens, by container: Office Open XML and
/// OpenDocument are ZIP files, the old PowerPoint format is an OLE compound file.
const ZIP_PRESENTATIONS: [&str; 5] = ["pptx", "ppsx", "potx", "odp", "otp"];
const OLE_PRESENTATIONS: [&str; 2] = ["ppt", "pps"];

/// What the converter accepts, for people: `PDF` or `PDF, PowerPoint or ODP`.
pub fn accepted(office: bool) -> &'static str {
    if office {
        "PDF, PowerPoint (.pptx, .ppt) or OpenDocument (.odp)"
    } else {
        "PDF only on this server"
    }
}

/// Tells the file's kind from its first bytes (and, among office formats, its name).
///
/// # Errors
/// `unsupportedFormat` for anything that is not a PDF or (with LibreOffice) a presentation.
pub fn sniff(head: &[u8], filename: &str, office: bool) -> Result<Format, Refused> {
    let search = &head[..head.len().min(1024)];
    if search.windows(5).any(|w| w == b"%PDF-") {
        return Ok(Format::Pdf);
    }
    let extension = filename
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    let zip = head.starts_with(b"PK\x03\x04");
    let ole = head.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    let office_format = if zip {
        ZIP_PRESENTATIONS.iter().find(|e| **e == extension)
    } else if ole {
        OLE_PRESENTATIONS.iter().find(|e| **e == extension)
    } else {
        None
    };
    match office_format {
        Some(ext) if office => Ok(Format::Office(ext)),
        Some(_) => Err(Refused::new(
            "unsupportedFormat",
            "PDF only on this server: it cannot convert PowerPoint or ODP files; save the \
             presentation as PDF and upload that",
        )),
        None => {
            let what = if head.starts_with(b"MZ") || head.starts_with(b"\x7fELF") {
                "a program"
            } else if head.is_empty() {
                "an empty file"
            } else {
                "neither a PDF nor a presentation"
            };
            Err(Refused::new(
                "unsupportedFormat",
                format!(
                    "the file is {what}, whatever its name says; accepted: {}",
                    accepted(office)
                ),
            ))
        }
    }
}

/// Finds `program` in `PATH`.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The converter: tools, limits and slots. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Converter {
    limits: Limits,
    soffice: Option<PathBuf>,
    prlimit: Option<PathBuf>,
    slots: Arc<Semaphore>,
}

/// The result of a conversion: the page images in order, in a folder the caller owns.
#[derive(Debug)]
pub struct Converted {
    /// `page-1.png`, `page-2.png`, … in page order.
    pub pages: Vec<PathBuf>,
    /// The PDF the pages came from (the upload itself, or LibreOffice's output).
    pub pdf: PathBuf,
}

/// What one run of a tool left.
struct Run {
    status: Option<std::process::ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Converter {
    /// A converter with `limits`, LibreOffice at `soffice` (none: PDF only) and `slots`
    /// conversions at once.
    pub fn new(limits: Limits, soffice: Option<PathBuf>, slots: usize) -> Self {
        let prlimit = find_program("prlimit");
        if prlimit.is_none() {
            tracing::warn!(
                "prlimit (util-linux) is missing: presentation conversions run without memory and CPU limits, only with the timeout"
            );
        }
        Self {
            limits,
            soffice,
            prlimit,
            slots: Arc::new(Semaphore::new(slots.max(1))),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether PowerPoint and ODP files are converted.
    pub fn converts_office(&self) -> bool {
        self.soffice.is_some()
    }

    /// Converts `input` (a file of `format`) into page images inside `work` (an empty folder
    /// the caller removes).
    ///
    /// # Errors
    /// [`Error::Refused`] for a document that cannot be shown, [`Error::Busy`] when no slot
    /// frees up within the timeout, [`Error::Io`] when a tool cannot be started.
    pub async fn convert(
        &self,
        input: &Path,
        format: Format,
        work: &Path,
    ) -> Result<Converted, Error> {
        let started = Instant::now();
        let _slot = tokio::time::timeout(self.limits.timeout, self.slots.acquire())
            .await
            .map_err(|_| Error::Busy)?
            .map_err(|_| Error::Busy)?;
        let deadline = started + self.limits.timeout;
        let pdf = match format {
            Format::Pdf => input.to_owned(),
            Format::Office(ext) => self.office_to_pdf(input, ext, work, deadline).await?,
        };
        let pages = self.page_count(&pdf, deadline).await?;
        let out = work.join("pages");
        tokio::fs::create_dir_all(&out)
            .await
            .map_err(|source| Error::Io {
                tool: "the page folder",
                source,
            })?;
        let args: Vec<OsString> = vec![
            "-png".into(),
            "-scale-to".into(),
            self.limits.page_pixels.to_string().into(),
            "-f".into(),
            "1".into(),
            "-l".into(),
            pages.to_string().into(),
            pdf.clone().into(),
            out.join("page").into(),
        ];
        let run = self
            .run(
                "pdftoppm",
                Path::new("pdftoppm"),
                &args,
                self.limits.memory_bytes,
                deadline,
                None,
            )
            .await?;
        if !run.status.is_some_and(|s| s.success()) {
            return Err(broken(&run.stderr, "its pages could not be drawn").into());
        }
        let mut images = collect_pages(&out).await?;
        if images.len() != pages as usize {
            return Err(broken(
                &run.stderr,
                &format!("{} of its {pages} pages could be drawn", images.len()),
            )
            .into());
        }
        let mut named = Vec::with_capacity(images.len());
        for (index, (_, path)) in images.drain(..).enumerate() {
            let target = out.join(format!("page-{}.png", index + 1));
            tokio::fs::rename(&path, &target)
                .await
                .map_err(|source| Error::Io {
                    tool: "renaming a page",
                    source,
                })?;
            named.push(target);
        }
        Ok(Converted { pages: named, pdf })
    }

    async fn office_to_pdf(
        &self,
        input: &Path,
        ext: &str,
        work: &Path,
        deadline: Instant,
    ) -> Result<PathBuf, Error> {
        let Some(soffice) = &self.soffice else {
            return Err(Refused::new("unsupportedFormat", accepted(false)).into());
        };
        // LibreOffice picks its filter by the extension: give it the one the bytes allow.
        let named = work.join(format!("upload.{ext}"));
        tokio::fs::copy(input, &named)
            .await
            .map_err(|source| Error::Io {
                tool: "copying the upload",
                source,
            })?;
        let out = work.join("pdf");
        let profile = work.join("profile");
        let args: Vec<OsString> = vec![
            format!("-env:UserInstallation=file://{}", profile.display()).into(),
            "--headless".into(),
            "--norestore".into(),
            "--nologo".into(),
            "--nodefault".into(),
            "--nolockcheck".into(),
            "--convert-to".into(),
            "pdf".into(),
            "--outdir".into(),
            out.clone().into(),
            named.into(),
        ];
        let run = self
            .run(
                "soffice",
                soffice,
                &args,
                self.limits.office_memory_bytes,
                deadline,
                Some(work),
            )
            .await?;
        let pdf = out.join("upload.pdf");
        if !run.status.is_some_and(|s| s.success()) || !pdf.is_file() {
            return Err(Refused::new(
                "brokenDocument",
                "the presentation could not be converted to PDF; open it, save it again (or as PDF) and upload that",
            )
            .into());
        }
        Ok(pdf)
    }

    async fn page_count(&self, pdf: &Path, deadline: Instant) -> Result<u32, Error> {
        let args: Vec<OsString> = vec![pdf.into()];
        let run = self
            .run(
                "pdfinfo",
                Path::new("pdfinfo"),
                &args,
                self.limits.memory_bytes,
                deadline,
                None,
            )
            .await?;
        if run.stderr.contains("Incorrect password") {
            return Err(Refused::new(
                "encrypted",
                "the PDF is protected by a password; remove the protection (print it to a new PDF) and upload that",
            )
            .into());
        }
        if run.stderr.contains("Invalid page count 0") {
            return Err(Refused::new("noPages", "the PDF has no pages").into());
        }
        if !run.status.is_some_and(|s| s.success()) {
            return Err(broken(&run.stderr, "it cannot be read").into());
        }
        let pages = run
            .stdout
            .lines()
            .find_map(|line| line.strip_prefix("Pages:"))
            .and_then(|value| value.trim().parse::<u64>().ok())
            .ok_or_else(|| broken(&run.stderr, "its page count cannot be read"))?;
        if pages == 0 {
            return Err(Refused::new("noPages", "the PDF has no pages").into());
        }
        if pages > u64::from(self.limits.max_pages) {
            return Err(Refused::new(
                "tooManyPages",
                format!(
                    "the PDF has {pages} pages; this server takes at most {}",
                    self.limits.max_pages
                ),
            )
            .into());
        }
        Ok(u32::try_from(pages).expect("BUG: at most max_pages, a u32"))
    }

    /// Runs one tool under the limits until `deadline`; the whole process group is killed
    /// when it passes.
    async fn run(
        &self,
        tool: &'static str,
        program: &Path,
        args: &[OsString],
        memory: u64,
        deadline: Instant,
        home: Option<&Path>,
    ) -> Result<Run, Error> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out(&self.limits));
        }
        let mut command = match &self.prlimit {
            Some(prlimit) => {
                let mut command = Command::new(prlimit);
                command
                    .arg(format!("--as={memory}"))
                    .arg(format!("--cpu={}", remaining.as_secs().max(1)))
                    .arg(format!("--fsize={}", self.limits.max_output_bytes))
                    .arg("--core=0")
                    .arg("--")
                    .arg(program);
                command
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(home) = home {
            command.env("HOME", home);
        }
        let mut child = command
            .spawn()
            .map_err(|source| Error::Io { tool, source })?;
        let group = child.id();
        let mut stdout = child.stdout.take().map(|s| s.take(MAX_TOOL_OUTPUT));
        let mut stderr = child.stderr.take().map(|s| s.take(MAX_TOOL_OUTPUT));
        let finished = tokio::time::timeout(remaining, async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        })
        .await;
        // Helpers a tool started (LibreOffice does) go with it, finished or not.
        kill_group(group);
        match finished {
            Ok((status, out, err)) => Ok(Run {
                status: status.ok(),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
            }),
            Err(_) => {
                tracing::warn!(tool, "a presentation conversion ran out of time; killed");
                Err(timed_out(&self.limits))
            }
        }
    }
}

fn timed_out(limits: &Limits) -> Error {
    Refused::new(
        "conversionTimeout",
        format!(
            "converting the document took longer than {} seconds; try a smaller or simpler file",
            limits.timeout.as_secs()
        ),
    )
    .into()
}

fn kill_group(group: Option<u32>) {
    if let Some(pid) = group.and_then(|id| i32::try_from(id).ok()) {
        // ESRCH (the group is gone) is the usual answer.
        let _ =
            nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    }
}

/// A refusal for a document a tool could not read, quoting the tool's first complaint.
fn broken(stderr: &str, what: &str) -> Refused {
    let first = stderr
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| format!(" ({})", line.chars().take(160).collect::<String>()))
        .unwrap_or_default();
    Refused::new(
        "brokenDocument",
        format!("the PDF is damaged: {what}{first}; open it and save or print it to a new PDF"),
    )
}

/// The images pdftoppm wrote (`page-01.png`, …; the padding depends on the page count), by
/// page number.
async fn collect_pages(dir: &Path) -> Result<Vec<(u32, PathBuf)>, Error> {
    let io = |source| Error::Io {
        tool: "listing the pages",
        source,
    };
    let mut entries = tokio::fs::read_dir(dir).await.map_err(io)?;
    let mut pages = Vec::new();
    while let Some(entry) = entries.next_entry().await.map_err(io)? {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name
            .strip_prefix("page-")
            .and_then(|rest| rest.strip_suffix(".png"))
            .and_then(|n| n.parse::<u32>().ok())
        {
            pages.push((number, entry.path()));
        }
    }
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn converter(timeout: Duration) -> Converter {
        Converter::new(
            Limits {
                max_bytes: 1_000_000,
                max_pages: 10,
                page_pixels: 200,
                timeout,
                memory_bytes: 512 * 1024 * 1024,
                office_memory_bytes: 1024 * 1024 * 1024,
                max_output_bytes: 8 * 1024 * 1024,
            },
            None,
            1,
        )
    }

    #[tokio::test]
    async fn tools_run_under_the_memory_cpu_and_file_size_limits() {
        let converter = converter(Duration::from_secs(20));
        let args: Vec<OsString> = vec!["-c".into(), "ulimit -v; ulimit -t; ulimit -f".into()];
        let deadline = Instant::now() + Duration::from_secs(20);
        let run = converter
            .run(
                "sh",
                Path::new("sh"),
                &args,
                512 * 1024 * 1024,
                deadline,
                None,
            )
            .await
            .expect("runs");
        let limits: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(limits.len(), 3, "{}", run.stdout);
        assert_eq!(limits[0], "524288", "address space in KiB");
        let cpu: u64 = limits[1].parse().expect("cpu seconds");
        assert!((1..=20).contains(&cpu), "cpu limit {cpu}");
        // `ulimit -f` counts 512-byte blocks.
        assert_eq!(limits[2], (8 * 1024 * 1024 / 512).to_string());
    }

    #[tokio::test]
    async fn a_tool_past_the_deadline_is_killed_with_everything_it_started() {
        let converter = converter(Duration::from_secs(1));
        let dir = tempfile::tempdir().expect("dir");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pid_file.display());
        let args: Vec<OsString> = vec!["-c".into(), script.into()];
        let started = Instant::now();
        let deadline = started + Duration::from_secs(1);
        let err = converter
            .run(
                "sh",
                Path::new("sh"),
                &args,
                512 * 1024 * 1024,
                deadline,
                None,
            )
            .await
            .err()
            .expect("timed out");
        assert!(
            matches!(&err, Error::Refused(r) if r.code == "conversionTimeout"),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let helper = std::fs::read_to_string(&pid_file).expect("the helper started");
        let stat = format!("/proc/{}/stat", helper.trim());
        // The helper was killed with its group: gone, or a zombie waiting for init.
        let gone = || {
            std::fs::read_to_string(&stat)
                .map(|s| {
                    s.split(") ")
                        .nth(1)
                        .is_some_and(|rest| rest.starts_with('Z'))
                })
                .unwrap_or(true)
        };
        let until = Instant::now() + Duration::from_secs(3);
        while !gone() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(), "the helper {} outlived the timeout", helper.trim());
    }

    #[test]
    fn the_kind_comes_from_the_bytes_not_the_name() {
        assert_eq!(sniff(b"%PDF-1.7\n", "slides.exe", false), Ok(Format::Pdf));
        let exe = sniff(b"MZ\x90\x00\x03", "slides.pdf", true).expect_err("program");
        assert_eq!(exe.code, "unsupportedFormat");
        assert!(exe.message.contains("a program"), "{}", exe.message);
        assert!(
            sniff(b"", "a.pdf", false)
                .expect_err("empty")
                .message
                .contains("empty")
        );
        assert_eq!(
            sniff(b"PK\x03\x04rest", "Deck.PPTX", true),
            Ok(Format::Office("pptx"))
        );
        assert!(sniff(b"PK\x03\x04rest", "archive.zip", true).is_err());
        assert!(sniff(b"%!PS-Adobe", "a.ps", true).is_err());
    }

    #[test]
    fn without_libreoffice_the_refusal_says_pdf_only() {
        let refused = sniff(b"PK\x03\x04rest", "deck.odp", false).expect_err("pdf only");
        assert!(
            refused.message.starts_with("PDF only on this server"),
            "{}",
            refused.message
        );
        let refused = sniff(b"GIF89a", "deck.gif", false).expect_err("not a pdf");
        assert!(
            refused.message.contains("PDF only on this server"),
            "{}",
            refused.message
        );
    }
}
