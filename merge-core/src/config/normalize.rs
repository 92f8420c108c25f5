//! What libxl 4.17 prints after reading a document: `libxl_domain_config_from_json` followed by
//! `libxl_domain_config_to_json`, reproduced from the schema.
//!
//! The reading side follows the generated `*_parse_json` functions and `libxl_json.c`:
//!
//! * a field is looked up by the **first** key equal to its name (keys compare as C strings, so
//!   they end at an embedded NUL); if that value's JSON type is not the one the field asks for,
//!   the field keeps its init value, silently; unknown keys are ignored;
//! * a value of the right type that does not parse fails the whole document
//!   ([`LibxlFailure::Rejects`]): integers outside their C type, unknown enum spellings (enums
//!   match case-insensitively), defbools not starting with `<default>`/`True`/`False`, bad
//!   UUIDs and MACs, malformed bitmaps, cpuid policies, genids;
//! * integers above `i64::MAX` and non-integers are not "integers" to libxl, so integer fields
//!   ignore them (even `uint64` ones); strings end at an embedded NUL (`strncpy`);
//! * keyed unions try `"<keyvar>.<member>"` keys in declaration order; a second member whose
//!   discriminator is no longer at its init value trips an `assert` ([`LibxlFailure::Aborts`]);
//! * a bitmap is sized from its last element, in whole bytes, and indices beyond that size are
//!   dropped; negative indices write outside the buffer ([`LibxlFailure::Undefined`]).
//!
//! Not reproduced: libxl keeps every repeated key of a key-value list (`xsdata`,
//! `platformdata`) and prints them all, while the reader here keeps the first
//! ([`super::json`]); and a number like `1e5` is an integer (1) to libxl but a float here.
//!
//! The writing side follows `gentypes.py`: IDL key order; nested structs and keyed unions
//! always (possibly `{}`); arrays when non-empty; other fields only when they differ from their
//! init value (or are non-zero / non-empty / true without one); enums in lowercase; bitmaps as
//! ascending indices; defbools as `"True"`/`"False"`.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::error::{ConfigError, JsonPath, LibxlFailure};
use super::schema::{FieldType, IntKind, StructDef, UnionDef, DOMAIN_CONFIG};
use super::types::{Defbool, Mac, Uuid};
use super::{DomainConfig, Object};

/// `XEN_CPUID_INPUT_UNUSED` and `XC_MSR_INPUT_UNUSED`: the list terminators.
const INPUT_UNUSED: u32 = u32::MAX;
/// cpuid register policies are generated with a fixed length of 32 bytes, MSR ones 64.
const CPUID_POLICY_LEN: usize = 32;
const MSR_POLICY_LEN: usize = 64;
const CPUID_REGISTERS: [&str; 4] = ["eax", "ebx", "ecx", "edx"];

/// The configuration libxl 4.17 would print after reading this one, or how it would fail.
///
/// This is the identity on every document libxl itself printed (checked against the real
/// `xl -N create` output in xs-adapter's tests, and against the real
/// `libxl_domain_config_from_json`/`_to_json` on generated documents). See the module
/// documentation for the rules.
pub fn normalize_libxl_417(config: &DomainConfig) -> Result<DomainConfig, ConfigError> {
    let mut path = JsonPath::root();
    normalize_struct(Some(config.as_object()), &DOMAIN_CONFIG, &mut path).map(DomainConfig::from_object)
}

/// The JSON node types of `libxl__json_node_type`, as a lookup mask.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Integer,
    Bool,
    StringOrNull,
    String,
    Array,
    Map,
    Any,
}

fn want_of(ty: &FieldType) -> Want {
    match ty {
        FieldType::Int(_) => Want::Integer,
        FieldType::Bool => Want::Bool,
        FieldType::String => Want::StringOrNull,
        FieldType::Enum(_) | FieldType::Defbool | FieldType::Uuid | FieldType::Mac => Want::String,
        FieldType::Bitmap | FieldType::StringList | FieldType::Array(_) => Want::Array,
        FieldType::KeyValueList | FieldType::Struct(_) | FieldType::KeyedUnion(_) => Want::Map,
        FieldType::CpuidPolicyList | FieldType::MsVmGenid => Want::Any,
    }
}

