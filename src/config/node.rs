//! The format-neutral, position-carrying tree that TOML, YAML and JSON files are
//! read into before the schema is applied.
//!
//! Parsing into this tree first (rather than straight into serde structs) is what
//! lets every later error name a line and column, whatever the file format, and
//! lets one file report all its problems instead of the first.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub value: Value,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Pos,
    pub value: Node,
}

impl Node {
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing (null)",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a table",
        }
    }

    /// The `name` of a table, if it has a string one (used to keep track of
    /// entries that failed to parse, so references to them are not reported twice).
    pub(crate) fn name_field(&self) -> Option<&str> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|e| e.key == "name")
                .and_then(|e| match &e.value.value {
                    Value::Str(s) => Some(s.as_str()),
                    _ => None,
                }),
            _ => None,
        }
    }
}

/// A syntax error: the file could not be read as its format at all.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Byte offset to line/column.
struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// The line of the last lookup: parsers ask in nearly increasing order.
    hint: std::cell::Cell<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            text,
            starts,
            hint: std::cell::Cell::new(0),
        }
    }

    fn pos(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let h = self.hint.get();
        let in_line = |l: usize| {
            self.starts.get(l).is_some_and(|&s| s <= offset)
                && self.starts.get(l + 1).is_none_or(|&next| offset < next)
        };
        let line = if in_line(h) {
            h
        } else if in_line(h + 1) {
            h + 1
        } else {
            match self.starts.binary_search(&offset) {
                Ok(i) => i,
                Err(i) => i.saturating_sub(1),
            }
        };
        self.hint.set(line);
        let start = self.starts.get(line).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        Pos {
            line: to_u32(line + 1),
            col: to_u32(col + 1),
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------- TOML

pub(crate) fn parse_toml(text: &str) -> Result<Node, Vec<SyntaxError>> {
    use toml::de::{DeTable, DeValue};
    let index = LineIndex::new(text);
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return Err(errors
            .iter()
            .map(|e| SyntaxError {
                pos: e.span().map_or_else(Pos::default, |s| index.pos(s.start)),
                // The message only: toml's Display quotes the offending source line,
                // which could hold a token.
                message: format!("invalid TOML: {}", e.message().trim_end().to_lowercase()),
            })
            .collect());
    }

    fn value(v: &toml::Spanned<DeValue<'_>>, index: &LineIndex<'_>) -> Node {
        let pos = index.pos(v.span().start);
        let value = match v.get_ref() {
            DeValue::String(s) => Value::Str(s.to_string()),
            DeValue::Integer(i) => {
                let digits = i.as_str();
                let n = if digits.contains('_') {
                    i64::from_str_radix(&digits.replace('_', ""), i.radix())
                } else {
                    i64::from_str_radix(digits, i.radix())
                };
                n.map_or(Value::Float(f64::INFINITY), Value::Int)
            }
            DeValue::Float(f) => {
                let text = f.as_str();
                let n = if text.contains('_') {
                    text.replace('_', "").parse()
                } else {
                    text.parse()
                };
                Value::Float(n.unwrap_or(f64::NAN))
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::Str(d.to_string()),
            DeValue::Array(a) => Value::Seq(a.iter().map(|e| value(e, index)).collect()),
            DeValue::Table(t) => Value::Map(table(t, index)),
        };
        Node { value, pos }
    }
    fn table(t: &toml::de::DeTable<'_>, index: &LineIndex<'_>) -> Vec<Entry> {
        let mut entries: Vec<Entry> = t
            .iter()
            .map(|(k, v)| Entry {
                key: k.get_ref().to_string(),
                key_pos: index.pos(k.span().start),
                value: value(v, index),
            })
            .collect();
        entries.sort_by_key(|e| (e.key_pos.line, e.key_pos.col));
        entries
    }

    let pos = Pos { line: 1, col: 1 };
    Ok(Node {
        value: Value::Map(table(root.get_ref(), &index)),
        pos,
    })
}

// ---------------------------------------------------------------- JSON

pub(crate) fn parse_json(text: &str) -> Result<Node, Vec<SyntaxError>> {
    use jsonc_parser::ast;
    let index = LineIndex::new(text);
    let strict = jsonc_parser::ParseOptions {
        allow_comments: false,
        allow_loose_object_property_names: false,
        allow_trailing_commas: false,
        allow_missing_commas: false,
        allow_single_quoted_strings: false,
        allow_hexadecimal_numbers: false,
        allow_unary_plus_numbers: false,
        allow_bare_decimal_point_numbers: false,
        allow_non_finite_numbers: false,
        allow_extended_string_escapes: false,
    };
    let parsed =
        jsonc_parser::parse_to_ast(text, &jsonc_parser::CollectOptions::default(), &strict)
            .map_err(|e| {
                vec![SyntaxError {
                    pos: Pos {
                        line: to_u32(e.line_display()),
                        col: to_u32(e.column_display()),
                    },
                    message: format!("invalid JSON: {}", e.kind().to_string().to_lowercase()),
                }]
            })?;

    fn value(v: &ast::Value<'_>, index: &LineIndex<'_>) -> Node {
        let (value, start) = match v {
            ast::Value::StringLit(s) => (Value::Str(s.value.to_string()), s.range.start),
            ast::Value::NumberLit(n) => {
                let value = match n.value.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Float(n.value.parse().unwrap_or(f64::NAN)),
                };
                (value, n.range.start)
            }
            ast::Value::BooleanLit(b) => (Value::Bool(b.value), b.range.start),
            ast::Value::NullKeyword(n) => (Value::Null, n.range.start),
            ast::Value::Array(a) => (
                Value::Seq(a.elements.iter().map(|e| value(e, index)).collect()),
                a.range.start,
            ),
            ast::Value::Object(o) => {
                let entries = o
                    .properties
                    .iter()
                    .map(|p| Entry {
                        key: p.name.as_str().to_string(),
                        key_pos: index.pos(p.range.start),
                        value: value(&p.value, index),
                    })
                    .collect();
                (Value::Map(entries), o.range.start)
            }
        };
        Node {
            value,
            pos: index.pos(start),
        }
    }

    match parsed.value {
        Some(v) => Ok(value(&v, &index)),
        None => Ok(Node {
            value: Value::Map(Vec::new()),
            pos: Pos { line: 1, col: 1 },
        }),
    }
}

// ---------------------------------------------------------------- YAML

/// The first tab in a line's leading whitespace, as (line, column), 1-based.
fn indenting_tab(text: &str) -> Option<(u32, u32)> {
    text.lines().enumerate().find_map(|(i, l)| {
        let lead = &l[..l.len() - l.trim_start().len()];
        lead.find('\t').map(|c| (to_u32(i + 1), to_u32(c + 1)))
    })
}

pub(crate) fn parse_yaml(text: &str) -> Result<Node, Vec<SyntaxError>> {
    let mut builder = YamlBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        // A tab in an indentation is reported by the scanner at the value
        // before it; point at the tab itself and say why.
        if e.info().contains("tab") {
            if let Some((line, col)) = indenting_tab(text) {
                return Err(vec![SyntaxError {
                    pos: Pos { line, col },
                    message: "invalid YAML: this line is indented with a tab; YAML indents with spaces only".into(),
                }]);
            }
        }
        let m = e.marker();
        return Err(vec![SyntaxError {
            pos: Pos {
                line: to_u32(m.line()),
                col: to_u32(m.col() + 1),
            },
            message: format!("invalid YAML: {}", e.info()),
        }]);
    }
    if let Some(err) = builder.error {
        return Err(vec![err]);
    }
    match builder.docs.len() {
        0 => Ok(Node {
            value: Value::Map(Vec::new()),
            pos: Pos { line: 1, col: 1 },
        }),
        1 => Ok(builder.docs.remove(0)),
        _ => Err(vec![SyntaxError {
            pos: builder.second_doc.unwrap_or_default(),
            message: "a config file holds one YAML document; split the others into their own files"
                .into(),
        }]),
    }
}

