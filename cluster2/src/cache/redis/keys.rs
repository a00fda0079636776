//! Where the cache lives in Redis: every key and channel name, and the messages on the
//! channels. Everything starts with `<cluster_name>:cache:`, so that services sharing a server
//! never meet, and the namespace follows (its alphabet has no `:`, nor anything a `SCAN`
//! pattern would read as a wildcard):
//!
//! | name | what |
//! |---|---|
//! | `<c>:cache:namespaces` | set of every namespace declared |
//! | `<c>:cache:<ns>:options` | the namespace's options (JSON), written by its first `use_cache` on any host |
//! | `<c>:cache:<ns>:figures` | hash of its counters, summed over every process of every host |
//! | `<c>:cache:<ns>:v:<key>` | a value (JSON bytes), with the namespace's expiry as its TTL |
//! | `<c>:cache:<ns>:lock:<key>` | the single-flight lock of a load: the loader's token, with its lease as TTL |
//! | `<c>:cache:<ns>:failed:<key>` | a failed load: `<token>\n<error>`, for waiters that missed the message |
//! | channel `<c>:cache:<ns>:changes` | every set and delete, for watches: `S<len>:<key><value>`, `D<len>:<key>` |
//! | channel `<c>:cache:<ns>:fill:<key>` | the end of a load, for waiters: `V<value>`, `F<token>\n<error>`, `R` (released) |
//!
//! Expiries reach watches through Redis's own `__keyevent@<db>__:expired` channel.

/// The names of one cluster's cache.
#[derive(Debug, Clone)]
pub(super) struct Names {
    /// `<cluster_name>:cache:`
    prefix: String,
}

impl Names {
    pub(super) fn new(cluster: &str) -> Self {
        Self {
            prefix: format!("{cluster}:cache:"),
        }
    }

    fn of(&self, ns: &str, what: &str, key: &str) -> String {
        let mut name =
            String::with_capacity(self.prefix.len() + ns.len() + what.len() + key.len() + 2);
        name.push_str(&self.prefix);
        name.push_str(ns);
        name.push(':');
        name.push_str(what);
        name.push_str(key);
        name
    }

    pub(super) fn namespaces(&self) -> String {
        format!("{}namespaces", self.prefix)
    }

    pub(super) fn options(&self, ns: &str) -> String {
        self.of(ns, "options", "")
    }

    pub(super) fn figures(&self, ns: &str) -> String {
        self.of(ns, "figures", "")
    }

    pub(super) fn value(&self, ns: &str, key: &str) -> String {
        self.of(ns, "v:", key)
    }

    pub(super) fn lock(&self, ns: &str, key: &str) -> String {
        self.of(ns, "lock:", key)
    }

    pub(super) fn failed(&self, ns: &str, key: &str) -> String {
        self.of(ns, "failed:", key)
    }

    pub(super) fn changes(&self, ns: &str) -> String {
        self.of(ns, "changes", "")
    }

    pub(super) fn fills(&self, ns: &str, key: &str) -> String {
        self.of(ns, "fill:", key)
    }

    /// The `SCAN` pattern of the namespace's values. Nothing before the `*` needs escaping:
    /// the cluster's name and the namespace are of a safe alphabet.
    pub(super) fn values_pattern(&self, ns: &str) -> String {
        self.of(ns, "v:", "*")
    }

    /// The length of a value's name before its key.
    pub(super) fn value_prefix_len(&self, ns: &str) -> usize {
        self.prefix.len() + ns.len() + ":v:".len()
    }

    /// The namespace and key of a value's name (from an expiry event); `None` for any other
    /// name, ours or not.
    pub(super) fn parse_value<'a>(&self, name: &'a [u8]) -> Option<(&'a str, &'a str)> {
        let rest = name.strip_prefix(self.prefix.as_bytes())?;
        let rest = std::str::from_utf8(rest).ok()?;
        let (ns, rest) = rest.split_once(':')?;
        let key = rest.strip_prefix("v:")?;
        Some((ns, key))
    }
}

/// A change in a namespace, as the changes channel carries it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Change<'a> {
    Set { key: &'a str, value: &'a [u8] },
    Deleted { key: &'a str },
}

/// Reads a message of the changes channel (written by the scripts: `S<len>:<key><value>` or
/// `D<len>:<key>`); `None` if it is not one.
pub(super) fn parse_change(message: &[u8]) -> Option<Change<'_>> {
    let (&kind, rest) = message.split_first()?;
    let colon = rest.iter().position(|&b| b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    if rest.len() < len {
        return None;
    }
    let (key, value) = rest.split_at(len);
    let key = std::str::from_utf8(key).ok()?;
    match kind {
        b'S' => Some(Change::Set { key, value }),
        b'D' if value.is_empty() => Some(Change::Deleted { key }),
        _ => None,
    }
}

/// The end of a load, as the fill channel carries it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Filled<'a> {
    Value(&'a [u8]),
    Failed { token: &'a str, error: &'a str },
    Released,
}

pub(super) fn parse_filled(message: &[u8]) -> Option<Filled<'_>> {
    let (&kind, rest) = message.split_first()?;
    match kind {
        b'V' => Some(Filled::Value(rest)),
        b'F' => {
            let text = std::str::from_utf8(rest).ok()?;
            let (token, error) = text.split_once('\n')?;
            Some(Filled::Failed { token, error })
        }
        b'R' => Some(Filled::Released),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_their_parse() {
        let names = Names::new("shop");
        assert_eq!(names.value("users", "u:42"), "shop:cache:users:v:u:42");
        assert_eq!(names.lock("users", "u:42"), "shop:cache:users:lock:u:42");
        assert_eq!(names.values_pattern("users"), "shop:cache:users:v:*");
        assert_eq!(names.options("users"), "shop:cache:users:options");
        assert_eq!(names.value_prefix_len("users"), "shop:cache:users:v:".len());
        assert_eq!(
            names.parse_value(b"shop:cache:users:v:u:42"),
            Some(("users", "u:42"))
        );
        assert_eq!(names.parse_value(b"shop:cache:users:lock:u:42"), None);
        assert_eq!(names.parse_value(b"other:cache:users:v:u:42"), None);
    }

    #[test]
    fn change_messages() {
        // Keys may hold the separator, and values anything.
        assert_eq!(
            parse_change(b"S4:a:b:{\"x\":1}"),
            Some(Change::Set {
                key: "a:b:",
                value: b"{\"x\":1}"
            })
        );
        assert_eq!(
            parse_change(b"S0:null"),
            Some(Change::Set {
                key: "",
                value: b"null"
            })
        );
        assert_eq!(
            parse_change(b"D3:abc"),
            Some(Change::Deleted { key: "abc" })
        );
        for bad in [&b""[..], b"S", b"S9:abc", b"X1:a", b"D1:ab", b"Sx:a"] {
            assert_eq!(parse_change(bad), None, "{bad:?}");
        }
        assert_eq!(parse_filled(b"V\"\""), Some(Filled::Value(b"\"\"")));
        assert_eq!(
            parse_filled(b"Fab:7\nthe loader failed: no"),
            Some(Filled::Failed {
                token: "ab:7",
                error: "the loader failed: no"
            })
        );
        assert_eq!(parse_filled(b"R"), Some(Filled::Released));
        assert_eq!(parse_filled(b"Q"), None);
    }
}
