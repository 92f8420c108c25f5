//! Schema validation of a parsed document: every known field must hold a value of its IDL
//! type. Unknown keys, unknown keyed-union members and unknown enum spellings are kept (forward
//! compatibility); the enum spellings are reported as warnings because libxl 4.17 would
//! reject them.

use serde_json::Value;

use super::error::{ConfigError, JsonPath, ParseWarning};
use super::schema::{FieldType, StructDef};
use super::types::{Defbool, Mac, Uuid};
use super::Object;

/// Bitmap indices are C `int`s in libxl, and it allocates `last + 1` bits.
const MAX_BITMAP_INDEX: i128 = i32::MAX as i128 - 1;

pub(crate) fn validate_struct(
    obj: &Object,
    def: &'static StructDef,
    path: &mut JsonPath,
    warnings: &mut Vec<ParseWarning>,
) -> Result<(), ConfigError> {
    // (union keyvar, first member key seen) for the "two members" check.
    let mut union_seen: Vec<(&str, &str)> = Vec::new();
    for (key, value) in obj {
        path.push_key(key.clone());
        let result = if let Some((field, _, _, member)) = def.union_for_key(key) {
            match union_seen.iter().find(|(keyvar, _)| *keyvar == field.name) {
                Some((_, first)) => Err(ConfigError::invalid(
                    path,
                    format!("a second keyed-union member after {first:?}; libxl 4.17 aborts on such a document"),
                )),
                None => {
                    union_seen.push((field.name, key));
                    match (value, member) {
                        (Value::Object(inner), Some(member_def)) => validate_struct(inner, member_def, path, warnings),
                        (Value::Object(_), None) => Ok(()),
                        (other, _) => Err(ConfigError::type_error(path, "an object", other)),
                    }
                }
            }
        } else if let Some(field) = def.field_for_key(key) {
            validate_value(&field.ty, value, path, warnings)
        } else {
            Ok(())
        };
        path.pop();
        result?;
    }
    Ok(())
}

fn integer(value: &Value) -> Option<i128> {
    value.as_i64().map(i128::from).or_else(|| value.as_u64().map(i128::from))
}

fn check_range(path: &JsonPath, value: i128, ctype: &'static str, (min, max): (i128, i128)) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(ConfigError::Range { path: path.clone(), value: value.to_string(), ctype, min, max });
    }
    Ok(())
}

fn validate_value(
    ty: &FieldType,
    value: &Value,
    path: &mut JsonPath,
    warnings: &mut Vec<ParseWarning>,
) -> Result<(), ConfigError> {
    let wrong = |path: &JsonPath| Err(ConfigError::type_error(path, ty.expectation(), value));
    match ty {
        FieldType::Int(kind) => match integer(value) {
            Some(n) => check_range(path, n, kind.c_name(), kind.range()),
            None => wrong(path),
        },
        FieldType::Bool => {
            if value.is_boolean() {
                Ok(())
            } else {
                wrong(path)
            }
        }
        FieldType::String => {
            if value.is_string() || value.is_null() {
                Ok(())
            } else {
                wrong(path)
            }
        }
        FieldType::Enum(def) => match value {
            Value::Null => Ok(()),
            Value::String(s) => {
                if def.lookup(s).is_none() {
                    warnings.push(ParseWarning::UnknownEnumValue { path: path.clone(), value: s.clone() });
                }
                Ok(())
            }
            _ => wrong(path),
        },
        FieldType::Defbool => match value.as_str().map(Defbool::parse_like_libxl) {
            Some(Some(_)) => Ok(()),
            _ => wrong(path),
        },
        FieldType::Uuid => match value.as_str() {
            Some(s) => s.parse::<Uuid>().map(drop).map_err(|m| ConfigError::invalid(path, m)),
            None => wrong(path),
        },
        FieldType::Mac => match value.as_str() {
            Some(s) if Mac::parse_like_libxl(s).is_some() => Ok(()),
            Some(s) => {
                Err(ConfigError::invalid(path, format!("{s:?} is not a MAC address (expected xx:xx:xx:xx:xx:xx)")))
            }
            None => wrong(path),
        },
        FieldType::Bitmap => {
            let Some(items) = value.as_array() else { return wrong(path) };
            for (i, item) in items.iter().enumerate() {
                path.push_index(i);
                let r = match integer(item) {
                    Some(n) => check_range(path, n, "a bitmap index", (0, MAX_BITMAP_INDEX)),
                    None => Err(ConfigError::type_error(path, "a bit index (a non-negative integer)", item)),
                };
                path.pop();
                r?;
            }
            Ok(())
        }
        FieldType::StringList => each(value, path, |item, path| {
            if item.is_string() {
                Ok(())
            } else {
                Err(ConfigError::type_error(path, "a string", item))
            }
        })
        .unwrap_or_else(|| wrong(path)),
        FieldType::KeyValueList => {
            let Some(obj) = value.as_object() else { return wrong(path) };
            for (k, v) in obj {
                if !(v.is_string() || v.is_null()) {
                    return Err(ConfigError::type_error(&path.key(k), "a string or null", v));
                }
            }
            Ok(())
        }
        FieldType::CpuidPolicyList => {
            if value.is_object() || value.is_array() {
                Ok(())
            } else {
                wrong(path)
            }
        }
        FieldType::MsVmGenid => match value.as_array() {
            Some(items) if items.len() == 16 => {
                for (i, item) in items.iter().enumerate() {
                    let p = path.index(i);
                    match integer(item) {
                        Some(n) => check_range(&p, n, "a genid byte", (0, 255))?,
                        None => return Err(ConfigError::type_error(&p, "an integer", item)),
                    }
                }
                Ok(())
            }
            _ => wrong(path),
        },
        FieldType::Struct(def) => match value {
            Value::Object(obj) => validate_struct(obj, def, path, warnings),
            _ => wrong(path),
        },
        FieldType::Array(elem) => {
            each(value, path, |item, path| validate_value(elem, item, path, warnings)).unwrap_or_else(|| wrong(path))
        }
        // Reached only through `validate_struct`, which handles member keys itself.
        FieldType::KeyedUnion(_) => wrong(path),
    }
}

/// Runs `check` on every element of an array value (with the element's path); `None` if the
/// value is not an array.
fn each(
    value: &Value,
    path: &mut JsonPath,
    mut check: impl FnMut(&Value, &mut JsonPath) -> Result<(), ConfigError>,
) -> Option<Result<(), ConfigError>> {
    let items = value.as_array()?;
    for (i, item) in items.iter().enumerate() {
        path.push_index(i);
        let r = check(item, path);
        path.pop();
        if r.is_err() {
            return Some(r);
        }
    }
    Some(Ok(()))
}
