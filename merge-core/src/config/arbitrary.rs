//! Schema-driven proptest generators of libxl documents (feature `testkit`), for round-trip
//! laws, libxl parity tests and fuzzing.
//!
//! Every generator walks [`schema`](super::schema): any subset of every struct's fields, every
//! device kind, nested structs and arrays (vnc, vnuma nodes, vsnd pcms and streams…), keyed
//! unions, and keys libxl does not know (with arbitrary JSON values) at random positions.
//!
//! * [`domain_config`]: documents that pass [`DomainConfig::validate`] (any key order, any
//!   spelling case, unknown keys, unknown enum spellings).
//! * [`canonical_config`]: what libxl 4.17 prints ([`normalize_libxl_417`] of the above).
//! * [`libxl_input`]: documents aimed at libxl's own parser: wrong JSON types, out-of-range
//!   integers, bad spellings, unsorted bitmaps, defaults, NULs inside strings, two union
//!   members. They avoid inputs on which libxl's behaviour is undefined (negative bitmap
//!   indices, cpuid policies shorter than 32 characters) so that every case has one answer.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value};

use super::schema::{EnumDef, Field, FieldType, IntKind, StructDef, UnionDef, DOMAIN_CONFIG};
use super::{normalize_libxl_417, DomainConfig, Object};

/// Which documents to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Valid under the 4.17 schema.
    Valid,
    /// Anything libxl's parser must cope with (see the module docs).
    Hostile,
}

/// Knobs of the generators.
#[derive(Debug, Clone, Copy)]
pub struct GenOptions {
    pub mode: Mode,
    /// The chance that a given optional field is present.
    pub field_weight: f64,
    /// The chance that a device array is present (then with 1..=`max_devices` elements).
    pub device_weight: f64,
    pub max_devices: usize,
    /// Add keys libxl does not know.
    pub unknown_keys: bool,
    /// Sometimes shuffle an object's keys out of IDL order.
    pub shuffle_keys: bool,
    /// (Hostile) also values that make libxl refuse or abort on the whole document.
    pub rejects: bool,
}

impl GenOptions {
    pub fn valid() -> GenOptions {
        GenOptions {
            mode: Mode::Valid,
            field_weight: 0.3,
            device_weight: 0.35,
            max_devices: 3,
            unknown_keys: true,
            shuffle_keys: true,
            rejects: false,
        }
    }

    /// Hostile documents libxl still reads (`rejects: false`) or may refuse.
    pub fn hostile(rejects: bool) -> GenOptions {
        GenOptions { mode: Mode::Hostile, rejects, ..GenOptions::valid() }
    }
}

/// Documents valid under the 4.17 schema, covering every field, device kind and union member.
pub fn domain_config() -> BoxedStrategy<DomainConfig> {
    domain_config_with(GenOptions::valid())
}

/// Documents as libxl 4.17 itself prints them.
pub fn canonical_config() -> BoxedStrategy<DomainConfig> {
    domain_config().prop_filter_map("libxl 4.17 rejects it", |c| normalize_libxl_417(&c).ok()).boxed()
}

/// Documents aimed at libxl's own parser (see the module docs).
///
/// Three in five are built from values libxl still reads; the others also carry values that
/// make libxl refuse the document (or abort on two union members), so both outcomes are common.
pub fn libxl_input() -> BoxedStrategy<DomainConfig> {
    prop_oneof![
        3 => domain_config_with(GenOptions::hostile(false)),
        2 => domain_config_with(GenOptions::hostile(true)),
    ]
    .boxed()
}

pub fn domain_config_with(opts: GenOptions) -> BoxedStrategy<DomainConfig> {
    object_of(&DOMAIN_CONFIG, opts).prop_map(DomainConfig::from_object).boxed()
}

