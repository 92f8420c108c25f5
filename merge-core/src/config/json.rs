//! Reading libxl JSON text into ordered `serde_json` values, the way libxl reads it.
//!
//! * The text ends at the first NUL byte: libxl parses `strlen(data)` bytes, and the userdata
//!   file ends with `}\n\0`. Bytes after that NUL are ignored (with a warning).
//! * Whitespace may follow the value; anything else is an error with its line and column
//!   (stricter than libxl, whose yajl ignores anything after the first value; libxl never
//!   writes such text).
//! * Invalid UTF-8 is an error with its position (yajl validates strings too).
//! * A repeated key keeps its **first** occurrence, as `libxl__json_map_get` does, and the later
//!   ones are reported as [`ParseWarning::DuplicateKey`].
//! * Nesting deeper than 128 levels is a syntax error (serde_json's limit), never a stack
//!   overflow.
//!
//! Numbers: integers that fit `i64`/`u64` stay integers; others become `f64`, rounded exactly
//! (serde_json's `float_roundtrip`: its default parser can be one unit in the last place off,
//! so a number printed and read back could change, as the `libxl_json` fuzz target found with
//! `222222222222222222222223`). A number written with an exponent but no `.` (`1e5`) is read by
//! libxl as the integer before the `e` (`strtoll`), but here as a float; libxl never writes such
//! numbers.

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::error::{ConfigError, JsonPath, ParseWarning};

/// A value read from text, with what was tolerated on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadJson {
    pub value: Value,
    pub warnings: Vec<ParseWarning>,
}

/// Reads one JSON value from libxl text (see the module docs for the rules).
pub fn read_json(bytes: &[u8]) -> Result<ReadJson, ConfigError> {
    let mut warnings = Vec::new();
    let text = match memchr_nul(bytes) {
        Some(nul) => {
            let after = bytes[nul..].iter().filter(|&&b| b != 0).count();
            if after > 0 {
                warnings.push(ParseWarning::BytesAfterNul { count: bytes.len() - nul - 1 });
            }
            &bytes[..nul]
        }
        None => bytes,
    };
    let text = match std::str::from_utf8(text) {
        Ok(text) => text,
        Err(e) => {
            let offset = e.valid_up_to();
            let (line, column) = line_column(text, offset);
            return Err(ConfigError::InvalidUtf8 { line, column, offset });
        }
    };
    if text.bytes().all(|b| b.is_ascii_whitespace()) {
        return Err(ConfigError::Empty);
    }
    // Text already known to be UTF-8: the reader need not check each string again.
    let mut de = serde_json::Deserializer::from_str(text);
    let mut path = JsonPath::root();
    let value = ValueReader { path: &mut path, warnings: &mut warnings }.deserialize(&mut de).map_err(syntax_error)?;
    de.end().map_err(syntax_error)?;
    Ok(ReadJson { value, warnings })
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &[u8], offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
    (line, column)
}

fn syntax_error(e: serde_json::Error) -> ConfigError {
    // serde_json's Display is "<message> at line L column C"; keep the message alone.
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    ConfigError::Syntax { line: e.line(), column: e.column(), message }
}

/// Builds a `Value`, keeping the first of duplicate keys and recording the others.
struct ValueReader<'a> {
    path: &'a mut JsonPath,
    warnings: &'a mut Vec<ParseWarning>,
}

impl<'de> DeserializeSeed<'de> for ValueReader<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueReader<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.path.push_index(items.len());
            let next = seq.next_element_seed(ValueReader { path: &mut *self.path, warnings: &mut *self.warnings });
            self.path.pop();
            match next? {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // The key rides on the path while its value is read, and is moved back out after.
            self.path.push_key(key);
            let value = map.next_value_seed(ValueReader { path: &mut *self.path, warnings: &mut *self.warnings });
            let Ok(value) = value else {
                self.path.pop();
                return value;
            };
            match object.entry(self.path.take_last_key().unwrap_or_default()) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    self.path.push_key(slot.key().clone());
                    self.warnings.push(ParseWarning::DuplicateKey { path: self.path.clone() });
                    self.path.pop();
                }
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userdata_trailer_is_accepted() {
        let r = read_json(b"{\"a\": 1}\n\0").unwrap();
        assert_eq!(r.value, serde_json::json!({"a": 1}));
        assert!(r.warnings.is_empty());
        let r = read_json(b"{}\n\0junk").unwrap();
        assert_eq!(r.warnings, vec![ParseWarning::BytesAfterNul { count: 4 }]);
    }

    #[test]
    fn duplicate_keys_keep_the_first_and_warn() {
        let r = read_json(br#"{"c_info": {"name": "a", "name": "b"}, "x": [{"k": 1, "k": 2}]}"#).unwrap();
        assert_eq!(r.value["c_info"]["name"], "a");
        assert_eq!(r.value["x"][0]["k"], 1);
        let paths: Vec<String> = r
            .warnings
            .iter()
            .map(|w| match w {
                ParseWarning::DuplicateKey { path } => path.to_string(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, ["c_info.name", "x[0].k"]);
    }

    #[test]
    fn errors_have_positions() {
        match read_json(b"{\n  \"a\": 1,\n  \"b\" 2\n}") {
            Err(ConfigError::Syntax { line: 3, column, .. }) => assert!(column >= 6),
            other => panic!("{other:?}"),
        }
        match read_json(b"{\"a\": \"\xff\"}") {
            Err(ConfigError::InvalidUtf8 { line: 1, column: 8, offset: 7 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_json(b"{} x"), Err(ConfigError::Syntax { line: 1, column: 4, .. })));
        assert_eq!(read_json(b" \n\0"), Err(ConfigError::Empty));
        assert_eq!(read_json(b""), Err(ConfigError::Empty));
        let deep = "[".repeat(10_000);
        assert!(matches!(read_json(deep.as_bytes()), Err(ConfigError::Syntax { .. })));
    }
}
