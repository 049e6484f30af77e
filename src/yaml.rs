//! Loading YAML files into typed structs with errors that name the file, the line and the field.
//!
//! serde_yaml_ng reports syntax and type errors with a position, but once a document is
//! deserialised its positions are gone; [`FieldIndex`] keeps a map from field path
//! (`probes[2].password_file`) to line so that later semantic checks (unknown target, missing
//! secret file, duplicate name) can point at the same place.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::de::{DeserializeOwned, DeserializeSeed};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One problem in a YAML file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// Dotted field path (`probes[1].interval`), empty for the whole document.
    pub field: String,
    /// What is wrong. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        f.write_str(": ")?;
        if !self.field.is_empty() {
            write_bounded(f, &self.field)?;
            f.write_str(": ")?;
        }
        // Cut when shown, not when made, so that redaction (which runs later) sees whole values.
        write_bounded(f, &self.message)
    }
}

/// Every problem found in one file; validation reports them all at once rather than one per run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FileErrors(pub Vec<FileError>);

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl FileErrors {
    /// Passes every field and message through `f` (a redaction).
    pub fn map_texts(&mut self, f: impl Fn(&str) -> String) {
        for e in &mut self.0 {
            e.field = f(&e.field);
            e.message = f(&e.message);
        }
    }

    /// Replaces each of `values` (longest first) wherever a field or message quotes it.
    pub fn redact(&mut self, values: &[String]) {
        let mut values: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for e in &mut self.0 {
            for v in &values {
                for text in [&mut e.field, &mut e.message] {
                    if text.contains(v.as_str()) {
                        *text = text.replace(v.as_str(), "<redacted>");
                    }
                }
            }
        }
    }
}

impl FileErrors {
    /// Both results of two readers of the same files, or every error of either, each once (both
    /// find a syntax error of a file they share).
    pub fn both<A, B>(a: Result<A, FileErrors>, b: Result<B, FileErrors>) -> Result<(A, B), FileErrors> {
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (Ok(_), Err(e)) | (Err(e), Ok(_)) => Err(e),
            (Err(mut e), Err(other)) => {
                for error in other.0 {
                    if !e.0.contains(&error) {
                        e.0.push(error);
                    }
                }
                Err(e)
            }
        }
    }

    /// These errors without any value the texts of `files` give the secret `fields` (found
    /// textually: the files may not parse), then with `redact` applied to every text.
    pub fn without_secrets<'p>(
        mut self,
        files: impl IntoIterator<Item = &'p Path>,
        fields: &[&str],
        redact: impl Fn(&str) -> String,
    ) -> FileErrors {
        for file in files {
            if let Ok(text) = std::fs::read_to_string(file) {
                self.redact(&secret_values(&text, fields));
            }
        }
        self.map_texts(redact);
        self
    }
}

impl From<FileError> for FileErrors {
    fn from(e: FileError) -> Self {
        FileErrors(vec![e])
    }
}

/// A parsed document together with the positions of its fields.
pub struct Document<T> {
    /// The typed value.
    pub value: T,
    /// Field path → position, for errors raised after deserialisation.
    pub index: FieldIndex,
}

/// Reads and deserialises `path`. Unknown fields are rejected by the target types themselves
/// (`#[serde(deny_unknown_fields)]`).
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<Document<T>, FileError> {
    parse_str(path, &read(path)?)
}

/// The text of `path`, or why it cannot be read.
pub fn read(path: &Path) -> Result<String, FileError> {
    std::fs::read_to_string(path).map_err(|e| FileError {
        file: path.to_owned(),
        position: None,
        field: String::new(),
        message: format!("cannot read file: {e}"),
    })
}

/// Deserialises YAML text that came from `path` (used in messages only) with `seed`: a second
/// reading of a text [`parse_str`] accepted, guided by what the first found.
pub fn parse_seed<'de, S: DeserializeSeed<'de>>(path: &Path, text: &'de str, seed: S) -> Result<S::Value, FileError> {
    seed.deserialize(serde_yaml_ng::Deserializer::from_str(text)).map_err(|e| from_serde(path, &e))
}

/// serde's words for a field a block does not take, the field quoted on one line.
pub fn unknown_field(field: &str, expected: &[&str]) -> String {
    let field = escape_controls(field);
    match expected {
        [] => format!("unknown field `{field}`, there are no fields"),
        [one] => format!("unknown field `{field}`, expected `{one}`"),
        [a, b] => format!("unknown field `{field}`, expected `{a}` or `{b}`"),
        all => {
            let list: Vec<String> = all.iter().map(|f| format!("`{f}`")).collect();
            format!("unknown field `{field}`, expected one of {}", list.join(", "))
        }
    }
}

