//! "Did you mean …?": the names close to a misspelt one.
//!
//! One rule everywhere, so that `#[cluster2::main(prot = 1)]`, `--prot=1`, `CLUSTER2_PROT=1`
//! and `prot = 1` in a config file all get the same answer.

/// Up to two of `candidates` close to `name`, the closest first.
///
/// Close means a few edits away (one per three characters, at least one; swapping two
/// neighbours counts as one edit), or, for names of three characters or more, one containing
/// the other: `max` finds `max_delay`, `level` finds `log.level`.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let length = name.chars().count();
    let limit = (length / 3).max(1);
    let mut close: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|&candidate| candidate != name)
        .filter_map(|candidate| {
            let gap = length.abs_diff(candidate.chars().count());
            // One inside the other: close, and exactly their difference in length apart.
            if name.len() >= 3 && (candidate.contains(name) || name.contains(candidate)) {
                return Some((gap, candidate));
            }
            // Lengths alone further apart than the limit: not close, and not worth measuring
            // (a careless name can be as long as a whole config file).
            if gap > limit {
                return None;
            }
            let distance = edit_distance(name, candidate);
            (distance <= limit).then_some((distance, candidate))
        })
        .collect();
    close.sort();
    close.dedup();
    close.into_iter().take(2).map(|(_, c)| c).collect()
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`, keeping three
/// rows of the table rather than all of it.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i - 2, i - 1 and i of the table of distances between prefixes.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            row[j] = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                row[j] = row[j].min(before[j - 2] + 1);
            }
        }
        std::mem::swap(&mut before, &mut last);
        std::mem::swap(&mut last, &mut row);
    }
    last[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OPTIONS, members, top_level};

    #[test]
    fn close_names() {
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(did_you_mean("prot", top_level()), ["port"]);
        assert_eq!(did_you_mean("restrat", top_level()), ["restart"]);
        assert_eq!(did_you_mean("max", members("restart")), ["max_delay"]);
        assert!(did_you_mean("verbose", top_level()).is_empty());
        let keys = OPTIONS.iter().map(|s| s.key);
        assert_eq!(did_you_mean("mon_prot", keys.clone()), ["mon_port"]);
        assert_eq!(did_you_mean("portt", keys.clone()), ["port"]);
        assert_eq!(did_you_mean("level", keys), ["log.level"]);
        assert_eq!(
            did_you_mean("infoo", crate::LEVELS.iter().copied()),
            ["info"]
        );
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(edit_distance("abcd", "badc"), 2);
    }

    /// A name as long as a config file may be: answered without measuring it against every
    /// candidate (the fuzz targets of `cluster2` bound what that costs).
    #[test]
    fn a_very_long_name_is_no_candidate_bar_containment() {
        let long = "x".repeat(64 << 10);
        assert!(did_you_mean(&long, OPTIONS.iter().map(|s| s.key)).is_empty());
        let long_port = format!("{long}port");
        assert_eq!(did_you_mean(&long_port, top_level()), ["port"]);
    }

    #[test]
    fn at_most_two_the_closest_first() {
        let keys = OPTIONS.iter().map(|s| s.key);
        assert_eq!(
            did_you_mean("delay", keys),
            ["restart.delay", "ecv.drain_delay"]
        );
    }
}
