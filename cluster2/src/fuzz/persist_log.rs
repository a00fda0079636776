//! The cache's persistence log (`cache::persist::read_log`): whatever a disk, a crash or a
//! careless copy left in a `<namespace>.log`, Redis's corrupt-dump fuzzer being the model.
//!
//! Beyond never panicking and allocating no more than the file: every record the reader keeps
//! lies wholly in the bytes it was given, the stretches it reports lost and the records it
//! kept never overlap, and the records it kept, written into a fresh log, read back as they
//! were, with nothing lost.

use super::{Edit, bounded, damage};
use crate::cache::persist::{Format, Record, encode_record, file_header, read_log};
use crate::cache::protocol::NsOptions;

/// What reading may hold whatever the input: the record list's first growth.
const FIXED: usize = 16 * 1024;

fn check_log(bytes: &[u8]) {
    let replay = bounded("the log reader", bytes.len(), FIXED, 8, || read_log(bytes));
    // Every record takes at least 8 bytes of the file (format 1's header; format 2's is 16).
    assert!(
        replay.records.len() <= bytes.len() / 8,
        "more records than bytes"
    );
    let mut last_end = 0;
    for damage in &replay.damaged {
        assert!(
            damage.range.start >= last_end && damage.range.start < damage.range.end,
            "damaged stretches in order and apart: {:?}",
            replay.damaged
        );
        last_end = damage.range.end;
    }
    if let Some(tail) = &replay.tail {
        assert!(
            tail.start >= last_end && tail.end == bytes.len(),
            "the tail is the end of the file: {tail:?}"
        );
    }
    if matches!(replay.format, Format::Empty | Format::Newer(_)) {
        assert!(replay.records.is_empty());
        return;
    }
    // What was kept, written again, reads back whole.
    let mut fresh = file_header().to_vec();
    for record in &replay.records {
        fresh.extend(encode_record(record).expect("a record read back encodes"));
    }
    let again = read_log(&fresh);
    assert_eq!(again.format, Format::V2);
    assert!(
        again.damaged.is_empty() && again.tail.is_none(),
        "{again:?}"
    );
    assert_eq!(
        format!("{:?}", again.records),
        format!("{:?}", replay.records)
    );
}

#[test]
fn persist_log_bytes() {
    bolero::check!(name = "persist_log_bytes").for_each(check_log);
}

/// The records of a log, generated: `(kind, key, value, expiry)`.
type Parts = (u8, String, Vec<u8>, Option<u64>);

fn record_from((kind, key, value, expires_at_ms): &Parts) -> Record {
    match kind % 3 {
        0 => Record::Meta(NsOptions {
            persist: true,
            expire_ms: *expires_at_ms,
        }),
        1 => Record::Set {
            key: key.clone(),
            value: serde_bytes::ByteBuf::from(value.clone()),
            expires_at_ms: *expires_at_ms,
        },
        _ => Record::Del { key: key.clone() },
    }
}

#[test]
fn persist_log_damaged() {
    bolero::check!()
        .with_type::<(Vec<Parts>, Vec<Edit>, bool)>()
        .for_each(|(records, edits, old_format)| {
            let mut log = if *old_format {
                Vec::new()
            } else {
                file_header().to_vec()
            };
            for parts in records {
                let record = encode_record(&record_from(parts)).expect("a record encodes");
                if *old_format {
                    // Format 1: length, CRC of the payload, payload.
                    let payload = &record[16..];
                    log.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                    log.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
                    log.extend_from_slice(payload);
                } else {
                    log.extend(record);
                }
            }
            let whole = read_log(&log);
            assert_eq!(
                whole.records.len(),
                records.len(),
                "an intact log reads whole"
            );
            assert!(whole.damaged.is_empty() && whole.tail.is_none());
            check_log(&log);
            damage(&mut log, edits);
            check_log(&log);
        });
}

/// A log of `len` bytes whose first record is damaged and whose rest is headers, one every 16
/// bytes, each intact and announcing a payload up to the end of the file, none matching its
/// checksum: what a damaged log holding hostile values can look like.
pub(super) fn stacked_headers(len: usize) -> Vec<u8> {
    let mut log = file_header().to_vec();
    log.push(0);
    while log.len() + 16 <= len {
        let payload = (len - log.len() - 16) as u32;
        let mut head = vec![0xC2, b'r', b'e', b'c'];
        head.extend_from_slice(&payload.to_le_bytes());
        head.extend_from_slice(&0u32.to_le_bytes());
        let crc = crc32fast::hash(&head);
        head.extend_from_slice(&crc.to_le_bytes());
        log.extend_from_slice(&head);
    }
    log.resize(len, 0);
    log
}

/// Found by reading the reader: resynchronising after damage read, for every intact header in
/// a damaged stretch, the whole payload it announced (1 MiB of such headers took minutes). It
/// now stops at the first intact header, and skips its payload by its length.
#[test]
fn resynchronising_reads_each_payload_once() {
    let len = 1 << 20;
    let replay = read_log(&stacked_headers(len));
    assert!(
        replay.records.is_empty() && replay.tail.is_none(),
        "{replay:?}"
    );
    let lost: Vec<_> = replay.damaged.iter().map(|d| d.range.clone()).collect();
    assert_eq!(lost, [8..9, 9..len]);
}
