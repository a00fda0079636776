//! `#[configure_app]`, `#[warm_up]`, `#[configure_monitor]`, `#[ecv_validator]` and
//! `#[should_kill]`: re-emit the function unchanged and add one hidden registration to a
//! link-time slice in `cluster2::__private`.
//!
//! The generated adapter converts what the function returned; those conversions are spanned on
//! the function's return type, so that a return type cluster2 cannot use is reported there and
//! not on the attribute.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemFn, ReturnType};

use crate::args;
use crate::errors::Errors;

#[derive(Clone, Copy)]
pub(crate) enum Hook {
    ConfigureApp,
    WarmUp,
    ConfigureMonitor,
    EcvValidator,
    ShouldKill,
}

impl Hook {
    fn attribute(self) -> &'static str {
        match self {
            Hook::ConfigureApp => "configure_app",
            Hook::WarmUp => "warm_up",
            Hook::ConfigureMonitor => "configure_monitor",
            Hook::EcvValidator => "ecv_validator",
            Hook::ShouldKill => "should_kill",
        }
    }

    fn shape(self) -> &'static str {
        match self {
            Hook::ConfigureApp => "`async fn app() -> axum::Router`",
            Hook::WarmUp => {
                "`async fn warm(w: cluster2::WarmUp) -> Result<(), cluster2::BoxError>`"
            }
            Hook::ConfigureMonitor => "`async fn monitor(router: axum::Router) -> axum::Router`",
            Hook::EcvValidator => "`fn validate(status: u16, body: &[u8]) -> bool`",
            Hook::ShouldKill => "`fn should_kill(heartbeat: &cluster2::Heartbeat) -> bool`",
        }
    }

    /// What the function's arguments are, for "takes N arguments" errors.
    fn arguments(self) -> &'static str {
        match self {
            Hook::ConfigureApp => "no arguments",
            Hook::WarmUp => {
                "one argument, `w: cluster2::WarmUp`, to send requests to the worker being \
                 warmed up"
            }
            Hook::ConfigureMonitor => {
                "one argument, the monitor's `axum::Router`, and return it with routes added"
            }
            Hook::EcvValidator => {
                "two arguments, the status and body of the probe's answer: \
                 `status: u16, body: &[u8]`"
            }
            Hook::ShouldKill => {
                "one argument, the worker's latest heartbeat: \
                 `heartbeat: &cluster2::Heartbeat`"
            }
        }
    }

    fn argument_count(self) -> usize {
        match self {
            Hook::ConfigureApp => 0,
            Hook::WarmUp | Hook::ConfigureMonitor | Hook::ShouldKill => 1,
            Hook::EcvValidator => 2,
        }
    }

    /// Why a missing return type is wrong, or `None` if `()` may be fine.
    fn needs_return(self) -> Option<&'static str> {
        match self {
            // `()` is not an app either; the type check says so on the function's name.
            Hook::ConfigureApp => None,
            Hook::WarmUp => Some(
                "return `Result<(), E>` with `E: Display`, like \
                 `-> Result<(), cluster2::BoxError>`, so that a failed warm-up keeps the worker \
                 from taking traffic",
            ),
            Hook::ConfigureMonitor => {
                Some("return the `axum::Router` they are given, with routes added")
            }
            Hook::EcvValidator => {
                Some("return `bool`: `true` if the probe's answer means the cluster is up")
            }
            Hook::ShouldKill => Some("return `bool`: `true` to replace the worker"),
        }
    }

    /// Whether the function must be async (`Some(true)`), sync (`Some(false)`) or either.
    fn asyncness(self) -> Option<bool> {
        match self {
            Hook::ConfigureApp | Hook::ConfigureMonitor => None,
            Hook::WarmUp => Some(true),
            Hook::EcvValidator | Hook::ShouldKill => Some(false),
        }
    }

    /// Why the function must be sync.
    fn why_sync(self) -> &'static str {
        match self {
            Hook::EcvValidator => "it runs on every monitor-mode probe and must answer at once",
            Hook::ShouldKill => "it runs in the master on every heartbeat and must answer at once",
            // These may be async.
            Hook::ConfigureApp | Hook::WarmUp | Hook::ConfigureMonitor => "",
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
        Hook::ConfigureMonitor => configure_monitor(&func, &krate),
        Hook::EcvValidator => ecv_validator(&func, &krate),
        Hook::ShouldKill => should_kill(&func, &krate),
    };
    let errors = errors.into_compile_errors();
    quote! { #func #registration #errors }
}

