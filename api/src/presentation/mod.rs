//! Presentations: an upload becomes page images in the file store, and the pages are served
//! to the people of the meeting it was uploaded to.
//!
//! Rights are room rights, which only the SFU knows, so this module never looks at accounts:
//! it takes the claims of an upload or view ticket the SFU signed (see
//! [`proto::presentation`]) and reads or writes only under that ticket's conference:
//! `presentations/{conferenceId}/{presentationId}/` holds `original.{ext}`, `document.pdf`
//! (when LibreOffice converted the original), `meta.json` and `page-{n}.png` (1-based).
//!
//! # Layout
//! - [`convert`]: the file's kind by its bytes, and the tools (pdfinfo, pdftoppm, soffice)
//!   under limits.

pub mod convert;

use std::path::Path;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use proto::presentation::{
    DESCRIPTOR_AUDIENCE, DESCRIPTOR_SECONDS, DescriptorClaims, MAX_TITLE_BYTES, PresentationId,
    UploadClaims, folder_key, is_key_safe, page_key,
};
use proto::{ConferenceId, TokenKey};
use serde::Serialize;

pub use convert::{Converter, Format, Limits, Refused};

/// Why an upload or a page request failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document cannot be shown (4xx with a code).
    #[error(transparent)]
    Refused(#[from] Refused),
    /// No such presentation or page (404).
    #[error("no such presentation page")]
    NotFound,
    /// Every conversion slot stayed busy (503).
    #[error("every conversion slot is busy")]
    Busy,
    /// A tool could not run or the local disk failed (500).
    #[error("converting failed")]
    Convert(#[source] convert::Error),
    /// The file store failed (500).
    #[error("the file store failed")]
    Files(#[source] files::Error),
    /// Signing the descriptor failed (500).
    #[error("signing the descriptor failed")]
    Signing(#[source] proto::TokenError),
}

impl From<convert::Error> for Error {
    fn from(err: convert::Error) -> Self {
        match err {
            convert::Error::Refused(refused) => Error::Refused(refused),
            convert::Error::Busy => Error::Busy,
            other => Error::Convert(other),
        }
    }
}

impl From<files::Error> for Error {
    fn from(err: files::Error) -> Self {
        match err {
            files::Error::NotFound(_) => Error::NotFound,
            other => Error::Files(other),
        }
    }
}

/// A stored presentation, as the uploader is told and `meta.json` keeps it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Presentation {
    /// 32 hex digits (128 random bits).
    #[schema(value_type = String)]
    pub id: PresentationId,
    /// The conference it belongs to.
    #[schema(value_type = String)]
    pub conference_id: ConferenceId,
    /// The file name without its extension.
    pub title: String,
    /// The uploaded file's name.
    pub filename: String,
    /// `pdf`, or the presentation format LibreOffice converted (`pptx`, `odp`, …).
    pub format: String,
    /// How many pages.
    pub pages: u32,
    /// The uploader's identity.
    pub uploaded_by: String,
    /// The uploader's display name.
    pub uploaded_by_name: String,
    /// When (RFC 3339).
    pub uploaded_at: String,
}

/// The answer to an upload: the presentation and the descriptor the client hands the SFU.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Uploaded {
    /// The stored presentation.
    pub presentation: Presentation,
    /// Signed by the API: send it in the `showPresentation` signaling message.
    pub descriptor: String,
}

/// What the portal shows before an upload: the formats and limits.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Whether PowerPoint and ODP files are converted (LibreOffice is installed).
    pub office: bool,
    /// For people: `PDF only on this server`, or the formats.
    pub formats: String,
    /// The file extensions the file picker offers.
    pub extensions: Vec<String>,
    /// Largest upload, in bytes.
    pub max_bytes: u64,
    /// Most pages.
    pub max_pages: u32,
}

/// The formats and limits of `converter`.
pub fn accepted(converter: &Converter) -> Accepted {
    let office = converter.converts_office();
    let mut extensions = vec![".pdf".to_owned()];
    if office {
        extensions
            .extend([".pptx", ".ppt", ".pps", ".ppsx", ".potx", ".odp", ".otp"].map(str::to_owned));
    }
    Accepted {
        office,
        formats: convert::accepted(office).to_owned(),
        extensions,
        max_bytes: converter.limits().max_bytes,
        max_pages: converter.limits().max_pages,
    }
}

/// The title shown for `filename`: its name without folders or extension, without control
/// characters, at most [`MAX_TITLE_BYTES`].
pub fn title_of(filename: &str) -> String {
    let base = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    let stem = base.rsplit_once('.').map_or(base, |(stem, _)| stem);
    let mut title = String::new();
    for c in stem.chars().filter(|c| !c.is_control()) {
        if title.len() + c.len_utf8() > MAX_TITLE_BYTES {
            break;
        }
        title.push(c);
    }
    let title = title.trim();
    if title.is_empty() {
        "Presentation".to_owned()
    } else {
        title.to_owned()
    }
}

