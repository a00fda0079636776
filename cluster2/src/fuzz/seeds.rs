//! The hand-made seeds of every corpus: valid inputs of each format (and a few telling invalid
//! ones), written from the real encoders, so that a fuzzer starts from meaningful bytes. They
//! live in `__fuzz__/<target>/corpus/seed-*` beside this file; other files there are inputs a
//! fuzzer found (failures found once stay as regressions).
//!
//! Seeds written by an encoder go stale when a format changes (a message gains a variant, the
//! protocol version is bumped): `committed_seeds_are_current` then fails, and
//! `cargo test -p cluster2 --lib fuzz::seeds::write -- --ignored` writes them again.

use std::borrow::Cow;
use std::path::PathBuf;

use crate::cache::persist::{Record, encode_record, file_header};
use crate::cache::protocol::{
    Message, NsBounds, NsFigures, NsOptions, Op, Reply, RequestRef, max_frame,
};
use crate::ipc::frame::{PREFIX, PROTOCOL_VERSION, encode_frame};
use crate::ipc::message::{
    Hello, LogControl, LogLevel, LogLine, ProfileFormat, StartStage, ToMaster, ToWorker, WireEvent,
    WireTarget,
};
use crate::options::Options;

/// `(target, file name, bytes)`.
type Seed = (&'static str, String, Vec<u8>);

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/fuzz/__fuzz__")
        .join(target)
        .join("corpus")
}