/// Whether the function can be registered; every problem is added to `errors`.
fn check_signature(hook: Hook, func: &ItemFn, errors: &mut Errors) -> bool {
    let sig = &func.sig;
    let attribute = hook.attribute();
    let mut ok = check_free_fn(func, attribute, hook.shape(), errors);
    let mut fail = |err: syn::Error| {
        errors.push(err);
        ok = false;
    };
    if let Some(FnArg::Receiver(_)) = sig.inputs.first() {
        // Already reported; the arguments cannot be counted past it.
        return false;
    }
    match (hook.asyncness(), &sig.asyncness) {
        (Some(true), None) => fail(syn::Error::new_spanned(
            sig.fn_token,
            format!(
                "the `async` keyword is missing from the function declaration: \
                 #[cluster2::{attribute}] expects {}",
                hook.shape()
            ),
        )),
        (Some(false), Some(token)) => fail(syn::Error::new_spanned(
            token,
            format!(
                "#[cluster2::{attribute}] functions cannot be async, because {}: remove \
                 `async`, as in {}",
                hook.why_sync(),
                hook.shape()
            ),
        )),
        _ => {}
    }
    let expected = hook.argument_count();
    let arguments = hook.arguments();
    if expected == 0 {
        if !sig.inputs.is_empty() {
            fail(syn::Error::new_spanned(
                &sig.inputs,
                format!(
                    "#[cluster2::{attribute}] functions take {arguments}: {}",
                    hook.shape()
                ),
            ));
        }
    } else if sig.inputs.len() < expected {
        let span = if sig.inputs.is_empty() {
            sig.paren_token.span.join()
        } else {
            sig.inputs.span()
        };
        fail(syn::Error::new(
            span,
            format!("#[cluster2::{attribute}] functions take {arguments}"),
        ));
    } else {
        for extra in sig.inputs.iter().skip(expected) {
            fail(syn::Error::new_spanned(
                extra,
                format!("#[cluster2::{attribute}] functions take {arguments}"),
            ));
        }
    }
    if let (ReturnType::Default, Some(why)) = (&sig.output, hook.needs_return()) {
        fail(syn::Error::new_spanned(
            &sig.ident,
            format!("#[cluster2::{attribute}] functions {why}"),
        ));
    }
    ok
}

