//! Schema-typed, read-only views over the ordered JSON objects of a document.
//!
//! A [`StructView`] pairs an object with its IDL struct, so every getter knows the field's
//! type: `str` only answers for string fields, `uint` for unsigned integer fields, and so on.
//! A getter returns `None` when the key is absent, when the field does not exist in that struct,
//! or when the value is not a valid value of the field's type (where libxl would fall back to
//! the init value or refuse the document).

use serde_json::Value;

use super::schema::{FieldType, IntKind, StructDef, UnionDef};
use super::types::{bitmap_from_json, Defbool, Mac, Uuid};
use super::Object;

/// A read-only view of one IDL struct inside a document.
#[derive(Debug, Clone, Copy)]
pub struct StructView<'a> {
    obj: &'a Object,
    def: &'static StructDef,
}

/// An enum field's value: a libxl 4.17 spelling (case-folded to libxl's), or a spelling kept for
/// forward compatibility.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EnumValue<'a> {
    Known { name: &'static str, value: i32 },
    Unknown(&'a str),
}

impl EnumValue<'_> {
    /// The spelling: libxl's lowercase one when known, else as written.
    pub fn name(&self) -> &str {
        match self {
            EnumValue::Known { name, .. } => name,
            EnumValue::Unknown(s) => s,
        }
    }

    pub fn is(&self, spelling: &str) -> bool {
        matches!(self, EnumValue::Known { name, .. } if *name == spelling)
    }
}

/// The member of a keyed union present in an object (`type.pv` → member `pv`).
#[derive(Debug, Clone, Copy)]
pub struct UnionView<'a> {
    pub union: &'static UnionDef,
    pub member: &'static str,
    /// The member's struct; `None` for members without one (`type.invalid`, `connection.pty`).
    pub fields: Option<StructView<'a>>,
}

impl<'a> StructView<'a> {
    pub fn new(obj: &'a Object, def: &'static StructDef) -> StructView<'a> {
        StructView { obj, def }
    }

    pub fn def(&self) -> &'static StructDef {
        self.def
    }

    pub fn object(&self) -> &'a Object {
        self.obj
    }

    /// The raw value of any key (known or not).
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key)
    }

    fn typed(&self, name: &str) -> Option<(&'static FieldType, &'a Value)> {
        let field = self.def.field(name)?;
        Some((&field.ty, self.obj.get(name)?))
    }

    /// A string field (`null` counts as unset).
    pub fn str(&self, name: &str) -> Option<&'a str> {
        match self.typed(name)? {
            (FieldType::String, Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// A signed integer field (`int`, `libxl_devid`) within its C range.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.typed(name)? {
            (FieldType::Int(kind @ (IntKind::Int | IntKind::Devid)), v) => {
                in_range(*kind, v.as_i64()? as i128).map(|n| n as i64)
            }
            _ => None,
        }
    }

    /// An unsigned integer field (`uint8`…`uint64`, `MemKB`, `libxl_domid`) within its C range.
    pub fn uint(&self, name: &str) -> Option<u64> {
        match self.typed(name)? {
            (FieldType::Int(IntKind::Int | IntKind::Devid), _) => None,
            (FieldType::Int(kind), v) => in_range(*kind, v.as_u64()? as i128).map(|n| n as u64),
            _ => None,
        }
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.typed(name)? {
            (FieldType::Bool, Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A defbool field; absent means [`Defbool::Default`]. `None` if the value is not one.
    pub fn defbool(&self, name: &str) -> Option<Defbool> {
        let field = self.def.field(name)?;
        if !matches!(field.ty, FieldType::Defbool) {
            return None;
        }
        match self.obj.get(name) {
            None => Some(Defbool::Default),
            Some(v) => Defbool::parse_like_libxl(v.as_str()?),
        }
    }

    /// An enum field, matched case-insensitively as libxl does.
    pub fn enum_value(&self, name: &str) -> Option<EnumValue<'a>> {
        match self.typed(name)? {
            (FieldType::Enum(def), Value::String(s)) => Some(match def.lookup(s) {
                Some((name, value)) => EnumValue::Known { name, value },
                None => EnumValue::Unknown(s),
            }),
            _ => None,
        }
    }

    pub fn uuid(&self, name: &str) -> Option<Uuid> {
        match self.typed(name)? {
            (FieldType::Uuid, Value::String(s)) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn mac(&self, name: &str) -> Option<Mac> {
        match self.typed(name)? {
            (FieldType::Mac, Value::String(s)) => Mac::parse_like_libxl(s),
            _ => None,
        }
    }

    /// A bitmap field's set bits, ascending.
    pub fn bitmap(&self, name: &str) -> Option<Vec<u32>> {
        match self.typed(name)? {
            (FieldType::Bitmap, v) => bitmap_from_json(v),
            _ => None,
        }
    }

    /// An array-of-bitmaps field (`vcpu_hard_affinity`), each bitmap's set bits.
    pub fn bitmaps(&self, name: &str) -> Option<Vec<Vec<u32>>> {
        match self.typed(name)? {
            (FieldType::Array(FieldType::Bitmap), Value::Array(items)) => items.iter().map(bitmap_from_json).collect(),
            _ => None,
        }
    }

    pub fn string_list(&self, name: &str) -> Option<Vec<&'a str>> {
        match self.typed(name)? {
            (FieldType::StringList, Value::Array(items)) => items.iter().map(Value::as_str).collect(),
            _ => None,
        }
    }

    /// A key-value list in document order (`null` values as `None`).
    pub fn key_values(&self, name: &str) -> Option<Vec<(&'a str, Option<&'a str>)>> {
        match self.typed(name)? {
            (FieldType::KeyValueList, Value::Object(map)) => map
                .iter()
                .map(
                    |(k, v)| if v.is_null() { Some((k.as_str(), None)) } else { Some((k.as_str(), Some(v.as_str()?))) },
                )
                .collect(),
            _ => None,
        }
    }

    /// A nested struct field (`sched_params`, `vnc`, …).
    pub fn child(&self, name: &str) -> Option<StructView<'a>> {
        match self.typed(name)? {
            (FieldType::Struct(def), Value::Object(obj)) => Some(StructView::new(obj, def)),
            _ => None,
        }
    }

    /// The elements of an array-of-structs field (non-object elements are skipped).
    pub fn items(&self, name: &str) -> Vec<StructView<'a>> {
        match self.typed(name) {
            Some((FieldType::Array(FieldType::Struct(def)), Value::Array(items))) => {
                items.iter().filter_map(|v| v.as_object().map(|o| StructView::new(o, def))).collect()
            }
            _ => Vec::new(),
        }
    }

    /// The first member key present for the keyed union whose discriminator is `keyvar`.
    pub fn union(&self, keyvar: &str) -> Option<UnionView<'a>> {
        self.obj.iter().find_map(|(key, value)| {
            let (field, union, member, def) = self.def.union_for_key(key)?;
            if field.name != keyvar {
                return None;
            }
            let fields = match (def, value) {
                (Some(def), Value::Object(obj)) => Some(StructView::new(obj, def)),
                _ => None,
            };
            Some(UnionView { union, member, fields })
        })
    }
}

