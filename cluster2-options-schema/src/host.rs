//! The host grammar: what `host` and `mon_host` accept before anything is resolved.

/// Whether `text` is an IP address (`0.0.0.0`, `::1`) or a host name (`localhost`,
/// `api.internal`, `web_1`): dot-separated labels of ASCII letters, digits, `-` and `_`, each
/// of 1 to 63 characters and neither starting nor ending with `-`, 253 characters in all (a
/// final dot aside). The last label is not all digits: `10.0.1` is neither an address nor a
/// name, though some resolvers would read it as `10.0.0.1`.
///
/// Underscores are not in the DNS host name grammar, but resolvers accept them and container
/// networks name services with them.
pub fn is_host(text: &str) -> bool {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let last = name.rsplit('.').next().unwrap_or_default();
    name.split('.').all(label_ok) && !last.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_are_hosts() {
        for good in [
            "0.0.0.0",
            "::",
            "::1",
            "fe80::1",
            "localhost",
            "LocalHost.",
            "api.internal",
            "web_1",
            "a-b.c-d.example",
            "xn--bcher-kva.example",
        ] {
            assert!(is_host(good), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 5].join(".");
        for bad in [
            "",
            ".",
            "my host",
            "http://api.internal",
            "api.internal:8080",
            "[::1]",
            "-api.internal",
            "api-.internal",
            "api..internal",
            "10.0.1",
            "300.1.1.1",
            "caf\u{e9}.example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_host(bad), "{bad}");
        }
    }
}
