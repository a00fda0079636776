//! Attribute arguments: `key = literal`, nested groups `restart(delay = "1s")`, and
//! `crate = "path"`. Every key and value is checked against the option schema, with errors on
//! the offending tokens, all collected and reported together.
//!
//! A mistake in one argument never stops the others from being checked: the parser records the
//! error, skips the argument's value, and goes on. Only tokens that are not `name = value` or
//! `name(...)` at all end the parse.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, Lit, LitInt, Token, UnOp};

use crate::errors::Errors;
use crate::schema::{self, Kind};

/// One option given in the attribute, already checked.
pub(crate) struct OptionArg {
    /// Dotted key: `restart.delay`.
    pub(crate) key: String,
    /// Integers are rewritten as `i64` literals, the type the runtime takes them as.
    pub(crate) value: Lit,
}

/// Everything an attribute said.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) options: Vec<OptionArg>,
    pub(crate) krate: Option<syn::Path>,
}

impl Args {
    /// The path generated code names cluster2 by.
    pub(crate) fn krate(&self) -> TokenStream {
        match &self.krate {
            Some(path) => path.to_token_stream(),
            None => quote!(::cluster2),
        }
    }
}

/// Parses `#[cluster2::main(...)]` arguments.
pub(crate) fn parse_options(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    // Each key given so far, with its value as written, for duplicate errors.
    let mut seen: Vec<(String, String)> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            return parse_crate(&meta, &mut args.krate, errors);
        }
        option(&meta, None, &mut args.options, &mut seen, errors)
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    args
}

/// Parses the arguments of the registration attributes: only `crate = "..."`.
pub(crate) fn parse_plain(tokens: TokenStream, attribute: &str, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            return parse_crate(&meta, &mut args.krate, errors);
        }
        errors.push(not_an_argument(&meta.path, attribute, ""));
        skip_value(&meta)
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    args
}

/// The error for `path`, which is not an argument of `#[cluster2::{attribute}]`; `valid` lists
/// the arguments it takes besides `crate = "..."` (empty: none).
pub(crate) fn not_an_argument(path: &syn::Path, attribute: &str, valid: &str) -> syn::Error {
    let name = path.to_token_stream().to_string().replace(' ', "");
    let message = if schema::kind(&name).is_some() || schema::is_group(&name) {
        let set = if schema::is_group(&name) {
            "(...)"
        } else {
            " = ..."
        };
        format!(
            "`{name}` is an option of the whole cluster: set it in \
             #[cluster2::main({name}{set})], not in #[cluster2::{attribute}]"
        )
    } else if valid.is_empty() {
        format!("#[cluster2::{attribute}] takes no arguments other than `crate = \"...\"`")
    } else {
        format!("unknown argument `{name}`: #[cluster2::{attribute}] takes {valid}")
    };
    syn::Error::new_spanned(path, message)
}

pub(crate) fn parse_crate(
    meta: &ParseNestedMeta<'_>,
    krate: &mut Option<syn::Path>,
    errors: &mut Errors,
) -> syn::Result<()> {
    const EXAMPLE: &str = "write `crate = \"my_platform::cluster2\"`";
    if !meta.input.peek(Token![=]) {
        errors.push(syn::Error::new_spanned(
            &meta.path,
            format!("`crate` takes the path cluster2 is reachable at: {EXAMPLE}"),
        ));
        return skip_value(meta);
    }
    let value: Expr = meta.value()?.parse()?;
    let Some(Lit::Str(text)) = literal(&value) else {
        errors.push(syn::Error::new_spanned(
            &value,
            format!("`crate` takes the path as a string: {EXAMPLE}"),
        ));
        return Ok(());
    };
    match text.parse::<syn::Path>() {
        Ok(_) if krate.is_some() => errors.push(syn::Error::new_spanned(
            &meta.path,
            "`crate` is given twice",
        )),
        Ok(path) => *krate = Some(path),
        Err(_) => errors.push(syn::Error::new(
            text.span(),
            format!("`{}` is not a path: {EXAMPLE}", text.value()),
        )),
    }
    Ok(())
}

