//! Attribute arguments: `key = literal`, nested groups `restart(delay = "1s")`, and
//! `crate = "path"`. Every key and value is checked against the option schema, with errors on
//! the offending tokens, all collected and reported together.
//!
//! A mistake in one argument never stops the others from being checked: the parser records the
//! error, skips the argument's value, and goes on. Only tokens that are not `name = value` or
//! `name(...)` at all end the parse.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Expr, Lit, Token};

use crate::errors::Errors;
use crate::schema::{self, Kind};
use crate::values::{check_value, literal};

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
        let first = format!("{key}.{}", schema::members(&key)[0]);
        let kind = schema::kind(&first).expect("a group's members are options");
        errors.push(syn::Error::new(
            ident.span(),
            format!(
                "`{key}` is a group of options, not a value: {}",
                schema::example(kind, &first)
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
            format!(
                "`{key}` is an option, not a group: {}",
                schema::example(kind, &key)
            ),
        ));
        return skip_value(meta);
    }
    if !meta.input.peek(Token![=]) {
        errors.push(syn::Error::new(
            ident.span(),
            format!("`{key}` needs a value: {}", schema::example(kind, &key)),
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

fn unknown_message(name: &str, group: Option<&str>, parens: bool, value: Option<&Expr>) -> String {
    if let Some(group) = group {
        let members = schema::members(group);
        return match schema::suggestion(name, &members) {
            Some(hint) => format!("unknown option `{name}` in `{group}(...)`; {hint}"),
            None => format!(
                "unknown option `{name}` in `{group}(...)`; it takes: {}",
                members.join(", ")
            ),
        };
    }
    // An option of a group, written at the top level; several groups have a `timeout`.
    let owners: Vec<(&str, Kind)> = schema::OPTIONS
        .iter()
        .filter(|s| s.key.split_once('.').is_some_and(|(_, leaf)| leaf == name))
        .map(|s| (s.key, s.kind))
        .collect();
    if !owners.is_empty() {
        let writes: Vec<String> = owners
            .iter()
            .map(|(full, kind)| {
                let value = value.map_or_else(
                    || schema::sample(*kind),
                    |v| v.to_token_stream().to_string(),
                );
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
    match schema::suggestion(name, &top) {
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
