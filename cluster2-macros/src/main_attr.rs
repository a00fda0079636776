//! `#[cluster2::main(...)]`: parse the options → check the signature → expand into a plain
//! synchronous `fn main` that hands everything to `Cluster::builder()`.

use std::path::{Path, PathBuf};

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

use crate::args::{self, Args};
use crate::errors::Errors;

const SHAPE: &str = "`async fn main(started: cluster2::Started)`";

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse_options(attr, &mut errors);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            // syn would say "expected `fn`"; say what the attribute is for.
            errors.push(syn::Error::new(
                e.span(),
                format!("#[cluster2::main] goes on the program's entry point: {SHAPE}"),
            ));
            let errors = errors.into_compile_errors();
            return quote! { #item #errors };
        }
    };
    if !check_signature(&func, &mut errors) {
        // The expansion needs a valid signature; keep the user's function instead, so that its
        // body is still checked and IDEs keep working.
        return fallback(&func, errors.into_compile_errors());
    }
    // Option mistakes do not stop the expansion: the options that are valid are used, and
    // nothing about a missing or malformed `main` is added to the errors.
    let expanded = expand_main(&func, &args);
    let errors = errors.into_compile_errors();
    quote! { #expanded #errors }
}

/// Whether the function can be expanded; every problem is added to `errors`.
fn check_signature(func: &ItemFn, errors: &mut Errors) -> bool {
    let sig = &func.sig;
    let mut ok = true;
    let mut fail = |err: syn::Error| {
        errors.push(err);
        ok = false;
    };
    if sig.asyncness.is_none() {
        fail(syn::Error::new_spanned(
            sig.fn_token,
            format!(
                "the `async` keyword is missing from the function declaration: \
                 #[cluster2::main] expects {SHAPE}"
            ),
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(syn::Error::new_spanned(
            &sig.generics,
            "#[cluster2::main] functions cannot be generic",
        ));
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        fail(syn::Error::new_spanned(
            r,
            format!("#[cluster2::main] must be on a free function, not a method: {SHAPE}"),
        ));
    }
    for extra in sig.inputs.iter().skip(1) {
        fail(syn::Error::new_spanned(
            extra,
            "#[cluster2::main] functions take at most one argument, `started: cluster2::Started`",
        ));
    }
    if let Some(v) = &sig.variadic {
        fail(syn::Error::new_spanned(
            v,
            "#[cluster2::main] functions cannot be variadic",
        ));
    }
    ok
}

fn expand_main(func: &ItemFn, args: &Args) -> TokenStream {
    let krate = args.krate();
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    // The async function keeps the user's name: rustc names it in errors about its body
    // ("future returned by `main` is not `Send`") and its arguments.
    let name = &sig.ident;
    let inputs = &sig.inputs;
    let output = &sig.output;
    let options = args.options.iter().map(|opt| {
        let (key, value) = (&opt.key, &opt.value);
        quote! { .option(#key, #value) }
    });
    let call = match sig.inputs.first() {
        Some(FnArg::Typed(arg)) => {
            let ty = &arg.ty;
            // Spanned on the parameter's type, so that a wrong type is reported there.
            quote_spanned!(ty.span()=> |__started: #krate::Started| #name(__started))
        }
        _ => quote!(|_: #krate::Started| #name()),
    };
    // `run` requires `MainResult` of the function's output: report a wrong one on the type.
    let output_span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.ident.span(),
    };
    let run = quote_spanned!(output_span=> .run(#call));
    let dependencies = std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| cargo_lock(Path::new(&dir)))
        .and_then(|lock| lock.to_str().map(str::to_owned))
        .map(|lock| quote!(.dependencies(::core::include_str!(#lock))));
    quote! {
        #(#attrs)*
        #vis fn #name() -> ::std::process::ExitCode {
            async fn #name(#inputs) #output #block
            #krate::Cluster::builder()
                .name(::core::env!("CARGO_PKG_NAME"), ::core::env!("CARGO_PKG_VERSION"))
                #dependencies
                #(#options)*
                #run
        }
    }
}

/// The `Cargo.lock` that pins the dependencies of the crate in `dir`: the nearest one in `dir`
/// or above it (a workspace keeps it at its root).
///
/// The expansion embeds it with `include_str!` for the monitor's `/deps`; `include_str!` also
/// makes cargo rebuild the crate when the lock file changes.
fn cargo_lock(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|lock| lock.is_file())
}

/// The user's function, renamed so that it cannot clash with the stand-in entry point that
/// spares the user an extra "`main` function not found" error.
fn fallback(func: &ItemFn, errors: TokenStream) -> TokenStream {
    let mut renamed = func.clone();
    let name = func.sig.ident.clone();
    renamed.sig.ident = quote::format_ident!("__cluster2_main");
    let vis = &func.vis;
    quote! {
        #[allow(dead_code)]
        #renamed
        #vis fn #name() {}
        #errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nearest_cargo_lock() {
        let root =
            std::env::temp_dir().join(format!("cluster2-macros-lock-{}", std::process::id()));
        let member = root.join("crates").join("app");
        std::fs::create_dir_all(&member).unwrap();
        // Nothing in the new directories yet: whatever is above them, if anything.
        assert_eq!(cargo_lock(&member), cargo_lock(&std::env::temp_dir()));
        std::fs::write(root.join("Cargo.lock"), "").unwrap();
        assert_eq!(cargo_lock(&member), Some(root.join("Cargo.lock")));
        std::fs::write(member.join("Cargo.lock"), "").unwrap();
        assert_eq!(cargo_lock(&member), Some(member.join("Cargo.lock")));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn embeds_the_lock_of_this_workspace() {
        // Tests run with `CARGO_MANIFEST_DIR` set, as the expansion does.
        let func: ItemFn = syn::parse_quote!(
            async fn main() {}
        );
        let expanded = expand_main(&func, &Args::default()).to_string();
        let lock = cargo_lock(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(
            expanded.contains(&format!("include_str ! ({:?})", lock.to_str().unwrap())),
            "{expanded}"
        );
    }
}
