//! Sizes as people write them: `512MiB`, `4GiB`, `64KiB`, `1.5GiB`, `2GB`, `100000` (bytes).
//!
//! A number, then optionally a unit: `B`; the binary `KiB`, `MiB`, `GiB`, `TiB`, `PiB` (powers
//! of 1024); or the decimal `KB`, `MB`, `GB`, `TB`, `PB` (powers of 1000, as disk makers count).
//! Units are read in any case (`mib`, `MIB`); a space may separate them from the number. A
//! fraction is allowed with a unit (`1.5GiB`) and must come out a whole number of bytes. A bare
//! number is bytes: unlike a duration, a size has only one unit without a prefix.
//!
//! One grammar for the runtime and the macro, like durations', so that a mistake is named
//! (an unknown unit, a fraction of a byte) the same way at compile time and at start-up.

use std::fmt;

/// Why text is not a size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing like a size: `lots`, `-1MiB`, `MiB`.
    Malformed,
    /// A number followed by a word that is not a unit: `5 mibs`.
    UnknownUnit(String),
    /// A fraction that is not a whole number of bytes: `1.5B`, `0.1KiB`.
    Fraction,
    /// More bytes than the runtime can hold.
    TooLarge,
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::Malformed => f.write_str("not a size like 512MiB, 4GiB or 100000"),
            SizeError::UnknownUnit(unit) => write!(
                f,
                "unknown unit `{unit}`: use B, KiB, MiB, GiB, TiB, PiB (powers of 1024) or KB, \
                 MB, GB, TB, PB (powers of 1000)"
            ),
            SizeError::Fraction => f.write_str("not a whole number of bytes"),
            SizeError::TooLarge => f.write_str("too large"),
        }
    }
}

/// Every unit, with its factor; the binary ones first, which [`format_size`] prefers.
const UNITS: &[(&str, u64)] = &[
    ("PiB", 1 << 50),
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("PB", 1_000_000_000_000_000),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// Parses a size, in bytes. Whitespace around it is ignored.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim_start());
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let well_formed = |digits: &str| digits.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !well_formed(whole) || !well_formed(fraction) {
        return Err(SizeError::Malformed);
    }
    if number.ends_with('.') {
        return Err(SizeError::Malformed);
    }
    let factor = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, factor)| factor)
            .ok_or_else(|| SizeError::UnknownUnit(unit.to_owned()))?
    };
    let whole: u64 = whole.parse().map_err(|_| SizeError::TooLarge)?;
    let mut bytes = u128::from(whole) * u128::from(factor);
    if !fraction.is_empty() {
        // Exact: the fraction's digits over its power of ten, times the factor.
        let digits = fraction.trim_end_matches('0');
        if digits.len() > 18 {
            return Err(SizeError::Fraction);
        }
        let scale = 10u128.pow(digits.len() as u32);
        let numerator = digits.parse::<u128>().unwrap_or(0) * u128::from(factor);
        if numerator % scale != 0 {
            return Err(SizeError::Fraction);
        }
        bytes += numerator / scale;
    }
    u64::try_from(bytes).map_err(|_| SizeError::TooLarge)
}

/// Writes a size so that [`parse_size`] reads it back: in the largest binary unit it is a whole
/// number of, else the largest decimal one, else bytes (`512MiB`, `3GB`, `1000001B`).
pub fn format_size(bytes: u64) -> String {
    if bytes == 0 {
        return "0B".to_owned();
    }
    let (unit, factor) = UNITS
        .iter()
        .find(|&&(_, factor)| bytes % factor == 0)
        .expect("every size is a whole number of bytes");
    format!("{}{unit}", bytes / factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1PiB"), Ok(1 << 50));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("100000"), Ok(100_000));
        assert_eq!(parse_size("100000B"), Ok(100_000));
        assert_eq!(parse_size(" 1.5GiB "), Ok(3 << 29));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
        assert_eq!(parse_size("1.250KB"), Ok(1250));
        assert_eq!(parse_size("16 mib"), Ok(16 << 20));
        assert_eq!(parse_size("16MIB"), Ok(16 << 20));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn names_what_is_wrong() {
        for bad in [
            "", "lots", "MiB", "-1MiB", "1.MiB", ".5MiB", "1..5MiB", "1 2MiB",
        ] {
            assert!(
                matches!(
                    parse_size(bad),
                    Err(SizeError::Malformed | SizeError::UnknownUnit(_))
                ),
                "{bad}: {:?}",
                parse_size(bad)
            );
        }
        assert_eq!(parse_size(""), Err(SizeError::Malformed));
        assert_eq!(parse_size("-1MiB"), Err(SizeError::Malformed));
        assert_eq!(
            parse_size("5 mibs"),
            Err(SizeError::UnknownUnit("mibs".into()))
        );
        assert_eq!(parse_size("5m"), Err(SizeError::UnknownUnit("m".into())));
        assert_eq!(parse_size("1.5B"), Err(SizeError::Fraction));
        assert_eq!(parse_size("0.1KiB"), Err(SizeError::Fraction));
        assert_eq!(parse_size("16385PiB"), Err(SizeError::TooLarge));
        assert_eq!(
            parse_size("99999999999999999999999"),
            Err(SizeError::TooLarge)
        );
        assert!(
            SizeError::UnknownUnit("mibs".into())
                .to_string()
                .contains("MiB")
        );
    }

    #[test]
    fn formatting_reads_back() {
        assert_eq!(format_size(512 << 20), "512MiB");
        assert_eq!(format_size(1 << 50), "1PiB");
        assert_eq!(format_size(3_000_000_000), "3GB");
        assert_eq!(format_size(1_000_001), "1000001B");
        for bytes in [
            0,
            1,
            1023,
            1024,
            1536,
            1 << 20,
            5 << 30,
            1_000_000,
            u64::MAX,
        ] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes), "{bytes}");
        }
    }
}