fn option(
    meta: &ParseNestedMeta<'_>,
    group: Option<&str>,
    out: &mut Vec<OptionArg>,
    seen: &mut Vec<(String, String)>,
    errors: &mut Errors,
) -> syn::Result<()> {
    let Some(ident) = meta.path.get_ident() else {
        errors.push(syn::Error::new_spanned(
            &meta.path,
            "expected an option name, like `port = 8080`",
        ));
        return skip_value(meta);
    };
    let name = ident.to_string();
    let key = match group {
        Some(group) => format!("{group}.{name}"),
        None => name.clone(),
    };
    let parens = meta.input.peek(syn::token::Paren);

    if schema::is_group(&key) {
        if parens {
            return meta.parse_nested_meta(|inner| option(&inner, Some(&key), out, seen, errors));
        }
        let (first, kind) = schema::KEYS
            .iter()
            .find(|(k, _)| k.strip_prefix(&key).is_some_and(|r| r.starts_with('.')))
            .expect("a group has members");
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "`{key}` is a group of options, not a value: {}",
                kind.example(first)
            ),
        ));
        return skip_value(meta);
    }
    let Some(kind) = schema::kind(&key) else {
        let value = if meta.input.peek(Token![=]) {
            Some(meta.value()?.parse::<Expr>()?)
        } else {
            skip_value(meta)?;
            None
        };
        errors.push(syn::Error::new(
            ident.span(),
            unknown_message(&name, group, parens, value.as_ref()),
        ));
        return Ok(());
    };
    if parens {
        errors.push(syn::Error::new(
            ident.span(),
            format!("`{key}` is an option, not a group: {}", kind.example(&key)),
        ));
        return skip_value(meta);
    }
    if !meta.input.peek(Token![=]) {
        errors.push(syn::Error::new(
            ident.span(),
            format!("`{key}` needs a value: {}", kind.example(&key)),
        ));
        return Ok(());
    }
    let value: Expr = meta.value()?.parse()?;
    let written = value.to_token_stream().to_string();
    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
        errors.push(syn::Error::new(
            ident.span(),
            format!("duplicate option `{key}`: it is already set to `{first}` in this attribute"),
        ));
        return Ok(());
    }
    seen.push((key.clone(), written));
    match check_value(&key, kind, &value) {
        Ok(value) => out.push(OptionArg { key, value }),
        // On the whole value, so that `-1` is underlined and not just `-`.
        Err(message) => errors.push(syn::Error::new_spanned(&value, message)),
    }
    Ok(())
}

/// Consumes whatever follows a rejected name, so that parsing can go on to the next argument.
pub(crate) fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse::<TokenStream>()?;
    } else if meta.input.peek(Token![=]) {
        meta.value()?.parse::<Expr>()?;
    }
    Ok(())
}

/// A literal, or a negated one (which syn parses as an expression).
enum Literal<'a> {
    Plain(&'a Lit),
    Negative,
}

fn literal(value: &Expr) -> Option<Lit> {
    match classify(value)? {
        Literal::Plain(lit) => Some(lit.clone()),
        Literal::Negative => None,
    }
}

fn classify(value: &Expr) -> Option<Literal<'_>> {
    match value {
        Expr::Lit(lit) => Some(Literal::Plain(&lit.lit)),
        // What a `macro_rules!` `$value:expr` fragment arrives as.
        Expr::Group(group) => classify(&group.expr),
        Expr::Unary(unary) if matches!(unary.op, UnOp::Neg(_)) => match &*unary.expr {
            Expr::Lit(lit) if matches!(lit.lit, Lit::Int(_) | Lit::Float(_)) => {
                Some(Literal::Negative)
            }
            _ => None,
        },
        _ => None,
    }
}

