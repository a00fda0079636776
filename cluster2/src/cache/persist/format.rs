//! The bytes of a cache log: how a record is written, and how any bytes are read back, damaged
//! or not. No files here: [`read_log`] takes a slice, so a fuzzer can call it on anything.
//!
//! Format 2: an 8-byte file header, `C2CLOG` and the version (u16, little endian), then the
//! records. Each record is a 16-byte header (a mark, the payload's length, the CRC32 of the
//! payload, the CRC32 of those 12 bytes), then the payload (postcard). The header's own CRC
//! is what makes damage survivable: a reader that meets bytes that are not a record looks for
//! the next offset where a mark and a header CRC agree (with the payload the header announces
//! there) and goes on from there, so one flipped byte costs one record, not every record after
//! it; a damaged payload under an intact header is skipped by its length, exactly. (A damaged
//! header inside a value that itself holds a cache log could resynchronise on the inner log's
//! records: an accepted, contrived risk.)
//!
//! Format 1 (length, CRC, payload; no file header, no marks) is still read, up to its first
//! bad record; the loader rewrites it as format 2.

use std::io;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use crate::cache::protocol::NsOptions;

/// One change to a namespace, or its options (the first record of every log).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Record {
    Meta(NsOptions),
    Set {
        key: String,
        value: ByteBuf,
        /// Milliseconds since the Unix epoch; survives restarts, unlike an `Instant`.
        expires_at_ms: Option<u64>,
    },
    Del {
        key: String,
    },
}

/// The start of every format-2 log.
pub(super) const MAGIC: &[u8; 6] = b"C2CLOG";
pub(super) const VERSION: u16 = 2;
pub(super) const FILE_HEADER: usize = MAGIC.len() + 2;

/// The first bytes of every format-2 record.
const MARK: [u8; 4] = [0xC2, b'r', b'e', b'c'];
const RECORD_HEADER: usize = 16;

/// The longest payload a record may have: the largest value the options allow (1 GiB) with
/// room for its key. A reader never trusts a length beyond this, or beyond the bytes it has.
const MAX_RECORD: usize = (1 << 30) + (128 << 10);

fn header_crc(head: &[u8]) -> u32 {
    crc32fast::hash(head)
}

/// One record as it is written: header, then payload.
pub(crate) fn encode(record: &Record) -> io::Result<Vec<u8>> {
    let payload = postcard::to_stdvec(record).expect("records always serialize");
    if payload.len() > MAX_RECORD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a record of {} bytes is larger than a log holds ({MAX_RECORD})",
                payload.len()
            ),
        ));
    }
    let mut frame = Vec::with_capacity(RECORD_HEADER + payload.len());
    frame.extend_from_slice(&MARK);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let crc = header_crc(&frame);
    frame.extend_from_slice(&crc.to_le_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

pub(crate) fn file_header() -> [u8; FILE_HEADER] {
    let mut header = [0; FILE_HEADER];
    header[..MAGIC.len()].copy_from_slice(MAGIC);
    header[MAGIC.len()..].copy_from_slice(&VERSION.to_le_bytes());
    header
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// What is at `at` in a format-2 log.
enum At {
    /// A record, and where the next one starts.
    Record(Record, usize),
    /// An intact header whose payload is damaged or unreadable; the next record starts at
    /// the given offset.
    BadPayload(usize),
    /// An intact header whose payload runs past the end: a torn last record.
    PastEnd,
    /// Not a record header.
    Nothing,
}

fn record_at(bytes: &[u8], at: usize) -> At {
    let Some(head) = at
        .checked_add(RECORD_HEADER)
        .and_then(|end| bytes.get(at..end))
    else {
        return At::Nothing;
    };
    if head[..4] != MARK || u32_at(head, 12) != Some(header_crc(&head[..12])) {
        return At::Nothing;
    }
    let len = u32_at(head, 4).unwrap_or(u32::MAX) as usize;
    if len > MAX_RECORD {
        return At::Nothing;
    }
    let start = at + RECORD_HEADER;
    let Some(payload) = bytes.get(start..).and_then(|rest| rest.get(..len)) else {
        return At::PastEnd;
    };
    let next = start + len;
    if Some(crc32fast::hash(payload)) != u32_at(head, 8) {
        return At::BadPayload(next);
    }
    match postcard::from_bytes::<Record>(payload) {
        Ok(record) => At::Record(record, next),
        // Intact but unreadable: a record of a kind this version does not know.
        Err(_) => At::BadPayload(next),
    }
}

/// A stretch of a log that was skipped between intact records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    /// Byte offsets in the file.
    pub(crate) range: Range<usize>,
    /// How many records the stretch held, when its headers' lengths account for it exactly;
    /// `None`: at least one.
    pub(crate) records: Option<usize>,
}

/// Which format a log's bytes are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Nothing yet, or only the start of a file header (a crash while the log was created).
    Empty,
    /// Format 1: records without a file header.
    V1,
    /// Format 2.
    V2,
    /// A format-2 header with a version this reader does not know.
    Newer(u16),
}

