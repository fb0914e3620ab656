//! Reading the config file's YAML: parse it with a line and column on every node, substitute
//! `${NAME}` into the parsed scalar values, then deserialize the file structs, each value typed
//! by the key that receives it.
//!
//! Why not serde_yaml on the text: `${NAME}` used to be pasted into the text before parsing, so
//! a secret containing ` #` was cut at the `#` (YAML read it as a comment) and `${NAME}` inside
//! a comment was expanded (an unset one was an error). Here the text is parsed first
//! ([`marked_yaml`], on yaml-rust2), comments never reach the tree, and a substituted value is
//! a string scalar that no YAML parser looks at again: `secret: ${S}` with `S` = `abc #x: [1`
//! is exactly that string, `memory_bytes: ${MEM}` is a number because `memory_bytes` is one,
//! `enabled: ${E}` a bool because `enabled` is one.
//!
//! Typing: a plain (unquoted, unsubstituted) scalar asked for "anything" is typed as YAML 1.2's
//! core schema types it (null, bool, integer, float, string), as serde_yaml did; quoted and
//! substituted scalars are strings then. A key of a known type (a number, a bool, a string)
//! reads any scalar's text as that type. Errors carry the line and column of the node at fault
//! and, through serde_path_to_error, the dotted key.
//!
//! Not supported (refused with the line): anchors, aliases and tags.

use std::fmt;

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::LoaderOptions;
pub use marked_yaml::Node;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};

use super::ConfigError;

/// Parse `text` into a mapping node (an empty or comment-only file is an empty mapping).
pub fn parse(text: &str, file: &str) -> Result<Node, ConfigError> {
    if !has_content(text) {
        return Ok(empty_mapping());
    }
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        // Quoted scalars keep "may not coerce": they are strings to `deserialize_any`.
        .prevent_coercion(true);
    marked_yaml::parse_yaml_with_options(0, text, options).map_err(|e| {
        let (line, column, message) = load_error(&e);
        ConfigError::Syntax {
            file: file.into(),
            line,
            column,
            message,
        }
    })
}

fn empty_mapping() -> Node {
    Node::Mapping(MarkedMappingNode::new_empty(marked_yaml::Span::new_blank()))
}

/// Whether the text holds anything but blank lines, comments and document markers (an empty
/// YAML stream has no document, which the loader cannot represent).
fn has_content(text: &str) -> bool {
    text.lines().any(|l| {
        let t = l.trim();
        !(t.is_empty() || t.starts_with('#') || t == "---" || t == "...")
    })
}

fn load_error(e: &marked_yaml::LoadError) -> (usize, usize, String) {
    use marked_yaml::LoadError as L;
    let at = |m: &marked_yaml::Marker| (m.line(), m.column());
    let ((line, column), message) = match e {
        L::TopLevelMustBeMapping(m) | L::TopLevelMustBeSequence(m) => {
            (at(m), "the file must be a mapping of sections".to_string())
        }
        L::UnexpectedAnchor(m) => (at(m), "anchors and aliases are not supported".into()),
        L::MappingKeyMustBeScalar(m) => (at(m), "a key must be a plain value".into()),
        L::UnexpectedTag(m) => (at(m), "tags (`!…`) are not supported".into()),
        L::ScanError(m, s) => (at(m), strip_location(&s.to_string())),
        L::DuplicateKey(d) => {
            let first = d.prev_key.span().start().map(|m| m.line()).unwrap_or(0);
            let m = d.key.span().start().copied();
            (
                m.map(|m| at(&m)).unwrap_or((0, 0)),
                format!(
                    "key `{}` appears twice (first on line {first})",
                    d.key.as_str()
                ),
            )
        }
    };
    (line, column, message)
}

