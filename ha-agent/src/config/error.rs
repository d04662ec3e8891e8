//! Where a configuration error is: [`ConfigError`] names file, line,
//! column and field. [`Source`] turns the byte offsets of spans into lines
//! and columns. An error of serde takes its field from the path serde was
//! on ([`serde_path_to_error`]); a syntax error, which has none, from the
//! line it is on and the table opened before it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_path_to_error::Segment;
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

    /// An error of the TOML parser or of serde: at the start of its span,
    /// the field from serde's path.
    pub(super) fn deserialize_error(
        &self,
        error: &serde_path_to_error::Error<toml::de::Error>,
    ) -> ConfigError {
        let inner = error.inner();
        let offset = inner.span().map_or(0, |s| s.start);
        let path = field_path(error.path());
        let message = inner.message();
        // "missing field `x`" points at the whole table that lacks it.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next());
        let field = match missing {
            Some(missing) => join(&path, missing),
            // The parser reads the whole text before serde sees a value: an
            // error without a path (but a missing field at the root) is the
            // parser's.
            None if path.is_empty() => syntax_field(self.text, offset),
            None => path,
        };
        self.error(offset, field, clean(message))
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
fn clean(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// serde's path as a dotted field name such as `vip[1].backend[0].address`,
/// without the private keys `Spanned` reads its value through; `""` for the
/// root.
fn field_path(path: &serde_path_to_error::Path) -> String {
    /// Prefix of the keys of `toml::Spanned`'s own map.
    const SPANNED_KEY: &str = "$__serde_spanned_private_";
    let mut field = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => {
                write!(field, "[{index}]").expect("writing to a String");
            }
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !key.starts_with(SPANNED_KEY) {
                    field = join(&field, key);
                }
            }
            Segment::Unknown => field = join(&field, "?"),
        }
    }
    field
}

/// Best guess at the field of a syntax error at `offset`: the key being
/// written on that line inside the last table opened before it.
fn syntax_field(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim_start();
    if line.starts_with('[') {
        // A broken table header: name what it seems to open.
        let name = line.trim_start_matches('[').split(']').next().unwrap_or("");
        return or_document(name.trim());
    }
    let before = &text[..line_start];
    let Ok(document) = before.parse::<toml::Table>() else {
        return DOCUMENT.to_owned();
    };
    let table = last_table(before, &document);
    // The key being written: up to `=`, or the first word.
    let key = match line.split_once('=') {
        Some((key, _)) => key.trim(),
        None => line.split_whitespace().next().unwrap_or(""),
    };
    if key.is_empty() {
        or_document(&table)
    } else {
        join(&table, key)
    }
}

/// The dotted path of the last table `text` opens (with a `[table]` or an
/// `[[array]]` header), `""` for the root; `document` is `text` parsed.
fn last_table(text: &str, document: &toml::Table) -> String {
    let line_starts = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&start| start < text.len());
    for start in line_starts.rev() {
        let line = text[start..].lines().next().unwrap_or("");
        // (The text may start with a byte order mark.)
        let line = line.trim_start_matches('\u{feff}').trim();
        // A line in a multi-line string or array is no header: the text
        // before it does not parse on its own.
        if !line.starts_with('[') || text[..start].parse::<toml::Table>().is_err() {
            continue;
        }
        // The header alone parses into the keys it names.
        if let Ok(header) = line.parse::<toml::Table>() {
            return table_path(document, &header);
        }
    }
    String::new()
}

/// The path of the table `header` (a header parsed on its own: one key per
/// level) names in `document`: an array of tables stands for its last
/// element, as in TOML.
fn table_path(document: &toml::Table, header: &toml::Table) -> String {
    let mut path = String::new();
    let (mut table, mut names) = (document, header);
    while let Some((key, named)) = names.iter().next() {
        path = join(&path, key);
        let value = match table.get(key) {
            Some(toml::Value::Array(array)) => {
                let Some(last) = array.last() else { break };
                write!(path, "[{}]", array.len() - 1).expect("writing to a String");
                last
            }
            Some(value) => value,
            None => break,
        };
        match (value, named) {
            (toml::Value::Table(inner), toml::Value::Table(inner_names)) => {
                (table, names) = (inner, inner_names);
            }
            _ => break,
        }
    }
    path
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
