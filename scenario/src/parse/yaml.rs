//! A small position-keeping decoder over `saphyr`'s marked YAML nodes.
//!
//! [`Ctx`] collects [`Finding`]s (never stopping at the first) and a position table
//! (field path → line) that validation uses later to point at the line of a
//! reference. [`At`] is a node with its field path and line; [`Map`] reads a mapping
//! as a struct, reporting keys nobody asked for as unknown fields with the closest
//! known name. The node helpers are mesh-core's `config::yaml`; its Istio decoder is
//! not reused, being tied to Istio's conventions (snake_case aliases, strict strings).

use std::collections::BTreeMap;

use mesh_core::config::Finding;
use saphyr::{Scalar, YamlData};

// The generic node layer is mesh-core's (the Istio decoder reads its files with the
// same helpers); this module adds what the scenario decoder needs on top.
pub(crate) use mesh_core::config::yaml::{
    Node, as_str, describe, entries, is_null, items, line, load_stream, scalar_text, untagged,
};

/// A number scalar (integer or float).
pub(crate) fn as_number(node: &Node<'_>) -> Option<f64> {
    match &untagged(node).data {
        YamlData::Value(Scalar::Integer(i)) => Some(*i as f64),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.0),
        _ => None,
    }
}

/// An integer scalar.
pub(crate) fn as_int(node: &Node<'_>) -> Option<i64> {
    match &untagged(node).data {
        YamlData::Value(Scalar::Integer(i)) => Some(*i),
        _ => None,
    }
}

/// True for a sequence node.
pub(crate) fn is_list(node: &Node<'_>) -> bool {
    items(node).is_some()
}

/// True for a mapping node.
pub(crate) fn is_map(node: &Node<'_>) -> bool {
    entries(node).is_some()
}

/// The known name closest to `name` (case-insensitive edit distance).
pub(crate) fn closest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    let lower = name.to_ascii_lowercase();
    known
        .map(|k| {
            let d = strsim::damerau_levenshtein(&lower, &k.to_ascii_lowercase());
            (d, k)
        })
        .min_by_key(|(d, k)| (*d, *k))
        .map(|(_, k)| k)
}

// === impl Ctx ===

/// The file being decoded, its findings and its position table.
#[derive(Debug)]
pub(crate) struct Ctx<'f> {
    pub(crate) file: &'f str,
    pub(crate) findings: Vec<Finding>,
    pub(crate) positions: BTreeMap<String, u32>,
}

impl<'f> Ctx<'f> {
    pub(crate) fn new(file: &'f str) -> Self {
        Ctx {
            file,
            findings: Vec::new(),
            positions: BTreeMap::new(),
        }
    }

    /// An error about the node at `at`.
    pub(crate) fn error(&mut self, at: &At<'_>, message: impl Into<String>) {
        self.error_at(at.line, &at.path, message);
    }

    /// An error at an explicit line and path.
    pub(crate) fn error_at(&mut self, line: u32, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { "(document)" } else { path };
        self.findings
            .push(Finding::error(self.file, line, path, message));
    }

    /// A warning about the node at `at`.
    pub(crate) fn warning(&mut self, at: &At<'_>, message: impl Into<String>) {
        self.findings
            .push(Finding::warning(self.file, at.line, &at.path, message));
    }

    /// True when an error has been reported.
    pub(crate) fn has_errors(&self) -> bool {
        self.findings.iter().any(Finding::is_error)
    }
}

// === impl At ===

/// A node, its field path (`spec.workload[0].rate`) and its line (the key's line
/// for a field, the item's line for a list item).
#[derive(Debug, Clone)]
pub(crate) struct At<'a> {
    pub(crate) node: &'a Node<'a>,
    pub(crate) path: String,
    pub(crate) line: u32,
}

impl<'a> At<'a> {
    /// The document root.
    pub(crate) fn root(node: &'a Node<'a>) -> Self {
        At {
            node,
            path: String::new(),
            line: line(node),
        }
    }

