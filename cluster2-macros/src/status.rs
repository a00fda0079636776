//! `#[status("name")]` and `#[status("name", update = f)]`: parse the name and the update →
//! check that the function is a view (no arguments, sync, returns something) → re-emit it
//! unchanged with one hidden `StatusRegistration` in `cluster2::__private::STATUS`.

use proc_macro2::{Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ItemFn, LitStr, ReturnType, Token};

use crate::args::{self, Args};
use crate::errors::Errors;
use crate::register::{self, respan};

const SHAPE: &str = "`#[cluster2::status(\"connections\")] fn connections() -> u64`";

/// What `#[status(...)]` said.
struct StatusArgs {
    name: Option<LitStr>,
    /// The path of the update function.
    update: Option<syn::ExprPath>,
    args: Args,
}

pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let status = parse_args(attr, &mut errors);
    let func: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                format!("#[cluster2::status] goes on a function that returns the status: {SHAPE}"),
            ));
            let errors = errors.into_compile_errors();
            return quote! { #item #errors };
        }
    };
    let signature_ok = check_signature(&func, &mut errors);
    // Without a name or a usable view there is nothing to register; the function alone keeps
    // its body checked. A bad `update` or `crate` does not stop the registration, so that the
    // view's types are checked in the same build.
    let registration = match (&status.name, signature_ok) {
        (Some(name), true) => registration(&func, name, &status),
        _ => TokenStream::new(),
    };
    let errors = errors.into_compile_errors();
    quote! { #func #registration #errors }
}

/// Parses the name (a string literal), `update = path` and `crate = "..."`, in any order.
fn parse_args(tokens: TokenStream, errors: &mut Errors) -> StatusArgs {
    let mut name = None;
    let mut given = false;
    // syn's parser of `key = value` lists rejects a literal, wherever the name is.
    let (literals, tokens) = standalone_literals(tokens);
    let mut rest = TokenStream::new();
    // What is left may start with a name that is not a literal: `#[status(connections)]`.
    let positional = |input: ParseStream<'_>| -> syn::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let named = (input.peek(syn::Ident) || input.peek(Token![crate]))
            && (input.peek2(Token![=]) || input.peek2(syn::token::Paren));
        if !named {
            given = true;
            let value: Expr = input.parse()?;
            name = check_name(&value, errors);
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        rest = input.parse()?;
        Ok(())
    };
    if let Err(e) = positional.parse2(tokens) {
        errors.push(e);
    }
    for literal in literals {
        let value = Expr::Lit(syn::ExprLit {
            attrs: Vec::new(),
            lit: syn::Lit::new(literal),
        });
        if given {
            errors.push(syn::Error::new_spanned(
                value,
                "#[cluster2::status] takes one name; register another status with another \
                 function",
            ));
            continue;
        }
        given = true;
        name = check_name(&value, errors);
    }

    let mut update: Option<syn::ExprPath> = None;
    let mut args = Args::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            return args::parse_crate(&meta, &mut args.krate, errors);
        }
        if !meta.path.is_ident("update") {
            errors.push(args::not_an_argument(
                &meta.path,
                "status",
                "the status's name, `update = function` and `crate = \"...\"`",
            ));
            return args::skip_value(&meta);
        }
        if !meta.input.peek(Token![=]) {
            errors.push(syn::Error::new_spanned(
                &meta.path,
                "`update` takes the function that changes the status: write \
                 `update = set_level`, where `fn set_level(value: U) -> R`",
            ));
            return args::skip_value(&meta);
        }
        let value: Expr = meta.value()?.parse()?;
        match value {
            _ if update.is_some() => errors.push(syn::Error::new_spanned(
                &meta.path,
                "`update` is given twice: a status has one update function",
            )),
            Expr::Path(path) => update = Some(path),
            other => errors.push(syn::Error::new_spanned(
                other,
                "`update` takes the name of a function, like `update = set_level`, where \
                 `fn set_level(value: U) -> R` with `U: Deserialize` and `R: Serialize`",
            )),
        }
        Ok(())
    });
    if let Err(e) = parser.parse2(rest) {
        errors.push(e);
    }
    if !given {
        errors.push(syn::Error::new(
            Span::call_site(),
            format!("#[cluster2::status] needs the status's name: {SHAPE}"),
        ));
    }
    StatusArgs { name, update, args }
}

