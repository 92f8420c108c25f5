//! The JSON replica: a `libxl_domain_config` as libxl 4.17 writes it.
//!
//! A [`DomainConfig`] keeps the whole document as ordered JSON objects, so nothing is lost: keys
//! it does not model, values of unknown enum spellings, keys from a newer libxl. The typed
//! accessors reach the fields the engine needs; the setters put a key libxl would emit at its
//! IDL position (see [`schema`]), so printing follows libxl's key order.

pub mod print;
pub mod schema;

use serde_json::{Map, Value};

/// One JSON object, keys in document order.
pub type Object = Map<String, Value>;

/// `b_info`'s keyed union discriminator (`type.hvm`, `type.pv`, `type.pvh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainType {
    Hvm,
    Pv,
    Pvh,
    /// `type.invalid`: libxl's init value.
    Invalid,
}

impl DomainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Hvm => "hvm",
            DomainType::Pv => "pv",
            DomainType::Pvh => "pvh",
            DomainType::Invalid => "invalid",
        }
    }

    /// libxl's enums parse case-insensitively.
    pub fn parse(s: &str) -> Option<DomainType> {
        Some(match s.to_ascii_lowercase().as_str() {
            "hvm" => DomainType::Hvm,
            "pv" => DomainType::Pv,
            "pvh" => DomainType::Pvh,
            "invalid" => DomainType::Invalid,
            _ => return None,
        })
    }
}

/// The device arrays of `libxl_domain_config`, in IDL order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceArray {
    Disks,
    Nics,
    Pcidevs,
    Rdms,
    Dtdevs,
    Vfbs,
    Vkbs,
    Vtpms,
    P9s,
    Pvcallsifs,
    Vdispls,
    Vsnds,
    Channels,
    Usbctrls,
    Usbdevs,
}

impl DeviceArray {
    pub const ALL: [DeviceArray; 15] = [
        DeviceArray::Disks,
        DeviceArray::Nics,
        DeviceArray::Pcidevs,
        DeviceArray::Rdms,
        DeviceArray::Dtdevs,
        DeviceArray::Vfbs,
        DeviceArray::Vkbs,
        DeviceArray::Vtpms,
        DeviceArray::P9s,
        DeviceArray::Pvcallsifs,
        DeviceArray::Vdispls,
        DeviceArray::Vsnds,
        DeviceArray::Channels,
        DeviceArray::Usbctrls,
        DeviceArray::Usbdevs,
    ];

    /// The JSON key in `libxl_domain_config`.
    pub fn key(self) -> &'static str {
        match self {
            DeviceArray::Disks => "disks",
            DeviceArray::Nics => "nics",
            DeviceArray::Pcidevs => "pcidevs",
            DeviceArray::Rdms => "rdms",
            DeviceArray::Dtdevs => "dtdevs",
            DeviceArray::Vfbs => "vfbs",
            DeviceArray::Vkbs => "vkbs",
            DeviceArray::Vtpms => "vtpms",
            DeviceArray::P9s => "p9s",
            DeviceArray::Pvcallsifs => "pvcallsifs",
            DeviceArray::Vdispls => "vdispls",
            DeviceArray::Vsnds => "vsnds",
            DeviceArray::Channels => "channels",
            DeviceArray::Usbctrls => "usbctrls",
            DeviceArray::Usbdevs => "usbdevs",
        }
    }

    /// The IDL struct of one element (`device_disk`, …), for [`schema::field_order`].
    pub fn element_struct(self) -> &'static str {
        match self {
            DeviceArray::Disks => "device_disk",
            DeviceArray::Nics => "device_nic",
            DeviceArray::Pcidevs => "device_pci",
            DeviceArray::Rdms => "device_rdm",
            DeviceArray::Dtdevs => "device_dtdev",
            DeviceArray::Vfbs => "device_vfb",
            DeviceArray::Vkbs => "device_vkb",
            DeviceArray::Vtpms => "device_vtpm",
            DeviceArray::P9s => "device_p9",
            DeviceArray::Pvcallsifs => "device_pvcallsif",
            DeviceArray::Vdispls => "device_vdispl",
            DeviceArray::Vsnds => "device_vsnd",
            DeviceArray::Channels => "device_channel",
            DeviceArray::Usbctrls => "device_usbctrl",
            DeviceArray::Usbdevs => "device_usbdev",
        }
    }
}

/// A whole `libxl_domain_config` document.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DomainConfig {
    root: Object,
}

/// The shapes a libxl JSON document comes in.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// The userdata file: one bare config.
    Bare(DomainConfig),
    /// `xl list -l`: `[{"domid": N, "config": {...}}, ...]`.
    Listed(Vec<ListedDomain>),
}

/// One element of `xl list -l`'s array.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedDomain {
    pub domid: u32,
    pub config: DomainConfig,
}

impl DomainConfig {
    pub fn from_object(root: Object) -> DomainConfig {
        DomainConfig { root }
    }

    pub fn as_object(&self) -> &Object {
        &self.root
    }

    pub fn into_object(self) -> Object {
        self.root
    }

    /// Prints the config exactly as libxl's generator lays it out.
    pub fn to_libxl_json(&self) -> String {
        print::to_libxl_string(&Value::Object(self.root.clone()))
    }

    pub fn c_info(&self) -> Option<&Object> {
        self.root.get("c_info").and_then(Value::as_object)
    }

