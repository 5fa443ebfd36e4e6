//! A serde `Deserializer` over the position-carrying [`Node`] tree that reports
//! every problem of a file, not only the first.
//!
//! Three mechanisms make that possible while the raw structs stay plain
//! `#[derive(Deserialize)] #[serde(deny_unknown_fields)]`:
//! - `deserialize_struct` gets the list of known fields from serde, so unknown
//!   and repeated keys are recorded (with a "did you mean") and skipped;
//! - [`Items`] (lists of tables) records a broken entry and goes on with the next;
//! - [`Spanned`] asks the deserializer for the file, line, column and key path of
//!   a value, so the validation phase can point at it.
//!
//! Messages never echo string values: a value in the wrong place may be a token.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;

use super::diagnostic::{did_you_mean, join_path, one_of, FileId};
use super::node::{Entry, Node, Pos, Value};

const SPANNED: &str = "$hfconnect::Spanned";
const SPANNED_FIELDS: &[&str] = &["$file", "$line", "$col", "$path", "$value"];
const RECOVER: &str = "$hfconnect::Recover";

/// Where a raw value was read: file, position and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: FileId,
    pub pos: Pos,
    pub path: String,
}

/// A value together with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Spanned<T> {
    pub value: T,
    pub loc: Loc,
}

/// A problem found while applying the schema, located.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub pos: Pos,
    pub path: String,
    pub message: String,
    pub help: Option<String>,
}

/// Per-file deserialization context: collects problems and the names of
/// entries that were dropped because they were broken.
pub(crate) struct Ctx {
    pub file: FileId,
    pub problems: RefCell<Vec<Problem>>,
    /// (path of the list, `name` of the dropped entry)
    pub broken: RefCell<Vec<(String, String)>>,
}

impl Ctx {
    pub(crate) fn new(file: FileId) -> Self {
        Self {
            file,
            problems: RefCell::new(Vec::new()),
            broken: RefCell::new(Vec::new()),
        }
    }

    fn record(&self, pos: Pos, path: String, message: String, help: Option<String>) {
        self.problems.borrow_mut().push(Problem {
            pos,
            path,
            message,
            help,
        });
    }

    fn record_error(&self, e: DeError, fallback_pos: Pos, fallback_path: &str) {
        if e.recorded {
            return;
        }
        let (pos, path) = e.at.unwrap_or((fallback_pos, fallback_path.to_string()));
        self.record(pos, path, e.message, e.help);
    }
}

/// Deserialize a whole file's root node; everything that went wrong is in `ctx`.
pub(crate) fn from_node<T: for<'de> Deserialize<'de>>(node: &Node, ctx: &Ctx) -> Option<T> {
    match T::deserialize(NodeDe {
        node,
        path: String::new(),
        ctx,
    }) {
        Ok(v) => Some(v),
        Err(e) => {
            ctx.record_error(e, node.pos, "");
            None
        }
    }
}

// ---------------------------------------------------------------- error

#[derive(Debug, Clone)]
pub(crate) struct DeError {
    message: String,
    help: Option<String>,
    at: Option<(Pos, String)>,
    missing: Option<&'static str>,
    recorded: bool,
}

impl DeError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            help: None,
            at: None,
            missing: None,
            recorded: false,
        }
    }

    fn located(message: impl Into<String>, pos: Pos, path: &str) -> Self {
        Self {
            at: Some((pos, path.to_string())),
            ..Self::new(message)
        }
    }

    fn recorded() -> Self {
        Self {
            recorded: true,
            ..Self::new("already reported")
        }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

/// Describe an unexpected value without echoing strings (they may be secrets).
fn describe(unexp: &de::Unexpected<'_>) -> String {
    match unexp {
        de::Unexpected::Str(_) => "a string".into(),
        de::Unexpected::Bytes(_) => "bytes".into(),
        de::Unexpected::Char(_) => "a character".into(),
        other => other.to_string(),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::new(msg.to_string())
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(format!("expected {exp}, found {}", describe(&unexp)))
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::new(format!(
            "invalid value {}: expected {exp}",
            describe(&unexp)
        ))
    }
    fn missing_field(field: &'static str) -> Self {
        Self {
            missing: Some(field),
            ..Self::new(format!("missing required key `{field}`"))
        }
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::new(format!(
            "unknown key `{field}`; known keys are {}",
            one_of(expected)
        ))
    }
    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        Self::new(format!("unknown value; expected {}", one_of(expected)))
    }
}