/// libxl's JSON_INTEGER: a number without a `.` that fits `long long`.
fn as_integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn matches_want(v: &Value, want: Want) -> bool {
    match want {
        Want::Integer => as_integer(v).is_some(),
        Want::Bool => v.is_boolean(),
        Want::StringOrNull => v.is_string() || v.is_null(),
        Want::String => v.is_string(),
        Want::Array => v.is_array(),
        Want::Map => v.is_object(),
        Want::Any => true,
    }
}

/// A C string's view of a JSON string: it ends at the first NUL.
fn c_str(s: &str) -> &str {
    // Keys and values are short: a plain scan beats setting up a searcher.
    match s.bytes().position(|b| b == 0) {
        Some(end) => &s[..end],
        None => s,
    }
}

/// `libxl__json_map_get`: the first key equal (as a C string) to `name`, if its value has the
/// wanted type. A first match of the wrong type hides later ones.
fn map_get<'a>(obj: Option<&'a Value>, name: &str, want: Want) -> Option<&'a Value> {
    first_value(obj?.as_object()?, |key| key == name, want)
}

/// The value of the first key that `is_key` accepts as a C string, if it has the wanted type.
fn first_value(obj: &Object, is_key: impl Fn(&str) -> bool, want: Want) -> Option<&Value> {
    obj.iter().find(|(k, _)| is_key(c_str(k))).map(|(_, v)| v).filter(|v| matches_want(v, want))
}

/// An object as `libxl__json_map_get` searches it for each field of a struct: per field, the
/// value of the first key equal to its name as a C string. libxl writes keys in IDL order, so
/// each key's field is sought from just after the last one found, and a struct's fields are
/// matched in one pass over both lists instead of a lookup per field.
struct Fields<'a> {
    obj: Option<&'a Object>,
    by_field: Vec<Option<&'a Value>>,
}

impl<'a> Fields<'a> {
    fn of(obj: Option<&'a Object>, def: &StructDef) -> Fields<'a> {
        let fields = def.fields;
        let mut by_field = vec![None; fields.len()];
        if let Some(obj) = obj {
            let mut from = 0;
            for (key, value) in obj {
                let name = c_str(key);
                let found = (from..fields.len()).chain(0..from).find(|&i| fields[i].name == name);
                if let Some(i) = found {
                    by_field[i].get_or_insert(value);
                    from = i + 1;
                }
            }
        }
        Fields { obj, by_field }
    }

    /// Field `index` of the struct, if its value has the wanted type.
    fn field(&self, index: usize, want: Want) -> Option<&'a Value> {
        self.by_field[index].filter(|v| matches_want(v, want))
    }

    /// A keyed union member's key, `<keyvar>.<member>`, matched without building it.
    fn member(&self, union: &UnionDef, member: &str, want: Want) -> Option<&'a Value> {
        let is_key = |key: &str| key.strip_prefix(union.keyvar).and_then(|k| k.strip_prefix('.')) == Some(member);
        first_value(self.obj?, is_key, want)
    }
}

fn rejects(path: &JsonPath, reason: impl Into<String>) -> ConfigError {
    ConfigError::libxl(path, LibxlFailure::Rejects, reason)
}

fn normalize_struct(
    input: Option<&Object>,
    def: &'static StructDef,
    path: &mut JsonPath,
) -> Result<Object, ConfigError> {
    // libxl's own output emits what it read: the input's size saves the map's regrowth.
    let mut out = Map::with_capacity(input.map_or(0, Object::len));
    let input = Fields::of(input, def);
    for (index, field) in def.fields.iter().enumerate() {
        if let FieldType::KeyedUnion(union) = field.ty {
            let (key, value) = normalize_union(&input, union, path)?;
            if let Some(key) = key {
                out.insert(key, value);
            }
            continue;
        }
        let raw = input.field(index, want_of(&field.ty));
        if raw.is_none() && !emitted_when_absent(&field.ty) {
            // Most of a struct's fields are absent (b_info has a hundred): skip them unseen.
            continue;
        }
        path.push_key(field.name);
        let emitted = normalize_field(&field.ty, field.int_init(), raw, path);
        path.pop();
        if let Some(value) = emitted? {
            out.insert(field.name.to_string(), value);
        }
    }
    Ok(out)
}