/// Deserialises YAML text that came from `path` (used in messages only).
pub fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Document<T>, FileError> {
    // An empty file deserialises into all-default structs; it is far more likely a mistake
    // (a truncated deploy, a wrong path) than an intent.
    let blank = text.lines().map(str::trim).all(|l| l.is_empty() || l.starts_with('#') || l == "---");
    if blank {
        return Err(FileError {
            file: path.to_owned(),
            position: None,
            field: String::new(),
            message: "the file is empty; expected a YAML mapping".to_owned(),
        });
    }
    let value = serde_yaml_ng::from_str::<T>(text).map_err(|e| from_serde(path, &e))?;
    Ok(Document { value, index: FieldIndex::lazy(text.to_owned()) })
}

fn from_serde(path: &Path, err: &serde_yaml_ng::Error) -> FileError {
    let mut message = err.to_string();
    let position = err.location().map(|l| (l.line(), l.column()));
    if let Some((line, column)) = position {
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    // serde_yaml_ng prefixes the field path as "a.b[1].c: "; keep it as the field.
    let mut field = String::new();
    if let Some((head, rest)) = message.split_once(": ") {
        if !head.contains(' ') && !head.is_empty() && head != "." {
            field = head.trim_start_matches('.').to_owned();
            message = rest.to_owned();
        }
    }
    let message = unquote_strings(&message);
    // A key can be any scalar, several lines long: the message quoting it stays one line.
    FileError { file: path.to_owned(), position, field: escape_controls(&field), message: escape_controls(&message) }
}

/// serde's `invalid type: string "VALUE", expected …` without VALUE: an edit can put any value,
/// a secret too, where another type belongs, and the type alone says what is wrong.
fn unquote_strings(message: &str) -> String {
    const QUOTE: &str = "string \"";
    let Some(start) = message.find(QUOTE) else { return message.to_owned() };
    let rest = &message[start + QUOTE.len()..];
    // The value is written escaped, so its end is the first quote not preceded by a backslash.
    let bytes = rest.as_bytes();
    let end = (0..bytes.len()).find(|&i| bytes[i] == b'"' && (i == 0 || bytes[i - 1] != b'\\'));
    match end {
        Some(end) => format!("{}string{}", &message[..start], unquote_strings(&rest[end + 1..])),
        None => format!("{}string", &message[..start]),
    }
}

/// `text` with control characters written as escapes (`\n`, `\u{7}`).
fn escape_controls(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Values shorter than this are not searched for in messages.
const MIN_REDACTED_CHARS: usize = 4;

/// The values the text of a YAML file gives secret fields, found textually so that it works on
/// files that do not parse: `field: value` in block or flow style, quoted or not, and the items
/// of a flow list (`app_keys: [a, b]`).
pub fn secret_values(text: &str, fields: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for field in fields {
        let pattern = format!("{field}:");
        let mut from = 0;
        while let Some(i) = text[from..].find(&pattern).map(|i| i + from) {
            from = i + pattern.len();
            let before = text[..i].chars().next_back();
            if !before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-' | '"' | '\'')) {
                continue;
            }
            let rest = text[from..].trim_start_matches([' ', '\t']);
            let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
            // In flow style a comma ends the value; in block style it may belong to it: keep both.
            let flow = line.strip_prefix('[').unwrap_or(line);
            let flow = &flow[..flow.find(['}', ']']).unwrap_or(flow.len())];
            for candidate in flow.split(',').chain([line]) {
                let v = candidate.trim().trim_matches(['"', '\'']).trim();
                // Shorter values would mangle ordinary words and numbers of the messages.
                if v.chars().count() >= MIN_REDACTED_CHARS && !out.iter().any(|o| o == v) {
                    out.push(v.to_owned());
                }
            }
        }
    }
    out
}

/// Longest field or message shown, in characters: a quoted key may be as long as the file.
const MAX_SHOWN_CHARS: usize = 300;

/// Writes `text`, cut to [`MAX_SHOWN_CHARS`].
fn write_bounded(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => write!(f, "{}…", &text[..cut]),
        None => f.write_str(text),
    }
}

