//! Attribute arguments: `key = literal`, nested groups `cache(enable = true)`, and
//! `crate = "path"`. Every key is checked against the option schema, with errors on the
//! offending token, all collected and reported together.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Lit, LitStr};

use crate::errors::Errors;
use crate::schema::{self, Kind};

/// One option given in the attribute.
pub(crate) struct OptionArg {
    /// Dotted key: `restart.delay`.
    pub(crate) key: String,
    pub(crate) value: Lit,
}

/// Everything an attribute said.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) options: Vec<OptionArg>,
    pub(crate) krate: Option<syn::Path>,
}

/// Parses `#[cluster2::main(...)]` arguments.
pub(crate) fn parse_options(tokens: TokenStream, errors: &mut Errors) -> Args {
    let mut args = Args::default();
    let mut seen: Vec<(String, Span)> = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            args.krate = Some(parse_crate(&meta)?);
            return Ok(());
        }
        option(&meta, "", &mut args.options, &mut seen, errors)
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
            args.krate = Some(parse_crate(&meta)?);
            Ok(())
        } else {
            Err(meta.error(format!(
                "#[cluster2::{attribute}] takes no arguments other than `crate = \"...\"`"
            )))
        }
    });
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    args
}

fn parse_crate(meta: &ParseNestedMeta<'_>) -> syn::Result<syn::Path> {
    let lit: LitStr = meta.value()?.parse()?;
    lit.parse()
}

fn option(
    meta: &ParseNestedMeta<'_>,
    prefix: &str,
    out: &mut Vec<OptionArg>,
    seen: &mut Vec<(String, Span)>,
    errors: &mut Errors,
) -> syn::Result<()> {
    let Some(ident) = meta.path.get_ident() else {
        return Err(meta.error("expected an option name, like `port = 8080`"));
    };
    let key = if prefix.is_empty() {
        ident.to_string()
    } else {
        format!("{prefix}.{ident}")
    };
    if meta.input.peek(syn::token::Paren) {
        if !schema::is_group(&key) {
            return Err(meta.error(unknown_message(&key, true)));
        }
        return meta.parse_nested_meta(|inner| option(&inner, &key, out, seen, errors));
    }
    if schema::is_group(&key) {
        let first = schema::KEYS
            .iter()
            .find_map(|(k, _)| k.strip_prefix(&format!("{key}.")))
            .unwrap_or("...");
        return Err(meta.error(format!(
            "`{key}` is a group of options: write `{key}({first} = ...)`"
        )));
    }
    let Some(kind) = schema::kind(&key) else {
        // Consume the value so that parsing can go on to report further mistakes.
        if meta.input.peek(syn::Token![=]) {
            let _: syn::Expr = meta.value()?.parse()?;
        }
        errors.push(syn::Error::new(ident.span(), unknown_message(&key, false)));
        return Ok(());
    };
    let value: Lit = match meta.value()?.parse() {
        Ok(lit) => lit,
        Err(_) => {
            let expr: syn::Expr = meta.input.parse()?;
            errors.push(syn::Error::new(
                expr.span(),
                format!("`{key}` takes a literal: {}", kind.example(&key)),
            ));
            return Ok(());
        }
    };
    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
        let mut err = syn::Error::new(ident.span(), format!("duplicate option `{key}`"));
        err.combine(syn::Error::new(*first, "first given here"));
        errors.push(err);
        return Ok(());
    }
    seen.push((key.clone(), ident.span()));
    if let Err(message) = check_value(&key, kind, &value) {
        errors.push(syn::Error::new(value.span(), message));
        return Ok(());
    }
    out.push(OptionArg { key, value });
    Ok(())
}

fn unknown_message(key: &str, group: bool) -> String {
    let what = if group { "option group" } else { "option" };
    let valid: Vec<String> = schema::KEYS
        .iter()
        .map(|(k, _)| match k.split_once('.') {
            Some((group, rest)) => format!("{group}({rest})"),
            None => (*k).to_owned(),
        })
        .collect();
    format!("unknown {what} `{key}`; valid options: {}", valid.join(", "))
}

fn check_value(key: &str, kind: Kind, value: &Lit) -> Result<(), String> {
    let wrong = || format!("`{key}` expects {}: {}", kind.describe(), kind.example(key));
    match (kind, value) {
        (Kind::Port, Lit::Int(i)) => {
            i.base10_parse::<u16>()
                .map_err(|_| format!("`{key}` must be a port number from 0 to 65535"))?;
        }
        (Kind::Count { min }, Lit::Int(i)) => {
            let n = i
                .base10_parse::<u64>()
                .map_err(|_| format!("`{key}` must be a whole number"))?;
            if n < min {
                return Err(format!("`{key}` must be at least {min}"));
            }
        }
        (Kind::Bool, Lit::Bool(_)) | (Kind::Text, Lit::Str(_)) => {}
        (Kind::Duration, Lit::Str(s)) => schema::check_duration(&s.value())
            .map_err(|e| format!("`{key}`: {e}"))?,
        (Kind::OneOf(choices), Lit::Str(s)) => {
            if !choices.contains(&s.value().as_str()) {
                return Err(format!(
                    "`{key}` must be one of: {}",
                    choices.join(", ")
                ));
            }
        }
        _ => return Err(wrong()),
    }
    Ok(())
}
