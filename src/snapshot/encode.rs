//! The encoding stage of the pipeline, run on a blocking thread: plaintext chunks in, zstd
//! (multithreaded) and optionally age applied, fixed-size chunks of the stored bytes out, hashed and
//! counted on the way. zstd and age are synchronous `Write` chains; this stage bridges them to the async
//! stream before it and the async upload after it through bounded channels, so memory stays bounded.

use std::io::{self, Write};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::manifest::CompressionKind;

/// What the encoder stage receives.
#[derive(Debug)]
pub enum Chunk {
    Data(Bytes),
    /// The stream ended well: finish the encoders and flush.
    End,
}

/// How stored bytes are encoded.
#[derive(Clone)]
pub struct Encoding {
    pub compression: CompressionKind,
    pub level: i32,
    /// zstd worker threads (0 = single-threaded).
    pub threads: u32,
    pub recipients: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoding")
            .field("compression", &self.compression)
            .field("level", &self.level)
            .field("threads", &self.threads)
            .field("recipients", &self.recipients.len())
            .finish()
    }
}

impl Encoding {
    /// Raw bytes, as `etcdctl snapshot save` writes them.
    pub fn raw() -> Self {
        Self {
            compression: CompressionKind::None,
            level: 0,
            threads: 0,
            recipients: Vec::new(),
        }
    }
}

/// What the encoder stage produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub plain_len: u64,
    pub stored_len: u64,
    pub stored_sha256: [u8; 32],
}

/// zstd multithreading job size.
const ZSTD_JOB_SIZE: u32 = 1024 * 1024;

/// Size of the chunks handed to the store writer.
pub const OUT_CHUNK: usize = 1024 * 1024;

/// Collects encoder output into fixed-size chunks for the uploader, hashing and counting them.
struct ChunkSender {
    tx: mpsc::Sender<Bytes>,
    buf: BytesMut,
    hasher: Sha256,
    len: u64,
}

impl ChunkSender {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.tx
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    fn finish(mut self) -> io::Result<(u64, [u8; 32])> {
        self.send()?;
        Ok((self.len, self.hasher.finalize().into()))
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.hasher.update(data);
        self.len += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() >= OUT_CHUNK {
            self.send()?;
            self.buf.reserve(OUT_CHUNK);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn zstd_encoder<W: Write>(w: W, enc: &Encoding) -> io::Result<zstd::Encoder<'static, W>> {
    let mut z = zstd::Encoder::new(w, enc.level)?;
    if enc.threads > 0 {
        z.multithread(enc.threads)?;
        // Small jobs keep each worker's buffers at a few MiB (the default job is 4× the window, and
        // several jobs are buffered per worker), at a negligible cost in ratio thanks to job overlap.
        z.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
    }
    Ok(z)
}

/// The writer chain for one encoding.
enum Chain {
    Plain(ChunkSender),
    Zstd(zstd::Encoder<'static, ChunkSender>),
    Age(age::stream::StreamWriter<ChunkSender>),
    ZstdAge(zstd::Encoder<'static, age::stream::StreamWriter<ChunkSender>>),
}

impl Chain {
    fn new(sink: ChunkSender, enc: &Encoding) -> io::Result<Self> {
        let age_wrap = |sink: ChunkSender| -> io::Result<age::stream::StreamWriter<ChunkSender>> {
            let recipients = enc.recipients.iter().map(|r| r as &dyn age::Recipient);
            let encryptor = age::Encryptor::with_recipients(recipients)
                .map_err(|e| io::Error::other(format!("age: {e}")))?;
            encryptor.wrap_output(sink)
        };
        Ok(match (enc.compression, enc.recipients.is_empty()) {
            (CompressionKind::None, true) => Chain::Plain(sink),
            (CompressionKind::Zstd, true) => Chain::Zstd(zstd_encoder(sink, enc)?),
            (CompressionKind::None, false) => Chain::Age(age_wrap(sink)?),
            (CompressionKind::Zstd, false) => Chain::ZstdAge(zstd_encoder(age_wrap(sink)?, enc)?),
        })
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Chain::Plain(w) => w.write_all(data),
            Chain::Zstd(w) => w.write_all(data),
            Chain::Age(w) => w.write_all(data),
            Chain::ZstdAge(w) => w.write_all(data),
        }
    }

    fn finish(self) -> io::Result<(u64, [u8; 32])> {
        match self {
            Chain::Plain(w) => w.finish(),
            Chain::Zstd(w) => w.finish()?.finish(),
            Chain::Age(w) => w.finish()?.finish(),
            Chain::ZstdAge(w) => w.finish()?.finish()?.finish(),
        }
    }
}

/// Runs the stage until [`Chunk::End`] (then finishes the encoders) or until the input channel closes
/// without it (the stream failed: nothing is finished, the error says so).
pub fn run(
    mut rx: mpsc::Receiver<Chunk>,
    tx: mpsc::Sender<Bytes>,
    enc: Encoding,
) -> io::Result<Encoded> {
    let sink = ChunkSender {
        tx,
        buf: BytesMut::with_capacity(OUT_CHUNK),
        hasher: Sha256::new(),
        len: 0,
    };
    let mut chain = Chain::new(sink, &enc)?;
    let mut plain_len = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        match chunk {
            Chunk::Data(b) => {
                plain_len += b.len() as u64;
                chain.write_all(&b)?;
            }
            Chunk::End => {
                let (stored_len, stored_sha256) = chain.finish()?;
                return Ok(Encoded {
                    plain_len,
                    stored_len,
                    stored_sha256,
                });
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::Interrupted,
        "the snapshot stream ended early",
    ))
}