fn check_value(key: &str, kind: Kind, value: &Expr) -> Result<Lit, String> {
    let example = kind.example(key);
    let wrong_type = || format!("`{key}` expects {}: {example}", kind.describe());
    let lit = match classify(value) {
        Some(Literal::Plain(lit)) => lit,
        Some(Literal::Negative) => {
            return Err(match kind {
                Kind::Port => format!("`{key}` must be a port number from 0 to 65535"),
                Kind::HttpStatus => http_status(key),
                Kind::Count { min, max } => out_of_range(key, min, max, true),
                _ => wrong_type(),
            });
        }
        None => {
            return Err(format!(
                "`{key}` takes a literal, not an expression: {example}"
            ));
        }
    };
    match (kind, lit) {
        (Kind::Port, Lit::Int(i)) => {
            let port = i
                .base10_parse::<u16>()
                .map_err(|_| format!("`{key}` must be a port number from 0 to 65535"))?;
            Ok(int(u64::from(port), i.span()))
        }
        (Kind::Count { min, max }, Lit::Int(i)) => {
            let n = i
                .base10_parse::<u64>()
                .map_err(|_| out_of_range(key, min, max, false))?;
            if n < min {
                return Err(out_of_range(key, min, max, true));
            }
            if n > max {
                return Err(out_of_range(key, min, max, false));
            }
            Ok(int(n, i.span()))
        }
        (Kind::HttpStatus, Lit::Int(i)) => match i.base10_parse::<u16>() {
            Ok(status @ 100..=599) => Ok(int(u64::from(status), i.span())),
            _ => Err(http_status(key)),
        },
        (Kind::Bool, Lit::Bool(_)) | (Kind::Text, Lit::Str(_)) => Ok(lit.clone()),
        (Kind::Directory, Lit::Str(s)) => {
            if s.value().is_empty() {
                return Err(format!("`{key}` must name a directory: {example}"));
            }
            Ok(lit.clone())
        }
        (Kind::UrlPath { or_url }, Lit::Str(s)) => {
            let text = s.value();
            if text.starts_with('/') || (or_url && text.starts_with("http://")) {
                return Ok(lit.clone());
            }
            let what = if or_url {
                "a path starting with / or an http:// URL"
            } else {
                "a path starting with /"
            };
            if text.contains("://") {
                return Err(format!("`{key}` must be {what}, not `{text}`"));
            }
            Err(format!("`{key}` must be {what}, like \"/{text}\""))
        }
        (Kind::Ip, Lit::Str(s)) => {
            let text = s.value();
            if text.parse::<std::net::IpAddr>().is_ok() {
                return Ok(lit.clone());
            }
            let hint = if text.eq_ignore_ascii_case("localhost") {
                "; for localhost, write \"127.0.0.1\" or \"::1\"".to_owned()
            } else {
                format!(" like \"0.0.0.0\" or \"::1\", not `{text}`")
            };
            Err(format!("`{key}` must be an IP address{hint}"))
        }
        (Kind::Duration { positive }, Lit::Str(s)) => match schema::check_duration(&s.value()) {
            // The runtime rejects these too, at start-up.
            Ok(true) if positive => Err(format!("`{key}` must be more than 0s")),
            Ok(_) => Ok(lit.clone()),
            Err(e) => Err(format!("`{key}` {}", e.message(&s.value(), None))),
        },
        (Kind::DurationOrNever, Lit::Str(s)) => {
            let text = s.value();
            if text.trim().eq_ignore_ascii_case("never") {
                return Ok(lit.clone());
            }
            match schema::check_duration(&text) {
                Ok(_) => Ok(lit.clone()),
                Err(e) => Err(format!("`{key}` {}", e.message(&text, Some("\"never\"")))),
            }
        }
        // The most likely slips: a number or a boolean in quotes, and a duration without its
        // unit.
        (Kind::Port | Kind::Count { .. } | Kind::HttpStatus, Lit::Str(s))
            if s.value().parse::<u64>().is_ok() =>
        {
            let number = s.value();
            Err(format!(
                "`{key}` takes a number, not a string: write `{}`",
                schema::written(key, &number)
            ))
        }
        (Kind::Bool, Lit::Str(s)) if matches!(s.value().as_str(), "true" | "false") => {
            Err(format!(
                "`{key}` takes `true` or `false`, not a string: write `{}`",
                schema::written(key, &s.value())
            ))
        }
        (Kind::Duration { positive: true }, Lit::Int(i)) if i.base10_digits() == "0" => {
            Err(format!(
                "`{key}` takes a string with a unit, and must be more than 0s: write `{}`",
                schema::written(key, "\"1s\"")
            ))
        }
        (Kind::Duration { .. } | Kind::DurationOrNever, Lit::Int(i)) => Err(format!(
            "`{key}` takes a string with a unit: write `{}`",
            schema::written(key, &format!("\"{}s\"", i.base10_digits()))
        )),
        (Kind::OneOf(choices), Lit::Str(s)) => {
            if choices.contains(&s.value().as_str()) {
                return Ok(lit.clone());
            }
            let choices: Vec<String> = choices.iter().map(|c| format!("\"{c}\"")).collect();
            Err(format!("`{key}` must be one of {}", choices.join(", ")))
        }
        _ => Err(wrong_type()),
    }
}