/// What a log's bytes hold: its format, the intact records in order, the stretches skipped
/// between them, and a torn tail.
#[derive(Debug)]
pub(crate) struct Replay {
    pub(crate) format: Format,
    pub(crate) records: Vec<Record>,
    pub(crate) damaged: Vec<Damage>,
    /// Bytes after the last intact record that hold no record: a torn last write, or damage
    /// at the very end; everything before it is kept.
    pub(crate) tail: Option<Range<usize>>,
}

impl Replay {
    /// Where the intact part of the log ends.
    pub(super) fn end(&self, len: usize) -> usize {
        self.tail.as_ref().map_or(len, |t| t.start)
    }
}

/// Reads a log's bytes, whatever they are. Never panics, and allocates no more than the
/// bytes it is given: every length is checked against what is there (and [`MAX_RECORD`])
/// before it is used. This is the function a fuzzer calls.
pub(crate) fn read_log(bytes: &[u8]) -> Replay {
    if bytes.len() < FILE_HEADER && MAGIC.starts_with(&bytes[..bytes.len().min(MAGIC.len())]) {
        return Replay {
            format: Format::Empty,
            records: Vec::new(),
            damaged: Vec::new(),
            tail: None,
        };
    }
    if bytes.starts_with(MAGIC) {
        let version = u16::from_le_bytes([bytes[6], bytes[7]]);
        if version != VERSION {
            return Replay {
                format: Format::Newer(version),
                records: Vec::new(),
                damaged: Vec::new(),
                tail: None,
            };
        }
        return read_v2(bytes, FILE_HEADER, Vec::new());
    }
    let v1 = read_v1(bytes);
    // A damaged file header: if format 2's first record is where it should be, read on.
    if v1.records.is_empty() && matches!(record_at(bytes, FILE_HEADER), At::Record(..)) {
        let header = Damage {
            range: 0..FILE_HEADER,
            records: Some(0),
        };
        return read_v2(bytes, FILE_HEADER, vec![header]);
    }
    v1
}

fn read_v2(bytes: &[u8], start: usize, mut damaged: Vec<Damage>) -> Replay {
    let mut records = Vec::new();
    let mut tail = None;
    let mut at = start;
    while at < bytes.len() {
        match record_at(bytes, at) {
            At::Record(record, next) => {
                records.push(record);
                at = next;
            }
            At::BadPayload(next) => {
                damaged.push(Damage {
                    range: at..next,
                    records: Some(1),
                });
                at = next;
            }
            At::PastEnd | At::Nothing => {
                // Resynchronise: the next offset where an intact header stands with its whole
                // payload after it (an intact record, or a damaged payload, skipped next by its
                // length). Stopping at the first such header reads each payload at most twice:
                // waiting for an intact record would read, for every header in a stretch, the
                // rest of the file its length claims (quadratic: minutes for a few MiB).
                let found = (at + 1..bytes.len()).find(|&p| {
                    bytes[p..].starts_with(&MARK)
                        && matches!(record_at(bytes, p), At::Record(..) | At::BadPayload(_))
                });
                match found {
                    Some(next) => {
                        damaged.push(Damage {
                            range: at..next,
                            records: chained(bytes, at, next),
                        });
                        at = next;
                    }
                    None => {
                        tail = Some(at..bytes.len());
                        break;
                    }
                }
            }
        }
    }
    Replay {
        format: Format::V2,
        records,
        damaged,
        tail,
    }
}

/// How many records `from..to` held, if following the (unverified) lengths of its headers
/// lands exactly on `to`.
fn chained(bytes: &[u8], from: usize, to: usize) -> Option<usize> {
    let mut at = from;
    let mut count = 0;
    while at < to {
        let len = u32_at(bytes, at + 4)? as usize;
        at = at.checked_add(RECORD_HEADER)?.checked_add(len)?;
        count += 1;
    }
    (at == to).then_some(count)
}

