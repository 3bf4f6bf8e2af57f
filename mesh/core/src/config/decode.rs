//! Decoding YAML nodes into the typed model, collecting every problem on the way.
//!
//! A [`Decoder`] walks one document. It tracks the field path (`spec.http[0].route`),
//! records the line of every field it visits (the position table kept with each
//! resource, so later checks can still point at lines), and collects [`Finding`]s
//! instead of stopping at the first one. A value that cannot be decoded is reported
//! and left out; decoding carries on with its siblings.
//!
//! Structs are decoded through [`Decoder::object`] and [`Obj::field`]: each field a
//! struct asks for becomes a known name, and whatever keys were left over are
//! reported as unknown fields with the closest known name. Keys are accepted in
//! lowerCamelCase (Istio's JSON names) and in snake_case (the proto names, which
//! Istio's parser also accepts); map-valued user data (labels, header maps,
//! selectors) is never checked or renamed.

use std::collections::{BTreeMap, BTreeSet};

use super::finding::Finding;
use super::yaml::{self, Node};

/// Decodes a value from a node at the decoder's current path.
pub(crate) trait Decode: Sized {
    /// Returns `None` (after reporting why) when the node cannot be used.
    fn decode(d: &mut Decoder<'_>, node: &Node<'_>) -> Option<Self>;
}

/// How a struct field is filled from a present or absent key.
pub(crate) trait Field: Sized {
    /// The value when the key is missing (or `null`).
    fn absent() -> Self;
    /// The value decoded from a present, non-null node.
    fn present(d: &mut Decoder<'_>, node: &Node<'_>) -> Self;
}

/// Walks one YAML document, keeping the field path, the position table and the
/// findings.
#[derive(Debug)]
pub(crate) struct Decoder<'f> {
    file: &'f str,
    path: String,
    findings: Vec<Finding>,
    positions: BTreeMap<String, u32>,
}

impl<'f> Decoder<'f> {
    /// A decoder for a document of `file` (the display path).
    pub(crate) fn new(file: &'f str) -> Self {
        Decoder {
            file,
            path: String::new(),
            findings: Vec::new(),
            positions: BTreeMap::new(),
        }
    }

    /// The current field path (empty at the document root).
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// The findings and the position table collected so far.
    pub(crate) fn finish(self) -> (Vec<Finding>, BTreeMap<String, u32>) {
        (self.findings, self.positions)
    }

    /// Reports an error at the current path.
    pub(crate) fn error(&mut self, line: u32, message: impl Into<String>) {
        let path = self.display_path(&self.path);
        self.findings
            .push(Finding::error(self.file, line, &path, message));
    }

    /// Reports an error at `path` (a full path from the document root).
    pub(crate) fn error_at(&mut self, path: &str, line: u32, message: impl Into<String>) {
        let path = self.display_path(path);
        self.findings
            .push(Finding::error(self.file, line, &path, message));
    }

    fn display_path(&self, path: &str) -> String {
        if path.is_empty() {
            "(document)".to_owned()
        } else {
            path.to_owned()
        }
    }

    /// The recorded line of a full path, if it was visited.
    pub(crate) fn line_of(&self, path: &str) -> Option<u32> {
        self.positions.get(path).copied()
    }

    /// Runs `f` with `segment` appended to the path (a field name, `[3]`, or a map
    /// key), recording `line` for the new path.
    pub(crate) fn at<T>(
        &mut self,
        segment: &Segment<'_>,
        line: u32,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let len = self.path.len();
        segment.append_to(&mut self.path);
        self.positions.entry(self.path.clone()).or_insert(line);
        let out = f(self);
        self.path.truncate(len);
        out
    }

