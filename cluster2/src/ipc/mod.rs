//! Master ↔ child plumbing: inherited file descriptors, the frame format, typed channels, and
//! the messages that travel on them.

pub(crate) mod channel; // Channel<Tx, Rx>: a typed, queued channel over a socketpair
pub(crate) mod child; // a child's start-up: claim the inherited channel, read the hello
pub(crate) mod fd; // inherited fds and reactor registration: the unsafe fd code
pub(crate) mod frame; // the frame format: length, version, postcard; encode, decode, limits
pub(crate) mod frame_socket; // the cache socket's frame reader and non-blocking writer
pub(crate) mod message; // ToWorker / ToMaster and the hello
mod orphan; // a plain thread that ends a child whose master is gone, runtime or not
pub(crate) mod peers; // who this process can send to: the master or every worker
