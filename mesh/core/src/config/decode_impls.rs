//! [`Decode`] and [`Field`] for the standard types the model is built from: strings,
//! booleans, integers, numbers, and `Option`, `Vec` and `BTreeMap` fields.
//!
//! Scalars are strict, as Kubernetes' schema validation is: a string field takes a
//! string (`"9000"`, not `9000`), an integer field an integer.

use std::collections::BTreeMap;

use super::decode::{Decode, Decoder, Field, Segment};
use super::yaml::{self, Node};
use saphyr::{Scalar, YamlData};

// === impl Field ===

impl<T: Decode> Field for Option<T> {
    fn absent() -> Self {
        None
    }
    fn present(d: &mut Decoder<'_>, node: &Node<'_>) -> Self {
        T::decode(d, node)
    }
}

/// A required string: empty when absent (the owning struct's check reports it).
impl Field for String {
    fn absent() -> Self {
        String::new()
    }
    fn present(d: &mut Decoder<'_>, node: &Node<'_>) -> Self {
        String::decode(d, node).unwrap_or_default()
    }
}

impl<T: Decode> Field for Vec<T> {
    fn absent() -> Self {
        Vec::new()
    }
    fn present(d: &mut Decoder<'_>, node: &Node<'_>) -> Self {
        let Some(items) = yaml::items(node) else {
            let found = yaml::describe(node);
            d.error(
                yaml::line(node),
                format!("expected a list, found {found} (write `- item` entries)"),
            );
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let line = yaml::line(item);
            if let Some(v) = d.at(&Segment::Index(i), line, |d| T::decode(d, item)) {
                out.push(v);
            }
        }
        out
    }
}

/// A key of a map field.
pub(crate) trait MapKey: Ord + Sized {
    fn from_key(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self>;
}

impl MapKey for String {
    fn from_key(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let text = yaml::scalar_text(node);
        if text.is_none() {
            d.error(yaml::line(node), "a map key must be a plain value");
        }
        text
    }
}

impl MapKey for u32 {
    fn from_key(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        let parsed = yaml::scalar_text(node).and_then(|t| t.parse::<u32>().ok());
        if parsed.is_none() {
            let found = yaml::describe(node);
            d.error(
                yaml::line(node),
                format!("expected a port number as key, found {found}"),
            );
        }
        parsed
    }
}

impl<K: MapKey + std::fmt::Display, V: Decode> Field for BTreeMap<K, V> {
    fn absent() -> Self {
        BTreeMap::new()
    }
    fn present(d: &mut Decoder<'_>, node: &Node<'_>) -> Self {
        let Some(entries) = yaml::entries(node) else {
            let found = yaml::describe(node);
            d.error(
                yaml::line(node),
                format!("expected a mapping, found {found} (write `key: value` entries)"),
            );
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let Some(key) = K::from_key(d, k) else {
                continue;
            };
            let name = key.to_string();
            let line = yaml::line(k);
            if let Some(value) = d.at(&Segment::MapKey(&name), line, |d| V::decode(d, v)) {
                out.insert(key, value);
            }
        }
        out
    }
}

// === impl Decode for scalars ===

fn integer(node: &Node<'_>) -> Option<i64> {
    match &yaml::untagged(node).data {
        YamlData::Value(Scalar::Integer(i)) => Some(*i),
        _ => None,
    }
}

impl Decode for String {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        if let Some(s) = yaml::as_str(node) {
            return Some(s.to_owned());
        }
        let found = yaml::describe(node);
        d.error(
            yaml::line(node),
            format!("expected a string, found {found} (quote it: \"...\")"),
        );
        None
    }
}

impl Decode for bool {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        if let YamlData::Value(Scalar::Boolean(b)) = &yaml::untagged(node).data {
            return Some(*b);
        }
        let found = yaml::describe(node);
        d.error(
            yaml::line(node),
            format!("expected true or false, found {found}"),
        );
        None
    }
}

/// Integers: any YAML integer that fits the target type, else one error saying what
/// was expected.
macro_rules! decode_integer {
    ($($ty:ty => $expected:literal),* $(,)?) => {$(
        impl Decode for $ty {
            fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
                if let Some(v) = integer(node).and_then(|i| <$ty>::try_from(i).ok()) {
                    return Some(v);
                }
                let found = yaml::describe(node);
                d.error(yaml::line(node), format!(concat!("expected ", $expected, ", found {}"), found));
                None
            }
        }
    )*};
}

decode_integer! {
    u32 => "a non-negative integer",
    u64 => "a non-negative integer",
    i32 => "an integer",
}

impl Decode for f64 {
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self> {
        match &yaml::untagged(node).data {
            YamlData::Value(Scalar::FloatingPoint(f)) if f.0.is_finite() => Some(f.0),
            #[allow(clippy::cast_precision_loss)]
            YamlData::Value(Scalar::Integer(i)) => Some(*i as f64),
            _ => {
                let found = yaml::describe(node);
                d.error(
                    yaml::line(node),
                    format!("expected a number, found {found}"),
                );
                None
            }
        }
    }
}