// ---------------------------------------------------------------- deserializer

struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    ctx: &'a Ctx,
}

impl NodeDe<'_> {
    fn type_error(&self, expected: &str) -> DeError {
        DeError::located(
            format!("expected {expected}, found {}", self.node.kind()),
            self.node.pos,
            &self.path,
        )
    }
}

macro_rules! int_method {
    ($method:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let (pos, path) = (self.node.pos, &self.path);
            match &self.node.value {
                Value::Int(i) => visitor.visit_i64(*i).map_err(|e| locate(e, pos, path)),
                Value::Float(f) if f.fract() == 0.0 && f.is_finite() && f.abs() < 9.0e15 =>
                {
                    #[allow(clippy::cast_possible_truncation)]
                    visitor
                        .visit_i64(*f as i64)
                        .map_err(|e| locate(e, pos, path))
                }
                _ => Err(self.type_error("a whole number")),
            }
        }
    };
}

fn locate(mut e: DeError, pos: Pos, path: &str) -> DeError {
    if e.at.is_none() && !e.recorded {
        e.at = Some((pos, path.to_string()));
    }
    e
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, &self.path);
        let r = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_str(s),
            Value::Seq(items) => {
                return visitor.visit_seq(SeqAcc::new(items, &self.path, self.ctx))
            }
            Value::Map(entries) => {
                let entries: Vec<&Entry> = entries.iter().collect();
                return visitor.visit_map(MapAcc::new(entries, &self.path, self.ctx));
            }
        };
        r.map_err(|e| locate(e, pos, path))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Bool(b) => visitor.visit_bool(*b),
            _ => Err(self.type_error("`true` or `false`")),
        }
    }

    int_method!(deserialize_i8);
    int_method!(deserialize_i16);
    int_method!(deserialize_i32);
    int_method!(deserialize_i64);
    int_method!(deserialize_u8);
    int_method!(deserialize_u16);
    int_method!(deserialize_u32);
    int_method!(deserialize_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => visitor.visit_f64(*i as f64),
            Value::Float(f) => visitor.visit_f64(*f),
            _ => Err(self.type_error("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let (pos, path) = (self.node.pos, &self.path);
        match &self.node.value {
            Value::Str(s) => visitor.visit_str(s).map_err(|e| locate(e, pos, path)),
            _ => Err(self.type_error("a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        Err(self.type_error("bytes"))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, DeError> {
        Err(self.type_error("bytes"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            _ => Err(self.type_error("nothing (null)")),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => visitor.visit_seq(SeqAcc::new(items, &self.path, self.ctx)),
            _ => Err(self.type_error("a list")),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => {
                let entries = dedup(entries, &self.path, self.ctx);
                visitor.visit_map(MapAcc::new(entries, &self.path, self.ctx))
            }
            _ => Err(self.type_error("a table")),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED {
            return visitor.visit_map(SpannedAcc {
                de: Some(self),
                step: 0,
            });
        }
        if name == RECOVER {
            return visitor.visit_map(RecoverAcc {
                de: Some(self),
                done: false,
            });
        }
        let Value::Map(entries) = &self.node.value else {
            return Err(self.type_error("a table"));
        };
        let mut known = Vec::with_capacity(entries.len());
        for e in dedup(entries, &self.path, self.ctx) {
            if fields.contains(&e.key.as_str()) {
                known.push(e);
            } else {
                let help = match did_you_mean(&e.key, fields.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? known keys here: {}", one_of(fields)),
                    None => format!("known keys here: {}", one_of(fields)),
                };
                self.ctx.record(
                    e.key_pos,
                    join_path(&self.path, &e.key),
                    format!("unknown key `{}`", e.key),
                    Some(help),
                );
            }
        }
        let (pos, path) = (self.node.pos, &self.path);
        visitor
            .visit_map(MapAcc::new(known, &self.path, self.ctx))
            .map_err(|mut e| {
                if e.at.is_none() && !e.recorded {
                    let at_path = match e.missing {
                        Some(field) => join_path(path, field),
                        None => path.clone(),
                    };
                    e.at = Some((pos, at_path));
                }
                e
            })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => {
                if variants.contains(&s.as_str()) {
                    visitor.visit_enum(s.as_str().into_deserializer())
                } else {
                    Err(self.unknown_variant(name, s, variants))
                }
            }
            Value::Map(entries) if entries.len() == 1 => {
                let Some(entry) = entries.first() else {
                    return Err(self.type_error("a table with one key"));
                };
                if !variants.contains(&entry.key.as_str()) {
                    return Err(self.unknown_variant(name, &entry.key, variants));
                }
                let value = NodeDe {
                    node: &entry.value,
                    path: join_path(&self.path, &entry.key),
                    ctx: self.ctx,
                };
                visitor.visit_enum(EnumAcc {
                    variant: &entry.key,
                    value,
                })
            }
            Value::Map(_) => Err(DeError {
                help: Some(format!("write exactly one of {}", one_of(variants))),
                ..DeError::located(
                    "expected a table with exactly one key",
                    self.node.pos,
                    &self.path,
                )
            }),
            _ => Err(self.type_error(&format!("one of {}", one_of(variants)))),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

impl NodeDe<'_> {
    fn unknown_variant(&self, enum_name: &str, value: &str, variants: &[&str]) -> DeError {
        if enum_name == "ApiKeyLocation" {
            // Where a secret's location belongs, a value is the secret itself
            // more often than not, whatever it starts with: never echo it.
            let mut help = String::from(
                "write `{ env = \"HF_TOKEN\" }`, `{ file = \"/path/to/token\" }`, `\"huggingface\"` \
                 (the Hugging Face default lookup) or `{ value = \"...\" }`; a secret written directly is not accepted",
            );
            if let Some(s) = did_you_mean(value, variants.iter().copied()) {
                help = format!("did you mean `{s}`? {help}");
            }
            return DeError {
                help: Some(help),
                ..DeError::located(
                    "this value is not a secret's location (its text is not shown: it may be the secret)",
                    self.node.pos,
                    &self.path,
                )
            };
        }
        // Echo the value only when it cannot be a credential.
        let safe = value.len() <= 40
            && !value.starts_with("hf_")
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let shown = if safe {
            format!("`{value}`")
        } else {
            "this value".to_string()
        };
        let mut help = format!("expected {}", one_of(variants));
        if safe {
            if let Some(s) = did_you_mean(value, variants.iter().copied()) {
                help = format!("did you mean `{s}`? {help}");
            }
        }
        DeError {
            help: Some(help),
            ..DeError::located(format!("unknown value {shown}"), self.node.pos, &self.path)
        }
    }
}

/// Drop (and report) repeated keys: YAML and JSON parsers accept them, we don't.
fn dedup<'a>(entries: &'a [Entry], path: &str, ctx: &Ctx) -> Vec<&'a Entry> {
    // Tables in configs are small: a scan beats hashing up to a few dozen keys.
    let small = entries.len() <= 32;
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out: Vec<&Entry> = Vec::with_capacity(entries.len());
    for e in entries {
        let new = if small {
            !out.iter().any(|o| o.key == e.key)
        } else {
            seen.insert(e.key.as_str())
        };
        if new {
            out.push(e);
        } else {
            ctx.record(
                e.key_pos,
                join_path(path, &e.key),
                format!("key `{}` is given twice", e.key),
                None,
            );
        }
    }
    out
}

struct SeqAcc<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    path: &'a str,
    ctx: &'a Ctx,
}

impl<'a> SeqAcc<'a> {
    fn new(items: &'a [Node], path: &'a str, ctx: &'a Ctx) -> Self {
        Self {
            items: items.iter().enumerate(),
            path,
            ctx,
        }
    }
}

impl<'de> de::SeqAccess<'de> for SeqAcc<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            None => Ok(None),
            Some((i, node)) => {
                let de = NodeDe {
                    node,
                    path: format!("{}[{i}]", self.path),
                    ctx: self.ctx,
                };
                seed.deserialize(de).map(Some)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAcc<'a> {
    entries: std::vec::IntoIter<&'a Entry>,
    current: Option<&'a Entry>,
    path: &'a str,
    ctx: &'a Ctx,
}

impl<'a> MapAcc<'a> {
    fn new(entries: Vec<&'a Entry>, path: &'a str, ctx: &'a Ctx) -> Self {
        Self {
            entries: entries.into_iter(),
            current: None,
            path,
            ctx,
        }
    }
}

impl<'de> de::MapAccess<'de> for MapAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            None => Ok(None),
            Some(e) => {
                self.current = Some(e);
                let key: de::value::StrDeserializer<'_, DeError> =
                    e.key.as_str().into_deserializer();
                seed.deserialize(key)
                    .map(Some)
                    .map_err(|err| locate(err, e.key_pos, &join_path(self.path, &e.key)))
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(e) = self.current.take() else {
            return Err(DeError::new("value requested before its key"));
        };
        seed.deserialize(NodeDe {
            node: &e.value,
            path: join_path(self.path, &e.key),
            ctx: self.ctx,
        })
    }
}

struct EnumAcc<'a> {
    variant: &'a str,
    value: NodeDe<'a>,
}

impl<'de, 'a> de::EnumAccess<'de> for EnumAcc<'a> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), DeError> {
        let key: de::value::StrDeserializer<'_, DeError> = self.variant.into_deserializer();
        Ok((seed.deserialize(key)?, self.value))
    }
}