/// The literals that are whole arguments (`"name"` in `"name", update = f`), and the other
/// arguments. A literal inside an argument's value stays where it is.
fn standalone_literals(tokens: TokenStream) -> (Vec<Literal>, TokenStream) {
    let mut arguments: Vec<Vec<TokenTree>> = vec![Vec::new()];
    for token in tokens {
        match &token {
            TokenTree::Punct(p) if p.as_char() == ',' => arguments.push(Vec::new()),
            _ => arguments.last_mut().expect("never empty").push(token),
        }
    }
    let mut literals = Vec::new();
    let mut rest = Vec::new();
    for argument in arguments {
        match argument.as_slice() {
            [TokenTree::Literal(literal)] => literals.push(literal.clone()),
            // A trailing comma.
            [] => {}
            _ => rest.push(argument.into_iter().collect::<TokenStream>()),
        }
    }
    let rest = rest.into_iter().enumerate().map(|(i, argument)| {
        let comma = (i > 0).then(|| quote!(,));
        quote!(#comma #argument)
    });
    (literals, rest.collect())
}

/// The name if `value` is a usable one; otherwise the error is added to `errors`.
fn check_name(value: &Expr, errors: &mut Errors) -> Option<LitStr> {
    // What a `macro_rules!` `$name:expr` fragment arrives as.
    if let Expr::Group(group) = value {
        return check_name(&group.expr, errors);
    }
    if let Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(name),
        ..
    }) = value
    {
        if name.value().trim().is_empty() {
            errors.push(syn::Error::new_spanned(
                name,
                "a status's name cannot be empty: it is how the status is read and set, as in \
                 `cluster2::status::get_status(\"connections\")`",
            ));
            return None;
        }
        return Some(name.clone());
    }
    let message = match value {
        // `#[status(connections)]`: the name, unquoted.
        Expr::Path(path) if path.path.get_ident().is_some() => {
            let ident = path.to_token_stream();
            format!(
                "the status's name is a string literal: write `#[cluster2::status(\"{ident}\")]`"
            )
        }
        _ => format!("the status's name is a string literal: {SHAPE}"),
    };
    errors.push(syn::Error::new_spanned(value, message));
    None
}

/// Whether the function is a view that can be registered; every problem is added to `errors`.
fn check_signature(func: &ItemFn, errors: &mut Errors) -> bool {
    let sig = &func.sig;
    let mut ok = register::check_free_fn(func, "status", SHAPE, errors);
    let mut fail = |err: syn::Error| {
        errors.push(err);
        ok = false;
    };
    if let Some(token) = &sig.asyncness {
        fail(syn::Error::new_spanned(
            token,
            "status views cannot be async: a view returns the status as it is now, and runs \
             on a blocking thread; remove `async`",
        ));
    }
    if !sig.inputs.is_empty() && !matches!(sig.inputs.first(), Some(syn::FnArg::Receiver(_))) {
        fail(syn::Error::new_spanned(
            &sig.inputs,
            "status views take no arguments: to let `cluster2::status::set_status` change the \
             status, add `update = function` to the attribute",
        ));
    }
    if matches!(sig.output, ReturnType::Default) {
        fail(syn::Error::new_spanned(
            &sig.ident,
            format!(
                "status views return the status, a value that implements `serde::Serialize`: \
                 {SHAPE}"
            ),
        ));
    }
    ok
}

fn registration(func: &ItemFn, name: &LitStr, status: &StatusArgs) -> TokenStream {
    let krate = status.args.krate();
    let view_fn = &func.sig.ident;
    let ReturnType::Type(_, ty) = &func.sig.output else {
        unreachable!("checked by check_signature")
    };
    // The call is spanned on the user's return type, so that an unmet `Serialize` bound lands
    // there; the view is called in a statement of its own, or the call's span would stretch
    // from the function's name to its return type.
    let private = respan(&krate, ty.span());
    let value = format_ident!("__view", span = ty.span());
    let convert = quote_spanned!(ty.span()=> #private::__private::status_view(#value));
    let view = quote! {
        let #value = #view_fn();
        #convert
    };
    let (update_fn, update) = match &status.update {
        Some(path) => {
            // Spanned on the path, so that a function of the wrong shape is reported there.
            let private = respan(&krate, path.span());
            let call = quote_spanned!(path.span()=>
                #private::__private::status_update(#path, __value)
            );
            (
                quote! {
                    #[doc(hidden)]
                    fn __cluster2_status_update(
                        __value: #krate::__private::Value,
                    ) -> ::core::result::Result<#krate::__private::Value, ::std::string::String> {
                        #call
                    }
                },
                quote!(::core::option::Option::Some(__cluster2_status_update)),
            )
        }
        None => (TokenStream::new(), quote!(::core::option::Option::None)),
    };
    quote! {
        const _: () = {
            #[doc(hidden)]
            fn __cluster2_status_view(
            ) -> ::core::result::Result<#krate::__private::Value, ::std::string::String> {
                #view
            }
            #update_fn
            #[#krate::__private::linkme::distributed_slice(#krate::__private::STATUS)]
            #[linkme(crate = #krate::__private::linkme)]
            #[doc(hidden)]
            static __CLUSTER2_STATUS: #krate::__private::StatusRegistration =
                #krate::__private::StatusRegistration {
                    name: #name,
                    file: ::core::file!(),
                    line: ::core::line!(),
                    view: __cluster2_status_view,
                    update: #update,
                };
        };
    }
}