    /// The items of a list node (an error, and none, for anything else).
    pub(crate) fn items(&self, cx: &mut Ctx<'_>) -> Vec<At<'a>> {
        let Some(items) = items(self.node) else {
            let found = describe(self.node);
            cx.error(
                self,
                format!("expected a list, found {found} (write `- item` entries or `[a, b]`)"),
            );
            return Vec::new();
        };
        items
            .iter()
            .enumerate()
            .map(|(i, node)| {
                let at = At {
                    node,
                    path: format!("{}[{i}]", self.path),
                    line: line(node),
                };
                cx.positions.entry(at.path.clone()).or_insert(at.line);
                at
            })
            .collect()
    }

    /// The node as a struct with the given field names; see [`Map`].
    pub(crate) fn map(&self, cx: &mut Ctx<'_>, fields: &[&'static str]) -> Option<Map<'a>> {
        Map::read(cx, self, fields, true)
    }

    /// The node as a map of user keys (`versions`, `labels`, `headers`): every key is
    /// accepted; each value is returned with its path.
    pub(crate) fn user_map(&self, cx: &mut Ctx<'_>) -> Vec<(String, At<'a>)> {
        Map::read(cx, self, &[], false)
            .map(|m| {
                m.entries
                    .iter()
                    .map(|(k, key_line, node)| {
                        let plain = !k.is_empty()
                            && k.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                        let path = if plain {
                            join(&self.path, k)
                        } else {
                            format!("{}[{k:?}]", self.path)
                        };
                        cx.positions.entry(path.clone()).or_insert(*key_line);
                        let at = At {
                            node,
                            path,
                            line: *key_line,
                        };
                        (k.clone(), at)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

// === impl Map ===

/// A mapping read as a struct: its entries by name.
#[derive(Debug)]
pub(crate) struct Map<'a> {
    pub(crate) at: At<'a>,
    entries: Vec<(String, u32, &'a Node<'a>)>,
    unknown: usize,
}

impl<'a> Map<'a> {
    fn read(cx: &mut Ctx<'_>, at: &At<'a>, fields: &[&'static str], strict: bool) -> Option<Self> {
        let mut entries = Vec::new();
        let mut unknown = 0;
        if !is_null(at.node) {
            let Some(raw) = entries_of(at.node) else {
                let found = describe(at.node);
                cx.error(
                    at,
                    format!("expected a mapping, found {found} (write `key: value` fields)"),
                );
                return None;
            };
            for (k, v) in raw {
                let key_line = line(k);
                let Some(key) = scalar_text(k) else {
                    cx.error_at(key_line, &at.path, "a mapping key must be a plain name");
                    continue;
                };
                if strict && !fields.contains(&key.as_str()) {
                    let hint = match closest(&key, fields.iter().copied()) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => "this object takes no fields".to_owned(),
                    };
                    cx.error_at(
                        key_line,
                        &join(&at.path, &key),
                        format!("unknown field ({hint})"),
                    );
                    unknown += 1;
                    continue;
                }
                entries.push((key, key_line, v));
            }
        }
        Some(Map {
            at: at.clone(),
            entries,
            unknown,
        })
    }

    /// The field `name`, unless missing or `null`.
    pub(crate) fn get(&self, cx: &mut Ctx<'_>, name: &str) -> Option<At<'a>> {
        let (_, key_line, node) = self.entries.iter().find(|(k, _, _)| k == name)?;
        let path = join(&self.at.path, name);
        cx.positions.entry(path.clone()).or_insert(*key_line);
        if is_null(node) {
            return None;
        }
        Some(At {
            node,
            path,
            line: *key_line,
        })
    }

    /// True when `name` is present and not `null`.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, _, node)| k == name && !is_null(node))
    }

    /// True when a key was reported as an unknown field (so a "missing" error
    /// about the same mapping would only repeat it).
    pub(crate) fn had_unknown(&self) -> bool {
        self.unknown > 0
    }

    /// The present (non-null) fields among `names`.
    pub(crate) fn present<'n>(&self, names: &[&'n str]) -> Vec<&'n str> {
        names.iter().copied().filter(|n| self.has(n)).collect()
    }

    /// The path of field `name` below this mapping.
    pub(crate) fn path_of(&self, name: &str) -> String {
        join(&self.at.path, name)
    }

    /// Reports a missing required field at the mapping's line.
    pub(crate) fn missing(&self, cx: &mut Ctx<'_>, name: &str, hint: &str) {
        let path = self.path_of(name);
        cx.error_at(
            self.at.line,
            &path,
            format!("missing required field `{name}` ({hint})"),
        );
    }
}

fn entries_of<'n, 'a>(node: &'n Node<'a>) -> Option<Vec<(&'n Node<'a>, &'n Node<'a>)>> {
    entries(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_suggest_the_closest_field_and_paths_record_lines() {
        let text = "spec:\n  duraton: 5s\n  seed: 3\n";
        let docs = load_stream("f.yaml", text).expect("yaml");
        let mut cx = Ctx::new("f.yaml");
        let root = At::root(&docs[0]).map(&mut cx, &["spec"]).expect("map");
        let spec = root.get(&mut cx, "spec").expect("spec");
        let m = spec.map(&mut cx, &["duration", "seed"]).expect("map");
        assert!(m.has("seed") && !m.has("duration"));
        let seed = m.get(&mut cx, "seed").expect("seed");
        assert_eq!((seed.path.as_str(), seed.line), ("spec.seed", 3));
        assert_eq!(cx.findings.len(), 1);
        assert_eq!(
            cx.findings[0].to_string(),
            "f.yaml:2: spec.duraton: unknown field (did you mean `duration`?)"
        );
        assert_eq!(cx.positions.get("spec.seed"), Some(&3));
    }

    #[test]
    fn user_map_keys_are_quoted_when_not_plain() {
        let docs = load_stream("f", "a: 1\nx.y/z: 2\n").expect("yaml");
        let mut cx = Ctx::new("f");
        let m = At::root(&docs[0]).user_map(&mut cx);
        let paths: Vec<_> = m.iter().map(|(_, at)| at.path.clone()).collect();
        assert_eq!(paths, ["a", "[\"x.y/z\"]"]);
    }
}
