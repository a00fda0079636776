//! Master ↔ worker plumbing: inherited file descriptors, framed typed channels, and the
//! messages that travel on them.

pub(crate) mod channel;
pub(crate) mod fd;
pub(crate) mod message;
pub(crate) mod peers;
pub(crate) mod quiet;