/// A keyed union: the key libxl emits for the final discriminator (none for a value outside the
/// union, e.g. a usbdev without `type.hostdev`) and the member's struct.
fn normalize_union(
    input: &Fields<'_>,
    union: &'static UnionDef,
    path: &mut JsonPath,
) -> Result<(Option<String>, Value), ConfigError> {
    let init = union.keyvar_enum.initial();
    let mut discriminator = init;
    let mut member_value = Value::Object(Map::new());
    for (member, member_def) in union.members {
        let Some(raw) = input.member(union, member, Want::Map) else { continue };
        path.push_key(union.member_key(member));
        if discriminator != init {
            let e = ConfigError::libxl(
                path,
                LibxlFailure::Aborts,
                format!("a second member of the {} union (`init_{}` asserts)", union.keyvar, union.keyvar),
            );
            path.pop();
            return Err(e);
        }
        discriminator = union.member_value(member);
        let parsed = match member_def {
            Some(def) => normalize_struct(raw.as_object(), def, path).map(Value::Object),
            None => Ok(Value::Object(Map::new())),
        };
        path.pop();
        member_value = parsed?;
    }
    let emitted = union.members.iter().find(|(m, _)| union.member_value(m) == discriminator);
    match emitted {
        Some((member, Some(def))) if discriminator == init => {
            // Never parsed: the member struct is at its init values.
            let value = normalize_struct(None, def, path)?;
            Ok((Some(union.member_key(member)), Value::Object(value)))
        }
        Some((member, _)) => Ok((Some(union.member_key(member)), member_value)),
        None => Ok((None, Value::Null)),
    }
}

/// Whether [`normalize_field`] can emit anything for a field the input does not hold: a
/// struct is always emitted, an enum when its init value is; every other field keeps its init
/// value, which libxl omits.
fn emitted_when_absent(ty: &FieldType) -> bool {
    match ty {
        FieldType::Enum(def) => def.is_emitted(def.initial()),
        FieldType::Struct(_) | FieldType::KeyedUnion(_) => true,
        _ => false,
    }
}

/// One non-union field: `raw` is what `map_get` found (`None` = keeps its init value). Returns
/// the JSON libxl emits for it, or `None` when it is omitted.
fn normalize_field(
    ty: &FieldType,
    int_init: i128,
    raw: Option<&Value>,
    path: &mut JsonPath,
) -> Result<Option<Value>, ConfigError> {
    Ok(match ty {
        FieldType::Int(kind) => {
            let value = match raw {
                Some(v) => parse_int(*kind, v, path)?,
                None => int_init,
            };
            (value != int_init).then(|| int_json(*kind, value))
        }
        FieldType::Bool => raw.and_then(Value::as_bool).filter(|b| *b).map(Value::Bool),
        FieldType::String => match raw {
            Some(Value::String(s)) => Some(Value::String(c_str(s).to_string())),
            _ => None,
        },
        FieldType::Enum(def) => {
            let value = match raw {
                Some(v) => parse_enum(def, v, path)?,
                None => def.initial(),
            };
            def.is_emitted(value).then(|| def.name_of(value).map_or(Value::Null, |n| Value::String(n.to_string())))
        }
        FieldType::Defbool => match raw.and_then(Value::as_str) {
            Some(s) => match Defbool::parse_like_libxl(c_str(s)) {
                Some(Defbool::Default) => None,
                Some(b) => Some(Value::String(b.as_str().to_string())),
                None => return Err(rejects(path, format!("{s:?} is not a defbool"))),
            },
            None => None,
        },
        FieldType::Uuid => match raw.and_then(Value::as_str) {
            Some(s) => {
                let uuid: Uuid = c_str(s).parse().map_err(|m| rejects(path, m))?;
                (!uuid.is_nil()).then(|| Value::String(uuid.to_string()))
            }
            None => None,
        },
        FieldType::Mac => match raw.and_then(Value::as_str) {
            Some(s) => {
                let mac = Mac::parse_like_libxl(c_str(s))
                    .ok_or_else(|| rejects(path, format!("{s:?} is not a MAC address")))?;
                (!mac.is_zero()).then(|| Value::String(mac.to_string()))
            }
            None => None,
        },
        FieldType::Bitmap => match raw {
            Some(v) => {
                let bits = parse_bitmap(v, path)?;
                (!bits.is_empty()).then(|| bits_json(&bits))
            }
            None => None,
        },
        FieldType::StringList => match raw.and_then(Value::as_array) {
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(Value::String(c_str(s).to_string())),
                        other => {
                            return Err(rejects(&path.index(i), format!("a string list element is {}", kind_of(other))))
                        }
                    }
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            None => None,
        },
        FieldType::KeyValueList => match raw.and_then(Value::as_object) {
            Some(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    let value = match v {
                        Value::String(s) => Value::String(c_str(s).to_string()),
                        Value::Null => Value::Null,
                        other => {
                            return Err(rejects(&path.key(k), format!("a key-value list value is {}", kind_of(other))))
                        }
                    };
                    if out.insert(c_str(k).to_string(), value).is_some() {
                        return Err(ConfigError::libxl(
                            &path.key(k),
                            LibxlFailure::Unrepresentable,
                            "libxl would print this key twice (keys are cut at NUL)",
                        ));
                    }
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            None => None,
        },
        FieldType::CpuidPolicyList => match raw {
            Some(v) => normalize_cpuid(v, path)?,
            None => None,
        },
        FieldType::MsVmGenid => match raw {
            Some(v) => {
                let items = v.as_array().ok_or_else(|| rejects(path, "ms_vm_genid is not an array"))?;
                let mut bytes = [0u8; 16];
                for (i, byte) in bytes.iter_mut().enumerate() {
                    let n = items
                        .get(i)
                        .and_then(as_integer)
                        .ok_or_else(|| rejects(&path.index(i), "missing or non-integer genid byte"))?;
                    *byte = n as u8;
                }
                bytes.iter().any(|b| *b != 0).then(|| Value::Array(bytes.iter().map(|b| Value::from(*b)).collect()))
            }
            None => None,
        },
        FieldType::Struct(def) => Some(Value::Object(normalize_struct(raw.and_then(Value::as_object), def, path)?)),
        FieldType::Array(elem) => match raw.and_then(Value::as_array) {
            Some(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    path.push_index(i);
                    let element = normalize_element(elem, item, path);
                    path.pop();
                    out.push(element?);
                }
                (!out.is_empty()).then_some(Value::Array(out))
            }
            None => None,
        },
        FieldType::KeyedUnion(_) => None,
    })
}

