//! Declarative macros that write the typed model's structs and enums together with
//! their decoders, so a field's Rust name, its Istio name and its type are stated once.

/// Defines a struct of Istio fields and its [`Decode`](super::decode::Decode) impl.
///
/// ```text
/// istio_struct! {
///     /// docs
///     pub struct HttpRetry check check_retry {
///         /// docs
///         attempts: Option<i32> = "attempts",
///     }
/// }
/// ```
///
/// Each field is read with [`Obj::field`](super::decode::Obj::field) under its
/// lowerCamelCase name; `check` (optional) names a `fn(&mut Self, &mut Obj)` run after
/// the fields are decoded, for rules that involve several fields.
macro_rules! istio_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(check $check:path)? {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The Istio (lowerCamelCase) names of this object's fields.
            pub const FIELDS: &'static [&'static str] = &[$($key),*];
        }

        impl $crate::config::decode::Decode for $name {
            fn decode(
                d: &mut $crate::config::decode::Decoder<'_>,
                node: &$crate::config::yaml::Node<'_>,
            ) -> Option<Self> {
                d.object(node, |o| {
                    #[allow(unused_mut)]
                    let mut v = $name { $( $field: o.field($key), )* };
                    $( $check(&mut v, o); )?
                    v
                })
            }
        }
    };
}

/// Defines an Istio enum (a string with a fixed set of values) and its decoder.
macro_rules! istio_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
        }

        impl $name {
            /// Every value with its Istio spelling.
            pub const ALL: &'static [(&'static str, $name)] = &[$( ($text, $name::$variant), )*];

            /// The Istio spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl $crate::config::decode::Decode for $name {
            fn decode(
                d: &mut $crate::config::decode::Decoder<'_>,
                node: &$crate::config::yaml::Node<'_>,
            ) -> Option<Self> {
                d.enum_value(node, Self::ALL)
            }
        }
    };
}
