//! Log filters: the syntax of `RUST_LOG` as tracing's `EnvFilter` reads it, narrowed to what a
//! person means.
//!
//! `EnvFilter` reads a word that is not a level as a target to log at every level: `verbose`
//! or `infoo` is a valid filter that matches nothing, and the cluster prints nothing at all.
//! Nobody writes that on purpose, so here each comma-separated directive must be a level
//! (`info`) or `target=level` (`my_app::db=debug`). Directives with a span filter
//! (`my_app[request]=debug`) are left to `EnvFilter`, which the runtime also runs.

use std::fmt;

use crate::did_you_mean;

/// The levels, from the least to the most output.
pub const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Why text is not a log filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFilterError {
    /// No directive at all.
    Empty,
    /// A directive without `=` that is not a level: `verbose`, `infoo`.
    NotALevel {
        /// The directive as written.
        directive: String,
        /// The level it is closest to, if any.
        suggestion: Option<&'static str>,
    },
    /// `target=level` where the level is not one: `my_app=loud`.
    BadLevel {
        /// The directive as written.
        directive: String,
        /// The part after `=`.
        level: String,
        /// The level it is closest to, if any.
        suggestion: Option<&'static str>,
    },
    /// `target=level` without a target, or with spaces in it.
    BadTarget {
        /// The directive as written.
        directive: String,
    },
}

impl fmt::Display for LogFilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let levels = LEVELS.join(", ");
        let hint = |suggestion: &Option<&str>| match suggestion {
            Some(level) => format!("did you mean `{level}`?"),
            None => format!("the levels are {levels}"),
        };
        match self {
            LogFilterError::Empty => write!(f, "it is empty; the levels are {levels}"),
            LogFilterError::NotALevel {
                directive,
                suggestion: None,
            } if is_target(directive) => write!(
                f,
                "`{directive}` is not a level ({levels}); to filter a target, give it a level: \
                 `{directive}=debug`"
            ),
            LogFilterError::NotALevel {
                directive,
                suggestion: None,
            } => write!(
                f,
                "`{directive}` is neither a level ({levels}) nor target=level"
            ),
            LogFilterError::NotALevel {
                directive,
                suggestion,
            } => write!(f, "`{directive}` is not a level; {}", hint(suggestion)),
            LogFilterError::BadLevel {
                directive, level, ..
            } if level.is_empty() => {
                write!(
                    f,
                    "in `{directive}`, a level must follow `=`; the levels are {levels}"
                )
            }
            LogFilterError::BadLevel {
                directive,
                level,
                suggestion,
            } => write!(
                f,
                "in `{directive}`, `{level}` is not a level; {}",
                hint(suggestion)
            ),
            LogFilterError::BadTarget { directive } => write!(
                f,
                "in `{directive}`, the target before `=` must be a module path like `my_app::db`"
            ),
        }
    }
}

/// Checks a filter: directives separated by commas, each a level or `target=level`.
pub fn check_log_filter(text: &str) -> Result<(), LogFilterError> {
    let mut any = false;
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        any = true;
        check_directive(directive)?;
    }
    if any {
        Ok(())
    } else {
        Err(LogFilterError::Empty)
    }
}

fn check_directive(directive: &str) -> Result<(), LogFilterError> {
    // `target[span{field=value}]=level`: the span part has its own grammar, and `=` inside it.
    let (head, level) = match directive.rfind(']') {
        Some(end) => match &directive[end + 1..] {
            "" => return Ok(()),
            rest => match rest.strip_prefix('=') {
                Some(level) => (None, level),
                None => return Err(bad_target(directive)),
            },
        },
        None => match directive.split_once('=') {
            Some((target, level)) => (Some(target), level),
            None if is_level(directive) => return Ok(()),
            None => {
                return Err(LogFilterError::NotALevel {
                    directive: directive.to_owned(),
                    suggestion: suggest(directive),
                });
            }
        },
    };
    if let Some(target) = head {
        if target.is_empty() || target.contains(char::is_whitespace) {
            return Err(bad_target(directive));
        }
    }
    if is_level(level) {
        return Ok(());
    }
    Err(LogFilterError::BadLevel {
        directive: directive.to_owned(),
        level: level.to_owned(),
        suggestion: suggest(level),
    })
}

fn bad_target(directive: &str) -> LogFilterError {
    LogFilterError::BadTarget {
        directive: directive.to_owned(),
    }
}

/// A level name in any case, or its number, `0` (off) to `5` (trace), as `EnvFilter` reads it.
fn is_level(word: &str) -> bool {
    LEVELS.iter().any(|level| level.eq_ignore_ascii_case(word))
        || matches!(word, "0" | "1" | "2" | "3" | "4" | "5")
}

/// Whether `word` looks like a module path, which tracing's targets usually are.
fn is_target(word: &str) -> bool {
    word.chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':'))
}

fn suggest(word: &str) -> Option<&'static str> {
    did_you_mean(&word.to_ascii_lowercase(), LEVELS.iter().copied())
        .first()
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_with_levels() {
        for ok in [
            "info",
            "WARN",
            "warn,my_app=debug",
            "my_app::db=trace, hyper=off",
            "3",
            "info,",
            "my_app[request]=debug",
            "[request{id=1}]",
        ] {
            assert_eq!(check_log_filter(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn what_a_person_did_not_mean() {
        assert_eq!(
            check_log_filter("infoo"),
            Err(LogFilterError::NotALevel {
                directive: "infoo".into(),
                suggestion: Some("info")
            })
        );
        let verbose = check_log_filter("verbose").unwrap_err();
        assert_eq!(
            verbose.to_string(),
            "`verbose` is not a level (off, error, warn, info, debug, trace); to filter a \
             target, give it a level: `verbose=debug`"
        );
        assert_eq!(
            check_log_filter("warn,my_app=debgu")
                .unwrap_err()
                .to_string(),
            "in `my_app=debgu`, `debgu` is not a level; did you mean `debug`?"
        );
        assert!(matches!(
            check_log_filter("=debug"),
            Err(LogFilterError::BadTarget { .. })
        ));
        assert!(matches!(
            check_log_filter("my app=debug"),
            Err(LogFilterError::BadTarget { .. })
        ));
        assert_eq!(check_log_filter(" , "), Err(LogFilterError::Empty));
        assert_eq!(
            check_log_filter("[nope").unwrap_err().to_string(),
            "`[nope` is neither a level (off, error, warn, info, debug, trace) nor target=level"
        );
    }
}