/// One array element: always emitted (a struct with its own defaults logic, a number, an enum
/// name, a bitmap possibly `[]`).
fn normalize_element(elem: &FieldType, item: &Value, path: &mut JsonPath) -> Result<Value, ConfigError> {
    match elem {
        FieldType::Struct(def) => normalize_struct(item.as_object(), def, path).map(Value::Object),
        FieldType::Int(kind) => {
            if as_integer(item).is_none() {
                return Err(rejects(path, format!("an integer array element is {}", kind_of(item))));
            }
            Ok(int_json(*kind, parse_int(*kind, item, path)?))
        }
        FieldType::Enum(def) => {
            if !item.is_string() {
                return Err(rejects(path, format!("an enum array element is {}", kind_of(item))));
            }
            let value = parse_enum(def, item, path)?;
            Ok(def.name_of(value).map_or(Value::Null, |n| Value::String(n.to_string())))
        }
        FieldType::Bitmap => Ok(bits_json(&parse_bitmap(item, path)?)),
        other => Err(ConfigError::libxl(path, LibxlFailure::Undefined, format!("no libxl array of {other:?}"))),
    }
}

fn parse_int(kind: IntKind, v: &Value, path: &JsonPath) -> Result<i128, ConfigError> {
    let n = as_integer(v).ok_or_else(|| rejects(path, "not an integer"))? as i128;
    let (min, max) = kind.range();
    if n < min || n > max {
        return Err(rejects(path, format!("{n} is out of range for {}", kind.c_name())));
    }
    Ok(n)
}

fn int_json(kind: IntKind, value: i128) -> Value {
    if kind.is_64_bit_unsigned() {
        Value::from(value as u64)
    } else {
        Value::from(value as i64)
    }
}

