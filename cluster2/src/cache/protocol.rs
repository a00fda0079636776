//! What cache clients and the cache manager say to each other, framed like every other
//! channel of cluster2 (length, protocol version, postcard: see `ipc::frame`). Values travel as opaque bytes:
//! the client encodes them (JSON, so that a value of the wrong type is an error, never a
//! plausible wrong value) and the manager never looks inside.
//!
//! Requests borrow: a client encodes its namespace, key and value from where they already
//! are, and the manager decodes them in place from the frame it read, copying a key or value
//! only when it keeps it. Answers carry values as shared buffers ([`Bytes`]), so the manager
//! hands out a stored value without copying it.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Options of a namespace. The first `use_cache` of a namespace decides them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NsOptions {
    pub(crate) persist: bool,
    /// Entries expire this many milliseconds after they were written; `None`: never.
    pub(crate) expire_ms: Option<u64>,
}

/// Bounds of a namespace, on top of `cache.max_memory`: past either, its least recently used
/// entries are evicted. Not persisted: a namespace reloaded from disk takes them from its first
/// `use_cache` after the restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NsBounds {
    /// The most entries with a value.
    pub(crate) max_entries: Option<u64>,
    /// The most bytes of keys and values.
    pub(crate) max_bytes: Option<u64>,
}

/// The longest frame either side accepts, for values of at most `max_value` bytes: the value
/// plus room for the key and the rest of the request.
pub(crate) fn max_frame(max_value: usize) -> usize {
    max_value + 64 * 1024
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Request<'a> {
    pub(crate) id: u64,
    #[serde(borrow)]
    pub(crate) op: Op<'a>,
}

/// Encodes like [`Request`], from a borrowed operation.
#[derive(Serialize)]
pub(crate) struct RequestRef<'r, 'a> {
    pub(crate) id: u64,
    pub(crate) op: &'r Op<'a>,
}

/// Namespaces, keys and values are borrowed from the caller (client) or from the frame
/// (manager).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Op<'a> {
    /// Registers a namespace (or learns the options it already has).
    Use {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        options: NsOptions,
        bounds: NsBounds,
    },
    /// Reads a value. With `lease_ms`, a miss takes the key's lock (the caller loads) or waits
    /// at the manager for whoever holds it.
    Get {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        #[serde(borrow)]
        key: Cow<'a, str>,
        lease_ms: Option<u64>,
    },
    /// The loader's value, under the lock `token`.
    Fill {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        #[serde(borrow)]
        key: Cow<'a, str>,
        token: u64,
        #[serde(borrow, with = "serde_bytes")]
        value: Cow<'a, [u8]>,
    },
    /// The loader failed: waiters get the error.
    Abandon {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        #[serde(borrow)]
        key: Cow<'a, str>,
        token: u64,
        #[serde(borrow)]
        error: Cow<'a, str>,
    },
    /// The loader gave up without a verdict (cancelled): a waiter takes over the load.
    Release {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        #[serde(borrow)]
        key: Cow<'a, str>,
        token: u64,
    },
    Set {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        #[serde(borrow)]
        key: Cow<'a, str>,
        #[serde(borrow, with = "serde_bytes")]
        value: Cow<'a, [u8]>,
        leave_if_not_null: bool,
    },
    Del {
        #[serde(borrow)]
        ns: Cow<'a, str>,
        #[serde(borrow)]
        key: Cow<'a, str>,
    },
    Keys {
        #[serde(borrow)]
        ns: Cow<'a, str>,
    },
    /// Sends this connection every change in the namespace.
    Watch {
        #[serde(borrow)]
        ns: Cow<'a, str>,
    },
    Unwatch {
        #[serde(borrow)]
        ns: Cow<'a, str>,
    },
    /// Figures of every namespace.
    Stats,
}

impl Op<'_> {
    /// The namespace the operation is about, if any.
    pub(crate) fn namespace(&self) -> Option<&str> {
        match self {
            Op::Use { ns, .. }
            | Op::Get { ns, .. }
            | Op::Fill { ns, .. }
            | Op::Abandon { ns, .. }
            | Op::Release { ns, .. }
            | Op::Set { ns, .. }
            | Op::Del { ns, .. }
            | Op::Keys { ns }
            | Op::Watch { ns }
            | Op::Unwatch { ns } => Some(ns),
            Op::Stats => None,
        }
    }
}

/// From the manager: an answer to a request, or a change in a watched namespace.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    Reply {
        id: u64,
        reply: Reply,
    },
    Changed {
        ns: String,
        key: String,
        /// `None`: deleted, expired or evicted.
        value: Option<Bytes>,
    },
    /// The manager will not serve this connection (it serves `cache.max_connections` already),
    /// and closes it: why, for the client's error messages.
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Used {
        options: NsOptions,
        bounds: NsBounds,
        existed: bool,
    },
    Value(Bytes),
    Miss,
    /// You hold the lock: load, then `Fill` (or `Abandon`, or `Release`). Names the key, so
    /// that a client whose caller is gone (timed out, cancelled) can pass the lock on.
    Load {
        ns: String,
        key: String,
        token: u64,
    },
    /// The loader failed.
    LoadFailed(String),
    Done(bool),
    Old(Option<Bytes>),
    Keys(Vec<String>),
    Stats(Vec<NsFigures>),
    Error(String),
}

/// What the manager knows about one namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NsFigures {
    /// The namespace's name.
    pub namespace: String,
    /// Whether it is persisted.
    pub persist: bool,
    /// Its expiry, in milliseconds.
    pub expire_ms: Option<u64>,
    /// Entries with a value.
    pub entries: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Values stored by a loader.
    pub loads: u64,
    /// Reads that waited for another process's loader.
    pub lock_waits: u64,
    /// Loads that failed.
    pub errors: u64,
    /// Entries evicted to keep the namespace within its bounds, or the cache within
    /// `cache.max_memory`.
    pub evictions: u64,
    /// Its bound on entries, if any.
    pub max_entries: Option<u64>,
    /// Its bound on bytes of keys and values, if any.
    pub max_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipc::frame::{PREFIX, decode, encode_frame};

    #[test]
    fn a_borrowed_request_encodes_like_an_owned_one_and_decodes_in_place() {
        let op = Op::Set {
            ns: Cow::Borrowed("users"),
            key: Cow::Owned("u:42".to_owned()),
            value: Cow::Borrowed(b"{\"name\":\"ann\"}"),
            leave_if_not_null: true,
        };
        let by_ref = encode_frame(&RequestRef { id: 7, op: &op });
        let owned = encode_frame(&Request {
            id: 7,
            op: op.clone(),
        });
        assert_eq!(by_ref, owned);
        let Request { id, op } = decode::<Request<'_>>(&by_ref[PREFIX..]).unwrap();
        assert_eq!(id, 7);
        let Op::Set { ns, key, value, .. } = op else {
            panic!("not a set: {op:?}")
        };
        // Nothing was copied out of the frame.
        assert!(matches!(ns, Cow::Borrowed("users")));
        assert!(matches!(key, Cow::Borrowed("u:42")));
        assert!(matches!(value, Cow::Borrowed(b"{\"name\":\"ann\"}")));
    }
}
