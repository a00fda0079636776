//! How cache errors name what failed: the operation, the key (shortened when long) and the
//! namespace, formatted only when there is an error; and the error for an answer the manager
//! should not have given.

use super::protocol::Reply;
use crate::error::{Error, ErrorKind};

/// An operation on one key, as error messages name it.
pub(super) struct What<'a> {
    pub(super) op: &'static str,
    pub(super) key: &'a str,
    pub(super) namespace: &'a str,
}

/// Keys longer than this are shortened in error messages.
const KEY_SHOWN: usize = 80;

impl std::fmt::Display for What<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.len() <= KEY_SHOWN {
            return write!(
                f,
                "{} `{}` in cache `{}`",
                self.op, self.key, self.namespace
            );
        }
        let mut end = KEY_SHOWN;
        while !self.key.is_char_boundary(end) {
            end -= 1;
        }
        write!(
            f,
            "{} `{}…` ({} bytes) in cache `{}`",
            self.op,
            &self.key[..end],
            self.key.len(),
            self.namespace
        )
    }
}

pub(super) fn unexpected(what: &(impl std::fmt::Display + ?Sized), reply: &Reply) -> Error {
    Error::new(
        ErrorKind::Cache,
        format!("{what}: unexpected answer from the cache manager: {reply:?}"),
    )
}
