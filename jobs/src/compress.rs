//! Compressed input and output. An input file named `.gz`, `.bz2`, `.zst` or `.xz` is one
//! split (a compressed stream cannot be cut at lines without reading it), checked by its
//! magic bytes and decompressed as the map reads it; concatenated streams (`cat a.gz b.gz`)
//! read as one, as `gzip -d` reads them. `--compress-output gzip|zstd` writes each part
//! compressed, named `part-NNNNN.gz` or `.zst`.
//!
//! The invariant: a map sees exactly the decompressed bytes, or fails naming the file —
//! never the compressed bytes as text (a name that promises a codec the bytes do not start
//! with is refused).

use std::io::{self, BufRead, Read, Write};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Most memory an xz stream's decoder may ask for (its dictionary): 256 MiB.
pub const XZ_MEMORY_LIMIT: u64 = 256 << 20;

/// A compression format, known by a file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// gzip (`.gz`), via flate2 on zlib-rs.
    Gzip,
    /// bzip2 (`.bz2`).
    Bzip2,
    /// Zstandard (`.zst`).
    Zstd,
    /// xz (`.xz`), via liblzma.
    Xz,
}

impl Codec {
    /// The codec a file name's extension names, if any.
    pub fn of_name(name: &str) -> Option<Codec> {
        let ext = name.rsplit_once('.')?.1;
        Some(match ext {
            "gz" => Codec::Gzip,
            "bz2" => Codec::Bzip2,
            "zst" => Codec::Zstd,
            "xz" => Codec::Xz,
            _ => return None,
        })
    }

    /// The file name extension, dot included.
    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip => ".gz",
            Codec::Bzip2 => ".bz2",
            Codec::Zstd => ".zst",
            Codec::Xz => ".xz",
        }
    }

    /// The codec's name as `--compress-output` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Zstd => "zstd",
            Codec::Xz => "xz",
        }
    }

    /// The codec whose magic `head` (a file's first bytes) starts with, if any.
    pub fn of_magic(head: &[u8]) -> Option<Codec> {
        [Codec::Gzip, Codec::Bzip2, Codec::Zstd, Codec::Xz]
            .into_iter()
            .find(|c| head.starts_with(c.magic()))
    }

    fn magic(self) -> &'static [u8] {
        match self {
            Codec::Gzip => &[0x1f, 0x8b],
            Codec::Bzip2 => b"BZh",
            Codec::Zstd => &[0x28, 0xb5, 0x2f, 0xfd],
            Codec::Xz => &[0xfd, b'7', b'z', b'X', b'Z', 0],
        }
    }

    /// The decompressed bytes of `input`, a file named `name`: its first bytes must be the
    /// codec's magic (an empty file is empty input).
    pub fn decoder<'r>(
        self,
        name: &str,
        mut input: impl BufRead + Send + 'r,
    ) -> Result<Box<dyn Read + Send + 'r>> {
        let magic = self.magic();
        let mut head = Vec::with_capacity(magic.len());
        (&mut input)
            .take(magic.len() as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(format!("reading {name}"), e))?;
        if head.is_empty() {
            return Ok(Box::new(io::empty()));
        }
        if head != magic {
            return Err(Error::InvalidSpec(format!(
                "{name}: its name says {} but it does not start as {} data does (first bytes {})",
                self.name(),
                self.name(),
                head.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )));
        }
        let input = io::Cursor::new(head).chain(input);
        Ok(match self {
            Codec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(io::BufReader::new(
                input,
            ))),
            Codec::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(io::BufReader::new(
                input,
            ))),
            Codec::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(io::BufReader::new(input))
                    .map_err(|e| Error::io(format!("decompressing {name}"), e))?,
            ),
            Codec::Xz => {
                // An xz header names the dictionary its decoder allocates, in the node's own
                // memory: bounded (xz -9 needs 65 MiB).
                let stream = liblzma::stream::Stream::new_stream_decoder(
                    XZ_MEMORY_LIMIT,
                    liblzma::stream::CONCATENATED,
                )
                .map_err(|e| Error::io(format!("decompressing {name}"), e.into()))?;
                Box::new(liblzma::bufread::XzDecoder::new_stream(
                    io::BufReader::new(input),
                    stream,
                ))
            }
        })
    }

    /// A writer compressing into `w` (gzip and zstd only, the `--compress-output` codecs).
    pub fn encoder<W: Write + Send>(self, w: W) -> Result<Encoder<W>> {
        match self {
            Codec::Gzip => Ok(Encoder::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::default(),
            ))),
            Codec::Zstd => zstd::stream::write::Encoder::new(w, 3)
                .map(Encoder::Zstd)
                .map_err(|e| Error::io("starting zstd", e)),
            other => Err(Error::InvalidSpec(format!(
                "--compress-output {}: only gzip and zstd are written",
                other.name()
            ))),
        }
    }
}

