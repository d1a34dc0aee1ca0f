//! The `#[storable]` attribute of [speedup-paged](https://docs.rs/speedup-paged): one line that
//! makes a struct or enum storable in a `DiskDict` or `DiskList`.
//!
//! It adds rkyv's `Archive`, `Serialize` and `Deserialize` derives (pointed at the rkyv that
//! speedup-paged re-exports, so users need no rkyv dependency of their own) and an
//! implementation of `speedup_paged::Schema` that describes the type by its **structure**:
//! field names and field types, recursively, in declaration order. The type's name and module
//! are not part of it, so moving or renaming the type keeps its stores readable, while any
//! change to its fields is caught when a store is opened.
//!
//! Use it through speedup-paged (`#[speedup_paged::storable]`), not directly; its docs hold
//! the examples. Arguments:
//! - `version = N`: marks an intentional change of the type; stores written with another
//!   version refuse to open (`Error::TypeMismatch`) even if the fields happen to match.
//! - `crate = path`: where speedup-paged is, if it cannot be found from `Cargo.toml` (it is
//!   found under its own name or as `pyspeedup::paged`).

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::{Data, DeriveInput, Fields, LitInt, Path, parse_macro_input, parse_quote};

/// Makes a struct or enum storable in speedup-paged's `DiskDict` and `DiskList`: derives
/// rkyv's `Archive`, `Serialize`, `Deserialize` and speedup-paged's structural `Schema`.
///
/// See `speedup_paged::storable` for examples.
#[proc_macro_attribute]
pub fn storable(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut version: Option<u64> = None;
    let mut krate: Option<Path> = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("version") {
            version = Some(meta.value()?.parse::<LitInt>()?.base10_parse()?);
            Ok(())
        } else if meta.path.is_ident("crate") {
            krate = Some(meta.value()?.parse()?);
            Ok(())
        } else {
            Err(meta.error("expected `version = N` or `crate = path`"))
        }
    });
    parse_macro_input!(args with parser);
    let input = parse_macro_input!(item as DeriveInput);
    let krate = krate.unwrap_or_else(crate_path);
    match expand(&input, &krate, version) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// How the calling crate reaches speedup-paged.