/// Converts the upload at `upload` (named `filename` by the client) and stores it for the
/// ticket's conference under a fresh random ID.
///
/// # Errors
/// [`Error::Refused`] with a code and message for a file that cannot be shown; the rest are
/// the server's failures.
pub async fn upload(
    files: &files::Files,
    converter: &Converter,
    key: &TokenKey,
    ticket: &UploadClaims,
    filename: &str,
    upload: &Path,
    now: DateTime<Utc>,
) -> Result<Uploaded, Error> {
    if !is_key_safe(&ticket.conf) {
        return Err(
            Refused::new("unsupportedConference", "this conference cannot hold files").into(),
        );
    }
    let head = read_head(upload).await?;
    let format = convert::sniff(&head, filename, converter.converts_office())?;
    let work = tempfile::tempdir().map_err(|source| {
        Error::Convert(convert::Error::Io {
            tool: "a temporary folder",
            source,
        })
    })?;
    let converted = converter.convert(upload, format, work.path()).await?;

    let id = PresentationId::from_random(rand::random());
    let folder = folder_key(&ticket.conf, &id);
    let extension = match format {
        Format::Pdf => "pdf",
        Format::Office(ext) => ext,
    };
    files
        .put_file(&format!("{folder}original.{extension}"), upload)
        .await?;
    if format != Format::Pdf {
        files
            .put_file(&format!("{folder}document.pdf"), &converted.pdf)
            .await?;
    }
    for (index, page) in converted.pages.iter().enumerate() {
        let number = u32::try_from(index + 1).expect("BUG: at most max_pages pages");
        files
            .put_file(&page_key(&ticket.conf, &id, number), page)
            .await?;
    }
    let pages = u32::try_from(converted.pages.len()).expect("BUG: at most max_pages pages");
    let presentation = Presentation {
        id: id.clone(),
        conference_id: ticket.conf.clone(),
        title: title_of(filename),
        filename: filename.chars().take(255).collect(),
        format: extension.to_owned(),
        pages,
        uploaded_by: ticket.sub.clone(),
        uploaded_by_name: ticket.name.clone(),
        uploaded_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    // Written last: a presentation with `meta.json` has every page.
    let meta = serde_json::to_vec_pretty(&presentation).expect("BUG: plain struct serialises");
    files
        .put(&format!("{folder}meta.json"), Bytes::from(meta))
        .await?;
    let descriptor = key
        .sign_descriptor(&DescriptorClaims {
            sub: ticket.sub.clone(),
            conf: ticket.conf.clone(),
            pid: id,
            title: presentation.title.clone(),
            pages,
            aud: DESCRIPTOR_AUDIENCE.into(),
            iat: now.timestamp(),
            exp: now.timestamp() + DESCRIPTOR_SECONDS,
        })
        .map_err(Error::Signing)?;
    tracing::info!(presentation = %presentation.id, pages, format = extension, "presentation stored");
    Ok(Uploaded {
        presentation,
        descriptor,
    })
}

/// Page `page` (1-based) of presentation `id` of `conference`, as PNG.
///
/// # Errors
/// [`Error::NotFound`] for an unknown presentation or page.
pub async fn page(
    files: &files::Files,
    conference: &ConferenceId,
    id: &PresentationId,
    page: u32,
) -> Result<Bytes, Error> {
    if !is_key_safe(conference) || page == 0 {
        return Err(Error::NotFound);
    }
    Ok(files.get(&page_key(conference, id, page)).await?)
}

async fn read_head(path: &Path) -> Result<Vec<u8>, Error> {
    use tokio::io::AsyncReadExt;
    let io = |source| {
        Error::Convert(convert::Error::Io {
            tool: "reading the upload",
            source,
        })
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    let mut head = vec![0; 1024];
    let mut filled = 0;
    while filled < head.len() {
        let read = file.read(&mut head[filled..]).await.map_err(io)?;
        if read == 0 {
            break;
        }
        filled += read;
    }
    head.truncate(filled);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_drop_folders_extensions_and_control_characters() {
        assert_eq!(title_of("Q3 review.pdf"), "Q3 review");
        assert_eq!(title_of("C:\\decks\\plan.v2.pptx"), "plan.v2");
        assert_eq!(title_of("../../x\u{7}y.pdf"), "xy");
        assert_eq!(title_of(".pdf"), "Presentation");
        assert!(title_of(&"é".repeat(300)).len() <= MAX_TITLE_BYTES);
    }
}
