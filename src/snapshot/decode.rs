//! Reading a snapshot file the user hands over, whatever its encoding: a raw db (etcdctl's output,
//! or a member's `member/snap/db`), `.zst`, or age-encrypted (binary or armored) wrapping either,
//! told apart by content, not by name. Decodes to any writer on the calling (blocking) thread and
//! reports etcd's sha256 trailer; never writes next to the input and never modifies it.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use serde::Serialize;

use super::trailer::{TrailerCheck, TrailerOutcome};
use super::SnapshotError;

/// What a snapshot file is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileEncoding {
    /// A bbolt file as etcd wrote it (meta page magic at offset 16).
    Raw,
    /// zstd frames (what `cpkeep backup` stores without encryption).
    Zstd,
    /// age, binary header.
    Age,
    /// age, ASCII armor.
    AgeArmored,
}

impl FileEncoding {
    pub fn encrypted(self) -> bool {
        matches!(self, FileEncoding::Age | FileEncoding::AgeArmored)
    }
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
/// bbolt's meta magic, little-endian, at the start of page 0's meta (after the 16-byte header).
const BOLT_MAGIC_AT_16: [u8; 4] = [0xED, 0xDA, 0x0C, 0xED];

fn bad(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::BadFile {
        what: "snapshot",
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SnapshotError {
    SnapshotError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Tells the encoding of `head`, the first bytes of a file (at least 40 when the file has them).
pub fn encoding_of(head: &[u8]) -> Option<FileEncoding> {
    if head.starts_with(&ZSTD_MAGIC) {
        Some(FileEncoding::Zstd)
    } else if head.starts_with(AGE_MAGIC) {
        Some(FileEncoding::Age)
    } else if head.starts_with(AGE_ARMOR) {
        Some(FileEncoding::AgeArmored)
    } else if head.get(16..20) == Some(&BOLT_MAGIC_AT_16[..]) {
        Some(FileEncoding::Raw)
    } else {
        None
    }
}

/// Reads the first bytes of `path` and tells its encoding. Unusable input (missing, unreadable, a
/// directory, empty, not a snapshot) is [`SnapshotError::BadFile`] with one clear reason, the same
/// for every command that reads a snapshot file.
pub fn detect_encoding(path: &Path) -> Result<FileEncoding, SnapshotError> {
    let mut file = File::open(path).map_err(|e| bad(path, crate::certs::error::io_reason(&e)))?;
    if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
        return Err(bad(path, "it is a directory"));
    }
    let mut head = [0u8; 40];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad(path, crate::certs::error::io_reason(&e))),
        }
    }
    if got == 0 {
        return Err(bad(path, "the file is empty"));
    }
    if let Some(encoding) = encoding_of(&head[..got]) {
        return Ok(encoding);
    }
    // A db whose first meta page is damaged is still a (damaged) snapshot, not something else:
    // bbolt's page header of meta page 0 is intact, or the second meta page opens the file.
    if is_meta_page_zero_header(&head[..got]) || crate::bolt::Db::open(file).is_ok() {
        return Ok(FileEncoding::Raw);
    }
    Err(bad(
        path,
        "not an etcd snapshot: neither a bbolt db, nor zstd, nor age (first bytes unknown)",
    ))
}

/// bbolt's page header of page 0 (id 0, the meta flag, no element count, no overflow), as every
/// bbolt file starts.
fn is_meta_page_zero_header(head: &[u8]) -> bool {
    const META_FLAG: u16 = 0x04;
    let Some(header) = head.get(..16) else {
        return false;
    };
    header[..8] == [0u8; 8]
        && u16::from_le_bytes([header[8], header[9]]) == META_FLAG
        && header[10..16] == [0u8; 6]
}

/// Hashes a raw snapshot file sequentially: where its trailer would be, and whether it matches.
pub fn trailer_of_file(path: &Path) -> Result<TrailerOutcome, SnapshotError> {
    let file = File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut check = TrailerCheck::new();
    pump(&mut reader, |b| {
        check.update(b, |_| {});
        Ok(())
    })
    .map_err(|e| bad(path, e.to_string()))?;
    Ok(check.finish())
}

/// Decodes `path` (zstd and/or age, see [`detect_encoding`]) into `out`, checking etcd's trailer
/// on the way. `identities` are needed for an age file. Returns the encoding and the trailer's
/// outcome; a mismatch is for the caller to judge (a raw member db has no trailer).
pub fn decode_file(
    path: &Path,
    identities: Option<&[Box<dyn age::Identity + Send + Sync>]>,
    out: &mut dyn Write,
) -> Result<(FileEncoding, TrailerOutcome), SnapshotError> {
    let encoding = detect_encoding(path)?;
    let file = File::open(path).map_err(|e| bad(path, e.to_string()))?;
    let mut reader: Box<dyn Read> = Box::new(BufReader::with_capacity(256 * 1024, file));
    if encoding.encrypted() {
        let ids = identities.ok_or_else(|| {
            SnapshotError::Usage(format!(
                "{} is age-encrypted: pass --identity FILE",
                path.display()
            ))
        })?;
        let decryptor = age::Decryptor::new(age::armor::ArmoredReader::new(BufReader::new(reader)))
            .map_err(|e| corrupt(path, format!("not a valid age file: {e}")))?;
        let plain = decryptor
            .decrypt(ids.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| bad(path, format!("cannot decrypt: {e}")))?;
        reader = Box::new(plain);
    }
    // Inside age: zstd, or a raw db someone encrypted directly.
    let mut head = Vec::with_capacity(40);
    (&mut reader)
        .take(40)
        .read_to_end(&mut head)
        .map_err(|e| corrupt(path, format!("cannot decode: {e}")))?;
    let inner = match encoding {
        FileEncoding::Zstd => FileEncoding::Zstd,
        _ => encoding_of(&head).ok_or_else(|| {
            bad(
                path,
                "decrypted, but the content is neither zstd nor a bbolt db",
            )
        })?,
    };
    let mut reader: Box<dyn Read> = Box::new(io::Cursor::new(head).chain(reader));
    if inner == FileEncoding::Zstd {
        reader =
            Box::new(zstd::Decoder::new(reader).map_err(|e| corrupt(path, format!("zstd: {e}")))?);
    }
    let mut check = TrailerCheck::new();
    let mut write_error = None;
    pump(&mut reader, |b| {
        check.update(b, |_| {});
        out.write_all(b)
            .inspect_err(|e| write_error = Some(e.to_string()))
    })
    .map_err(|e| match write_error.take() {
        Some(w) => SnapshotError::Encode(format!("cannot write the decoded snapshot: {w}")),
        None => corrupt(path, format!("cannot decode: {e}")),
    })?;
    Ok((encoding, check.finish()))
}

