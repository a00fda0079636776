//! `#[cluster2::main(...)]`: parse the options → check the signature → expand into a plain
//! synchronous `fn main` that hands everything to `Cluster::builder()`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, Lit, ReturnType};

use crate::args::{self, Args};
use crate::errors::Errors;

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse_options(attr, &mut errors);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            errors.push(e);
            let errors = errors.into_compile_errors();
            return quote! { #item #errors };
        }
    };
    let signature_ok = check_signature(&func, &mut errors);
    let errors_tokens = if errors.is_empty() {
        TokenStream::new()
    } else {
        errors.into_compile_errors()
    };
    if !signature_ok {
        // Keep the user's function (renamed, so no second error about an async `main`) so that
        // its body is still checked and IDEs keep working.
        return fallback(&func, errors_tokens);
    }
    let expanded = expand_main(&func, &args);
    quote! { #expanded #errors_tokens }
}

fn check_signature(func: &ItemFn, errors: &mut Errors) -> bool {
    let sig = &func.sig;
    let mut ok = true;
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "the `async` keyword is missing from the function declaration: \
             #[cluster2::main] expects `async fn main(started: cluster2::Started)`",
        ));
        ok = false;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "#[cluster2::main] functions cannot be generic",
        ));
        ok = false;
    }
    for extra in sig.inputs.iter().skip(1) {
        errors.push(syn::Error::new_spanned(
            extra,
            "#[cluster2::main] functions take at most one argument, `started: cluster2::Started`",
        ));
        ok = false;
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        errors.push(syn::Error::new_spanned(
            r,
            "#[cluster2::main] must be on a free function, not a method",
        ));
        ok = false;
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(v, "#[cluster2::main] functions cannot be variadic"));
        ok = false;
    }
    ok
}

fn krate(args: &Args) -> TokenStream {
    match &args.krate {
        Some(path) => quote!(#path),
        None => quote!(::cluster2),
    }
}

fn expand_main(func: &ItemFn, args: &Args) -> TokenStream {
    let krate = krate(args);
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = func;
    let name = &sig.ident;
    let inner = format_ident!("__cluster2_main");
    let inputs = &sig.inputs;
    let output = &sig.output;
    let options = args.options.iter().map(|opt| {
        let key = &opt.key;
        let value = match &opt.value {
            // Unsuffixed integer literals infer their type from `Into<OptionValue>` (i32).
            Lit::Int(i) => quote!(#i),
            other => quote!(#other),
        };
        quote! { .option(#key, #value) }
    });
    let call = match sig.inputs.first() {
        Some(FnArg::Typed(arg)) => {
            let ty = &arg.ty;
            // Spanned on the parameter's type, so a wrong type is reported there.
            quote_spanned!(ty.span()=> |__started: #krate::Started| #inner(__started))
        }
        _ => quote!(|_: #krate::Started| #inner()),
    };
    let output_span = match output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => sig.ident.span(),
    };
    let run = quote_spanned!(output_span=> .run(#call));
    quote! {
        #(#attrs)*
        #vis fn #name() -> ::std::process::ExitCode {
            async fn #inner(#inputs) #output #block
            #krate::Cluster::builder()
                .name(::core::env!("CARGO_PKG_NAME"), ::core::env!("CARGO_PKG_VERSION"))
                #(#options)*
                #run
        }
    }
}

fn fallback(func: &ItemFn, errors: TokenStream) -> TokenStream {
    let mut renamed = func.clone();
    let name = func.sig.ident.clone();
    renamed.sig.ident = format_ident!("__cluster2_main");
    let vis = &func.vis;
    quote! {
        #[allow(dead_code)]
        #renamed
        #vis fn #name() {}
        #errors
    }
}
