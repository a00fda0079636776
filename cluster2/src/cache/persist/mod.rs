//! Persistence of a namespace: one append-only log per persistent namespace, compacted into a
//! fresh log once it holds much more than the live data, and reloaded at start.
//!
//! Why a log: every change is one `write` of one record, so a crash or SIGKILL at any moment
//! leaves every earlier record intact (the kernel has it), and at worst a torn last record,
//! which the reload cuts off. Compaction writes a new file, syncs it, and renames it over the
//! old one, so there is always one complete log. The data is a cache, so losing the last
//! instant before a machine crash (records not yet synced, at most about a second) is
//! acceptable.
//!
//! A reload keeps every intact record, even after damage in the middle of a log: what it
//! dropped is reported in one log line (the byte ranges and the records), the damaged file is
//! kept beside the log as `<namespace>.log.damaged-<unix seconds>`, and the log is rewritten
//! with what survived. The bytes are `format.rs`; the files' safety is `files.rs`.

mod files; // the directory's and the logs' checks, private modes, the quarantine
mod format; // records and the reader of any bytes (the fuzz target)

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_bytes::ByteBuf;

use super::protocol::NsOptions;
use files::{check_dir, open_file, quarantine, refuse};
#[cfg(test)]
pub(crate) use format::encode as encode_record;
use format::{Damage, FILE_HEADER, VERSION, encode};
pub(crate) use format::{Format, Record, file_header, read_log};

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

fn to_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn log_path(dir: &Path, ns: &str) -> io::Result<PathBuf> {
    // The manager checks names before they get here; a name that could leave the directory
    // must not reach the file system even if one slips through.
    super::handle::valid_namespace(ns).map_err(io::Error::other)?;
    Ok(dir.join(format!("{ns}.log")))
}

/// Writes a complete format-2 log at `path` (through a temporary file and a rename, synced),
/// and returns its size.
fn write_log<'a>(
    path: &Path,
    options: NsOptions,
    entries: impl Iterator<Item = (&'a str, &'a [u8], Option<SystemTime>)>,
) -> io::Result<u64> {
    let tmp = path.with_extension("log.compact");
    // A leftover of a crash; removing a name never touches what a link points at.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let file = open_file(&tmp, OpenOptions::new().write(true).create_new(true))?;
    let mut out = io::BufWriter::new(file);
    out.write_all(&file_header())?;
    let mut size = FILE_HEADER as u64;
    for record in
        std::iter::once(Record::Meta(options)).chain(entries.map(|(key, value, expires_at)| {
            Record::Set {
                key: key.to_owned(),
                value: ByteBuf::from(value.to_vec()),
                expires_at_ms: expires_at.map(to_ms),
            }
        }))
    {
        let frame = encode(&record)?;
        out.write_all(&frame)?;
        size += frame.len() as u64;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself must survive a machine crash.
        File::open(dir)?.sync_all()?;
    }
    Ok(size)
}

/// What reloading one log found and did, for its log line (and for tests).
#[derive(Debug, Default)]
struct Outcome {
    /// The namespace's options and live entries, when it could be reloaded.
    loaded: Option<(NsOptions, Vec<Loaded>)>,
    damaged: Vec<Damage>,
    tail: Option<Range<usize>>,
    /// The copy of a damaged file.
    quarantined: Option<PathBuf>,
}