/// One object of an IDL struct: fields in IDL order (some of them), union members, unknown
/// keys, maybe shuffled.
pub fn object_of(def: &'static StructDef, opts: GenOptions) -> BoxedStrategy<Object> {
    let mut parts: Vec<BoxedStrategy<Vec<(String, Value)>>> = Vec::new();
    for field in def.fields {
        parts.push(field_entries(def, field, opts));
    }
    let unknown = if opts.unknown_keys { vec(unknown_entry(), 0..=1).boxed() } else { Just(Vec::new()).boxed() };
    let shuffle = if opts.shuffle_keys { prop::bool::weighted(0.15).boxed() } else { Just(false).boxed() };
    (parts, unknown, any::<u64>(), shuffle)
        .prop_map(|(parts, unknown, seed, shuffle)| {
            let mut entries: Vec<(String, Value)> = parts.into_iter().flatten().collect();
            let mut state = seed | 1;
            for (key, value) in unknown {
                let at = (next(&mut state) as usize) % (entries.len() + 1);
                entries.insert(at, (key, value));
            }
            if shuffle {
                for i in (1..entries.len()).rev() {
                    let j = (next(&mut state) as usize) % (i + 1);
                    entries.swap(i, j);
                }
            }
            let mut obj = Map::new();
            for (k, v) in entries {
                obj.entry(k).or_insert(v);
            }
            obj
        })
        .boxed()
}

/// A small deterministic mixer (positions derive from a generated seed, so cases shrink).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn field_entries(
    def: &'static StructDef,
    field: &'static Field,
    opts: GenOptions,
) -> BoxedStrategy<Vec<(String, Value)>> {
    let always = matches!(field.name, "c_info" | "b_info") && def.name == "domain_config";
    match field.ty {
        FieldType::KeyedUnion(union) => union_entries(union, opts),
        FieldType::Array(FieldType::Struct(elem)) if def.name == "domain_config" => {
            let devices = vec(object_of(elem, opts).prop_map(Value::Object), 1..=opts.max_devices.max(1));
            let name = field.name.to_string();
            prop::option::weighted(opts.device_weight, devices)
                .prop_map(move |d| d.map(|items| vec![(name.clone(), Value::Array(items))]).unwrap_or_default())
                .boxed()
        }
        _ => {
            let name = field.name.to_string();
            let value = value_of(field, opts);
            let maybe = if always {
                value.prop_map(Some).boxed()
            } else {
                prop::option::weighted(opts.field_weight, value).boxed()
            };
            maybe.prop_map(move |v| v.map(|v| vec![(name.clone(), v)]).unwrap_or_default()).boxed()
        }
    }
}

/// No member, one member, or (hostile) two members of a keyed union.
fn union_entries(union: &'static UnionDef, opts: GenOptions) -> BoxedStrategy<Vec<(String, Value)>> {
    let member = move |i: usize| -> BoxedStrategy<(String, Value)> {
        let (name, def) = union.members[i];
        let key = union.member_key(name);
        match def {
            Some(def) => object_of(def, opts).prop_map(move |o| (key.clone(), Value::Object(o))).boxed(),
            None => Just((key, Value::Object(Map::new()))).boxed(),
        }
    };
    let n = union.members.len();
    let one = (0..n).prop_flat_map(member).prop_map(|e| vec![e]);
    match opts.mode {
        Mode::Valid => prop_oneof![1 => Just(Vec::new()), 4 => one].boxed(),
        Mode::Hostile if opts.rejects => {
            let two = (0..n, 0..n).prop_flat_map(move |(i, j)| (member(i), member(j))).prop_map(|(a, b)| vec![a, b]);
            prop_oneof![1 => Just(Vec::new()), 6 => one, 1 => two].boxed()
        }
        Mode::Hostile => prop_oneof![1 => Just(Vec::new()), 6 => one].boxed(),
    }
}

fn value_of(field: &'static Field, opts: GenOptions) -> BoxedStrategy<Value> {
    let valid = valid_value(&field.ty, field, opts);
    match opts.mode {
        Mode::Valid => valid,
        Mode::Hostile => {
            let rejected = if opts.rejects { rejected_values(&field.ty) } else { Vec::new() };
            if rejected.is_empty() {
                prop_oneof![6 => valid, 1 => wrong_type(&field.ty), 1 => tolerated_edge(&field.ty, field)].boxed()
            } else {
                prop_oneof![
                    12 => valid,
                    2 => wrong_type(&field.ty),
                    2 => tolerated_edge(&field.ty, field),
                    1 => select(rejected),
                ]
                .boxed()
            }
        }
    }
}

