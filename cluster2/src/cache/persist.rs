//! Persistence of a namespace: one append-only log per persistent namespace, compacted into a
//! fresh log once it holds much more than the live data.
//!
//! Why a log: every change is one `write` of one record, so a crash or SIGKILL at any moment
//! leaves every earlier record intact (the kernel has it), and at worst a torn last record,
//! which the CRC detects and the reload cuts off. Compaction writes a new file, syncs it, and
//! renames it over the old one, so there is always one complete log. No dependency and no
//! format migration to manage; the data is a cache, so losing the last instant before a machine
//! crash (records not yet synced, at most about a second) is acceptable.
//!
//! Record: 4-byte length (little endian), 4-byte CRC32 of the payload, payload (postcard).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::protocol::NsOptions;

#[derive(Debug, Serialize, Deserialize)]
enum Record {
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

/// Logs larger than this many times the live data (and at least `MIN_COMPACT` bytes) are
/// compacted.
const COMPACT_RATIO: u64 = 2;
const MIN_COMPACT: u64 = 1 << 20;

/// An entry as it comes back from disk.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) key: String,
    pub(crate) value: Vec<u8>,
    pub(crate) expires_at: Option<SystemTime>,
}

/// A namespace's log, open for appending.
#[derive(Debug)]
pub(crate) struct Log {
    path: PathBuf,
    file: File,
    size: u64,
    dirty: bool,
    /// Appends since compaction was last considered.
    appends: u32,
}

/// Compaction is considered once per this many appends (the check walks the namespace).
const CHECK_EVERY: u32 = 1024;

fn to_system_time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn log_path(dir: &Path, ns: &str) -> PathBuf {
    // Namespace names are checked to be safe file names before they get here.
    dir.join(format!("{ns}.log"))
}

fn encode(record: &Record) -> Vec<u8> {
    let payload = postcard::to_stdvec(record).expect("records always serialize");
    let mut frame = Vec::with_capacity(payload.len() + 8);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// Reads every complete record; returns them and the length of the valid prefix.
fn read_records(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while bytes.len() >= at + 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let Some(payload) = bytes.get(at + 8..at + 8 + len) else {
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
    (records, at)
}

/// Every persisted namespace in `dir`: its options and its live entries. A torn tail (a crash
/// during a write) is cut off so that appending resumes after the last complete record.
pub(crate) fn load_all(dir: &Path) -> io::Result<Vec<(String, NsOptions, Vec<Loaded>)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(ns) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| super::handle::valid_namespace(n).is_ok())
            .map(str::to_owned)
        else {
            continue;
        };
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let (records, valid) = read_records(&bytes);
        if valid < bytes.len() {
            tracing::warn!(
                "cache log {} ends with {} bytes of a torn record; cutting them off",
                path.display(),
                bytes.len() - valid
            );
            OpenOptions::new()
                .write(true)
                .open(&path)?
                .set_len(valid as u64)?;
        }
        let mut options = None;
        let mut live: std::collections::HashMap<String, Loaded> = std::collections::HashMap::new();
        for record in records {
            match record {
                Record::Meta(o) => options = Some(o),
                Record::Set {
                    key,
                    value,
                    expires_at_ms,
                } => {
                    live.insert(
                        key.clone(),
                        Loaded {
                            key,
                            value: value.into_vec(),
                            expires_at: expires_at_ms.map(to_system_time),
                        },
                    );
                }
                Record::Del { key } => {
                    live.remove(&key);
                }
            }
        }
        let Some(options) = options else {
            tracing::warn!("cache log {} has no header; ignoring it", path.display());
            continue;
        };
        let now = SystemTime::now();
        let entries = live
            .into_values()
            .filter(|e| e.expires_at.is_none_or(|t| t > now))
            .collect();
        out.push((ns, options, entries));
    }
    Ok(out)
}