    /// Decodes a mapping node as a struct: `build` asks for each field by name with
    /// [`Obj::field`]; keys it never asked for are reported as unknown. A `null` node
    /// is an empty struct. Returns `None` if the node is not a mapping.
    pub(crate) fn object<T>(
        &mut self,
        node: &Node<'_>,
        build: impl FnOnce(&mut Obj<'_, '_, 'f>) -> T,
    ) -> Option<T> {
        let line = yaml::line(node);
        let raw = if yaml::is_null(node) {
            Vec::new()
        } else if let Some(entries) = yaml::entries(node) {
            entries
        } else {
            let found = yaml::describe(node);
            self.error(
                line,
                format!("expected a mapping, found {found} (write `key: value` fields)"),
            );
            return None;
        };
        let mut entries: Vec<Entry<'_, '_>> = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            let key_line = yaml::line(k);
            let Some(key) = yaml::scalar_text(k) else {
                self.error(
                    key_line,
                    "a mapping key must be a plain name (write `name: value`)",
                );
                continue;
            };
            let name = camel_case(&key);
            if let Some(first) = entries.iter().find(|e| e.name == name) {
                let msg = format!(
                    "field given twice, as `{}` and `{key}` (keep one)",
                    first.raw
                );
                self.at(&Segment::Key(&name), key_line, |d| d.error(key_line, msg));
                continue;
            }
            entries.push(Entry {
                name,
                raw: key,
                key_line,
                value: v,
            });
        }
        let mut obj = Obj {
            d: self,
            entries,
            known: BTreeSet::new(),
            line,
        };
        let out = build(&mut obj);
        let Obj {
            d, entries, known, ..
        } = obj;
        for e in entries.iter().filter(|e| !known.contains(e.name.as_str())) {
            let hint = match closest(&e.name, known.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None => "this object takes no fields".to_owned(),
            };
            let line = e.key_line;
            d.at(&Segment::Key(&e.raw), line, |d| {
                d.error(line, format!("unknown field ({hint})"))
            });
        }
        Some(out)
    }