/// Nodes aliases may copy in one file: a config's anchors are small tables
/// of defaults; a "billion laughs" file multiplies them without end.
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;
/// Nodes of one file, aliases included.
pub(crate) const MAX_NODES: usize = 2_000_000;
/// Nesting of one file, aliases included (the parsers bound the text's own
/// nesting; aliases of aliases can nest further).
pub(crate) const MAX_DEPTH: usize = 128;

/// What a finished node weighs: its nodes and its depth.
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    nodes: usize,
    depth: usize,
}

impl Weight {
    fn add_child(&mut self, child: Weight) {
        self.nodes += child.nodes;
        self.depth = self.depth.max(child.depth + 1);
    }
}

enum Frame {
    Seq {
        anchor: usize,
        pos: Pos,
        items: Vec<Node>,
        weight: Weight,
    },
    Map {
        anchor: usize,
        pos: Pos,
        entries: Vec<Entry>,
        key: Option<(String, Pos)>,
        weight: Weight,
    },
}

#[derive(Default)]
struct YamlBuilder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, (Node, Weight)>,
    error: Option<SyntaxError>,
    second_doc: Option<Pos>,
    /// Nodes made so far, and those made by aliases.
    nodes: usize,
    alias_nodes: usize,
}

fn marker_pos(m: &Marker) -> Pos {
    Pos {
        line: to_u32(m.line()),
        col: to_u32(m.col() + 1),
    }
}

fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Value::Float(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Int(i);
        }
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    }
    let looks_numeric = digits
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_numeric {
        if let Ok(f) = s.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(s.to_string())
}

impl YamlBuilder {
    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { pos, message });
        }
    }

    fn push_node(&mut self, node: Node, weight: Weight, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq {
                items, weight: w, ..
            }) => {
                w.add_child(weight);
                items.push(node);
            }
            Some(Frame::Map {
                entries,
                key,
                weight: w,
                ..
            }) => match key.take() {
                Some((k, key_pos)) => {
                    w.add_child(weight);
                    entries.push(Entry {
                        key: k,
                        key_pos,
                        value: node,
                    });
                }
                None => {
                    let k = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => "null".to_string(),
                        Value::Seq(_) | Value::Map(_) => {
                            if self.error.is_none() {
                                self.error = Some(SyntaxError {
                                    pos: node.pos,
                                    message: "a key must be a plain value, not a list or a table"
                                        .into(),
                                });
                            }
                            String::new()
                        }
                    };
                    *key = Some((k, node.pos));
                }
            },
        }
    }
}

impl MarkedEventReceiver for YamlBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            // The file is refused; build nothing more.
            return;
        }
        let pos = marker_pos(&mark);
        let leaf = Weight { nodes: 1, depth: 0 };
        match ev {
            Event::DocumentStart => {
                if !self.docs.is_empty() && self.second_doc.is_none() {
                    self.second_doc = Some(pos);
                }
            }
            Event::Scalar(s, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain {
                    resolve_plain(&s)
                } else {
                    Value::Str(s)
                };
                self.nodes += 1;
                if self.nodes > MAX_NODES {
                    return self.fail(pos, format!("the file holds more than {MAX_NODES} values"));
                }
                self.push_node(Node { value, pos }, leaf, anchor);
            }
            Event::Alias(id) => {
                let (value, weight) = match self.anchors.get(&id) {
                    Some((n, w)) => (Some(n), *w),
                    None => (None, leaf),
                };
                self.alias_nodes += weight.nodes;
                self.nodes += weight.nodes;
                if self.alias_nodes > MAX_ALIAS_NODES || self.nodes > MAX_NODES {
                    return self.fail(
                        pos,
                        format!(
                            "YAML aliases expand to more than {MAX_ALIAS_NODES} values (nested aliases multiply); write the values out or use fewer aliases"
                        ),
                    );
                }
                if self.stack.len() + weight.depth > MAX_DEPTH {
                    return self.fail(
                        pos,
                        format!("YAML aliases nest values deeper than {MAX_DEPTH} levels"),
                    );
                }
                let node = Node {
                    value: value.map_or(Value::Null, |n| n.value.clone()),
                    pos,
                };
                self.push_node(node, weight, 0);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _)
                if self.stack.len() >= MAX_DEPTH =>
            {
                let _ = anchor;
                self.fail(pos, format!("values nest deeper than {MAX_DEPTH} levels"));
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                anchor,
                pos,
                items: Vec::new(),
                weight: leaf,
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                anchor,
                pos,
                entries: Vec::new(),
                key: None,
                weight: leaf,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                self.nodes += 1;
                match self.stack.pop() {
                    Some(Frame::Seq {
                        anchor,
                        pos,
                        items,
                        weight,
                    }) => self.push_node(
                        Node {
                            value: Value::Seq(items),
                            pos,
                        },
                        weight,
                        anchor,
                    ),
                    Some(Frame::Map {
                        anchor,
                        pos,
                        entries,
                        weight,
                        ..
                    }) => {
                        let entries = merge_keys(entries);
                        self.push_node(
                            Node {
                                value: Value::Map(entries),
                                pos,
                            },
                            weight,
                            anchor,
                        )
                    }
                    None => {}
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// YAML merge keys (`<<: *defaults`): entries of the merged tables come first and
/// are overridden by the table's own keys.
fn merge_keys(entries: Vec<Entry>) -> Vec<Entry> {
    if !entries.iter().any(|e| e.key == "<<") {
        return entries;
    }
    let (merges, own): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(|e| e.key == "<<");
    let mut out: Vec<Entry> = Vec::new();
    for m in merges {
        let sources = match m.value.value {
            Value::Map(inner) => vec![inner],
            Value::Seq(items) => items
                .into_iter()
                .filter_map(|n| match n.value {
                    Value::Map(inner) => Some(inner),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        for inner in sources {
            for e in inner {
                if !out.iter().any(|o| o.key == e.key) {
                    out.push(Entry {
                        key_pos: m.key_pos,
                        ..e
                    });
                }
            }
        }
    }
    out.retain(|o| !own.iter().any(|e| e.key == o.key));
    out.extend(own);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.value {
            Value::Map(es) => &es.iter().find(|e| e.key == key).unwrap().value,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn positions_agree_across_formats() {
        let toml = "a = 1\n\n[b]\nc = \"x\"\n";
        let yaml = "a: 1\n\nb:\n  c: x\n";
        let json = "{\"a\": 1,\n\n\"b\": {\n  \"c\": \"x\"}}";
        for (node, line_c) in [
            (parse_toml(toml).unwrap(), 4),
            (parse_yaml(yaml).unwrap(), 4),
            (parse_json(json).unwrap(), 4),
        ] {
            let c = get(get(&node, "b"), "c");
            assert_eq!(c.pos.line, line_c);
            assert!(matches!(&c.value, Value::Str(s) if s == "x"));
            assert!(matches!(get(&node, "a").value, Value::Int(1)));
        }
    }

    #[test]
    fn yaml_plain_scalars_resolve_like_yaml_1_2() {
        assert!(matches!(resolve_plain("true"), Value::Bool(true)));
        assert!(matches!(resolve_plain("42"), Value::Int(42)));
        assert!(matches!(resolve_plain("0.5"), Value::Float(f) if f == 0.5));
        assert!(matches!(resolve_plain("~"), Value::Null));
        assert!(matches!(resolve_plain("hf-prod"), Value::Str(_)));
        assert!(matches!(resolve_plain("1e3"), Value::Float(f) if f == 1000.0));
        assert!(matches!(resolve_plain("e3"), Value::Str(_)));
    }

    #[test]
    fn yaml_anchors_and_merge_keys() {
        let n = parse_yaml("base: &b\n  x: 1\n  y: 2\nother:\n  <<: *b\n  y: 3\n").unwrap();
        let other = get(&n, "other");
        assert!(matches!(get(other, "x").value, Value::Int(1)));
        assert!(matches!(get(other, "y").value, Value::Int(3)));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse_toml("a = 1\nb = \n").unwrap_err();
        assert_eq!(e[0].pos.line, 2);
        let e = parse_json("{\n  \"a\": 1,\n}").unwrap_err();
        assert_eq!(e[0].pos.line, 2, "the trailing comma is on line 2");
        let e = parse_yaml("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e[0].pos.line >= 1);
    }
}
