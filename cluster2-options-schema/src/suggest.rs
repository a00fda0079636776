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
    let limit = (name.chars().count() / 3).max(1);
    let mut close: Vec<(usize, &str)> = candidates
        .into_iter()
        .filter(|&candidate| candidate != name)
        .filter_map(|candidate| {
            let distance = edit_distance(name, candidate);
            let related = distance <= limit
                || (name.len() >= 3 && (candidate.contains(name) || name.contains(candidate)));
            related.then_some((distance, candidate))
        })
        .collect();
    close.sort();
    close.dedup();
    close.into_iter().take(2).map(|(_, c)| c).collect()
}

/// Edits (insert, delete, replace, swap two neighbours) that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0; b.len() + 1]; a.len() + 1];
    d[0] = (0..=b.len()).collect();
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
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
    fn at_most_two_the_closest_first() {
        let keys = OPTIONS.iter().map(|s| s.key);
        assert_eq!(
            did_you_mean("delay", keys),
            ["restart.delay", "ecv.drain_delay"]
        );
    }
}