    /// Decodes a string scalar that must be one of `allowed` (an Istio enum).
    pub(crate) fn enum_value<T: Copy>(
        &mut self,
        node: &Node<'_>,
        allowed: &[(&'static str, T)],
    ) -> Option<T> {
        let line = yaml::line(node);
        let Some(text) = yaml::as_str(node) else {
            let found = yaml::describe(node);
            let names = enum_names(allowed);
            self.error(line, format!("expected one of {names}, found {found}"));
            return None;
        };
        if let Some((_, v)) = allowed.iter().find(|(name, _)| *name == text) {
            return Some(*v);
        }
        let hint = match closest(text, allowed.iter().map(|(n, _)| *n)) {
            Some(best) => format!("did you mean `{best}`? one of {}", enum_names(allowed)),
            None => format!("one of {}", enum_names(allowed)),
        };
        self.error(line, format!("unknown value {text:?} ({hint})"));
        None
    }
}

fn enum_names<T>(allowed: &[(&'static str, T)]) -> String {
    allowed
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One step of a field path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Segment<'a> {
    /// A struct field: `.name`.
    Key(&'a str),
    /// A list item: `[3]`.
    Index(usize),
    /// A key of user data (labels, headers): `.app`, or `["a.b/c"]` when the key
    /// is not a plain name.
    MapKey(&'a str),
}

impl Segment<'_> {
    fn append_to(&self, path: &mut String) {
        use std::fmt::Write as _;
        match self {
            Segment::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
            }
            Segment::Index(i) => {
                let _ = write!(path, "[{i}]");
            }
            Segment::MapKey(k) => {
                let plain = !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if plain {
                    Segment::Key(k).append_to(path);
                } else {
                    let _ = write!(path, "[{k:?}]");
                }
            }
        }
    }
}

#[derive(Debug)]
struct Entry<'n, 'a> {
    /// Canonical (lowerCamelCase) name.
    name: String,
    /// As written.
    raw: String,
    key_line: u32,
    value: &'n Node<'a>,
}

/// A mapping being decoded as a struct; see [`Decoder::object`].
#[derive(Debug)]
pub(crate) struct Obj<'o, 'n, 'f> {
    /// The decoder, for checks that report problems.
    pub(crate) d: &'o mut Decoder<'f>,
    entries: Vec<Entry<'n, 'n>>,
    known: BTreeSet<&'static str>,
    line: u32,
}

impl Obj<'_, '_, '_> {
    /// The field `name` (lowerCamelCase, as Istio documents it); a missing or `null`
    /// key gives [`Field::absent`].
    pub(crate) fn field<T: Field>(&mut self, name: &'static str) -> T {
        self.known.insert(name);
        let Some(e) = self.entries.iter().find(|e| e.name == name) else {
            return T::absent();
        };
        let (line, value) = (e.key_line, e.value);
        self.d.at(&Segment::Key(name), line, |d| {
            if yaml::is_null(value) {
                T::absent()
            } else {
                T::present(d, value)
            }
        })
    }

    /// Marks `name` as a known field without decoding it (a field meshrig accepts
    /// and ignores).
    pub(crate) fn ignore(&mut self, name: &'static str) {
        self.known.insert(name);
    }

    /// True if the key `name` is present and not `null`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.name == name && !yaml::is_null(e.value))
    }

    /// Line of the mapping itself.
    pub(crate) fn line(&self) -> u32 {
        self.line
    }

    /// Reports an error about the whole object.
    pub(crate) fn error(&mut self, message: impl Into<String>) {
        let line = self.line;
        self.d.error(line, message);
    }

    /// Reports an error at `relative` (`weight`, `route[1].weight`) below this object,
    /// at the line recorded for it (or the object's line).
    pub(crate) fn error_at(&mut self, relative: &str, message: impl Into<String>) {
        let full = self.join(relative);
        let line = self.d.line_of(&full).unwrap_or(self.line);
        self.d.error_at(&full, line, message);
    }

    /// The full path of `relative` below this object.
    pub(crate) fn join(&self, relative: &str) -> String {
        let base = self.d.path();
        if base.is_empty() {
            relative.to_owned()
        } else if relative.starts_with('[') {
            format!("{base}{relative}")
        } else {
            format!("{base}.{relative}")
        }
    }
}

/// `per_try_timeout` → `perTryTimeout`; names without `_` are returned unchanged.
pub(crate) fn camel_case(name: &str) -> String {
    if !name.contains('_') {
        return name.to_owned();
    }
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The known name closest to `name` (case-insensitive edit distance), if any.
pub(crate) fn closest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| {
            (
                strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase()),
                k,
            )
        })
        .min_by_key(|(dist, k)| (*dist, *k))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_becomes_lower_camel_case() {
        assert_eq!(camel_case("per_try_timeout"), "perTryTimeout");
        assert_eq!(camel_case("perTryTimeout"), "perTryTimeout");
        assert_eq!(camel_case("consecutive_5xx_errors"), "consecutive5xxErrors");
        assert_eq!(
            camel_case("http1_max_pending_requests"),
            "http1MaxPendingRequests"
        );
        assert_eq!(camel_case("_x"), "x");
    }

    #[test]
    fn closest_known_name_wins() {
        let known = ["perTryTimeout", "attempts", "retryOn"];
        assert_eq!(
            closest("perTryTimout", known.into_iter()),
            Some("perTryTimeout")
        );
        assert_eq!(closest("attempt", known.into_iter()), Some("attempts"));
        assert_eq!(closest("x", std::iter::empty()), None);
    }

    #[test]
    fn paths_quote_keys_that_are_not_plain_names() {
        let mut p = String::from("metadata");
        Segment::MapKey("sidecar.istio.io/inject").append_to(&mut p);
        assert_eq!(p, r#"metadata["sidecar.istio.io/inject"]"#);
        let mut p = String::from("spec.hosts");
        Segment::Index(2).append_to(&mut p);
        Segment::Key("x").append_to(&mut p);
        assert_eq!(p, "spec.hosts[2].x");
    }
}