/// Map from dotted field path to the 1-based (line, column) where that field's key (or, for
/// sequence items, the item) starts.
///
/// Built on first use: a valid file never needs positions, and indexing a file of 10,000
/// probes costs more memory than the configuration itself.
#[derive(Debug, Default)]
pub struct FieldIndex {
    text: String,
    positions: OnceLock<HashMap<String, (usize, usize)>>,
}

impl FieldIndex {
    /// Indexes `text` now.
    pub fn build(text: &str) -> Self {
        let index = Self::lazy(text.to_owned());
        index.positions();
        index
    }

    /// An index of `text`, built when a position is first asked for.
    pub fn lazy(text: String) -> Self {
        FieldIndex { text, positions: OnceLock::new() }
    }

    /// A document the event parser cannot read yields an empty index: positions are a
    /// convenience for messages, never a reason to reject a file serde accepted.
    fn positions(&self) -> &HashMap<String, (usize, usize)> {
        self.positions.get_or_init(|| {
            let mut builder = IndexBuilder::default();
            let mut parser = Parser::new_from_str(&self.text);
            if parser.load(&mut builder, false).is_err() {
                return HashMap::new();
            }
            builder.positions
        })
    }

    /// Position of `field`, or of its nearest indexed ancestor.
    pub fn position(&self, field: &str) -> Option<(usize, usize)> {
        let positions = self.positions();
        let mut path = field;
        loop {
            if let Some(p) = positions.get(path) {
                return Some(*p);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }

    /// Builds an error for `field` of `file`, located through this index.
    pub fn error(&self, file: &Path, field: impl Into<String>, message: impl Into<String>) -> FileError {
        let field = field.into();
        FileError { file: file.to_owned(), position: self.position(&field), field, message: message.into() }
    }
}

enum Frame {
    Map { path: String, key: Option<String>, fresh: bool },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct IndexBuilder {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
}

impl IndexBuilder {
    /// Path of the value about to start, recording its position; `None` when the event is a key.
    fn begin_value(&mut self, mark: Marker) -> Option<String> {
        let pos = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                self.positions.entry(p.clone()).or_insert(pos);
                Some(p)
            }
            Some(Frame::Map { path, key, .. }) => {
                key.take().map(|k| if path.is_empty() { k } else { format!("{path}.{k}") })
            }
        }
    }
}

impl MarkedEventReceiver for IndexBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => match self.begin_value(mark) {
                Some(_) => {}
                None => {
                    // A key: remember it and where it stands.
                    if let Some(Frame::Map { path, key, fresh }) = self.stack.last_mut() {
                        let pos = (mark.line(), mark.col() + 1);
                        // A block mapping's start event is marked after its first key; the key
                        // itself is where a reader looks for the item.
                        if std::mem::take(fresh) && !path.is_empty() {
                            self.positions.insert(path.clone(), pos);
                        }
                        let p = if path.is_empty() { value.clone() } else { format!("{path}.{value}") };
                        self.positions.entry(p).or_insert(pos);
                        *key = Some(value);
                    }
                }
            },
            Event::MappingStart(..) => {
                let path = self.begin_value(mark).unwrap_or_default();
                self.stack.push(Frame::Map { path, key: None, fresh: true });
            }
            Event::SequenceStart(..) => {
                let path = self.begin_value(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.begin_value(mark);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
defaults:
  interval: 30s
probes:
  - name: a
    interval: 5s
  - name: b
    labels: {team: x}
";

    #[test]
    fn indexes_field_lines() {
        let idx = FieldIndex::build(DOC);
        assert_eq!(idx.position("defaults.interval"), Some((2, 3)));
        assert_eq!(idx.position("probes[0]"), Some((4, 5)));
        assert_eq!(idx.position("probes[0].interval"), Some((5, 5)));
        assert_eq!(idx.position("probes[1].name"), Some((6, 5)));
        assert_eq!(idx.position("probes[1].labels.team"), Some((7, 14)));
        // Unknown leaf falls back to its parent.
        assert_eq!(idx.position("probes[1].password"), Some((6, 5)));
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct P {
        name: String,
    }

    #[test]
    fn serde_errors_carry_file_line_and_field() {
        let err = parse_str::<Vec<P>>(Path::new("x.yaml"), "- name: a\n- nmae: b\n").err().unwrap();
        assert_eq!(err.position, Some((2, 3)));
        assert_eq!(err.field, "[1]");
        assert!(err.message.starts_with("unknown field `nmae`"), "{}", err.message);
        assert!(err.to_string().starts_with("x.yaml:2:3: [1]: unknown field `nmae`"), "{err}");
    }
}
