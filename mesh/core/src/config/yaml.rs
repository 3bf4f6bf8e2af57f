//! YAML streams with positions: a thin layer over `saphyr`'s [`MarkedYaml`].
//!
//! `saphyr` keeps a span for every node (keys included), which is what lets a problem
//! found long after parsing still point at its line. This module loads a multi-document
//! stream and offers the few node queries the decoder needs; it knows nothing about
//! Istio (the scenario format reads its files with it too).

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::finding::Finding;

/// A YAML node with its span.
pub type Node<'a> = MarkedYaml<'a>;

/// Parses every document of a YAML stream. A syntax error anywhere fails the whole
/// file (as `kubectl apply` would), reported at the line the parser stopped on.
pub fn load_stream<'a>(file: &str, contents: &'a str) -> Result<Vec<Node<'a>>, Finding> {
    MarkedYaml::load_from_str(contents).map_err(|e| {
        let line = u32::try_from(e.marker().line()).unwrap_or(u32::MAX).max(1);
        Finding::error(
            file,
            line,
            "(yaml)",
            format!("invalid YAML: {} (fix the YAML syntax)", e.info()),
        )
    })
}

/// The node behind any `!!tag`.
pub fn untagged<'n, 'a>(node: &'n Node<'a>) -> &'n Node<'a> {
    match &node.data {
        YamlData::Tagged(_, inner) => untagged(inner),
        _ => node,
    }
}

/// 1-based line where `node` starts.
pub fn line(node: &Node<'_>) -> u32 {
    u32::try_from(node.span.start.line())
        .unwrap_or(u32::MAX)
        .max(1)
}

/// True for `null`, `~`, an empty value, or a missing document body.
pub fn is_null(node: &Node<'_>) -> bool {
    matches!(
        untagged(node).data,
        YamlData::Value(Scalar::Null) | YamlData::BadValue
    )
}

/// The string value of a scalar string node.
pub fn as_str<'n>(node: &'n Node<'_>) -> Option<&'n str> {
    match &untagged(node).data {
        YamlData::Value(Scalar::String(s)) => Some(s.as_ref()),
        YamlData::Representation(s, _, _) => Some(s.as_ref()),
        _ => None,
    }
}

/// A scalar rendered as text (strings as-is, numbers and booleans in YAML form).
/// `None` for collections and null.
pub fn scalar_text(node: &Node<'_>) -> Option<String> {
    match &untagged(node).data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Value(Scalar::Integer(i)) => Some(i.to_string()),
        YamlData::Value(Scalar::FloatingPoint(f)) => Some(f.0.to_string()),
        YamlData::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        YamlData::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

/// The entries of a mapping node, in document order.
pub fn entries<'n, 'a>(node: &'n Node<'a>) -> Option<Vec<(&'n Node<'a>, &'n Node<'a>)>> {
    match &untagged(node).data {
        YamlData::Mapping(m) => Some(m.iter().collect()),
        _ => None,
    }
}

/// The items of a sequence node.
pub fn items<'n, 'a>(node: &'n Node<'a>) -> Option<&'n [Node<'a>]> {
    match &untagged(node).data {
        YamlData::Sequence(s) => Some(s.as_slice()),
        _ => None,
    }
}

/// The value under string key `key` of a mapping node.
pub fn get<'n, 'a>(node: &'n Node<'a>, key: &str) -> Option<&'n Node<'a>> {
    entries(node)?
        .into_iter()
        .find(|(k, _)| as_str(k) == Some(key))
        .map(|(_, v)| v)
}

/// What kind of node this is, for messages: `a string "x"`, `an integer 5`, `a mapping`.
pub fn describe(node: &Node<'_>) -> String {
    match &untagged(node).data {
        YamlData::Value(Scalar::String(s)) => format!("the string {s:?}"),
        YamlData::Representation(s, _, _) => format!("the string {s:?}"),
        YamlData::Value(Scalar::Integer(i)) => format!("the integer {i}"),
        YamlData::Value(Scalar::FloatingPoint(f)) => format!("the number {}", f.0),
        YamlData::Value(Scalar::Boolean(b)) => format!("the boolean {b}"),
        YamlData::Value(Scalar::Null) | YamlData::BadValue => "null".to_owned(),
        YamlData::Sequence(_) => "a list".to_owned(),
        YamlData::Mapping(_) => "a mapping".to_owned(),
        YamlData::Tagged(..) | YamlData::Alias(_) => "a tagged value".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_and_lines_are_kept() {
        let text = "a: 1\n---\n# c\nkind: X\nspec:\n  hosts:\n  - h\n";
        let docs = load_stream("f", text).expect("valid");
        assert_eq!(docs.len(), 2);
        let spec = get(&docs[1], "spec").expect("spec");
        let hosts = get(spec, "hosts").expect("hosts");
        assert_eq!(line(&items(hosts).expect("seq")[0]), 7);
        let (k, _) = entries(&docs[1]).expect("map")[0];
        assert_eq!((as_str(k), line(k)), (Some("kind"), 4));
    }

    #[test]
    fn syntax_error_points_at_a_line() {
        let err = load_stream("f.yaml", "a: 1\nb: [1, 2\n").expect_err("invalid");
        assert_eq!(err.path, "(yaml)");
        assert!(err.line >= 2, "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_a_syntax_error() {
        assert!(load_stream("f", "a: 1\na: 2\n").is_err());
    }

    #[test]
    fn describes_values_for_messages() {
        let docs = load_stream("f", "[x, 5, 1.5, true, ~, {}]").expect("valid");
        let all: Vec<String> = items(&docs[0]).expect("seq").iter().map(describe).collect();
        assert_eq!(
            all,
            [
                "the string \"x\"",
                "the integer 5",
                "the number 1.5",
                "the boolean true",
                "null",
                "a mapping"
            ]
        );
    }
}
