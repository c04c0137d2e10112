//! Typed access to YAML nodes. Every value that does not have the expected
//! shape is recorded as an error at its position, and decoding goes on so that
//! one pass over a file finds all of its problems.

use std::path::Path;
use std::time::Duration;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};
use marked_yaml::{Node, Span};

use super::DagError;
use super::schedule::{self, ScheduleError};

/// How deep YAML may nest; deeper files are rejected before they are walked.
pub(super) const MAX_DEPTH: usize = 64;

/// A 1-based position in a DAG file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    /// The start of a node; the first character of the file when the parser
    /// gave no position.
    pub fn of(span: &Span) -> Pos {
        span.start().map_or(Pos { line: 1, column: 1 }, |m| Pos {
            line: m.line().max(1),
            column: m.column().max(1),
        })
    }
}

/// Where a mapping is: its first key, since the parser places the start of a
/// block mapping after that key.
pub(super) fn mapping_pos(map: &MarkedMappingNode) -> Pos {
    map.keys()
        .next()
        .map_or_else(|| Pos::of(map.span()), |k| Pos::of(k.span()))
}

/// Where a node is, with the same care for mappings as [`mapping_pos`].
pub(super) fn node_pos(node: &Node) -> Pos {
    match node {
        Node::Mapping(map) => mapping_pos(map),
        _ => Pos::of(node.span()),
    }
}

/// The errors found so far in one file.
pub(super) struct Diag<'f> {
    file: &'f Path,
    pub errors: Vec<DagError>,
}

impl<'f> Diag<'f> {
    pub fn new(file: &'f Path) -> Self {
        Diag {
            file,
            errors: Vec::new(),
        }
    }

    /// Records an error without a hint.
    pub fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.error_hint(pos, message, None);
    }

    /// Records an error with an optional hint.
    pub fn error_hint(&mut self, pos: Pos, message: impl Into<String>, hint: Option<String>) {
        self.errors.push(DagError {
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint,
        });
    }

    /// The errors in file order.
    pub fn into_sorted(mut self) -> Vec<DagError> {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors
    }
}

/// One `key: value` entry of a mapping.
#[derive(Clone, Copy)]
pub(super) struct Field<'n> {
    pub key: &'n MarkedScalarNode,
    pub value: &'n Node,
}

impl<'n> Field<'n> {
    pub fn name(&self) -> &'n str {
        self.key.as_str()
    }

    pub fn key_pos(&self) -> Pos {
        Pos::of(self.key.span())
    }

    /// Where the value is. An empty value has the position of whatever
    /// follows it, often the next line, so the key stands in for it.
    pub fn pos(&self) -> Pos {
        match self.value {
            Node::Scalar(s) if s.as_str().is_empty() && s.may_coerce() => self.key_pos(),
            _ => node_pos(self.value),
        }
    }

    pub fn is_null(&self) -> bool {
        is_null(self.value)
    }
}

/// Whether a node is YAML null: empty, `~` or `null`, unquoted.
pub(super) fn is_null(node: &Node) -> bool {
    match node {
        Node::Scalar(s) => {
            s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
        }
        _ => false,
    }
}

/// The keys of a mapping once unknown ones have been reported.
pub(super) struct Fields<'n> {
    map: &'n MarkedMappingNode,
}

impl<'n> Fields<'n> {
    /// Reports every key of `map` not in `allowed`, with the closest allowed
    /// key as a hint. `place` ends the message, e.g. ``in task `a` ``.
    pub fn check(d: &mut Diag, map: &'n MarkedMappingNode, allowed: &[&str], place: &str) -> Self {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let hint = closest(key.as_str(), allowed.iter().copied())
                    .map(|k| format!("did you mean `{k}`?"));
                d.error_hint(
                    Pos::of(key.span()),
                    format!("unknown key `{}` {place}", key.as_str()),
                    hint,
                );
            }
        }
        Fields { map }
    }

    /// The entry for `key`, unless it is absent or null.
    pub fn get(&self, key: &str) -> Option<Field<'n>> {
        self.get_even_null(key).filter(|f| !f.is_null())
    }

    /// The entry for `key`, even when its value is null.
    pub fn get_even_null(&self, key: &str) -> Option<Field<'n>> {
        self.map
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(key, value)| Field { key, value })
    }

    /// The entry for a key that must be present and not null.
    pub fn require(&self, d: &mut Diag, key: &str, place: &str) -> Option<Field<'n>> {
        match self.get_even_null(key) {
            Some(f) if f.is_null() => {
                d.error(f.key_pos(), format!("`{key}` {place} must not be empty"));
                None
            }
            Some(f) => Some(f),
            None => {
                d.error(
                    mapping_pos(self.map),
                    format!("missing required key `{key}` {place}"),
                );
                None
            }
        }
    }
}

/// A short description of a node for "found ..." messages.
pub(super) fn describe(node: &Node) -> String {
    match node {
        Node::Mapping(_) => "a mapping".to_owned(),
        Node::Sequence(_) => "a list".to_owned(),
        _ if is_null(node) => "nothing".to_owned(),
        Node::Scalar(s) => {
            let text = s.as_str();
            let shown = if text.chars().count() > 40 {
                format!("{}...", text.chars().take(37).collect::<String>())
            } else {
                text.to_owned()
            };
            // Quotes make `"true"` a string; show them so the message is not
            // "must be `true` or `false`, found `true`".
            if s.may_coerce() {
                format!("`{shown}`")
            } else {
                format!("the string `\"{shown}\"`")
            }
        }
    }
}