fn crate_path() -> Path {
    use proc_macro_crate::{FoundCrate, crate_name};
    match crate_name("speedup-paged") {
        // Inside speedup-paged, and in its tests and doctests (which share its package name
        // but are other crates): the lib declares `extern crate self as speedup_paged`.
        Ok(FoundCrate::Itself) => parse_quote!(::speedup_paged),
        Ok(FoundCrate::Name(name)) => {
            let ident = syn::Ident::new(&name, proc_macro2::Span::call_site());
            parse_quote!(::#ident)
        }
        Err(_) => match crate_name("pyspeedup") {
            Ok(FoundCrate::Name(name)) => {
                let ident = syn::Ident::new(&name, proc_macro2::Span::call_site());
                parse_quote!(::#ident::paged)
            }
            _ => parse_quote!(::speedup_paged),
        },
    }
}

fn expand(input: &DeriveInput, krate: &Path, version: Option<u64>) -> syn::Result<TokenStream2> {
    let body = match &input.data {
        Data::Struct(s) => {
            let mut out = vec![quote!(out.text("struct");)];
            out.extend(describe_fields(&s.fields));
            out
        }
        Data::Enum(e) => {
            let mut out = vec![quote!(out.text("enum{");)];
            for (i, variant) in e.variants.iter().enumerate() {
                if i > 0 {
                    out.push(quote!(out.text(",");));
                }
                let name = variant.ident.unraw().to_string();
                out.push(quote!(out.text(#name);));
                if let Some((_, discriminant)) = &variant.discriminant {
                    let text = format!("={}", discriminant.to_token_stream());
                    out.push(quote!(out.text(#text);));
                }
                out.extend(describe_fields(&variant.fields));
            }
            out.push(quote!(out.text("}");));
            out
        }
        Data::Union(u) => {
            return Err(syn::Error::new(
                u.union_token.span,
                "#[storable] supports structs and enums; rkyv cannot archive unions",
            ));
        }
    };
    let version = version.map(|v| {
        let text = format!("v{v} ");
        quote!(out.text(#text);)
    });

    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(parse_quote!(#krate::Schema));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let name = &input.ident;
    let rkyv = quote!(#krate::rkyv);
    let crate_attr = crate_attr_string(krate);
    let crate_attr: TokenStream2 = crate_attr.parse()?;
    Ok(quote! {
        #[derive(#rkyv::Archive, #rkyv::Serialize, #rkyv::Deserialize)]
        #[rkyv(#crate_attr)]
        // The archived twin rkyv generates is public API only by necessity: keep crates
        // that deny these lints building.
        #[rkyv(attr(allow(missing_docs, missing_debug_implementations)))]
        #input

        impl #impl_generics #krate::Schema for #name #ty_generics #where_clause {
            fn describe(out: &mut #krate::SchemaWriter) {
                #version
                #(#body)*
            }
        }
    })
}

fn crate_attr_string(krate: &Path) -> String {
    format!("crate = {}::rkyv", krate.to_token_stream())
}

/// `{name:type,...}` for named fields, `(type,...)` for tuple fields, nothing for unit.
/// A field's own `#[rkyv(...)]` attributes (`with = ...` wrappers) change its archived form,
/// so they are part of the description too.
fn describe_fields(fields: &Fields) -> Vec<TokenStream2> {
    let (open, close) = match fields {
        Fields::Named(_) => ("{", "}"),
        Fields::Unnamed(_) => ("(", ")"),
        Fields::Unit => return Vec::new(),
    };
    let mut out = vec![quote!(out.text(#open);)];
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(quote!(out.text(",");));
        }
        if let Some(ident) = &field.ident {
            let label = format!("{}:", ident.unraw());
            out.push(quote!(out.text(#label);));
        }
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("rkyv")) {
            let text = format!("#[{}] ", attr.meta.to_token_stream());
            out.push(quote!(out.text(#text);));
        }
        let ty = &field.ty;
        out.push(quote!(out.type_of::<#ty>();));
    }
    out.push(quote!(out.text(#close);));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse::Parser;

    fn expand_str(src: &str, version: Option<u64>) -> String {
        let input: DeriveInput = syn::parse_str(src).unwrap();
        expand(&input, &parse_quote!(::speedup_paged), version).unwrap().to_string()
    }

    #[test]
    fn named_fields_describe_names_and_types_in_order() {
        let out = expand_str("struct Rec { id: u32, r#type: String }", None);
        assert!(out.contains("out . text (\"id:\")"), "{out}");
        assert!(out.contains("out . text (\"type:\")"), "raw identifiers lose their r#: {out}");
        assert!(out.contains("type_of :: < u32 >"), "{out}");
        assert!(out.contains("crate = :: speedup_paged :: rkyv"), "{out}");
    }

    #[test]
    fn versions_and_enums() {
        let out = expand_str("enum E { A, B(u8), C { x: i32 } }", Some(3));
        assert!(out.contains("\"v3 \""), "{out}");
        assert!(out.contains("\"enum{\""), "{out}");
    }

    #[test]
    fn unions_are_refused() {
        let input: DeriveInput = syn::parse_str("union U { a: u32 }").unwrap();
        assert!(expand(&input, &parse_quote!(::speedup_paged), None).is_err());
    }

    #[test]
    fn arguments_parse() {
        let mut version = None;
        let parser = syn::meta::parser(|meta| {
            version = Some(meta.value()?.parse::<LitInt>()?.base10_parse::<u64>()?);
            Ok(())
        });
        parser.parse2(quote!(version = 7)).unwrap();
        assert_eq!(version, Some(7));
    }
}