/// The checks every registered function passes: a free function, neither generic nor
/// variadic. Returns whether it passed them.
pub(crate) fn check_free_fn(
    func: &ItemFn,
    attribute: &str,
    shape: &str,
    errors: &mut Errors,
) -> bool {
    let sig = &func.sig;
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
            format!("#[cluster2::{attribute}] must be on a free function, not a method: {shape}"),
        ));
    }
    if let Some(v) = &sig.variadic {
        fail(syn::Error::new_spanned(
            v,
            format!("#[cluster2::{attribute}] functions cannot be variadic"),
        ));
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
pub(crate) fn respan(tokens: &TokenStream, span: Span) -> TokenStream {
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

/// One element of the slice `CONFIGURE_APP`, `WARM_UP`, ... whose adapter is `adapter`, and
/// `adapter` itself, together in an anonymous const.
fn register(
    krate: &TokenStream,
    func: &ItemFn,
    slice: &str,
    fn_type: &str,
    adapter: &TokenStream,
) -> TokenStream {
    let name = func.sig.ident.to_string();
    let slice = format_ident!("{slice}");
    let fn_type = format_ident!("{fn_type}");
    let registration = format_ident!("__CLUSTER2_{slice}");
    let adapter_name = format_ident!("__cluster2_{}", slice.to_string().to_lowercase());
    quote! {
        const _: () = {
            #[doc(hidden)]
            #adapter
            #[#krate::__private::linkme::distributed_slice(#krate::__private::#slice)]
            #[linkme(crate = #krate::__private::linkme)]
            #[doc(hidden)]
            static #registration: #krate::__private::Registration<#krate::__private::#fn_type> =
                #krate::__private::Registration {
                    name: #name,
                    file: ::core::file!(),
                    line: ::core::line!(),
                    func: #adapter_name,
                };
        };
    }
}

/// `<ReturnType as Trait>::method(call)`, spanned on the function's return type: the user's
/// type in an unmet bound of one of `cluster2::__private`'s traits, which rustc underlines
/// whole and explains with the trait's `on_unimplemented` message.
fn convert(
    func: &ItemFn,
    krate: &TokenStream,
    (bound, method): (&str, &str),
    call: &TokenStream,
) -> TokenStream {
    let (ty, span) = return_type(func);
    let krate = respan(krate, span);
    let bound = Ident::new(bound, span);
    let method = Ident::new(method, span);
    quote_spanned!(span=> <#ty as #krate::__private::#bound>::#method(#call))
}

/// `let <local>: fn(<arguments>) -> _ = <the user's function>;`: a function with other
/// arguments is reported on its name, with the expected signature ("expected fn pointer
/// `for<'a> fn(&'a Heartbeat) -> _`"). A call with each argument spanned on its parameter
/// would point at the parameter, but rustc then suggests edits at the attribute ("consider
/// using clone here").
fn pointer(func: &ItemFn, local: &str, arguments: &TokenStream) -> (TokenStream, Ident) {
    let name = &func.sig.ident;
    let local = Ident::new(local, Span::call_site());
    (quote!(let #local: fn(#arguments) -> _ = #name;), local)
}

fn configure_app(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let name = &func.sig.ident;
    let call = if func.sig.asyncness.is_some() {
        quote!(#name().await)
    } else {
        quote!(#name())
    };
    let (ty, span) = return_type(func);
    let convert = match stateful_router(func) {
        // A `Router<S>`, or a `Result` of one: converted by `cluster2::__private::AppReturn`,
        // whose bound on the state explains a router still waiting for `.with_state`, on the
        // user's `Router`.
        Some(router) => {
            let private = respan(krate, router);
            quote_spanned!(router=> {
                #[allow(unused_imports)]
                use #private::__private::AppReturnFallback as _;
                #private::__private::AppReturn::<#ty>::new().into_app(#call)
            })
        }
        // The qualified path puts the user's type in the unmet `IntoApp` bound: rustc
        // underlines all of it and shows the trait's `on_unimplemented` message.
        None => {
            let into_app = respan(krate, span);
            quote_spanned!(span=> <#ty as #into_app::IntoApp>::into_app(#call))
        }
    };
    // A future that is not `Send` is reported on the function's name.
    let body = quote_spanned!(name.span()=> ::std::boxed::Box::pin(async move { #convert }));
    let adapter = quote! {
        fn __cluster2_configure_app() -> #krate::__private::BoxFuture<
            ::core::result::Result<#krate::App, ::std::string::String>,
        > {
            #body
        }
    };
    register(krate, func, "CONFIGURE_APP", "ConfigureAppFn", &adapter)
}

/// Where the function returns a `Router<S>` with a state type other than `()`, or a `Result`
/// of one: the span of that `Router`. Read from the tokens, which is enough to choose how the
/// expansion converts the value: a type that only looks like one is converted all the same.
fn stateful_router(func: &ItemFn) -> Option<Span> {
    let ReturnType::Type(_, ty) = &func.sig.output else {
        return None;
    };
    let mut ty: &syn::Type = ty;
    if let Some(ok) = last_segment(ty)
        .filter(|segment| segment.ident == "Result")
        .and_then(|segment| generic_types(segment).next())
    {
        ty = ok;
    }
    let router = last_segment(ty).filter(|segment| segment.ident == "Router")?;
    let stateful = generic_types(router)
        .any(|state| !matches!(state, syn::Type::Tuple(unit) if unit.elems.is_empty()));
    stateful.then(|| router.ident.span())
}

fn last_segment(ty: &syn::Type) -> Option<&syn::PathSegment> {
    match ty {
        syn::Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

fn generic_types(segment: &syn::PathSegment) -> impl Iterator<Item = &syn::Type> {
    let args = match &segment.arguments {
        syn::PathArguments::AngleBracketed(args) => Some(&args.args),
        _ => None,
    };
    args.into_iter().flatten().filter_map(|arg| match arg {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    })
}

fn warm_up(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let name = &func.sig.ident;
    let arg = match func.sig.inputs.first() {
        // A parameter of another type (`&WarmUp`) is reported on that type, with the message of
        // `WarmUpArg`, rather than as a mismatch in the call the expansion makes.
        Some(FnArg::Typed(arg)) => {
            let ty = &arg.ty;
            let private = respan(krate, ty.span());
            quote_spanned!(ty.span()=>
                <#ty as #private::__private::WarmUpArg>::from_warm_up(__warm_up))
        }
        _ => quote!(__warm_up),
    };
    let convert = convert(
        func,
        krate,
        ("WarmUpResult", "into_warm_up_result"),
        &quote!(#name(#arg).await),
    );
    let body = quote_spanned!(name.span()=> ::std::boxed::Box::pin(async move { #convert }));
    let adapter = quote! {
        fn __cluster2_warm_up(
            __warm_up: #krate::WarmUp,
        ) -> #krate::__private::BoxFuture<::core::result::Result<(), ::std::string::String>> {
            #body
        }
    };
    register(krate, func, "WARM_UP", "WarmUpFn", &adapter)
}

fn configure_monitor(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let name = &func.sig.ident;
    let (pointer, monitor) = pointer(func, "__monitor", &quote!(#krate::__private::Router));
    let call = if func.sig.asyncness.is_some() {
        quote!(#monitor(__router).await)
    } else {
        quote!(#monitor(__router))
    };
    let convert = convert(func, krate, ("MonitorRouter", "into_router"), &call);
    let body = quote_spanned!(name.span()=> ::std::boxed::Box::pin(async move { #convert }));
    let adapter = quote! {
        fn __cluster2_configure_monitor(
            __router: #krate::__private::Router,
        ) -> #krate::__private::BoxFuture<#krate::__private::Router> {
            #pointer
            #body
        }
    };
    register(
        krate,
        func,
        "CONFIGURE_MONITOR",
        "ConfigureMonitorFn",
        &adapter,
    )
}

fn ecv_validator(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let (pointer, validate) = pointer(func, "__validate", &quote!(u16, &[u8]));
    let call = quote!(#validate(__status, __body));
    let convert = convert(func, krate, ("EcvVerdict", "into_verdict"), &call);
    let adapter = quote! {
        fn __cluster2_ecv_validator(__status: u16, __body: &[u8]) -> bool {
            #pointer
            #convert
        }
    };
    register(krate, func, "ECV_VALIDATOR", "EcvValidatorFn", &adapter)
}

fn should_kill(func: &ItemFn, krate: &TokenStream) -> TokenStream {
    let (pointer, should_kill) = pointer(func, "__should_kill", &quote!(&#krate::Heartbeat));
    let call = quote!(#should_kill(__heartbeat));
    let convert = convert(func, krate, ("KillVerdict", "into_verdict"), &call);
    let adapter = quote! {
        fn __cluster2_should_kill(__heartbeat: &#krate::Heartbeat) -> bool {
            #pointer
            #convert
        }
    };
    register(krate, func, "SHOULD_KILL", "ShouldKillFn", &adapter)
}
