//! The body of `shoal submit`: `multipart/form-data` with the spec first (CBOR), then one
//! `archive` part per `--archive`, then one `input` part per file, each streamed from disk
//! one file after another.
//!
//! Written here rather than with reqwest's form builder, which chains each part onto the
//! ones before: polling that chain costs as much as its length, so 100,000 input files took
//! minutes of CPU before a byte of the last one moved. Here each file is opened when its turn
//! comes and read in chunks no larger than it is.

use std::path::PathBuf;

use futures::stream::{self, Stream, StreamExt};
use shoal_jobs::split::InputFile;

/// Bytes read from a file at a time, at most.
const CHUNK: usize = 1 << 20;

/// The `Content-Type` and the body of an upload of `spec` (CBOR), `archives` (named as the
/// spec names them) and `files`.
pub fn multipart(
    spec: Vec<u8>,
    archives: Vec<InputFile>,
    files: Vec<InputFile>,
) -> (
    String,
    impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
) {
    let boundary = format!("shoal-{:032x}", rand::random::<u128>());
    let mut head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\nContent-Type: application/cbor\r\n\r\n"
    )
    .into_bytes();
    head.extend_from_slice(&spec);
    head.extend_from_slice(b"\r\n");
    let b = boundary.clone();
    let tagged = archives
        .into_iter()
        .map(|f| ("archive", f))
        .chain(files.into_iter().map(|f| ("input", f)));
    let parts = stream::iter(tagged).flat_map(move |(part, f)| {
        let header = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{part}\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            quoted(&f.name)
        );
        stream::once(async move { Ok(header.into_bytes()) })
            .chain(file_chunks(f.path, f.len))
            .chain(stream::once(async { Ok(b"\r\n".to_vec()) }))
    });
    let tail = format!("--{boundary}--\r\n").into_bytes();
    let body = stream::once(async move { Ok(head) })
        .chain(parts)
        .chain(stream::once(async move { Ok(tail) }));
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A file name inside a quoted header parameter: quotes and line breaks percent-encoded, as
/// browsers send them (the node decodes none of it; a name only labels its splits).
fn quoted(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// The file at `path` (of `len` bytes when listed) in chunks, opened on the first poll.
fn file_chunks(path: PathBuf, len: u64) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send {
    let size = (len as usize).clamp(1, CHUNK);
    stream::unfold(None, move |file: Option<tokio::fs::File>| {
        let path = path.clone();
        async move {
            use tokio::io::AsyncReadExt;
            let mut f = match file {
                Some(f) => f,
                None => match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) => return Some((Err(e), None)),
                },
            };
            let mut buf = vec![0u8; size];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(buf), Some(f)))
                }
                Err(e) => Some((Err(e), None)),
            }
        }
    })
}