impl<'de> de::VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match &self.node.value {
            Value::Null => Ok(()),
            _ => Err(self.type_error("nothing")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_struct(self, "", fields, visitor)
    }
}

// ---------------------------------------------------------------- Spanned

struct SpannedAcc<'a> {
    de: Option<NodeDe<'a>>,
    step: usize,
}

impl<'de> de::MapAccess<'de> for SpannedAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match SPANNED_FIELDS.get(self.step) {
            Some(k) => seed.deserialize((*k).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let step = self.step;
        self.step += 1;
        let Some(de) = self.de.as_ref() else {
            return Err(DeError::new("spanned value read twice"));
        };
        match step {
            0 => seed.deserialize(de.ctx.file.0.into_deserializer()),
            1 => seed.deserialize(de.node.pos.line.into_deserializer()),
            2 => seed.deserialize(de.node.pos.col.into_deserializer()),
            3 => seed.deserialize(de.path.clone().into_deserializer()),
            _ => match self.de.take() {
                Some(de) => seed.deserialize(de),
                None => Err(DeError::new("spanned value read twice")),
            },
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut file = None;
                let mut line = None;
                let mut col = None;
                let mut path = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "$file" => file = Some(map.next_value::<u32>()?),
                        "$line" => line = Some(map.next_value::<u32>()?),
                        "$col" => col = Some(map.next_value::<u32>()?),
                        "$path" => path = Some(map.next_value::<String>()?),
                        _ => {
                            let value = map.next_value::<T>()?;
                            let loc = Loc {
                                file: FileId(file.unwrap_or(0)),
                                pos: Pos {
                                    line: line.unwrap_or(0),
                                    col: col.unwrap_or(0),
                                },
                                path: path.unwrap_or_default(),
                            };
                            return Ok(Spanned { value, loc });
                        }
                    }
                }
                Err(de::Error::custom("spanned value without a value"))
            }
        }
        deserializer.deserialize_struct(SPANNED, SPANNED_FIELDS, V(PhantomData))
    }
}