    pub fn b_info(&self) -> Option<&Object> {
        self.root.get("b_info").and_then(Value::as_object)
    }

    /// The domain type from `b_info`'s keyed union key (`type.pv`, …): the one libxl's retrieve
    /// switches on. `None` when no `type.*` key is present (libxl aborts on that).
    pub fn build_type(&self) -> Option<DomainType> {
        let b = self.b_info()?;
        b.keys().find_map(|k| k.strip_prefix("type.").and_then(DomainType::parse))
    }

    /// How many `type.*` keys `b_info` has (libxl asserts on more than one).
    pub fn build_type_keys(&self) -> usize {
        self.b_info().map_or(0, |b| b.keys().filter(|k| k.starts_with("type.")).count())
    }

    pub fn name(&self) -> Option<&str> {
        self.c_info()?.get("name")?.as_str()
    }

    /// A `b_info` integer field as libxl would read it: present, an integer, in `u64`.
    pub fn b_info_u64(&self, key: &str) -> Option<u64> {
        self.b_info()?.get(key)?.as_u64()
    }

    pub fn b_info_i64(&self, key: &str) -> Option<i64> {
        self.b_info()?.get(key)?.as_i64()
    }

    /// The device array as stored (elements verbatim). Absent means empty.
    pub fn devices(&self, array: DeviceArray) -> &[Value] {
        match self.root.get(array.key()) {
            Some(Value::Array(v)) => v,
            _ => &[],
        }
    }

    /// Replaces a device array. An empty array is omitted, as libxl omits it.
    pub fn set_devices(&mut self, array: DeviceArray, items: Vec<Value>) {
        if items.is_empty() {
            self.root.shift_remove(array.key());
        } else {
            set_in_order(&mut self.root, "domain_config", array.key(), Value::Array(items));
        }
    }

    /// Sets `c_info.<key>`, at its IDL position when new.
    pub fn set_c_info(&mut self, key: &str, value: Option<Value>) {
        let c = object_entry(&mut self.root, "domain_config", "c_info");
        set_or_remove(c, "domain_create_info", key, value);
    }

    /// Sets `b_info.<key>`, at its IDL position when new.
    pub fn set_b_info(&mut self, key: &str, value: Option<Value>) {
        let b = object_entry(&mut self.root, "domain_config", "b_info");
        set_or_remove(b, "domain_build_info", key, value);
    }

    /// A top-level key other than a device array (`on_reboot`, …).
    pub fn set_top(&mut self, key: &str, value: Option<Value>) {
        set_or_remove(&mut self.root, "domain_config", key, value);
    }
}

fn object_entry<'a>(parent: &'a mut Object, parent_struct: &str, key: &str) -> &'a mut Object {
    if !matches!(parent.get(key), Some(Value::Object(_))) {
        set_in_order(parent, parent_struct, key, Value::Object(Object::new()));
    }
    match parent.get_mut(key) {
        Some(Value::Object(o)) => o,
        _ => unreachable!("just inserted an object"),
    }
}

fn set_or_remove(obj: &mut Object, struct_name: &str, key: &str, value: Option<Value>) {
    match value {
        Some(v) => set_in_order(obj, struct_name, key, v),
        None => {
            obj.shift_remove(key);
        }
    }
}

/// Sets `key` in `obj`. An existing key keeps its place. A new key goes where libxl's IDL
/// order puts it: after the last present key that comes before it in the IDL; keys unknown
/// to the IDL keep their relative place.
pub fn set_in_order(obj: &mut Object, struct_name: &str, key: &str, value: Value) {
    if let Some(slot) = obj.get_mut(key) {
        *slot = value;
        return;
    }
    let order = schema::field_order(struct_name).unwrap_or(&[]);
    let base = |k: &str| -> String { k.split('.').next().unwrap_or(k).to_string() };
    let Some(my_rank) = order.iter().position(|f| *f == base(key)) else {
        obj.insert(key.to_string(), value);
        return;
    };
    // Insert before the first existing key whose IDL rank is greater than ours.
    let mut insert_at = obj.len();
    for (i, k) in obj.keys().enumerate() {
        if let Some(r) = order.iter().position(|f| *f == base(k)) {
            if r > my_rank {
                insert_at = i;
                break;
            }
        }
    }
    obj.shift_insert(insert_at, key.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(s: &str) -> DomainConfig {
        DomainConfig::from_object(serde_json::from_str(s).unwrap())
    }

    #[test]
    fn setters_follow_idl_order() {
        let mut c = cfg(r#"{"c_info": {"type": "pv", "uuid": "x"}, "b_info": {"max_vcpus": 2, "type.pv": {}}, "on_reboot": "restart"}"#);
        c.set_c_info("name", Some("g".into()));
        c.set_b_info("max_memkb", Some(5.into()));
        c.set_devices(DeviceArray::Nics, vec![serde_json::json!({"devid": 0})]);
        let keys: Vec<&String> = c.c_info().unwrap().keys().collect();
        assert_eq!(keys, ["type", "name", "uuid"]);
        let keys: Vec<&String> = c.b_info().unwrap().keys().collect();
        assert_eq!(keys, ["max_vcpus", "max_memkb", "type.pv"]);
        let keys: Vec<&String> = c.as_object().keys().collect();
        assert_eq!(keys, ["c_info", "b_info", "nics", "on_reboot"]);
        assert_eq!(c.build_type(), Some(DomainType::Pv));
    }
}