fn valid_value(ty: &'static FieldType, field: &'static Field, opts: GenOptions) -> BoxedStrategy<Value> {
    match ty {
        FieldType::Int(kind) => int_value(*kind, field.int_init()),
        FieldType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        FieldType::String => prop_oneof![9 => text(opts).prop_map(Value::String), 1 => Just(Value::Null)].boxed(),
        FieldType::Enum(def) => enum_value(def, opts),
        FieldType::Defbool => select(vec!["True", "False", "<default>"]).prop_map(|s| Value::String(s.into())).boxed(),
        FieldType::Uuid => (any::<[u8; 16]>(), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(b, upper, nil)| {
                let u = super::Uuid(if nil { [0; 16] } else { b }).to_string();
                Value::String(if upper { u.to_uppercase() } else { u })
            })
            .boxed(),
        FieldType::Mac => (any::<[u8; 6]>(), any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(b, upper, zero)| {
                let m = super::Mac(if zero { [0; 6] } else { b }).to_string();
                Value::String(if upper { m.to_uppercase() } else { m })
            })
            .boxed(),
        FieldType::Bitmap => bitmap().boxed(),
        FieldType::StringList => vec(text(opts).prop_map(Value::String), 0..3).prop_map(Value::Array).boxed(),
        FieldType::KeyValueList => vec(("[a-z][a-z0-9_-]{0,8}", prop::option::of(text(opts))), 0..3)
            .prop_map(|kv| {
                let mut m = Map::new();
                for (k, v) in kv {
                    m.entry(k).or_insert(v.map_or(Value::Null, Value::String));
                }
                Value::Object(m)
            })
            .boxed(),
        FieldType::CpuidPolicyList => cpuid_policy(),
        FieldType::MsVmGenid => prop_oneof![
            1 => Just(Value::Array(vec![Value::from(0); 16])),
            3 => any::<[u8; 16]>().prop_map(|b| Value::Array(b.iter().map(|x| Value::from(*x)).collect())),
        ]
        .boxed(),
        FieldType::Struct(def) => object_of(def, opts).prop_map(Value::Object).boxed(),
        FieldType::Array(elem) => vec(valid_value(elem, field, opts), 0..3).prop_map(Value::Array).boxed(),
        FieldType::KeyedUnion(_) => Just(Value::Object(Map::new())).boxed(),
    }
}

/// Integers of a kind: edges, the init value, small and arbitrary ones, all within range.
fn int_value(kind: IntKind, init: i128) -> BoxedStrategy<Value> {
    let (min, max) = kind.range();
    let to_json = |n: i128| if n < 0 { Value::from(n as i64) } else { Value::from(n as u64) };
    let edges = vec![min, max, 0, 1, init.clamp(min, max)];
    let small_max = max.min(100_000) as i64;
    let small_min = min.max(-100) as i64;
    prop_oneof![
        2 => select(edges).prop_map(to_json),
        3 => (small_min..=small_max).prop_map(move |n| to_json(n as i128)),
        1 => any::<u64>().prop_map(move |n| to_json(min + (n as i128) % (max - min + 1))),
    ]
    .boxed()
}

/// A known spelling in a random case, or now and then one libxl 4.17 does not know.
fn enum_value(def: &'static EnumDef, opts: GenOptions) -> BoxedStrategy<Value> {
    let names: Vec<&'static str> = def.values.iter().map(|(n, _)| *n).collect();
    let known = (select(names), 0..3u8).prop_map(|(n, case)| {
        Value::String(match case {
            0 => n.to_string(),
            1 => n.to_uppercase(),
            _ => n.chars().enumerate().map(|(i, c)| if i % 2 == 0 { c.to_ascii_uppercase() } else { c }).collect(),
        })
    });
    match opts.mode {
        Mode::Valid => prop_oneof![
            30 => known,
            1 => Just(Value::Null),
            1 => "future_[a-z]{1,6}".prop_map(Value::String),
        ]
        .boxed(),
        // A misspelling makes libxl reject the whole document; `edge_value` adds those rarely.
        Mode::Hostile => prop_oneof![30 => known, 1 => Just(Value::Null)].boxed(),
    }
}

fn bitmap() -> impl Strategy<Value = Value> {
    vec(0u32..200, 0..6).prop_map(|bits| Value::Array(bits.into_iter().map(Value::from).collect()))
}