impl Outcome {
    /// "1 record (bytes 5120..5187), a torn last record (bytes …)", or `None` when nothing
    /// was dropped.
    fn lost(&self) -> Option<String> {
        let mut parts: Vec<String> = self
            .damaged
            .iter()
            .map(|d| {
                let what = match d.records {
                    Some(0) => "the file header".to_owned(),
                    Some(n) => records(n),
                    None => "at least 1 record".to_owned(),
                };
                format!("{what} (bytes {}..{})", d.range.start, d.range.end)
            })
            .collect();
        if let Some(tail) = &self.tail {
            parts.push(format!(
                "{} bytes holding no whole record at the end (bytes {}..{})",
                tail.len(),
                tail.start,
                tail.end
            ));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    /// Records known lost in damaged stretches (a torn tail is one record cut short, or
    /// damage at the very end: its count is not known).
    fn records_lost(&self) -> usize {
        self.damaged.iter().map(|d| d.records.unwrap_or(1)).sum()
    }
}

fn records(n: usize) -> String {
    if n == 1 {
        "1 record".to_owned()
    } else {
        format!("{n} records")
    }
}

/// Reloads one log: replays its intact records, then repairs the file so that appending
/// resumes after them (cutting a torn tail, or rewriting it after keeping a damaged copy).
fn load_one(path: &Path) -> io::Result<Outcome> {
    let mut file = open_file(path, OpenOptions::new().read(true).write(true))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let replay = read_log(&bytes);
    let mut outcome = Outcome::default();
    match replay.format {
        Format::Empty => {
            // Created, then the process died before the first record: start again.
            file.set_len(0)?;
            return Ok(outcome);
        }
        Format::Newer(version) => {
            return Err(refuse(
                path,
                format!(
                    "written by a newer cluster2 (log format {version}; this one reads 1 and \
                     {VERSION}); left as it is"
                ),
            ));
        }
        Format::V1 | Format::V2 => {}
    }
    let end = replay.end(bytes.len());
    outcome.damaged = replay.damaged;
    outcome.tail = replay.tail;
    let mut options = None;
    let mut live: HashMap<String, Loaded> = HashMap::new();
    for record in replay.records {
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
        // Without its options the namespace cannot be rebuilt: keep the file aside, so that a
        // namespace of that name starts afresh.
        let copy = quarantine(path)?;
        std::fs::remove_file(path)?;
        outcome.quarantined = Some(copy);
        outcome.damaged.push(Damage {
            range: 0..bytes.len(),
            records: None,
        });
        return Ok(outcome);
    };
    let now = SystemTime::now();
    live.retain(|_, e| e.expires_at.is_none_or(|t| t > now));
    let entries: Vec<Loaded> = live.into_values().collect();
    // Format 1 cannot tell a torn tail from damage: keep a copy of whatever it drops.
    let lost_inside =
        !outcome.damaged.is_empty() || (replay.format == Format::V1 && end < bytes.len());
    if lost_inside {
        outcome.quarantined = Some(quarantine(path)?);
    }
    if lost_inside || replay.format == Format::V1 {
        drop(file);
        write_log(
            path,
            options,
            entries
                .iter()
                .map(|e| (e.key.as_str(), e.value.as_slice(), e.expires_at)),
        )?;
    } else if end < bytes.len() {
        file.set_len(end as u64)?;
    }
    outcome.loaded = Some((options, entries));
    Ok(outcome)
}

/// Every persisted namespace in `dir`: its options and its live entries. What a damaged log
/// lost is logged; a log that cannot be read safely (a symbolic link, another user's, a
/// newer format) is reported and left untouched, and its namespace starts empty.
pub(crate) fn load_all(dir: &Path) -> io::Result<Vec<(String, NsOptions, Vec<Loaded>)>> {
    let mut out = Vec::new();
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    if !check_dir(dir, false)? {
        tracing::info!(
            "cache persistence directory: {} (not created yet)",
            shown.display()
        );
        return Ok(out);
    }
    tracing::info!("cache persistence directory: {}", shown.display());
    for entry in std::fs::read_dir(dir)? {
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
        let outcome = match load_one(&path) {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!("cache namespace `{ns}` not reloaded: {e}");
                continue;
            }
        };
        report(&path, &outcome);
        if let Some((options, entries)) = outcome.loaded {
            out.push((ns, options, entries));
        }
    }
    Ok(out)
}

fn report(path: &Path, outcome: &Outcome) {
    let Some(lost) = outcome.lost() else {
        return;
    };
    let reloaded = match &outcome.loaded {
        Some((_, entries)) => format!("the namespace has {} entries", entries.len()),
        None => "the namespace starts empty".to_owned(),
    };
    match &outcome.quarantined {
        None => tracing::warn!(
            "cache log {} ends with a write cut short: dropped {lost}; {reloaded}",
            path.display()
        ),
        Some(copy) => tracing::error!(
            "cache log {} was damaged: dropped {lost}, {} lost in all; {reloaded}; the damaged \
             file is kept as {}",
            path.display(),
            records(outcome.records_lost()),
            copy.display()
        ),
    }
}

impl Log {
    /// Opens (or starts) the log of `ns`, writing the file header and its options first when
    /// new.
    pub(crate) fn open(dir: &Path, ns: &str, options: NsOptions) -> io::Result<Self> {
        let path = log_path(dir, ns)?;
        check_dir(dir, true)?;
        let mut file = open_file(
            &path,
            OpenOptions::new().read(true).append(true).create(true),
        )?;
        let mut size = file.metadata()?.len();
        if size == 0 {
            let mut start = file_header().to_vec();
            start.extend_from_slice(&encode(&Record::Meta(options))?);
            file.write_all(&start)?;
            file.sync_data()?;
            size = start.len() as u64;
        } else {
            let mut header = [0; FILE_HEADER];
            let is_v2 = file.read_exact(&mut header).is_ok() && header == file_header();
            if !is_v2 {
                return Err(refuse(
                    &path,
                    format!(
                        "not a cache log of format {VERSION}; move it away to start the \
                         namespace afresh"
                    ),
                ));
            }
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
            expires_at_ms: expires_at.map(to_ms),
        })
    }

    pub(crate) fn del(&mut self, key: &str) -> io::Result<()> {
        self.append(&Record::Del {
            key: key.to_owned(),
        })
    }

