//! `#[configure_app]` and `#[warm_up]`: re-emit the function unchanged and add one hidden
//! registration to a link-time slice in `cluster2::__private`.
//!
//! The generated adapter converts what the function returned; those conversions are spanned on
//! the function's return type, so that a return type cluster2 cannot use is reported there and
//! not on the attribute.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

use crate::args;
use crate::errors::Errors;

#[derive(Clone, Copy)]
pub(crate) enum Hook {
    ConfigureApp,
    WarmUp,
}

impl Hook {
    fn attribute(self) -> &'static str {
        match self {
            Hook::ConfigureApp => "configure_app",
            Hook::WarmUp => "warm_up",
        }
    }

    fn shape(self) -> &'static str {
        match self {
            Hook::ConfigureApp => "`async fn app() -> axum::Router`",
            Hook::WarmUp => {
                "`async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError>`"
            }
        }
    }
}

pub(crate) fn expand(hook: Hook, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse_plain(attr, hook.attribute(), &mut errors);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!(
                    "#[cluster2::{}] goes on a function: {}",
                    hook.attribute(),
                    hook.shape()
                ),
            ));
            let errors = errors.into_compile_errors();
            return quote! { #item #errors };
        }
    };
    if !check_signature(hook, &func, &mut errors) {
        // Without a usable signature there is nothing to register; the function alone keeps
        // its body checked and spares the user follow-on errors from the adapter.
        let errors = errors.into_compile_errors();
        return quote! { #func #errors };
    }
    // A bad attribute argument does not stop the registration, so that mistakes in the
    // function's types are reported in the same build.
    let krate = args.krate();
    let registration = match hook {
        Hook::ConfigureApp => configure_app(&func, &krate),
        Hook::WarmUp => warm_up(&func, &krate),
    };
    let errors = errors.into_compile_errors();
    quote! { #func #registration #errors }
}

/// Whether the function can be registered; every problem is added to `errors`.
fn check_signature(hook: Hook, func: &ItemFn, errors: &mut Errors) -> bool {
    let sig = &func.sig;
    let attribute = hook.attribute();
    let mut ok = true;
    let mut fail = |err: syn::Error| {
        errors.push(err);
        ok = false;
    };
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(syn::Error::new_spanned(
            &sig.generics,
            format!("#[cluster2::{attribute}] functions cannot be generic"),
        ));
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        fail(syn::Error::new_spanned(
            r,
            format!(
                "#[cluster2::{attribute}] must be on a free function, not a method: {}",
                hook.shape()
            ),
        ));
        return false;
    }
    if let Some(v) = &sig.variadic {
        fail(syn::Error::new_spanned(
            v,
            format!("#[cluster2::{attribute}] functions cannot be variadic"),
        ));
    }
    match hook {
        Hook::ConfigureApp => {
            if !sig.inputs.is_empty() {
                fail(syn::Error::new_spanned(
                    &sig.inputs,
                    format!(
                        "#[cluster2::configure_app] functions take no arguments: {}",
                        hook.shape()
                    ),
                ));
            }
        }
        Hook::WarmUp => {
            if sig.asyncness.is_none() {
                fail(syn::Error::new_spanned(
                    sig.fn_token,
                    format!(
                        "the `async` keyword is missing from the function declaration: \
                         #[cluster2::warm_up] expects {}",
                        hook.shape()
                    ),
                ));
            }
            if sig.inputs.is_empty() {
                fail(syn::Error::new(
                    sig.paren_token.span.join(),
                    "#[cluster2::warm_up] functions take one argument, `w: cluster2::WarmUp`, \
                     to send requests to the worker being warmed up",
                ));
            }
            for extra in sig.inputs.iter().skip(1) {
                fail(syn::Error::new_spanned(
                    extra,
                    "#[cluster2::warm_up] functions take one argument, `w: cluster2::WarmUp`",
                ));
            }
            if matches!(sig.output, ReturnType::Default) {
                fail(syn::Error::new_spanned(
                    &sig.ident,
                    "#[cluster2::warm_up] functions return `Result<(), E>` with `E: Display`, \
                     like `-> Result<(), cluster2::BoxError>`, so that a failed warm-up keeps \
                     the worker from taking traffic",
                ));
            }
        }
    }
    ok
}