fn in_range(kind: IntKind, n: i128) -> Option<i128> {
    let (min, max) = kind.range();
    (min..=max).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::super::schema::{DEVICE_NIC, DOMAIN_BUILD_INFO};
    use super::*;

    #[test]
    fn getters_respect_field_types() {
        let b: Object = serde_json::from_str(
            r#"{"max_vcpus": 4, "max_memkb": 18446744073709551615, "avail_vcpus": [3, 0, 1],
                "kernel": "/k", "claim_mode": "True", "tsc_mode": "NATIVE", "sched_params": {"weight": 256},
                "vcpu_hard_affinity": [[1], [0, 2]], "type.pv": {"kernel": "/boot/k"}}"#,
        )
        .unwrap();
        let v = StructView::new(&b, &DOMAIN_BUILD_INFO);
        assert_eq!(v.int("max_vcpus"), Some(4));
        assert_eq!(v.uint("max_vcpus"), None, "max_vcpus is a signed int");
        assert_eq!(v.uint("max_memkb"), Some(u64::MAX));
        assert_eq!(v.bitmap("avail_vcpus"), Some(vec![0, 1, 3]));
        assert_eq!(v.str("kernel"), Some("/k"));
        assert_eq!(v.str("max_vcpus"), None);
        assert_eq!(v.defbool("claim_mode"), Some(Defbool::True));
        assert_eq!(v.defbool("localtime"), Some(Defbool::Default));
        assert!(v.enum_value("tsc_mode").unwrap().is("native"));
        assert_eq!(v.child("sched_params").unwrap().int("weight"), Some(256));
        assert_eq!(v.bitmaps("vcpu_hard_affinity"), Some(vec![vec![1], vec![0, 2]]));
        let u = v.union("type").unwrap();
        assert_eq!(u.member, "pv");
        assert_eq!(u.fields.unwrap().str("kernel"), Some("/boot/k"));
    }

    #[test]
    fn nic_mac_and_unknown_enum() {
        let n: Object =
            serde_json::from_str(r#"{"devid": 0, "mac": "00:16:3E:00:00:01", "nictype": "vif_new"}"#).unwrap();
        let v = StructView::new(&n, &DEVICE_NIC);
        assert_eq!(v.int("devid"), Some(0));
        assert_eq!(v.mac("mac").unwrap().to_string(), "00:16:3e:00:00:01");
        assert_eq!(v.enum_value("nictype"), Some(EnumValue::Unknown("vif_new")));
    }
}