/// yaml-rust2 appends " at byte N line L column C" itself; the error prints the place in front.
fn strip_location(msg: &str) -> String {
    match msg.find(" at byte ").or_else(|| msg.find(" at line ")) {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Replace `${NAME}` in every scalar value (not in keys) with the variable `NAME`; `$${` is a
/// literal `${`. A substituted scalar becomes a string that may never be typed as YAML would
/// type it (only the receiving key types it).
pub fn substitute(
    node: &mut Node,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match node {
        Node::Mapping(m) => {
            for (_, v) in m.iter_mut() {
                substitute(v, file, env)?;
            }
        }
        Node::Sequence(s) => {
            for v in s.iter_mut() {
                substitute(v, file, env)?;
            }
        }
        Node::Scalar(s) => {
            let expanded = expand(s.as_str(), env).map_err(|var| ConfigError::MissingEnv {
                file: file.into(),
                line: s.span().start().map(|m| m.line()).unwrap_or(0),
                var,
            })?;
            if let Some(value) = expanded {
                let mut new = MarkedScalarNode::new(*s.span(), value);
                new.set_coerce(false);
                *s = new;
            }
        }
    }
    Ok(())
}

/// `value` with `${NAME}` replaced and `$${` unescaped; `None` when it holds neither.
/// `Err(NAME)` for an unset variable. A `${` without a closing `}` stays as written.
pub fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !value.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find("${") {
        if pos > 0 && rest.as_bytes()[pos - 1] == b'$' {
            out.push_str(&rest[..pos - 1]);
            out.push_str("${");
            rest = &rest[pos + 2..];
            continue;
        }
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[pos..]);
            rest = "";
            break;
        };
        let var = &after[..end];
        out.push_str(&env(var).ok_or_else(|| var.to_string())?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Take the entry `key` out of the top-level mapping.
pub fn take_key(root: &mut Node, key: &str) -> Option<Node> {
    let m = root.as_mapping_mut()?;
    let k = m.keys().find(|k| k.as_str() == key)?.clone();
    m.remove(&k)
}

/// The line of a node.
pub fn line_of(node: &Node) -> usize {
    node.span().start().map(|m| m.line()).unwrap_or(0)
}

/// Deserialize `T` from `node`: `Err((dotted key, line, column, message))`.
pub fn from_node<'a, T: de::Deserialize<'a>>(
    node: &'a Node,
) -> Result<T, (String, usize, usize, String)> {
    serde_path_to_error::deserialize(De::new(node)).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner.at.unwrap_or((0, 0));
        (key, line, column, inner.message)
    })
}

/// A deserialization error at a line and column (`None` until the node it arose at is known).
#[derive(Debug)]
pub struct Error {
    message: String,
    at: Option<(usize, usize)>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            at: None,
        }
    }
}

fn place(span: &marked_yaml::Span) -> Option<(usize, usize)> {
    span.start().map(|m| (m.line(), m.column()))
}