// ---------------------------------------------------------------- Items

/// A list of tables where a broken entry is reported and skipped, so the
/// entries after it are still checked.
#[derive(Debug, Clone)]
pub(crate) struct Items<T>(pub Vec<Spanned<T>>);

impl<T> Default for Items<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

struct Recover<T>(Option<T>);

struct RecoverAcc<'a> {
    de: Option<NodeDe<'a>>,
    done: bool,
}

impl<'de> de::MapAccess<'de> for RecoverAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        seed.deserialize("$value".into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(de) = self.de.take() else {
            return Err(DeError::new("entry read twice"));
        };
        let (node, ctx, path) = (de.node, de.ctx, de.path.clone());
        seed.deserialize(de).map_err(|e| {
            ctx.record_error(e, node.pos, &path);
            if let Some(name) = node.name_field() {
                let list = path
                    .rsplit_once('[')
                    .map_or(path.as_str(), |(l, _)| l)
                    .to_string();
                ctx.broken.borrow_mut().push((list, name.to_string()));
            }
            DeError::recorded()
        })
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Recover<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Recover<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Recover<T>, A::Error> {
                if map.next_key::<String>()?.is_none() {
                    return Ok(Recover(None));
                }
                // The error was recorded where it happened; skipping the entry is the recovery.
                Ok(Recover(map.next_value::<T>().ok()))
            }
        }
        deserializer.deserialize_struct(RECOVER, &["$value"], V(PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of tables")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Items<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(item) = seq.next_element::<Recover<Spanned<T>>>()? {
                    if let Some(v) = item.0 {
                        out.push(v);
                    }
                }
                Ok(Items(out))
            }
        }
        deserializer.deserialize_seq(V(PhantomData))
    }
}

#[cfg(test)]
mod tests;