/// Text that exercises the printer: plain, paths, quotes, escapes, control characters, non-ASCII,
/// and (hostile) an embedded NUL.
fn text(opts: GenOptions) -> BoxedStrategy<String> {
    let printable = prop_oneof![
        6 => "[a-zA-Z0-9_./:=,-]{0,16}",
        2 => "\\PC{0,12}",
        1 => "[\"\\\\/\\n\\t\\x01\\x1f\\x7f é€😀]{0,6}",
    ];
    match opts.mode {
        Mode::Valid => printable.boxed(),
        Mode::Hostile => prop_oneof![12 => printable, 1 => "[a-z]{0,4}\\x00[a-z]{0,4}"].boxed(),
    }
}

fn policy_string(len: usize) -> impl Strategy<Value = String> {
    vec(select(vec!['0', '1', 'x', 'k', 's']), len..=len).prop_map(|c| c.into_iter().collect())
}

/// A cpuid policy in the 4.17.2+ object form, or the older bare-array form.
fn cpuid_policy() -> BoxedStrategy<Value> {
    let leaf = (any::<u32>(), prop::option::of(0u32..8), vec(prop::option::of(policy_string(32)), 4..=4))
        .prop_map(|(leaf, subleaf, regs)| {
            let mut m = Map::new();
            m.insert("leaf".into(), Value::from(leaf % 0x8000_0010));
            if let Some(s) = subleaf {
                m.insert("subleaf".into(), Value::from(s));
            }
            for (name, reg) in ["eax", "ebx", "ecx", "edx"].iter().zip(regs) {
                if let Some(reg) = reg {
                    m.insert((*name).into(), Value::String(reg));
                }
            }
            Value::Object(m)
        })
        .boxed();
    let msr = (any::<u32>(), policy_string(64)).prop_map(|(index, policy)| {
        let mut m = Map::new();
        m.insert("index".into(), Value::from(index % 0x1_0000));
        m.insert("policy".into(), Value::String(policy));
        Value::Object(m)
    });
    prop_oneof![
        3 => (vec(leaf.clone(), 0..3), vec(msr, 0..2)).prop_map(|(c, m)| {
            let mut o = Map::new();
            o.insert("cpuid".into(), Value::Array(c));
            o.insert("msr".into(), Value::Array(m));
            Value::Object(o)
        }),
        1 => vec(leaf, 0..3).prop_map(Value::Array),
    ]
    .boxed()
}

/// A value of another JSON type than the field asks for (libxl ignores it, the schema check
/// rejects it).
fn wrong_type(ty: &FieldType) -> BoxedStrategy<Value> {
    let candidates: Vec<Value> = vec![
        Value::Null,
        Value::Bool(true),
        Value::from(7),
        Value::from(2.5),
        Value::from("7"),
        Value::Array(vec![Value::from(1)]),
        Value::Object(Map::new()),
    ];
    let filtered: Vec<Value> = candidates
        .into_iter()
        .filter(|v| match ty {
            FieldType::Int(_) => !(v.is_i64() || v.is_u64()),
            FieldType::Bool => !v.is_boolean(),
            FieldType::String => !(v.is_string() || v.is_null()),
            FieldType::Enum(_) | FieldType::Defbool | FieldType::Uuid | FieldType::Mac => !v.is_string(),
            FieldType::Bitmap | FieldType::StringList | FieldType::Array(_) => !v.is_array(),
            FieldType::KeyValueList | FieldType::Struct(_) | FieldType::KeyedUnion(_) => !v.is_object(),
            // Any JSON type reaches these parsers; only shapes they reject are "wrong".
            FieldType::CpuidPolicyList => !(v.is_array() || v.is_object()),
            FieldType::MsVmGenid => !v.is_array(),
        })
        .collect();
    select(filtered).boxed()
}