/// Parse `--compress-output`: `gzip` or `zstd`.
pub fn parse_output_codec(text: &str) -> Result<Codec> {
    match text {
        "gzip" | "gz" => Ok(Codec::Gzip),
        "zstd" | "zst" => Ok(Codec::Zstd),
        other => Err(Error::InvalidSpec(format!(
            "--compress-output {other:?}: give gzip or zstd"
        ))),
    }
}

/// `w`, compressed by `codec` when there is one.
pub fn writer<W: Write + Send>(codec: Option<Codec>, w: W) -> Result<Encoder<W>> {
    match codec {
        None => Ok(Encoder::Plain(w)),
        Some(c) => c.encoder(w),
    }
}

/// A writer, compressing or not; [`Encoder::finish`] writes the stream's end.
pub enum Encoder<W: Write> {
    /// Not compressed.
    Plain(W),
    /// gzip.
    Gzip(flate2::write::GzEncoder<W>),
    /// Zstandard.
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Encoder<W> {
    /// End the stream; the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` compressed with the system's own tool, as users make their files.
    fn compressed_by_tool(codec: Codec, text: &[u8]) -> Option<Vec<u8>> {
        compressed_by_tool_with(codec, text, &[])
    }

    fn compressed_by_tool_with(codec: Codec, text: &[u8], flags: &[&str]) -> Option<Vec<u8>> {
        let tool = match codec {
            Codec::Gzip => "gzip",
            Codec::Bzip2 => "bzip2",
            Codec::Zstd => "zstd",
            Codec::Xz => "xz",
        };
        let mut child = std::process::Command::new(tool)
            .arg("-c")
            .args(flags)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut stdin = child.stdin.take()?;
        let text = text.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&text));
        let out = child.wait_with_output().ok()?;
        feeder.join().ok()?.ok()?;
        out.status.success().then_some(out.stdout)
    }

    fn decompress(codec: Codec, bytes: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        codec
            .decoder("f", io::BufReader::new(bytes))?
            .read_to_end(&mut out)
            .map_err(|e| Error::io("decompressing", e))?;
        Ok(out)
    }

    #[test]
    fn every_codec_reads_what_its_tool_wrote_and_concatenated_streams() {
        let text: Vec<u8> = (0..20_000)
            .flat_map(|i| [format!("line {i} \u{e9}").into_bytes(), vec![0xff, b'\n']].concat())
            .collect();
        for codec in [Codec::Gzip, Codec::Bzip2, Codec::Zstd, Codec::Xz] {
            let one = compressed_by_tool(codec, &text).unwrap_or_else(|| {
                panic!(
                    "{} did not run: the tests need gzip, bzip2, zstd and xz",
                    codec.name()
                )
            });
            assert_eq!(decompress(codec, &one).unwrap(), text, "{}", codec.name());
            let two = [one.clone(), one].concat();
            assert_eq!(
                decompress(codec, &two).unwrap(),
                [text.clone(), text.clone()].concat(),
                "{}: two streams one after the other",
                codec.name()
            );
        }
    }

    #[test]
    fn output_codecs_round_trip_and_names_are_checked() {
        let text = b"a\tb\n".repeat(10_000);
        for codec in [Codec::Gzip, Codec::Zstd] {
            let mut e = codec.encoder(Vec::new()).unwrap();
            e.write_all(&text).unwrap();
            let bytes = e.finish().unwrap();
            assert!(bytes.len() < text.len() / 10);
            assert_eq!(decompress(codec, &bytes).unwrap(), text);
        }
        let err = decompress(Codec::Gzip, b"plain text\n").unwrap_err();
        assert!(err.to_string().contains("does not start as gzip"), "{err}");
        assert!(decompress(Codec::Xz, b"").unwrap().is_empty());
        // A header that asks for a 384 MiB dictionary (xz --lzma2=dict=384MiB, "hello\n"):
        // refused, not allocated.
        let greedy = compressed_by_tool_with(Codec::Xz, b"hello\n", &["--lzma2=dict=384MiB"])
            .expect("xz runs");
        let err = decompress(Codec::Xz, &greedy).unwrap_err().to_string();
        assert!(err.to_lowercase().contains("memory"), "{err}");
        let truncated = {
            let mut e = Codec::Zstd.encoder(Vec::new()).unwrap();
            e.write_all(&text).unwrap();
            let b = e.finish().unwrap();
            b[..b.len() / 2].to_vec()
        };
        assert!(decompress(Codec::Zstd, &truncated).is_err());
        assert_eq!(Codec::of_name("logs/a.log.gz"), Some(Codec::Gzip));
        assert_eq!(Codec::of_name("a.zst"), Some(Codec::Zstd));
        assert_eq!(Codec::of_name("a.txt"), None);
        assert_eq!(Codec::of_name("gz"), None);
        assert!(parse_output_codec("xz").is_err());
        assert!(Codec::Bzip2.encoder(Vec::new()).is_err());
    }
}
