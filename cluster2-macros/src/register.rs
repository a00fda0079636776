//! `#[configure_app]` and `#[warm_up]`: re-emit the function unchanged and add one hidden
//! registration to a link-time slice in `cluster2::__private`.

use proc_macro2::TokenStream;
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
}

pub(crate) fn expand(hook: Hook, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let args = args::parse_plain(attr, hook.attribute(), &mut errors);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            errors.push(e);
            let errors = errors.into_compile_errors();
            return quote! { #item #errors };
        }
    };
    check_signature(hook, &func, &mut errors);
    if !errors.is_empty() {
        let errors = errors.into_compile_errors();
        return quote! { #func #errors };
    }
    let krate = match &args.krate {
        Some(path) => quote!(#path),
        None => quote!(::cluster2),
    };
    let registration = match hook {
        Hook::ConfigureApp => configure_app(&func, &krate),
        Hook::WarmUp => warm_up(&func, &krate),
    };
    quote! { #func #registration }
}

fn check_signature(hook: Hook, func: &ItemFn, errors: &mut Errors) {
    let sig = &func.sig;
    let attribute = hook.attribute();
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            format!("#[cluster2::{attribute}] functions cannot be generic"),
        ));
    }
    if let Some(FnArg::Receiver(r)) = sig.inputs.first() {
        errors.push(syn::Error::new_spanned(
            r,
            format!("#[cluster2::{attribute}] must be on a free function, not a method"),
        ));
        return;
    }
    match hook {
        Hook::ConfigureApp => {
            if let Some(arg) = sig.inputs.first() {
                errors.push(syn::Error::new_spanned(
                    arg,
                    "#[cluster2::configure_app] functions take no arguments: \
                     `async fn app() -> axum::Router`",
                ));
            }
        }
        Hook::WarmUp => {
            if sig.asyncness.is_none() {
                errors.push(syn::Error::new_spanned(
                    sig.fn_token,
                    "the `async` keyword is missing: #[cluster2::warm_up] expects \
                     `async fn warm(w: cluster2::WarmUp) -> Result<(), E>`",
                ));
            }
            if sig.inputs.len() != 1 {
                errors.push(syn::Error::new_spanned(
                    &sig.inputs,
                    "#[cluster2::warm_up] functions take exactly one argument, \
                     `w: cluster2::WarmUp`",
                ));
            }
            if matches!(sig.output, ReturnType::Default) {
                errors.push(syn::Error::new_spanned(
                    &sig.ident,
                    "#[cluster2::warm_up] functions return `Result<(), E>` so that a failed \
                     warm-up can keep the worker from taking traffic",
                ));
            }
        }
    }
}

fn return_span(func: &ItemFn) -> proc_macro2::Span {
    match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => func.sig.ident.span(),
    }
}

fn configure_app(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let call = if func.sig.asyncness.is_some() {
        quote!(#name().await)
    } else {
        quote!(#name())
    };
    let convert = quote_spanned!(return_span(func)=> #krate::__private::into_app(#call));
    let adapter = format_ident!("__cluster2_configure_app");
    quote! {
        const _: () = {
            #[doc(hidden)]
            fn #adapter() -> #krate::__private::BoxFuture<
                ::core::result::Result<#krate::App, ::std::string::String>,
            > {
                ::std::boxed::Box::pin(async { #convert })
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
        Some(FnArg::Typed(arg)) => {
            let ty = &arg.ty;
            quote_spanned!(ty.span()=> __warm_up)
        }
        _ => quote!(__warm_up),
    };
    let convert =
        quote_spanned!(return_span(func)=> #krate::__private::warm_up_result(#name(#arg).await));
    let adapter = format_ident!("__cluster2_warm_up");
    quote! {
        const _: () = {
            #[doc(hidden)]
            fn #adapter(
                __warm_up: #krate::WarmUp,
            ) -> #krate::__private::BoxFuture<::core::result::Result<(), ::std::string::String>> {
                ::std::boxed::Box::pin(async move { #convert })
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