/// Values at a type's edges that libxl still reads: init values, numbers it does not see as
/// integers (ignored), other cases and prefixes of spellings, MAC strings its `strtol` takes,
/// non-canonical bitmaps, NULs inside strings, empty containers.
fn tolerated_edge(ty: &FieldType, field: &'static Field) -> BoxedStrategy<Value> {
    let values: Vec<Value> = match ty {
        FieldType::Int(kind) => {
            let (min, max) = kind.range();
            let mut v = vec![Value::from(u64::MAX), Value::from(1u64 << 63), Value::from(3.0)];
            for n in [field.int_init(), min, max] {
                v.push(if n < 0 { Value::from(n as i64) } else { Value::from(n as u64) });
            }
            v
        }
        FieldType::Bool => vec![Value::from(0), Value::from("true")],
        FieldType::String => vec![Value::from(""), Value::from("a\u{0}b")],
        FieldType::Enum(def) => {
            vec![Value::from(def.name_of(def.initial()).unwrap_or("unknown").to_uppercase()), Value::Null]
        }
        FieldType::Defbool => vec![Value::from("Trueish"), Value::from("Falsehood"), Value::from("<default>x")],
        FieldType::Uuid => vec![Value::from("00000000-0000-0000-0000-000000000000")],
        FieldType::Mac => vec![
            Value::from("+a:bb:cc:dd:ee:ff"),
            Value::from(" a:b1:c2:d3:e4:f5"),
            Value::from("-1:00:00:00:00:01"),
            Value::from("aa:bb:cc:dd:ee:ff:trailing"),
            Value::from("00:00:00:00:00:00"),
        ],
        FieldType::Bitmap => vec![serde_json::json!([5, 1, 9, 1]), serde_json::json!([9, 1]), serde_json::json!([])],
        FieldType::StringList => vec![serde_json::json!([]), serde_json::json!(["", "b"])],
        FieldType::KeyValueList => vec![serde_json::json!({}), serde_json::json!({"k": null})],
        FieldType::CpuidPolicyList => vec![
            serde_json::json!([]),
            serde_json::json!({"cpuid": [], "msr": []}),
            serde_json::json!([{"subleaf": 1}]),
        ],
        FieldType::MsVmGenid => vec![Value::Array(vec![Value::from(256); 16])],
        FieldType::Struct(_) | FieldType::KeyedUnion(_) => vec![Value::Object(Map::new())],
        // A non-object element of a struct array is an all-default struct to libxl.
        FieldType::Array(FieldType::Struct(_)) => {
            vec![serde_json::json!([]), serde_json::json!([null]), serde_json::json!([{}, 5])]
        }
        FieldType::Array(_) => vec![serde_json::json!([])],
    };
    select(values).boxed()
}

/// Values libxl refuses (the whole document fails): integers outside the C type, unknown
/// spellings, malformed UUIDs, MACs, bitmaps, lists, cpuid policies and genids.
fn rejected_values(ty: &FieldType) -> Vec<Value> {
    match ty {
        FieldType::Int(kind) => {
            let (min, max) = kind.range();
            [min - 1, max + 1]
                .into_iter()
                .filter(|n| *n >= i64::MIN as i128 && *n <= i64::MAX as i128)
                .map(|n| Value::from(n as i64))
                .collect()
        }
        FieldType::Enum(_) => vec![Value::from("not_an_enum_value"), Value::from("")],
        FieldType::Defbool => vec![Value::from("true"), Value::from("")],
        FieldType::Uuid => vec![Value::from("not-a-uuid"), Value::from("")],
        FieldType::Mac => vec![Value::from("aa:bb:cc"), Value::from("")],
        FieldType::Bitmap => vec![serde_json::json!([1, "2"]), serde_json::json!([0, 1.5])],
        FieldType::StringList => vec![serde_json::json!(["a", null])],
        FieldType::KeyValueList => vec![serde_json::json!({"a": 1})],
        FieldType::CpuidPolicyList => vec![serde_json::json!({"cpuid": []}), serde_json::json!([5]), Value::from(1)],
        FieldType::MsVmGenid => vec![serde_json::json!([1, 2]), Value::from("x")],
        FieldType::Array(FieldType::Struct(_)) => vec![],
        FieldType::Array(_) => vec![serde_json::json!([null])],
        // Nothing of these types makes libxl refuse the document.
        FieldType::Bool | FieldType::String | FieldType::Struct(_) | FieldType::KeyedUnion(_) => vec![],
    }
}

/// A key libxl does not know, with any JSON value.
fn unknown_entry() -> impl Strategy<Value = (String, Value)> {
    ("(future|x)_[a-z]{1,8}", any_json())
}

/// Arbitrary JSON (finite numbers printed with a `.`, shallow nesting).
pub fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0i32..100_000, 1u8..10).prop_map(|(n, d)| Value::from(n as f64 + d as f64 / 10.0)),
        "\\PC{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec(("[a-z_]{1,6}", inner), 0..4).prop_map(|kv| {
                let mut m = Map::new();
                for (k, v) in kv {
                    m.entry(k).or_insert(v);
                }
                Value::Object(m)
            }),
        ]
    })
    .boxed()
}