/// A count outside its range. Bounds that are only the limits of the runtime's integer types
/// are left out of the message: "at least 1" says all a user needs.
fn out_of_range(key: &str, min: u64, max: u64, too_small: bool) -> String {
    let limit = max == schema::U32 || max == schema::I64;
    match (too_small, limit) {
        (true, true) => format!("`{key}` must be at least {min}"),
        (false, true) => format!("`{key}` must be at most {max}"),
        (_, false) => format!("`{key}` must be from {min} to {max}"),
    }
}

fn http_status(key: &str) -> String {
    format!("`{key}` must be an HTTP status from 100 to 599")
}

/// A suffixed literal, so that the generated `.option(key, 8080i64)` needs neither inference
/// nor a cast (a cast trips `trivial_numeric_casts` in crates that deny it).
fn int(value: u64, span: Span) -> Lit {
    Lit::Int(LitInt::new(&format!("{value}i64"), span))
}

fn unknown_message(name: &str, group: Option<&str>, parens: bool, value: Option<&Expr>) -> String {
    if let Some(group) = group {
        let members = schema::members(group);
        return match did_you_mean(name, &members) {
            Some(hint) => format!("unknown option `{name}` in `{group}(...)`; {hint}"),
            None => format!(
                "unknown option `{name}` in `{group}(...)`; it takes: {}",
                members.join(", ")
            ),
        };
    }
    // An option of a group, written at the top level; several groups have a `timeout`.
    let owners: Vec<(&str, Kind)> = schema::KEYS
        .iter()
        .filter(|(k, _)| k.split_once('.').is_some_and(|(_, leaf)| leaf == name))
        .copied()
        .collect();
    if !owners.is_empty() {
        let writes: Vec<String> = owners
            .iter()
            .map(|(full, kind)| {
                let value =
                    value.map_or_else(|| kind.sample(), |v| v.to_token_stream().to_string());
                format!("`{}`", schema::written(full, &value))
            })
            .collect();
        let (group, writes) = match writes.as_slice() {
            [one] => ("a group", one.clone()),
            [rest @ .., last] => ("several groups", format!("{} or {last}", rest.join(", "))),
            [] => unreachable!("checked above"),
        };
        return format!("`{name}` belongs to {group}: write {writes}");
    }
    let what = if parens { "option group" } else { "option" };
    let top = schema::top_level();
    match did_you_mean(name, &top) {
        Some(hint) => format!("unknown {what} `{name}`; {hint}"),
        None => {
            let valid: Vec<String> = top
                .iter()
                .map(|name| {
                    let members = schema::members(name);
                    if members.is_empty() {
                        (*name).to_owned()
                    } else {
                        format!("{name}({})", members.join(", "))
                    }
                })
                .collect();
            format!(
                "unknown {what} `{name}`; the options are: {}",
                valid.join(", ")
            )
        }
    }
}