/// Reports that `field` is not `expected`.
pub(super) fn wrong_type(d: &mut Diag, field: Field, expected: &str) {
    d.error(
        field.pos(),
        format!(
            "`{}` must be {expected}, found {}",
            field.name(),
            describe(field.value)
        ),
    );
}

/// The text of a scalar field.
pub(super) fn string<'n>(d: &mut Diag, field: Field<'n>) -> Option<&'n str> {
    match field.value {
        Node::Scalar(s) => Some(s.as_str()),
        _ => {
            wrong_type(d, field, "a string");
            None
        }
    }
}

/// A `true` / `false` field.
pub(super) fn boolean(d: &mut Diag, field: Field) -> Option<bool> {
    let value = field.value.as_scalar().and_then(MarkedScalarNode::as_bool);
    if value.is_none() {
        wrong_type(d, field, "`true` or `false`");
    }
    value
}

/// An integer field of at least `min`.
pub(super) fn integer(d: &mut Diag, field: Field, min: u32) -> Option<u32> {
    let value = field
        .value
        .as_scalar()
        .and_then(MarkedScalarNode::as_u32)
        .filter(|v| *v >= min);
    if value.is_none() {
        let expected = match min {
            0 => "a non-negative integer".to_owned(),
            1 => "a positive integer".to_owned(),
            _ => format!("an integer of at least {min}"),
        };
        wrong_type(d, field, &expected);
    }
    value
}

/// A duration: a number of seconds, or text such as `30s` or `1h 30m`.
/// Zero is refused when `positive`.
pub(super) fn duration(d: &mut Diag, field: Field, positive: bool) -> Option<Duration> {
    let Node::Scalar(s) = field.value else {
        wrong_type(d, field, "a duration such as `30s`, `5m` or `1h 30m`");
        return None;
    };
    match schedule::parse_duration(s.as_str()) {
        Ok(value) if positive && value.is_zero() => {
            d.error(
                field.pos(),
                format!("`{}` must be longer than zero", field.name()),
            );
            None
        }
        Ok(value) => Some(value),
        Err(err) => {
            let hint = match err {
                ScheduleError::InvalidDuration { .. } => Some(
                    "write a number of seconds or a duration such as `30s`, `5m` or `1h 30m`"
                        .to_owned(),
                ),
                _ => None,
            };
            d.error_hint(field.pos(), format!("`{}`: {err}", field.name()), hint);
            None
        }
    }
}

/// One string or a list of strings, each with its position.
pub(super) fn string_list(d: &mut Diag, field: Field) -> Vec<(String, Pos)> {
    let items: Vec<&Node> = match field.value {
        Node::Scalar(_) => vec![field.value],
        Node::Sequence(seq) => seq.iter().collect(),
        Node::Mapping(_) => {
            wrong_type(d, field, "a string or a list of strings");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Node::Scalar(s) if !is_null(item) => {
                out.push((s.as_str().to_owned(), Pos::of(s.span())))
            }
            _ => d.error(
                node_pos(item),
                format!(
                    "`{}` items must be strings, found {}",
                    field.name(),
                    describe(item)
                ),
            ),
        }
    }
    out
}

/// Converts any YAML value to JSON. Quoted scalars stay strings; unquoted
/// ones become null, booleans or numbers when they read as such (YAML 1.2
/// core schema), strings otherwise.
pub(super) fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value;
    match node {
        Node::Scalar(s) => scalar_to_json(s),
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect(),
        ),
    }
}

fn scalar_to_json(s: &MarkedScalarNode) -> serde_json::Value {
    use serde_json::Value;
    let text = s.as_str();
    if !s.may_coerce() {
        return Value::String(text.to_owned());
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = s.as_bool() {
        return Value::Bool(b);
    }
    if let Some(i) = s.as_i64() {
        return Value::from(i);
    }
    if let Some(u) = s.as_u64() {
        return Value::from(u);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::from(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::from(i);
    }
    // Rust also reads `inf` and `nan` as floats; YAML does not.
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || "+-.eE".contains(c))
        && text.chars().any(|c| c.is_ascii_digit());
    if numeric && let Some(n) = s.as_f64().and_then(serde_json::Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(text.to_owned())
}

/// The first node nested deeper than [`MAX_DEPTH`], if any.
pub(super) fn too_deep(root: &Node) -> Option<&Node> {
    let mut stack = vec![(root, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Some(node);
        }
        match node {
            Node::Scalar(_) => {}
            Node::Sequence(seq) => stack.extend(seq.iter().map(|n| (n, depth + 1))),
            Node::Mapping(map) => stack.extend(map.values().map(|n| (n, depth + 1))),
        }
    }
    None
}

/// Drops a node tree without recursion, which on a very deep tree would
/// overflow the stack.
pub(super) fn drop_flat(root: Node) {
    let mut stack = vec![root];
    while let Some(mut node) = stack.pop() {
        match &mut node {
            Node::Scalar(_) => {}
            Node::Sequence(seq) => stack.append(seq),
            Node::Mapping(map) => {
                stack.extend(std::mem::take(&mut **map).into_iter().map(|(_, v)| v));
            }
        }
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to
/// be a likely typo.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lower, &c.to_lowercase()), c))
        .filter(|(dist, c)| {
            let longest = word.chars().count().max(c.chars().count());
            *dist <= 2.max(longest / 3) && *dist < longest
        })
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_but_not_unrelated_words() {
        let keys = ["retries", "retry_delay", "timeout", "tags", "tasks"];
        assert_eq!(closest("retrys", keys), Some("retries"));
        assert_eq!(closest("timout", keys), Some("timeout"));
        assert_eq!(closest("Tasks", keys), Some("tasks"));
        assert_eq!(closest("owner", keys), None);
        assert_eq!(closest("x", ["y"]), None);
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