fn channel_messages() -> Vec<(&'static str, Vec<u8>)> {
    let event = WireEvent {
        name: "price-changed".to_owned(),
        from: 4242,
        payload: br#"["sku-1",999]"#.to_vec(),
    };
    vec![
        (
            "hello",
            encode_frame(&ToWorker::Hello(Box::new(Hello {
                worker_id: 3,
                options: Options::default(),
                app_args: vec!["--verbose".to_owned()],
                cache_socket: Some("/run/user/1000/cluster2-4242/cache.sock".into()),
                debug_new: Some("debug,hyper=info".to_owned()),
                balance_seat: Some(2),
                tls: None,
            }))),
        ),
        ("stop", encode_frame(&ToWorker::Stop)),
        ("event", encode_frame(&ToWorker::Event(event.clone()))),
        (
            "status-query",
            encode_frame(&ToWorker::StatusQuery {
                id: 7,
                name: "connections".to_owned(),
                set: Some(br#"{"limit":10}"#.to_vec()),
            }),
        ),
        (
            "set-filter",
            encode_frame(&ToWorker::Logs(LogControl::SetFilter {
                id: 8,
                filter: "info,my_app=trace".to_owned(),
            })),
        ),
        (
            "profile",
            encode_frame(&ToWorker::Profile {
                id: 9,
                seconds: 10,
                format: ProfileFormat::Pprof,
            }),
        ),
        (
            "warming",
            encode_frame(&ToMaster::Warming {
                addr: "127.0.0.1:40123".parse().expect("an address"),
            }),
        ),
        (
            "start-failed",
            encode_frame(&ToMaster::StartFailed {
                stage: StartStage::ConfigureApp,
                error: "database unreachable".to_owned(),
            }),
        ),
        ("listening", encode_frame(&ToMaster::Listening)),
        (
            "emit",
            encode_frame(&ToMaster::Emit {
                event,
                targets: vec![
                    WireTarget::Master,
                    WireTarget::Pid(7),
                    WireTarget::AllWorkers,
                ],
            }),
        ),
        (
            "status-reply",
            encode_frame(&ToMaster::StatusReply {
                id: 7,
                result: Ok(b"12".to_vec()),
            }),
        ),
        (
            "logs",
            encode_frame(&ToMaster::Logs {
                lines: vec![LogLine {
                    level: LogLevel::Warn,
                    target: "my_app::db".to_owned(),
                    message: "slow query".to_owned(),
                    fields: vec![("ms".to_owned(), "250".to_owned())],
                    at_unix_secs: 1_795_000_000.25,
                }],
                dropped: 3,
            }),
        ),
        (
            "filter-set",
            encode_frame(&ToMaster::LogFilterSet {
                id: 8,
                result: Err("`loud` is not a level".to_owned()),
            }),
        ),
    ]
}

fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let (ns, key) = (Cow::Borrowed("users"), Cow::Borrowed("u:42"));
    let value = Cow::Borrowed(&br#"{"name":"ann"}"#[..]);
    let options = NsOptions {
        persist: true,
        expire_ms: Some(60_000),
    };
    let ops = [
        (
            "use",
            Op::Use {
                ns: ns.clone(),
                options,
                bounds: NsBounds {
                    max_entries: Some(10_000),
                    max_bytes: None,
                },
            },
        ),
        (
            "get",
            Op::Get {
                ns: ns.clone(),
                key: key.clone(),
                lease_ms: Some(5_000),
            },
        ),
        (
            "fill",
            Op::Fill {
                ns: ns.clone(),
                key: key.clone(),
                token: 17,
                value: value.clone(),
            },
        ),
        (
            "abandon",
            Op::Abandon {
                ns: ns.clone(),
                key: key.clone(),
                token: 17,
                error: Cow::Borrowed("database unreachable"),
            },
        ),
        (
            "release",
            Op::Release {
                ns: ns.clone(),
                key: key.clone(),
                token: 17,
            },
        ),
        (
            "set",
            Op::Set {
                ns: ns.clone(),
                key: key.clone(),
                value,
                leave_if_not_null: false,
            },
        ),
        (
            "del",
            Op::Del {
                ns: ns.clone(),
                key,
            },
        ),
        ("keys", Op::Keys { ns: ns.clone() }),
        ("watch", Op::Watch { ns: ns.clone() }),
        ("unwatch", Op::Unwatch { ns }),
        ("stats", Op::Stats),
    ];
    ops.iter()
        .enumerate()
        .map(|(id, (name, op))| {
            let id = id as u64 + 1;
            (*name, encode_frame(&RequestRef { id, op }))
        })
        .collect()
}

fn answers() -> Vec<(&'static str, Vec<u8>)> {
    let reply = |id, reply| encode_frame(&Message::Reply { id, reply });
    vec![
        (
            "reply-value",
            reply(2, Reply::Value(br#"{"name":"ann"}"#.to_vec().into())),
        ),
        (
            "reply-load",
            reply(
                2,
                Reply::Load {
                    ns: "users".to_owned(),
                    key: "u:42".to_owned(),
                    token: 17,
                },
            ),
        ),
        (
            "reply-keys",
            reply(8, Reply::Keys(vec!["u:1".to_owned(), "u:42".to_owned()])),
        ),
        (
            "reply-stats",
            reply(
                11,
                Reply::Stats(vec![NsFigures {
                    namespace: "users".to_owned(),
                    persist: true,
                    expire_ms: Some(60_000),
                    entries: 2,
                    bytes: 40,
                    hits: 5,
                    misses: 1,
                    loads: 1,
                    lock_waits: 0,
                    errors: 0,
                    evictions: 3,
                    max_entries: Some(10_000),
                    max_bytes: None,
                }]),
            ),
        ),
        (
            "changed",
            encode_frame(&Message::Changed {
                ns: "users".to_owned(),
                key: "u:42".to_owned(),
                value: None,
            }),
        ),
    ]
}

/// A log of every kind of record, in format 2.
fn log_v2() -> Vec<u8> {
    let records = [
        Record::Meta(NsOptions {
            persist: true,
            expire_ms: Some(60_000),
        }),
        Record::Set {
            key: "u:1".to_owned(),
            value: serde_bytes::ByteBuf::from(br#"{"name":"bob"}"#.to_vec()),
            expires_at_ms: None,
        },
        Record::Set {
            key: "u:42".to_owned(),
            value: serde_bytes::ByteBuf::from(br#"{"name":"ann"}"#.to_vec()),
            expires_at_ms: Some(1_795_000_000_000),
        },
        Record::Del {
            key: "u:1".to_owned(),
        },
    ];
    let mut log = file_header().to_vec();
    for record in &records {
        log.extend(encode_record(record).expect("a record encodes"));
    }
    log
}

/// The same records in format 1 (length, CRC, payload; no file header).
fn log_v1(v2: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = file_header().len();
    while at + 16 <= v2.len() {
        let len = u32::from_le_bytes(v2[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let payload = &v2[at + 16..at + 16 + len];
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        out.extend_from_slice(payload);
        at += 16 + len;
    }
    out
}

fn text_seeds(target: &'static str, texts: &[(&str, &str)]) -> Vec<Seed> {
    texts
        .iter()
        .map(|(name, text)| (target, format!("seed-{name}"), text.as_bytes().to_vec()))
        .collect()
}

/// Every seed of every corpus.
fn seeds() -> Vec<Seed> {
    let mut all: Vec<Seed> = Vec::new();

    let messages = channel_messages();
    let mut stream = Vec::new();
    for (name, frame) in &messages {
        all.push(("ipc_frame_bytes", format!("seed-{name}"), frame.clone()));
        stream.extend_from_slice(frame);
    }
    all.push(("ipc_frame_bytes", "seed-stream".to_owned(), stream));
    // The length of the largest frame a channel takes, and the version byte: a reader that
    // reserved what a frame declares committed 32 MiB for these five bytes.
    let mut declared = (crate::ipc::frame::MAX_FRAME as u32).to_be_bytes().to_vec();
    declared.push(PROTOCOL_VERSION);
    all.push(("ipc_frame_bytes", "seed-declared-max".to_owned(), declared));

    let mut stream = Vec::new();
    for (name, frame) in requests().into_iter().chain(answers()) {
        all.push((
            "cache_request_bytes",
            format!("seed-{name}"),
            frame[PREFIX..].to_vec(),
        ));
        stream.extend_from_slice(&frame);
    }
    all.push((
        "cache_frame_reader",
        "seed-requests".to_owned(),
        stream.clone(),
    ));
    stream.truncate(stream.len() - 3);
    all.push(("cache_frame_reader", "seed-torn".to_owned(), stream));
    // The largest frame the reader's limit allows, announced, and one byte of it.
    let mut declared = (max_frame(1 << 20) as u32).to_be_bytes().to_vec();
    declared.push(PROTOCOL_VERSION);
    all.push((
        "cache_frame_reader",
        "seed-declared-max".to_owned(),
        declared,
    ));

    let v2 = log_v2();
    let mut flipped = v2.clone();
    flipped[40] ^= 0xFF;
    let torn = v2[..v2.len() - 5].to_vec();
    let mut newer = v2.clone();
    newer[6] = 3;
    all.push(("persist_log_bytes", "seed-v1".to_owned(), log_v1(&v2)));
    all.push(("persist_log_bytes", "seed-v2".to_owned(), v2));
    all.push(("persist_log_bytes", "seed-flipped".to_owned(), flipped));
    all.push(("persist_log_bytes", "seed-torn".to_owned(), torn));
    all.push(("persist_log_bytes", "seed-newer".to_owned(), newer));
    // Found by reading the reader: resynchronising over these was quadratic.
    all.push((
        "persist_log_bytes",
        "seed-regression-stacked-headers".to_owned(),
        super::persist_log::stacked_headers(4096),
    ));

    all.extend(text_seeds(
        "options_duration",
        &[
            ("ms", "500ms"),
            ("compound", "1h 30m"),
            ("days", "3d"),
            ("micros", "50us"),
            ("fraction", " 1.5s "),
            ("zero", "0"),
            ("never", "never"),
            ("no-unit", "30"),
            ("huge", "99999999999999999999999s"),
        ],
    ));
    all.push((
        "tls_cert_bytes",
        "seed-cert".to_owned(),
        crate::tls::TEST_CERT.as_bytes().to_vec(),
    ));
    all.extend(text_seeds(
        "options_log_filter",
        &[
            ("level", "info"),
            ("targets", "warn,my_app=debug, hyper=off"),
            ("number", "3"),
            ("span", "my_app[request]=debug"),
            ("span-field", "[request{id=1}]"),
            ("typo", "infoo"),
            ("target-only", "verbose"),
            // Found by fuzzing: tracing's parser panicked on these.
            ("regression-space-multibyte", "info, x[é]=debug"),
            ("regression-leading-space", " x[é]"),
            // Found by reading tracing: compiled as a regular expression, for minutes.
            (
                "regression-field-pattern",
                "my_app[{user=[ab]*a[ab][ab][ab][ab][ab][ab][ab][ab][ab][ab][ab][ab][ab][ab]}]=debug",
            ),
        ],
    ));
    all.extend(text_seeds(
        "options_kind_text",
        &[
            ("port", "8080"),
            ("ip", "::1"),
            ("path", "/ecv"),
            ("url", "http://127.0.0.1:9090/health"),
            ("choice", "http1"),
            ("filter", "warn,my_app=debug"),
            ("token", "s3cr3t-t0ken"),
            ("buckets", "0.005,0.01,0.1,1,2.5e1"),
            ("buckets-not-increasing", "0.1,0.05"),
            ("destination", "./access.log"),
        ],
    ));
    all.extend(text_seeds(
        "options_start",
        &[
            (
                "layers",
                "--port=9000\n--workers\n2\nCLUSTER2_RESTART__DELAY=1s\nRUST_LOG=debug\n\
                 --config=cluster.toml\n%%\nmon_port = 9001\n[restart]\nmax-delay = \"1m\"\n\
                 [cache]\nenable = false\n",
            ),
            (
                "check",
                "--check\n--log.level=warn,my_app=trace\n--max-age=never\n",
            ),
            ("typo", "--mon-prot=9001\n"),
            ("out-of-range", "--workers=100000\n"),
            ("conflict", "--port=9000\n--mon-port=9000\n"),
            ("wrong-type", "--config=c.toml\n%%\nport = \"9400\"\n"),
            ("app-args", "--port\n0\n--\n--not-ours\n"),
            ("stop", "stop\n--pids=run\n"),
            ("help", "--help\n"),
            (
                "newline-in-value",
                "--config=c.toml\n%%\nport = \"80\\n80\"\n",
            ),
            ("bell-in-flag", "--ecv.timeout=5\u{7}s\n"),
        ],
    ));
    all.extend(text_seeds(
        "monitor_bodies",
        &[
            ("json-object", r#"{"limit":10,"names":["a","b"]}"#),
            ("json-number", "12"),
            ("plain-filter", "info,my_app=trace"),
            ("json-filter", r#""debug""#),
            ("empty", ""),
            ("span-filter", "my_app[request{id=1}]=debug"),
            ("bad-filter", "loud"),
            ("scale-workers", r#"{"workers":3}"#),
            ("scale-delta", r#"{"delta":-1}"#),
            // Found by fuzzing: the log-level route's handler panicked on this filter.
            ("regression-space-multibyte", "\"info, x[é]=debug\""),
        ],
    ));
    all
}

/// The seeds on disk are the ones these encoders write today.
#[test]
fn committed_seeds_are_current() {
    let mut stale = Vec::new();
    for (target, name, bytes) in seeds() {
        let path = corpus(target).join(&name);
        if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(format!("{target}/corpus/{name}"));
        }
    }
    assert!(
        stale.is_empty(),
        "seeds out of date with the formats they are in: {stale:?}; write them again with \
         `cargo test -p cluster2 --lib fuzz::seeds::write -- --ignored`"
    );
}

/// Writes every seed (run by hand after a format changed).
#[test]
#[ignore = "writes the seed corpus: run by hand after a format changed"]
fn write() {
    for (target, name, bytes) in seeds() {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).expect("a corpus directory");
        std::fs::write(dir.join(name), bytes).expect("a seed written");
    }
}