/// "did you mean `port`?" for a name close to one or two candidates.
fn did_you_mean(name: &str, candidates: &[&str]) -> Option<String> {
    let limit = (name.chars().count() / 3).max(1);
    let mut close: Vec<(usize, &str)> = candidates
        .iter()
        .filter_map(|&candidate| {
            let distance = edit_distance(name, candidate);
            let related = distance <= limit
                || (name.len() >= 3 && (candidate.contains(name) || name.contains(candidate)));
            related.then_some((distance, candidate))
        })
        .collect();
    close.sort();
    match close.as_slice() {
        [] => None,
        [(_, one)] => Some(format!("did you mean `{one}`?")),
        [(_, one), (_, two), ..] => Some(format!("did you mean `{one}` or `{two}`?")),
    }
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

    fn check(key: &str, value: Expr) -> Result<String, String> {
        let kind = schema::kind(key).expect("a known key");
        check_value(key, kind, &value).map(|lit| lit.to_token_stream().to_string())
    }

    #[test]
    fn values_the_runtime_rejects_are_rejected() {
        use syn::parse_quote as q;
        assert_eq!(check("max_age", q!("never")).as_deref(), Ok("\"never\""));
        assert_eq!(check("max_age", q!("3d")).as_deref(), Ok("\"3d\""));
        assert!(
            check("max_age", q!("forever"))
                .unwrap_err()
                .contains("or \"never\"")
        );
        assert_eq!(check("stop_timeout", q!("0s")).as_deref(), Ok("\"0s\""));
        for key in [
            "heartbeat_interval",
            "startup_timeout",
            "nanny.tolerance",
            "death_queue.timeout",
            "cache.timeout",
        ] {
            let err = check(key, q!("0ms")).unwrap_err();
            assert_eq!(err, format!("`{key}` must be more than 0s"));
            assert!(check(key, q!(0)).unwrap_err().contains("more than 0s"));
        }
        assert_eq!(check("ecv.expect_status", q!(204)).as_deref(), Ok("204i64"));
        for bad in [q!(99), q!(600), q!(-1)] {
            assert!(
                check("ecv.expect_status", bad)
                    .unwrap_err()
                    .contains("100 to 599")
            );
        }
        assert_eq!(check("death_queue.retries", q!(1)).as_deref(), Ok("1i64"));
        assert!(
            check("death_queue.retries", q!(0))
                .unwrap_err()
                .contains("at least 1")
        );
        assert!(check("death_queue.retries", q!(4294967296)).is_err());
        assert!(check("cache.max_value", q!(1073741825)).is_err());
        assert!(
            check("ecv.root", q!("health"))
                .unwrap_err()
                .contains("\"/health\"")
        );
        assert!(check("ecv.monitor", q!("http://10.0.0.1/ping")).is_ok());
        assert!(check("ecv.monitor", q!("https://example.com")).is_err());
        assert!(check("pids", q!("")).is_err());
        assert_eq!(check("nanny.enable", q!(false)).as_deref(), Ok("false"));
        assert!(
            check("nanny.enable", q!("false"))
                .unwrap_err()
                .contains("not a string")
        );
        assert!(check("cache.mode", q!("master")).is_ok());
        assert!(check("ecv.mode", q!("probe")).is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("prot", "port"), 1);
        let top = schema::top_level();
        assert_eq!(
            did_you_mean("prot", &top).as_deref(),
            Some("did you mean `port`?")
        );
        assert_eq!(
            did_you_mean("restrat", &top).as_deref(),
            Some("did you mean `restart`?")
        );
        assert_eq!(
            did_you_mean("max", &schema::members("restart")).as_deref(),
            Some("did you mean `max_delay`?")
        );
        assert_eq!(did_you_mean("verbose", &top), None);
    }
}