fn parse_enum(def: &super::schema::EnumDef, v: &Value, path: &JsonPath) -> Result<i32, ConfigError> {
    let s = v.as_str().unwrap_or("");
    def.lookup(c_str(s))
        .map(|(_, value)| value)
        .ok_or_else(|| rejects(path, format!("{s:?} is not a {} value", def.name)))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn bits_json(bits: &BTreeSet<u32>) -> Value {
    Value::Array(bits.iter().map(|b| Value::from(*b)).collect())
}

/// `libxl__bitmap_parse_json` + `libxl_bitmap_alloc` + `libxl_bitmap_set`: the set bits.
fn parse_bitmap(v: &Value, path: &JsonPath) -> Result<BTreeSet<u32>, ConfigError> {
    let items = v.as_array().ok_or_else(|| rejects(path, format!("a bitmap is {}", kind_of(v))))?;
    let mut bits = BTreeSet::new();
    let Some(last) = items.last() else { return Ok(bits) };
    let last =
        as_integer(last).ok_or_else(|| rejects(&path.index(items.len() - 1), "a bitmap index is not an integer"))?;
    // `int size = last + 1`, then `(size + 7) / 8` bytes: C int arithmetic.
    let n_bits = last.wrapping_add(1) as i32;
    let Some(rounded) = n_bits.checked_add(7) else {
        return Err(ConfigError::libxl(path, LibxlFailure::Undefined, "bitmap size overflows int"));
    };
    let bytes = rounded / 8;
    if bytes < 0 {
        return Err(ConfigError::libxl(path, LibxlFailure::Aborts, "bitmap allocation of a negative size fails"));
    }
    let Some(capacity) = bytes.checked_mul(8) else {
        return Err(ConfigError::libxl(path, LibxlFailure::Undefined, "bitmap bit count overflows int"));
    };
    for (i, item) in items.iter().enumerate() {
        let bit = as_integer(item).ok_or_else(|| rejects(&path.index(i), "a bitmap index is not an integer"))? as i32;
        if bit >= capacity {
            continue;
        }
        if bit < 0 {
            // `map[bit / 8] |= 1 << (bit & 7)`: -7..-1 land in byte 0 when there is one.
            if bit > -8 && bytes >= 1 {
                bits.insert((bit & 7) as u32);
                continue;
            }
            return Err(ConfigError::libxl(
                &path.index(i),
                LibxlFailure::Undefined,
                "a negative bitmap index writes outside the bitmap",
            ));
        }
        bits.insert(bit as u32);
    }
    Ok(bits)
}

/// `libxl__cpuid_policy_list_parse_json` then `libxl_cpuid_policy_list_gen_json` (the 4.17.2+
/// `{"cpuid": [...], "msr": [...]}` shape; a bare array is the older cpuid-only form).
fn normalize_cpuid(v: &Value, path: &JsonPath) -> Result<Option<Value>, ConfigError> {
    let (leaves, msr_source) = match v {
        Value::Array(items) => (items, None),
        Value::Object(_) => {
            let leaves = map_get(Some(v), "cpuid", Want::Array).and_then(Value::as_array);
            let leaves = leaves.ok_or_else(|| rejects(path, "a cpuid policy object without a \"cpuid\" array"))?;
            (leaves, Some(v))
        }
        other => return Err(rejects(path, format!("a cpuid policy is {}", kind_of(other)))),
    };
    let mut cpuid = Vec::new();
    let mut terminated = false;
    for (i, leaf) in leaves.iter().enumerate() {
        let lpath = path.key("cpuid").index(i);
        if !leaf.is_object() {
            return Err(rejects(&lpath, "a cpuid leaf is not an object"));
        }
        let input = |name: &str| {
            map_get(Some(leaf), name, Want::Integer).and_then(as_integer).map_or(INPUT_UNUSED, |n| n as u32)
        };
        let (leaf_no, subleaf) = (input("leaf"), input("subleaf"));
        // Leaves from the first unused one on are parsed but never printed.
        terminated |= leaf_no == INPUT_UNUSED;
        if terminated {
            continue;
        }
        let mut entry = Map::new();
        entry.insert("leaf".to_string(), Value::from(leaf_no));
        if subleaf != INPUT_UNUSED {
            entry.insert("subleaf".to_string(), Value::from(subleaf));
        }
        for register in CPUID_REGISTERS {
            if let Some(policy) = map_get(Some(leaf), register, Want::String).and_then(Value::as_str) {
                let policy = c_str(policy);
                // Generated as exactly 32 bytes of the string.
                if policy.len() < CPUID_POLICY_LEN {
                    return Err(ConfigError::libxl(
                        &lpath.key(register),
                        LibxlFailure::Undefined,
                        "a cpuid policy shorter than 32 characters is printed past its end",
                    ));
                }
                let Some(cut) = policy.get(..CPUID_POLICY_LEN) else {
                    return Err(ConfigError::libxl(
                        &lpath.key(register),
                        LibxlFailure::Unrepresentable,
                        "libxl cuts the policy inside a UTF-8 character",
                    ));
                };
                entry.insert(register.to_string(), Value::String(cut.to_string()));
            }
        }
        cpuid.push(Value::Object(entry));
    }
    let mut msr = Vec::new();
    if let Some(obj) = msr_source {
        let items = map_get(Some(obj), "msr", Want::Array).and_then(Value::as_array);
        let items = items.ok_or_else(|| rejects(path, "a cpuid policy object without an \"msr\" array"))?;
        let mut terminated = false;
        for (i, item) in items.iter().enumerate() {
            let mpath = path.key("msr").index(i);
            if !item.is_object() {
                return Err(rejects(&mpath, "an MSR entry is not an object"));
            }
            let index = map_get(Some(item), "index", Want::Integer).and_then(as_integer);
            let index = index.ok_or_else(|| rejects(&mpath, "an MSR entry without an integer \"index\""))? as u32;
            let policy = map_get(Some(item), "policy", Want::String).and_then(Value::as_str);
            let policy = c_str(policy.ok_or_else(|| rejects(&mpath, "an MSR entry without a \"policy\" string"))?);
            if policy.len() != MSR_POLICY_LEN {
                return Err(rejects(&mpath, "an MSR policy is not 64 characters long"));
            }
            terminated |= index == INPUT_UNUSED;
            if !terminated {
                let mut entry = Map::new();
                entry.insert("index".to_string(), Value::from(index));
                entry.insert("policy".to_string(), Value::String(policy.to_string()));
                msr.push(Value::Object(entry));
            }
        }
        // `msr` stays NULL for an empty array; a non-empty one counts even if it prints empty.
        if !items.is_empty() {
            return Ok(Some(cpuid_json(cpuid, msr)));
        }
    }
    Ok((!cpuid.is_empty()).then(|| cpuid_json(cpuid, msr)))
}

fn cpuid_json(cpuid: Vec<Value>, msr: Vec<Value>) -> Value {
    let mut out = Map::new();
    out.insert("cpuid".to_string(), Value::Array(cpuid));
    out.insert("msr".to_string(), Value::Array(msr));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_skipped_when_absent_would_emit_nothing() {
        // Every field of every struct the domain configuration reaches, element and union
        // member structs included: what the skip in `normalize_struct` assumes.
        fn visit(ty: &FieldType, seen: &mut Vec<&'static str>) {
            match ty {
                FieldType::Struct(def) => walk(def, seen),
                FieldType::Array(elem) => visit(elem, seen),
                FieldType::KeyedUnion(union) => union.members.iter().flat_map(|(_, d)| d).for_each(|d| walk(d, seen)),
                _ => {}
            }
        }
        fn walk(def: &'static StructDef, seen: &mut Vec<&'static str>) {
            if seen.contains(&def.name) {
                return;
            }
            seen.push(def.name);
            for field in def.fields {
                if !emitted_when_absent(&field.ty) {
                    let mut path = JsonPath::root();
                    let emitted = normalize_field(&field.ty, field.int_init(), None, &mut path);
                    assert_eq!(emitted, Ok(None), "{}.{}", def.name, field.name);
                }
                visit(&field.ty, seen);
            }
        }
        let mut seen = Vec::new();
        walk(&DOMAIN_CONFIG, &mut seen);
        assert!(seen.len() > 20, "{seen:?}");
    }

    fn norm(v: Value) -> Result<Value, ConfigError> {
        let c = DomainConfig::from_object(v.as_object().unwrap().clone());
        normalize_libxl_417(&c).map(|c| Value::Object(c.into_object()))
    }

    fn failure(v: Value) -> LibxlFailure {
        match norm(v) {
            Err(ConfigError::Libxl { failure, .. }) => failure,
            other => panic!("expected a libxl failure, got {other:?}"),
        }
    }

    #[test]
    fn empty_document_gets_aggregates() {
        assert_eq!(
            norm(json!({})).unwrap(),
            json!({"c_info": {}, "b_info": {"sched_params": {}, "type.invalid": {}, "arch_arm": {}, "arch_x86": {}}})
        );
    }

    #[test]
    fn defaults_dropped_types_ignored_enums_lowercased() {
        let out = norm(json!({
            "c_info": {"type": "PV", "name": "a\u{0}b", "foo": 1, "hap": "Trueish", "domid": 0},
            "b_info": {"max_memkb": 5, "video_memkb": 18446744073709551615u64, "max_vcpus": "4",
                       "avail_vcpus": [3, 1], "type.pv": {}, "timer_mode": "UNKNOWN",
                       "sched_params": {"weight": -1, "cap": 0}},
            "on_reboot": "RESTART", "on_poweroff": "destroy", "on_crash": null,
            "disks": [{"vdev": "xvda", "readwrite": "x"}, 5]
        }))
        .unwrap();
        assert_eq!(
            out,
            json!({
                "c_info": {"type": "pv", "hap": "True", "name": "a"},
                "b_info": {"avail_vcpus": [1, 3], "max_memkb": 5, "sched_params": {"cap": 0},
                           "type.pv": {}, "arch_arm": {}, "arch_x86": {}},
                "disks": [{"vdev": "xvda"}, {}],
                "on_reboot": "restart"
            })
        );
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(failure(json!({"b_info": {"type.invalid": {}, "type.pv": {}}})), LibxlFailure::Aborts);
        assert_eq!(failure(json!({"c_info": {"type": "pvx"}})), LibxlFailure::Rejects);
        assert_eq!(failure(json!({"b_info": {"max_vcpus": 2147483648u64}})), LibxlFailure::Rejects);
        assert_eq!(failure(json!({"b_info": {"video_memkb": -1}})), LibxlFailure::Rejects);
        assert_eq!(failure(json!({"nics": [{"mac": "aa:bb:cc"}]})), LibxlFailure::Rejects);
        assert_eq!(failure(json!({"b_info": {"avail_vcpus": [1, -9]}})), LibxlFailure::Undefined);
        assert_eq!(failure(json!({"b_info": {"type.hvm": {"ms_vm_genid": 5}}})), LibxlFailure::Rejects);
    }

    #[test]
    fn bitmaps_size_from_the_last_element() {
        let b = |bits: Value| norm(json!({"b_info": {"cpumap": bits}})).unwrap()["b_info"].get("cpumap").cloned();
        assert_eq!(b(json!([9, 1])), Some(json!([1])));
        assert_eq!(b(json!([1, 9])), Some(json!([1, 9])));
        // Zero bytes allocated, then a write to byte 0: undefined.
        assert_eq!(failure(json!({"b_info": {"cpumap": [3, -1]}})), LibxlFailure::Undefined);
        assert_eq!(b(json!([-1, 3])), Some(json!([3, 7])));
        assert_eq!(b(json!([])), None);
    }

    #[test]
    fn unions_and_channels() {
        let out =
            norm(json!({"channels": [{}, {"connection.unknown": {}, "connection.socket": {"path": "/p", "x": 1}}],
                              "usbdevs": [{}, {"type.hostdev": {"hostbus": 1}}]}))
            .unwrap();
        assert_eq!(out["channels"], json!([{"connection.unknown": {}}, {"connection.socket": {"path": "/p"}}]));
        assert_eq!(out["usbdevs"], json!([{}, {"type.hostdev": {"hostbus": 1}}]));
        assert_eq!(
            failure(json!({"channels": [{"connection.pty": {}, "connection.socket": {}}]})),
            LibxlFailure::Aborts
        );
    }

    #[test]
    fn cpuid_shapes() {
        let c = |v: Value| norm(json!({"b_info": {"cpuid": v}})).map(|o| o["b_info"].get("cpuid").cloned());
        let reg = "x".repeat(31) + "0";
        assert_eq!(
            c(json!([{"leaf": 1, "ecx": reg}])).unwrap(),
            Some(json!({"cpuid": [{"leaf": 1, "ecx": reg}], "msr": []}))
        );
        assert_eq!(c(json!([{"subleaf": 3}])).unwrap(), None);
        assert_eq!(c(json!({"cpuid": [], "msr": []})).unwrap(), None);
        let msr = "0".repeat(64);
        assert_eq!(
            c(json!({"cpuid": [], "msr": [{"index": 4294967296u64, "policy": msr}]})).unwrap(),
            Some(json!({"cpuid": [], "msr": [{"index": 0, "policy": msr}]}))
        );
        assert!(c(json!({"msr": []})).is_err());
        assert!(matches!(
            c(json!([{"leaf": 1, "eax": "short"}])),
            Err(ConfigError::Libxl { failure: LibxlFailure::Undefined, .. })
        ));
    }
}