/// The node a value is read from.
#[derive(Clone, Copy)]
enum Item<'a> {
    Scalar(&'a MarkedScalarNode),
    Map(&'a MarkedMappingNode),
    Seq(&'a MarkedSequenceNode),
}

/// The serde deserializer over one node.
pub struct De<'a> {
    item: Item<'a>,
}

impl<'a> De<'a> {
    pub fn new(node: &'a Node) -> De<'a> {
        De {
            item: match node {
                Node::Scalar(s) => Item::Scalar(s),
                Node::Mapping(m) => Item::Map(m),
                Node::Sequence(s) => Item::Seq(s),
            },
        }
    }

    fn scalar(s: &'a MarkedScalarNode) -> De<'a> {
        De {
            item: Item::Scalar(s),
        }
    }

    fn span(&self) -> &'a marked_yaml::Span {
        match self.item {
            Item::Scalar(s) => s.span(),
            Item::Map(m) => m.span(),
            Item::Seq(s) => s.span(),
        }
    }

    /// Attach this node's place to an error that has none yet (errors from deeper nodes keep
    /// theirs).
    fn locate<T>(&self, r: Result<T, Error>) -> Result<T, Error> {
        let at = place(self.span());
        r.map_err(|mut e| {
            if e.at.is_none() {
                e.at = at;
            }
            e
        })
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match self.item {
            Item::Scalar(_) if self.is_null() => Unexpected::Unit,
            Item::Scalar(s) if s.may_coerce() => {
                let text = s.as_str();
                if let Some(b) = parse_bool(text) {
                    Unexpected::Bool(b)
                } else if let Some(n) = parse_int(text).and_then(|n| u64::try_from(n).ok()) {
                    Unexpected::Unsigned(n)
                } else if let Some(n) = parse_int(text).and_then(|n| i64::try_from(n).ok()) {
                    Unexpected::Signed(n)
                } else if let Some(f) = parse_float(text) {
                    Unexpected::Float(f)
                } else {
                    Unexpected::Str(text)
                }
            }
            Item::Scalar(s) => Unexpected::Str(s.as_str()),
            Item::Map(_) => Unexpected::Map,
            Item::Seq(_) => Unexpected::Seq,
        }
    }

    fn invalid<T, V: Visitor<'a>>(&self, visitor: &V) -> Result<T, Error> {
        self.locate(Err(de::Error::invalid_type(self.unexpected(), visitor)))
    }

    /// A plain scalar YAML reads as null (`~`, `null`, or nothing).
    fn is_null(&self) -> bool {
        matches!(self.item, Item::Scalar(s) if s.may_coerce()
            && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    fn visit_map<V: Visitor<'a>>(&self, m: &'a MarkedMappingNode, v: V) -> Result<V::Value, Error> {
        self.locate(v.visit_map(MapDe {
            entries: m.iter().collect::<Vec<_>>().into_iter(),
            value: None,
        }))
    }

    fn visit_seq<V: Visitor<'a>>(
        &self,
        s: &'a MarkedSequenceNode,
        v: V,
    ) -> Result<V::Value, Error> {
        self.locate(v.visit_seq(SeqDe { items: s.iter() }))
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// A YAML 1.2 core-schema integer: decimal with an optional sign, `0x…` or `0o…`.
fn parse_int(s: &str) -> Option<i128> {
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse::<i128>().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

/// A YAML 1.2 core-schema float.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let body = s.trim_start_matches(['-', '+']);
    let numeric = body
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'.')
        && body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if !numeric {
        return None;
    }
    s.parse().ok()
}

fn visit_int<'a, V: Visitor<'a>>(v: V, n: i128) -> Result<V::Value, Error> {
    if let Ok(u) = u64::try_from(n) {
        v.visit_u64(u)
    } else if let Ok(i) = i64::try_from(n) {
        v.visit_i64(i)
    } else {
        Err(de::Error::custom(format!("integer `{n}` is out of range")))
    }
}

macro_rules! integer {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
            match self.item {
                Item::Scalar(s) => match parse_int(s.as_str().trim()) {
                    Some(n) => self.locate(visit_int(v, n)),
                    None => self.invalid(&v),
                },
                _ => self.invalid(&v),
            }
        }
    )*};
}