/// Reads `reader` to its end in 256 KiB blocks, giving each to `f`.
fn pump(reader: &mut dyn Read, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => f(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_told_by_content() {
        let mut bolt = vec![0u8; 40];
        bolt[16..20].copy_from_slice(&BOLT_MAGIC_AT_16);
        assert_eq!(encoding_of(&bolt), Some(FileEncoding::Raw));
        assert_eq!(encoding_of(&ZSTD_MAGIC), Some(FileEncoding::Zstd));
        assert_eq!(
            encoding_of(b"age-encryption.org/v1\n-> X25519"),
            Some(FileEncoding::Age)
        );
        assert_eq!(
            encoding_of(b"-----BEGIN AGE ENCRYPTED FILE-----\n"),
            Some(FileEncoding::AgeArmored)
        );
        assert_eq!(
            encoding_of(b"hello world, this is not a snapshot at all"),
            None
        );
        assert_eq!(encoding_of(&[0u8; 10]), None);
    }

    #[test]
    fn unusable_input_and_damaged_dbs_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let raw = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/etcd-3.5.30-small/snapshot.db"),
        )
        .unwrap();
        // Meta page 0's magic destroyed: still a db (its page header, and meta page 1, say so).
        let mut damaged = raw.clone();
        damaged[16..80].fill(0xee);
        let p = dir.path().join("damaged.db");
        std::fs::write(&p, &damaged).unwrap();
        assert_eq!(detect_encoding(&p).unwrap(), FileEncoding::Raw);
        // The page header gone too: meta page 1 still opens it.
        damaged[..16].fill(0xee);
        std::fs::write(&p, &damaged).unwrap();
        assert_eq!(detect_encoding(&p).unwrap(), FileEncoding::Raw);
        for (name, bytes, says) in [
            ("empty", &b""[..], "the file is empty"),
            (
                "text",
                &b"just some notes, nothing like a snapshot here"[..],
                "not an etcd snapshot",
            ),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let e = detect_encoding(&p).unwrap_err();
            assert!(matches!(e, SnapshotError::BadFile { .. }), "{e:?}");
            assert!(e.to_string().contains(says), "{e}");
        }
        let e = detect_encoding(dir.path()).unwrap_err();
        assert!(e.to_string().ends_with("it is a directory"), "{e}");
    }

    #[test]
    fn zstd_and_age_wrapped_snapshots_decode_with_their_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let raw = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/etcd-3.5.30-small/snapshot.db"),
        )
        .unwrap();
        let zst = zstd::encode_all(&raw[..], 3).unwrap();
        let zpath = dir.path().join("s.anything");
        std::fs::write(&zpath, &zst).unwrap();
        let mut out = Vec::new();
        let (enc, t) = decode_file(&zpath, None, &mut out).unwrap();
        assert_eq!((enc, t.matches()), (FileEncoding::Zstd, true));
        assert_eq!(out, raw);

        let key = age::x25519::Identity::generate();
        let mut enc_bytes = Vec::new();
        let recipients = [&key.to_public() as &dyn age::Recipient];
        let encryptor = age::Encryptor::with_recipients(recipients.into_iter()).unwrap();
        let mut w = encryptor.wrap_output(&mut enc_bytes).unwrap();
        w.write_all(&zst).unwrap();
        w.finish().unwrap();
        let apath = dir.path().join("s.age");
        std::fs::write(&apath, &enc_bytes).unwrap();
        assert!(matches!(
            decode_file(&apath, None, &mut Vec::new()),
            Err(SnapshotError::Usage(_))
        ));
        let ids: Vec<Box<dyn age::Identity + Send + Sync>> = vec![Box::new(key)];
        let mut out = Vec::new();
        let (enc, t) = decode_file(&apath, Some(&ids), &mut out).unwrap();
        assert_eq!((enc, t.matches()), (FileEncoding::Age, true));
        assert_eq!(out, raw);

        let wrong: Vec<Box<dyn age::Identity + Send + Sync>> =
            vec![Box::new(age::x25519::Identity::generate())];
        let e = decode_file(&apath, Some(&wrong), &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("cannot decrypt"), "{e}");

        let cut = dir.path().join("cut.zst");
        std::fs::write(&cut, &zst[..zst.len() / 2]).unwrap();
        let e = decode_file(&cut, None, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, SnapshotError::Corrupt { .. }), "{e:?}");
        assert!(e.to_string().contains("cut.zst"), "{e}");
    }
}
