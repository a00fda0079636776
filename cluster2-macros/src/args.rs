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
    krate: Option<syn::Path>,
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
        let name = meta.path.to_token_stream().to_string().replace(' ', "");
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
        } else {
            format!("#[cluster2::{attribute}] takes no arguments other than `crate = \"...\"`")
        };
        errors.push(syn::Error::new_spanned(&meta.path, message));
        skip_value(&meta)
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    args
}

fn parse_crate(
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
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
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
                Kind::Count { min, .. } => format!("`{key}` must be at least {min}"),
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
                .map_err(|_| format!("`{key}` must be at most {max}"))?;
            if n < min {
                return Err(format!("`{key}` must be at least {min}"));
            }
            if n > max {
                return Err(format!("`{key}` must be at most {max}"));
            }
            Ok(int(n, i.span()))
        }
        (Kind::Bool, Lit::Bool(_)) | (Kind::Text, Lit::Str(_)) => Ok(lit.clone()),
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
        (Kind::Duration, Lit::Str(s)) => match schema::check_duration(&s.value()) {
            Ok(()) => Ok(lit.clone()),
            Err(e) => Err(format!("`{key}` {e}")),
        },
        // The two most likely slips: a number in quotes, and a duration without its unit.
        (Kind::Port | Kind::Count { .. }, Lit::Str(s)) if s.value().parse::<u64>().is_ok() => {
            let number = s.value();
            Err(format!(
                "`{key}` takes a number, not a string: write `{}`",
                schema::written(key, &number)
            ))
        }
        (Kind::Duration, Lit::Int(i)) => Err(format!(
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
    // An option of a group, written at the top level.
    if let Some((full, kind)) = schema::KEYS
        .iter()
        .find(|(k, _)| k.split_once('.').is_some_and(|(_, leaf)| leaf == name))
    {
        return match value {
            Some(value) => format!(
                "`{name}` belongs to a group: write `{}`",
                schema::written(full, &value.to_token_stream().to_string())
            ),
            None => format!("`{name}` belongs to a group: {}", kind.example(full)),
        };
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
