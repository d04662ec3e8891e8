//! Where a configuration error is: [`ConfigError`] names file, line,
//! column and field. [`Source`] turns the byte offsets of spans into lines
//! and columns; the TOML parser's and serde's errors get their field from
//! the position of their span in the document.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

/// A configuration error at a position in a file.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}:{column}: {field}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    /// Dotted path such as `vip[1].backend[0].address`; `(file)` when the
    /// file cannot be read, `(document)` when no field applies.
    pub field: String,
    pub message: String,
}

/// The text being parsed, for turning byte offsets into errors.
pub(super) struct Source<'a> {
    pub(super) file: &'a Path,
    pub(super) text: &'a str,
}

impl Source<'_> {
    pub(super) fn error(
        &self,
        offset: usize,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let (line, column) = line_column(self.text, offset);
        ConfigError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }

    /// An error about the value `at`.
    pub(super) fn at<T>(
        &self,
        at: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error(at.span().start, field, message)
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The toml crate's messages may span lines; errors are one line.
pub(super) fn clean(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A table, key or value of the document: where it is and its dotted path
/// (`""` for the root table).
struct Node {
    span: Range<usize>,
    path: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The root, a `[table]` or an element of an `[[array]]`.
    Table,
    InlineTable,
    Key,
    Value,
}

/// Every table, key and value of `document`.
fn nodes(document: &toml_edit::ImDocument<&str>) -> Vec<Node> {
    let mut out = Vec::new();
    collect_table(document.as_table(), "", &mut out);
    out
}

/// The position and field of a serde error with byte span `span`.
pub(super) fn serde_field(
    document: &toml_edit::ImDocument<&str>,
    span: Option<Range<usize>>,
    message: &str,
) -> (usize, String) {
    let nodes = nodes(document);
    // "missing field `x`" points at the whole table that lacks it.
    if let Some(missing) = message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        let table = span
            .as_ref()
            .and_then(|s| {
                nodes
                    .iter()
                    .find(|n| n.kind != Kind::Key && n.kind != Kind::Value && n.span == *s)
            })
            .map_or("", |n| n.path.as_str());
        return (span.map_or(0, |s| s.start), join(table, missing));
    }
    let Some(span) = span else {
        return (0, DOCUMENT.to_owned());
    };
    // The smallest key, value or table around the error is the field.
    let field = nodes
        .iter()
        .filter(|n| n.span.start <= span.start && span.start < n.span.end.max(n.span.start + 1))
        .min_by_key(|n| n.span.end - n.span.start)
        .map_or("", |n| n.path.as_str());
    (span.start, or_document(field))
}

/// Best guess at the field of a syntax error at `offset`: the key being
/// written on that line inside the last table opened before it.
pub(super) fn syntax_field(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim_start();
    if line.starts_with('[') {
        // A broken table header: name what it seems to open.
        let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
        return or_document(name.trim());
    }
    let Ok(before) = toml_edit::ImDocument::parse(&text[..line_start]) else {
        return DOCUMENT.to_owned();
    };
    let nodes = nodes(&before);
    let table = nodes
        .iter()
        .filter(|n| n.kind == Kind::Table)
        .max_by_key(|n| n.span.start)
        .map_or("", |n| n.path.as_str());
    // The key being written: up to `=`, or the first word.
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim(),
        None => line.split_whitespace().next().unwrap_or(""),
    };
    if key.is_empty() {
        or_document(table)
    } else {
        join(table, key)
    }
}

/// The field of errors that concern no particular field.
const DOCUMENT: &str = "(document)";

fn or_document(path: &str) -> String {
    if path.is_empty() { DOCUMENT } else { path }.to_owned()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn collect_table(table: &toml_edit::Table, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = table.span() {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: Kind::Table,
        });
    }
    for (key, item) in table.iter() {
        let path = join(path, key);
        collect_key(table.key(key), &path, out);
        match item {
            toml_edit::Item::Value(value) => collect_value(value, &path, out),
            toml_edit::Item::Table(t) => collect_table(t, &path, out),
            toml_edit::Item::ArrayOfTables(array) => {
                for (i, t) in array.iter().enumerate() {
                    collect_table(t, &format!("{path}[{i}]"), out);
                }
            }
            toml_edit::Item::None => {}
        }
    }
}

fn collect_key(key: Option<&toml_edit::Key>, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = key.and_then(toml_edit::Key::span) {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: Kind::Key,
        });
    }
}

fn collect_value(value: &toml_edit::Value, path: &str, out: &mut Vec<Node>) {
    if let Some(span) = value.span() {
        out.push(Node {
            span,
            path: path.to_owned(),
            kind: if value.is_inline_table() {
                Kind::InlineTable
            } else {
                Kind::Value
            },
        });
    }
    match value {
        toml_edit::Value::Array(array) => {
            for (i, v) in array.iter().enumerate() {
                collect_value(v, &format!("{path}[{i}]"), out);
            }
        }
        toml_edit::Value::InlineTable(table) => {
            for (key, v) in table.iter() {
                let path = join(path, key);
                collect_key(table.key(key), &path, out);
                collect_value(v, &path, out);
            }
        }
        _ => {}
    }
}
