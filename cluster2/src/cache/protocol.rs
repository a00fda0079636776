//! What cache clients and the cache manager say to each other, framed like every other
//! channel of cluster2 (length, protocol version, postcard). Values travel as opaque bytes:
//! the client encodes them (JSON, so that a value of the wrong type is an error, never a
//! plausible wrong value) and the manager never looks inside.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// Options of a namespace. The first `use_cache` of a namespace decides them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NsOptions {
    pub(crate) persist: bool,
    /// Entries expire this many milliseconds after they were written; `None`: never.
    pub(crate) expire_ms: Option<u64>,
}

/// The longest frame either side accepts, for values of at most `max_value` bytes: the value
/// plus room for the key and the rest of the request.
pub(crate) fn max_frame(max_value: usize) -> usize {
    max_value + 64 * 1024
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Request {
    pub(crate) id: u64,
    pub(crate) op: Op,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Registers a namespace (or learns the options it already has).
    Use {
        ns: String,
        options: NsOptions,
    },
    /// Reads a value. With `lease_ms`, a miss takes the key's lock (the caller loads) or waits
    /// at the manager for whoever holds it.
    Get {
        ns: String,
        key: String,
        lease_ms: Option<u64>,
    },
    /// The loader's value, under the lock `token`.
    Fill {
        ns: String,
        key: String,
        token: u64,
        value: ByteBuf,
    },
    /// The loader failed: waiters get the error.
    Abandon {
        ns: String,
        key: String,
        token: u64,
        error: String,
    },
    /// The loader gave up without a verdict (cancelled): a waiter takes over the load.
    Release {
        ns: String,
        key: String,
        token: u64,
    },
    Set {
        ns: String,
        key: String,
        value: ByteBuf,
        leave_if_not_null: bool,
    },
    Del {
        ns: String,
        key: String,
    },
    Keys {
        ns: String,
    },
    /// Sends this connection every change in the namespace.
    Watch {
        ns: String,
    },
    Unwatch {
        ns: String,
    },
    /// Figures of every namespace.
    Stats,
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
        /// `None`: deleted or expired.
        value: Option<ByteBuf>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Used {
        options: NsOptions,
        existed: bool,
    },
    Value(ByteBuf),
    Miss,
    /// You hold the lock: load, then `Fill` (or `Abandon`, or `Release`).
    Load {
        token: u64,
    },
    /// The loader failed.
    LoadFailed(String),
    Done(bool),
    Old(Option<ByteBuf>),
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
}