    fn append(&mut self, record: &Record) -> io::Result<()> {
        let frame = encode(record)?;
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
        let size = write_log(&self.path, options, entries)?;
        self.file = open_file(&self.path, OpenOptions::new().append(true))?;
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
    use super::files::check_dir_meta;
    use super::format::MAGIC;
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    /// A fresh directory for one test, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Self {
            let d = std::env::temp_dir()
                .join(format!("cluster2-persist-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            Self(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for Dir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for Dir {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    const OPTIONS: NsOptions = NsOptions {
        persist: true,
        expire_ms: None,
    };

    fn keys(entries: &[Loaded]) -> Vec<String> {
        let mut keys: Vec<String> = entries.iter().map(|e| e.key.clone()).collect();
        keys.sort();
        keys
    }

    /// A log of `ns` with keys `k0`..`k{n-1}`; returns its path and the offset where each
    /// record (the options first) starts, and the end.
    fn log_of(dir: &Path, ns: &str, n: usize) -> (PathBuf, Vec<usize>) {
        let mut log = Log::open(dir, ns, OPTIONS).unwrap();
        let mut starts = vec![FILE_HEADER, log.size as usize];
        for i in 0..n {
            log.set(&format!("k{i}"), format!("value {i}").as_bytes(), None)
                .unwrap();
            starts.push(log.size as usize);
        }
        (log.path.clone(), starts)
    }

    fn flip(path: &Path, at: usize) -> Vec<u8> {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0xFF;
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn a_log_replays_sets_and_deletes() {
        let d = Dir::new("replay");
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
    }

    #[test]
    fn logs_are_private_and_a_wider_one_is_narrowed() {
        let d = Dir::new("private");
        let (path, _) = log_of(&d, "ns", 1);
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&path), 0o600);
        // A log written before files were private.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_all(&d).unwrap()[0].2.len(), 1);
        assert_eq!(mode(&path), 0o600);
    }

    /// A torn last record (a crash in the middle of a write) is cut off, nothing is
    /// quarantined, and appending resumes after the last whole record.
    #[test]
    fn a_torn_tail_is_cut_off_and_appending_resumes() {
        let d = Dir::new("torn");
        let (path, starts) = log_of(&d, "ns", 5);
        let whole = std::fs::read(&path).unwrap();
        let cut = starts[4] + 5;
        std::fs::write(&path, &whole[..cut]).unwrap();
        let outcome = load_one(&path).unwrap();
        assert_eq!(keys(&outcome.loaded.unwrap().1), ["k0", "k1", "k2"]);
        assert_eq!(outcome.tail, Some(starts[4]..cut));
        assert!(outcome.quarantined.is_none());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), starts[4] as u64);
        let mut log = Log::open(&d, "ns", OPTIONS).unwrap();
        log.set("after", b"ok", None).unwrap();
        let loaded = load_all(&d).unwrap();
        assert_eq!(keys(&loaded[0].2), ["after", "k0", "k1", "k2"]);
    }

    /// 100 records, one byte flipped in the middle: 99 come back, the one lost is reported,
    /// and the damaged file is kept. Once in the record's payload, once in its header.
    #[test]
    fn one_flipped_byte_in_the_middle_costs_one_record() {
        // In the header, a byte of the payload's CRC: the length still says where it ended.
        for (name, into_record) in [("payload", 20), ("header", 10)] {
            let d = Dir::new(&format!("flip-{name}"));
            let (path, starts) = log_of(&d, "ns", 100);
            // starts[0] is the options; starts[50] the 50th key, k49.
            let damaged = flip(&path, starts[50] + into_record);
            let outcome = load_one(&path).unwrap();
            let entries = &outcome.loaded.as_ref().unwrap().1;
            assert_eq!(entries.len(), 99, "{name}");
            assert!(!keys(entries).contains(&"k49".to_owned()), "{name}");
            assert_eq!(outcome.records_lost(), 1, "{name}");
            assert_eq!(
                outcome.lost().unwrap(),
                format!("1 record (bytes {}..{})", starts[50], starts[51]),
                "{name}"
            );
            let copy = outcome.quarantined.unwrap();
            assert_eq!(std::fs::read(&copy).unwrap(), damaged, "{name}");
            assert_eq!(mode(&copy), 0o600);
            // The log was rewritten with what survived: the next reload is clean, and the
            // copy is not taken for a namespace.
            let loaded = load_all(&d).unwrap();
            assert_eq!(loaded.len(), 1);
            assert_eq!(loaded[0].2.len(), 99, "{name}");
            let again = load_one(&path).unwrap();
            assert!(again.lost().is_none() && again.quarantined.is_none());
        }
    }

    /// Format 1 logs (before the file header) still load, and are rewritten as format 2.
    #[test]
    fn a_format_1_log_is_read_and_rewritten() {
        fn v1(record: &Record) -> Vec<u8> {
            let payload = postcard::to_stdvec(record).unwrap();
            let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
            frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            frame.extend_from_slice(&payload);
            frame
        }
        let d = Dir::new("v1");
        std::fs::create_dir(&d).unwrap();
        let mut bytes = v1(&Record::Meta(OPTIONS));
        for key in ["a", "b"] {
            bytes.extend(v1(&Record::Set {
                key: key.into(),
                value: ByteBuf::from(b"x".to_vec()),
                expires_at_ms: None,
            }));
        }
        let path = d.join("old.log");
        std::fs::write(&path, &bytes).unwrap();
        let loaded = load_all(&d).unwrap();
        assert_eq!(keys(&loaded[0].2), ["a", "b"]);
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
        let names: Vec<_> = std::fs::read_dir(&*d).unwrap().collect();
        assert_eq!(names.len(), 1, "no quarantine copy for a clean conversion");
        Log::open(&d, "old", OPTIONS)
            .unwrap()
            .set("c", b"y", None)
            .unwrap();
        assert_eq!(keys(&load_all(&d).unwrap()[0].2), ["a", "b", "c"]);
    }

    #[test]
    fn a_newer_format_is_refused_and_left_untouched() {
        let d = Dir::new("newer");
        let (path, _) = log_of(&d, "ns", 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[6] = 9;
        std::fs::write(&path, &bytes).unwrap();
        assert!(load_all(&d).unwrap().is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let err = Log::open(&d, "ns", OPTIONS).unwrap_err().to_string();
        assert!(err.contains("not a cache log of format 2"), "{err}");
        let err = load_one(&path).unwrap_err().to_string();
        assert!(err.contains("newer cluster2 (log format 9"), "{err}");
    }

    #[test]
    fn a_symlinked_log_is_refused_and_its_target_untouched() {
        let d = Dir::new("link");
        std::fs::create_dir(&d).unwrap();
        let target = Dir::new("link-target");
        std::fs::write(&*target, b"precious").unwrap();
        symlink(&*target, d.join("ns.log")).unwrap();
        assert!(load_all(&d).unwrap().is_empty());
        let err = Log::open(&d, "ns", OPTIONS).unwrap_err().to_string();
        assert!(
            err.contains("a symbolic link where a cache log should be"),
            "{err}"
        );
        assert_eq!(std::fs::read(&*target).unwrap(), b"precious");
        assert!(d.join("ns.log").is_symlink());
    }

    #[test]
    fn a_fifo_where_a_log_should_be_is_refused_without_waiting() {
        let d = Dir::new("fifo");
        std::fs::create_dir(&d).unwrap();
        nix::unistd::mkfifo(&d.join("ns.log"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(load_all(&d).unwrap().is_empty());
        let err = Log::open(&d, "ns", OPTIONS).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn a_directory_that_is_a_symlink_or_not_ours_is_refused() {
        let real = Dir::new("real");
        std::fs::create_dir(&real).unwrap();
        let link = Dir::new("dir-link");
        symlink(&*real, &*link).unwrap();
        let err = load_all(&link).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        let err = Log::open(&link, "ns", OPTIONS).unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert_eq!(std::fs::read_dir(&*real).unwrap().count(), 0);

        // Another user's: only root could make one here, so the check itself is given
        // another uid.
        let meta = std::fs::symlink_metadata(&*real).unwrap();
        let err = check_dir_meta(&real, &meta, meta.uid() + 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("belongs to uid"), "{err}");
        std::fs::set_permissions(&*real, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = load_all(&real).unwrap_err().to_string();
        assert!(err.contains("writable by every user (mode 777)"), "{err}");
    }

    #[test]
    fn a_namespace_that_would_leave_the_directory_is_refused() {
        let d = Dir::new("escape");
        for name in ["../x", "/tmp/x", ".hidden", ""] {
            assert!(Log::open(&d, name, OPTIONS).is_err(), "{name:?}");
        }
        assert!(!d.exists());
    }

    #[test]
    fn compaction_keeps_exactly_the_live_entries_and_expired_ones_are_dropped() {
        let d = Dir::new("compact");
        let mut log = Log::open(&d, "ns", OPTIONS).unwrap();
        for i in 0..1000 {
            log.set("hot", format!("{i}").as_bytes(), None).unwrap();
        }
        let past = SystemTime::now() - Duration::from_secs(1);
        log.set("gone", b"x", Some(past)).unwrap();
        log.compact(OPTIONS, [("hot", &b"999"[..], None)].into_iter())
            .unwrap();
        log.set("new", b"n", None).unwrap();
        assert_eq!(keys(&load_all(&d).unwrap()[0].2), ["hot", "new"]);
        assert_eq!(mode(&d.join("ns.log")), 0o600);
    }
}