impl Log {
    /// Opens (or starts) the log of `ns`, writing its options first when new.
    pub(crate) fn open(dir: &Path, ns: &str, options: NsOptions) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = log_path(dir, ns);
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut size = file.metadata()?.len();
        if size == 0 {
            let header = encode(&Record::Meta(options));
            file.write_all(&header)?;
            file.sync_data()?;
            size = header.len() as u64;
        }
        Ok(Self {
            path,
            file,
            size,
            dirty: false,
            appends: 0,
        })
    }

    pub(crate) fn set(
        &mut self,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
    ) -> io::Result<()> {
        self.append(&Record::Set {
            key: key.to_owned(),
            value: ByteBuf::from(value.to_vec()),
            expires_at_ms: expires_at.map(|t| {
                t.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            }),
        })
    }

    pub(crate) fn del(&mut self, key: &str) -> io::Result<()> {
        self.append(&Record::Del {
            key: key.to_owned(),
        })
    }

    fn append(&mut self, record: &Record) -> io::Result<()> {
        let frame = encode(record);
        // One write per record: a crash leaves whole records, or a torn last one.
        self.file.write_all(&frame)?;
        self.size += frame.len() as u64;
        self.dirty = true;
        self.appends = self.appends.saturating_add(1);
        Ok(())
    }

    /// Cheap first check, true about once per `CHECK_EVERY` appends of a log larger than the
    /// compaction floor.
    pub(crate) fn may_want_compaction(&mut self) -> bool {
        if self.size <= MIN_COMPACT || self.appends < CHECK_EVERY {
            return false;
        }
        self.appends = 0;
        true
    }

    /// Whether the log holds so much dead data that it should be rewritten.
    pub(crate) fn wants_compaction(&self, live_bytes: u64) -> bool {
        self.size > MIN_COMPACT.max(live_bytes.saturating_mul(COMPACT_RATIO))
    }

    /// Rewrites the log with only `entries`; atomic through a rename.
    pub(crate) fn compact<'a>(
        &mut self,
        options: NsOptions,
        entries: impl Iterator<Item = (&'a str, &'a [u8], Option<SystemTime>)>,
    ) -> io::Result<()> {
        let tmp = self.path.with_extension("log.compact");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut size = 0;
        for record in
            std::iter::once(Record::Meta(options)).chain(entries.map(|(key, value, expires_at)| {
                Record::Set {
                    key: key.to_owned(),
                    value: ByteBuf::from(value.to_vec()),
                    expires_at_ms: expires_at.map(|t| {
                        t.duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64)
                    }),
                }
            }))
        {
            let frame = encode(&record);
            out.write_all(&frame)?;
            size += frame.len() as u64;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a machine crash.
            File::open(dir)?.sync_all()?;
        }
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.size = size;
        self.dirty = false;
        Ok(())
    }

    /// Pushes written records to the disk (called about once a second).
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("cluster2-persist-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    const OPTIONS: NsOptions = NsOptions {
        persist: true,
        expire_ms: None,
    };

    #[test]
    fn a_log_replays_sets_and_deletes() {
        let d = dir("replay");
        let mut log = Log::open(&d, "users", OPTIONS).unwrap();
        log.set("a", b"1", None).unwrap();
        log.set("b", b"2", None).unwrap();
        log.set("a", b"3", None).unwrap();
        log.del("b").unwrap();
        let loaded = load_all(&d).unwrap();
        assert_eq!(loaded.len(), 1);
        let (ns, options, entries) = &loaded[0];
        assert_eq!((ns.as_str(), *options), ("users", OPTIONS));
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].key.as_str(), entries[0].value.as_slice()),
            ("a", &b"3"[..])
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appending_resumes() {
        let d = dir("torn");
        let mut log = Log::open(&d, "ns", OPTIONS).unwrap();
        log.set("kept", b"yes", None).unwrap();
        drop(log);
        // Half a record, as a crash in the middle of a write leaves it.
        let frame = encode(&Record::Set {
            key: "lost".into(),
            value: ByteBuf::from(b"no".to_vec()),
            expires_at_ms: None,
        });
        let mut file = OpenOptions::new()
            .append(true)
            .open(d.join("ns.log"))
            .unwrap();
        file.write_all(&frame[..frame.len() - 3]).unwrap();
        drop(file);
        let loaded = load_all(&d).unwrap();
        assert_eq!(loaded[0].2.len(), 1);
        assert_eq!(loaded[0].2[0].key, "kept");
        let mut log = Log::open(&d, "ns", OPTIONS).unwrap();
        log.set("after", b"ok", None).unwrap();
        let keys: Vec<String> = load_all(&d).unwrap()[0]
            .2
            .iter()
            .map(|e| e.key.clone())
            .collect();
        assert!(keys.contains(&"kept".to_owned()) && keys.contains(&"after".to_owned()));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn compaction_keeps_exactly_the_live_entries_and_expired_ones_are_dropped() {
        let d = dir("compact");
        let mut log = Log::open(&d, "ns", OPTIONS).unwrap();
        for i in 0..1000 {
            log.set("hot", format!("{i}").as_bytes(), None).unwrap();
        }
        let past = SystemTime::now() - Duration::from_secs(1);
        log.set("gone", b"x", Some(past)).unwrap();
        log.compact(OPTIONS, [("hot", &b"999"[..], None)].into_iter())
            .unwrap();
        log.set("new", b"n", None).unwrap();
        let mut keys: Vec<String> = load_all(&d).unwrap()[0]
            .2
            .iter()
            .map(|e| e.key.clone())
            .collect();
        keys.sort();
        assert_eq!(keys, ["hot", "new"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