/// Format 1: length, CRC of the payload, payload; no marks to resynchronise on, so reading
/// stops at the first bad record and the rest is the tail.
fn read_v1(bytes: &[u8]) -> Replay {
    let mut records = Vec::new();
    let mut at = 0;
    while let (Some(len), Some(crc)) = (u32_at(bytes, at), u32_at(bytes, at + 4)) {
        let len = len as usize;
        if len > MAX_RECORD {
            break;
        }
        let Some(payload) = bytes.get(at + 8..).and_then(|rest| rest.get(..len)) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let Ok(record) = postcard::from_bytes::<Record>(payload) else {
            break;
        };
        records.push(record);
        at += 8 + len;
    }
    Replay {
        format: Format::V1,
        records,
        damaged: Vec::new(),
        tail: (at < bytes.len()).then_some(at..bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log of the options and keys `k0`..`k{n-1}`, and the offset where each record
    /// starts (the options first), then the end.
    fn log_of(n: usize) -> (Vec<u8>, Vec<usize>) {
        let options = NsOptions {
            persist: true,
            expire_ms: None,
        };
        let mut bytes = file_header().to_vec();
        let mut starts = vec![bytes.len()];
        let records = std::iter::once(Record::Meta(options)).chain((0..n).map(|i| Record::Set {
            key: format!("k{i}"),
            value: ByteBuf::from(format!("value {i}").into_bytes()),
            expires_at_ms: None,
        }));
        for record in records {
            bytes.extend(encode(&record).unwrap());
            starts.push(bytes.len());
        }
        (bytes, starts)
    }

    /// Redis's truncated-AOF case: a log cut at any length keeps every record before the
    /// cut, and what follows is a tail, not damage.
    #[test]
    fn a_log_cut_anywhere_keeps_every_record_before_the_cut() {
        let (whole, starts) = log_of(5);
        for cut in FILE_HEADER..whole.len() {
            let replay = read_log(&whole[..cut]);
            let complete = starts[1..].iter().filter(|&&end| end <= cut).count();
            assert_eq!(replay.records.len(), complete, "cut at {cut}");
            assert!(replay.damaged.is_empty(), "cut at {cut}");
            let torn = !starts.contains(&cut);
            assert_eq!(replay.tail.is_some(), torn, "cut at {cut}");
        }
        for cut in 0..FILE_HEADER {
            assert_eq!(
                read_log(&whole[..cut]).format,
                Format::Empty,
                "cut at {cut}"
            );
        }
    }

    /// Every single flipped byte after the file header costs exactly the record it lands in.
    #[test]
    fn any_flipped_byte_costs_only_its_record() {
        let (whole, starts) = log_of(4);
        let records = starts.len() - 1;
        for at in FILE_HEADER..whole.len() {
            let mut bytes = whole.clone();
            bytes[at] ^= 0xFF;
            let replay = read_log(&bytes);
            assert_eq!(replay.records.len(), records - 1, "flip at {at}");
            let hit = starts.iter().rposition(|&s| s <= at).unwrap();
            let lost = starts[hit]..starts[hit + 1];
            match (&replay.damaged[..], &replay.tail) {
                ([damage], None) => assert_eq!(damage.range, lost, "flip at {at}"),
                // The last record: nothing intact after it.
                ([], Some(tail)) => assert_eq!(*tail, lost, "flip at {at}"),
                other => panic!("flip at {at}: {other:?}"),
            }
        }
        // In the file header: a damaged magic is recognised by the first record; another
        // version is refused.
        let mut bytes = whole.clone();
        bytes[0] ^= 0xFF;
        let replay = read_log(&bytes);
        assert_eq!((replay.format, replay.records.len()), (Format::V2, records));
        assert_eq!(replay.damaged[0].range, 0..FILE_HEADER);
        let mut bytes = whole;
        bytes[6] = 3;
        assert_eq!(read_log(&bytes).format, Format::Newer(3));
    }

    /// Hostile bytes: no panic, and nothing allocated beyond what was given (a length is
    /// never trusted past the bytes there are).
    #[test]
    fn hostile_bytes_never_panic() {
        let (whole, _) = log_of(8);
        // A header that claims the longest payload there is, with a valid header CRC.
        let mut huge = file_header().to_vec();
        let mut head = MARK.to_vec();
        head.extend_from_slice(&u32::MAX.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        let crc = header_crc(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        huge.extend_from_slice(&head);
        assert!(read_log(&huge).records.is_empty());
        // Random mutations of a real log, and random bytes (xorshift: reproducible).
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for round in 0..5000 {
            let mut bytes = if round % 4 == 0 {
                let len = (next() % 300) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                whole.clone()
            };
            for _ in 0..(next() % 6) {
                if bytes.is_empty() {
                    break;
                }
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at),
                    _ => bytes.insert(at, next() as u8),
                }
            }
            let replay = read_log(&bytes);
            // Every record takes at least a header's worth of bytes (format 1: 8).
            assert!(replay.records.len() <= bytes.len() / 8, "round {round}");
        }
    }
}