/// The function's return type as written (`()` if none), and where to report problems with it.
fn return_type(func: &ItemFn) -> (TokenStream, Span) {
    match &func.sig.output {
        ReturnType::Type(_, ty) => (quote!(#ty), ty.span()),
        ReturnType::Default => {
            let span = func.sig.ident.span();
            (quote_spanned!(span=> ()), span)
        }
    }
}

/// `tokens` with every span set to `span`: rustc reports an unmet bound of a generated call on
/// the call's path, whose first token is the crate path.
fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
    tokens
        .clone()
        .into_iter()
        .map(|mut token| {
            if let TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(&group.stream(), span));
                inner.set_span(span);
                token = TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

fn configure_app(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let call = if func.sig.asyncness.is_some() {
        quote!(#name().await)
    } else {
        quote!(#name())
    };
    let (ty, span) = return_type(func);
    let into_app = respan(krate, span);
    // The qualified path puts the user's type in the unmet `IntoApp` bound: rustc underlines
    // all of it and shows the trait's `on_unimplemented` message.
    let convert = quote_spanned!(span=> <#ty as #into_app::IntoApp>::into_app(#call));
    // A future that is not `Send` is reported on the function's name.
    let body = quote_spanned!(name.span()=> ::std::boxed::Box::pin(async move { #convert }));
    let adapter = format_ident!("__cluster2_configure_app");
    quote! {
        const _: () = {
            #[doc(hidden)]
            fn #adapter() -> #krate::__private::BoxFuture<
                ::core::result::Result<#krate::App, ::std::string::String>,
            > {
                #body
            }
            #[#krate::__private::linkme::distributed_slice(#krate::__private::CONFIGURE_APP)]
            #[linkme(crate = #krate::__private::linkme)]
            #[doc(hidden)]
            static __CLUSTER2_CONFIGURE_APP: #krate::__private::Registration<
                #krate::__private::ConfigureAppFn,
            > = #krate::__private::Registration {
                name: #name_str,
                file: ::core::file!(),
                line: ::core::line!(),
                func: #adapter,
            };
        };
    }
}

fn warm_up(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let arg = match func.sig.inputs.first() {
        // A parameter of another type is reported on that type.
        Some(FnArg::Typed(arg)) => quote_spanned!(arg.ty.span()=> __warm_up),
        _ => quote!(__warm_up),
    };
    let (_, span) = return_type(func);
    let result = respan(krate, span);
    // Two checks, both reported on the return type: that it is a `Result<(), _>`, then that
    // its error is `Display`. The first is marked as generated code, or rustc would offer to
    // rewrite the user's return type into an expression ("try wrapping the expression in
    // `Err`"); the second is not, so that rustc underlines the type rather than the attribute.
    let generated = span.resolved_at(Span::call_site());
    let output = format_ident!("__output", span = generated);
    let shape = quote_spanned!(generated=> ::core::result::Result<(), _>);
    let checked = format_ident!("__result", span = span);
    let convert = quote_spanned!(span=> #result::__private::warm_up_result(#checked));
    let body = quote_spanned!(name.span()=> ::std::boxed::Box::pin(async move {
        let #output = #name(#arg).await;
        let #checked: #shape = #output;
        #convert
    }));
    let adapter = format_ident!("__cluster2_warm_up");
    quote! {
        const _: () = {
            #[doc(hidden)]
            fn #adapter(
                __warm_up: #krate::WarmUp,
            ) -> #krate::__private::BoxFuture<::core::result::Result<(), ::std::string::String>> {
                #body
            }
            #[#krate::__private::linkme::distributed_slice(#krate::__private::WARM_UP)]
            #[linkme(crate = #krate::__private::linkme)]
            #[doc(hidden)]
            static __CLUSTER2_WARM_UP: #krate::__private::Registration<
                #krate::__private::WarmUpFn,
            > = #krate::__private::Registration {
                name: #name_str,
                file: ::core::file!(),
                line: ::core::line!(),
                func: #adapter,
            };
        };
    }
}