impl<'a> de::Deserializer<'a> for De<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.item {
            Item::Map(m) => self.visit_map(m, v),
            Item::Seq(s) => self.visit_seq(s, v),
            Item::Scalar(s) => {
                let text = s.as_str();
                let r = if !s.may_coerce() {
                    v.visit_str(text)
                } else if self.is_null() {
                    v.visit_unit()
                } else if let Some(b) = parse_bool(text) {
                    v.visit_bool(b)
                } else if let Some(n) = parse_int(text) {
                    visit_int(v, n)
                } else if let Some(f) = parse_float(text) {
                    v.visit_f64(f)
                } else {
                    v.visit_str(text)
                };
                self.locate(r)
            }
        }
    }

    fn deserialize_bool<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.item {
            Item::Scalar(s) => match parse_bool(s.as_str().trim()) {
                Some(b) => self.locate(v.visit_bool(b)),
                None => self.invalid(&v),
            },
            _ => self.invalid(&v),
        }
    }

    integer! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
    }

    fn deserialize_f32<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.item {
            Item::Scalar(s) => match parse_float(s.as_str().trim()) {
                Some(f) => self.locate(v.visit_f64(f)),
                None => self.invalid(&v),
            },
            _ => self.invalid(&v),
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.item {
            Item::Scalar(s) => self.locate(v.visit_str(s.as_str())),
            _ => self.invalid(&v),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_char<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        if self.is_null() {
            self.locate(v.visit_none())
        } else {
            let at = place(self.span());
            v.visit_some(self).map_err(|mut e| {
                e.at = e.at.or(at);
                e
            })
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        if self.is_null() {
            self.locate(v.visit_unit())
        } else {
            self.invalid(&v)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.item {
            Item::Seq(s) => self.visit_seq(s, v),
            _ if self.is_null() => self.locate(v.visit_seq(SeqDe { items: [].iter() })),
            _ => self.invalid(&v),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        match self.item {
            Item::Map(m) => self.visit_map(m, v),
            // `cache:` with nothing under it is an empty section.
            _ if self.is_null() => self.locate(v.visit_map(MapDe {
                entries: Vec::new().into_iter(),
                value: None,
            })),
            _ => self.invalid(&v),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(v)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.item {
            Item::Scalar(s) => self.locate(v.visit_enum(EnumDe {
                variant: s,
                value: None,
            })),
            Item::Map(m) if m.len() == 1 => {
                let Some((k, val)) = m.iter().next() else {
                    return self.invalid(&v);
                };
                self.locate(v.visit_enum(EnumDe {
                    variant: k,
                    value: Some(val),
                }))
            }
            _ => self.invalid(&v),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<(&'a MarkedScalarNode, &'a Node)>,
    value: Option<&'a Node>,
}

impl<'a> de::MapAccess<'a> for MapDe<'a> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            None => Ok(None),
            Some((k, v)) => {
                self.value = Some(v);
                let key = De::scalar(k);
                let r = seed.deserialize(De::scalar(k));
                key.locate(r).map(Some)
            }
        }
    }

    fn next_value_seed<S: DeserializeSeed<'a>>(&mut self, seed: S) -> Result<S::Value, Error> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value without a key"))?;
        let de = De::new(node);
        let at = place(de.span());
        seed.deserialize(de).map_err(|mut e| {
            e.at = e.at.or(at);
            e
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'a>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Error> {
        match self.items.next() {
            None => Ok(None),
            Some(n) => {
                let de = De::new(n);
                let at = place(de.span());
                seed.deserialize(de).map(Some).map_err(|mut e| {
                    e.at = e.at.or(at);
                    e
                })
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// An enum written as `variant` or `{variant: value}`.
struct EnumDe<'a> {
    variant: &'a MarkedScalarNode,
    value: Option<&'a Node>,
}

impl<'a> de::EnumAccess<'a> for EnumDe<'a> {
    type Error = Error;
    type Variant = VariantDe<'a>;

    fn variant_seed<S: DeserializeSeed<'a>>(
        self,
        seed: S,
    ) -> Result<(S::Value, VariantDe<'a>), Error> {
        let name: de::value::StrDeserializer<'_, Error> = self.variant.as_str().into_deserializer();
        let v = seed.deserialize(name)?;
        Ok((v, VariantDe { value: self.value }))
    }
}

struct VariantDe<'a> {
    value: Option<&'a Node>,
}

impl<'a> de::VariantAccess<'a> for VariantDe<'a> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.value {
            None => Ok(()),
            Some(n) => de::Deserialize::deserialize(De::new(n)),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'a>>(self, seed: S) -> Result<S::Value, Error> {
        match self.value {
            Some(n) => seed.deserialize(De::new(n)),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &"a value")),
        }
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, v: V) -> Result<V::Value, Error> {
        match self.value {
            Some(n) => de::Deserializer::deserialize_seq(De::new(n), v),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &v)),
        }
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.value {
            Some(n) => de::Deserializer::deserialize_map(De::new(n), v),
            None => Err(de::Error::invalid_type(Unexpected::UnitVariant, &v)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[serde(default)]
        secret: Option<String>,
        #[serde(default)]
        n: u64,
        #[serde(default)]
        b: bool,
        #[serde(default)]
        any: Option<serde_yaml::Value>,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        map: BTreeMap<String, String>,
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<T, String> {
        let env = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let mut node = parse(text, "t.yaml").map_err(|e| e.to_string())?;
        substitute(&mut node, "t.yaml", &env).map_err(|e| e.to_string())?;
        from_node(&node).map_err(|(k, l, c, m)| format!("line {l} col {c} `{k}`: {m}"))
    }

    #[test]
    fn a_substituted_secret_is_never_parsed_as_yaml() {
        let t = load("secret: ${S}\n", &[("S", "abc #x: [1")]).unwrap();
        assert_eq!(t.secret.as_deref(), Some("abc #x: [1"));
        // Values YAML would type as something else stay strings for a string key.
        for v in ["true", "123", "null", "~", "", "{a: 1}", "'q'", "- x"] {
            let t = load("secret: ${S}\n", &[("S", v)]).unwrap();
            assert_eq!(t.secret.as_deref(), Some(v), "{v}");
        }
        // … and for a key that takes anything.
        let t = load("any: ${S}\n", &[("S", "123")]).unwrap();
        assert_eq!(t.any, Some(serde_yaml::Value::String("123".into())));
        // Quoted, inside a longer value, in lists and maps.
        let t = load(
            "secret: \"pre-${S}-post\"\nlist: [\"${S}\", x]\nmap: {k: \"${S}\"}\n",
            &[("S", "a #b")],
        )
        .unwrap();
        assert_eq!(t.secret.as_deref(), Some("pre-a #b-post"));
        assert_eq!(t.list, vec!["a #b", "x"]);
        assert_eq!(t.map["k"], "a #b");
    }

    #[test]
    fn a_substituted_value_is_typed_by_its_key() {
        let t = load("n: ${N}\nb: ${B}\n", &[("N", "268435456"), ("B", "true")]).unwrap();
        assert_eq!((t.n, t.b), (268435456, true));
        let e = load("n: ${N}\n", &[("N", "lots")]).unwrap_err();
        assert!(e.contains("line 1") && e.contains("`n`"), "{e}");
        let e = load("\nb: ${B}\n", &[("B", "yes")]).unwrap_err();
        assert!(e.contains("line 2") && e.contains("`b`"), "{e}");
    }

    #[test]
    fn comments_are_never_expanded() {
        let t = load(
            "# ${UNSET} in a comment\nsecret: x # and ${UNSET} here\n",
            &[],
        )
        .unwrap();
        assert_eq!(t.secret.as_deref(), Some("x"));
        let e = load("n: 1\nsecret: ${UNSET}\n", &[]).unwrap_err();
        assert!(e.contains("line 2") && e.contains("UNSET"), "{e}");
    }

    #[test]
    fn escapes_and_unclosed() {
        let none = |_: &str| None;
        assert_eq!(expand("$${LIT}", &none).unwrap().as_deref(), Some("${LIT}"));
        assert_eq!(expand("a${b", &none).unwrap().as_deref(), Some("a${b"));
        assert_eq!(expand("plain", &none).unwrap(), None);
        assert_eq!(expand("${X}", &none).unwrap_err(), "X");
        let t = load("secret: $${LIT}\n", &[]).unwrap();
        assert_eq!(t.secret.as_deref(), Some("${LIT}"));
    }

    #[test]
    fn plain_scalars_keep_yaml_types() {
        let t = load("any: 12\nn: 0x10\nsecret: ~\nb: True\n", &[]).unwrap();
        assert_eq!(t.any, Some(serde_yaml::Value::Number(12.into())));
        assert_eq!(t.n, 16);
        assert_eq!(t.secret, None);
        assert!(t.b);
        let t = load("any: '12'\n", &[]).unwrap();
        assert_eq!(t.any, Some(serde_yaml::Value::String("12".into())));
        let t = load("any: {a: [1, x]}\n", &[]).unwrap();
        assert!(matches!(t.any, Some(serde_yaml::Value::Mapping(_))));
    }

    #[test]
    fn errors_have_places() {
        let e = load("n: 1\nnn: 2\n", &[]).unwrap_err();
        assert!(e.contains("line 2") && e.contains("nn"), "{e}");
        let e = load("n: 1\nn: 2\n", &[]).unwrap_err();
        assert!(e.contains("line 2") && e.contains("twice"), "{e}");
        let e = load("n: [1\n", &[]).unwrap_err();
        assert!(e.contains("line"), "{e}");
        let e = load("a: &x 1\nn: *x\n", &[]).unwrap_err();
        assert!(e.contains("anchors"), "{e}");
        for empty in ["", "# nothing\n", "---\n"] {
            assert_eq!(load(empty, &[]).unwrap().n, 0);
        }
    }
}
