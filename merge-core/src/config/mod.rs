//! The JSON replica: a `libxl_domain_config` as libxl 4.17 writes it.
//!
//! A [`DomainConfig`] keeps the whole document as ordered JSON objects, so nothing is lost: keys
//! it does not model, values of unknown enum spellings, keys from a newer libxl. The typed
//! accessors reach the fields the engine needs; the setters put a key libxl would emit at its
//! IDL position (see [`schema`]), so printing follows libxl's key order.
//!
//! * [`parse_document`] / [`DomainConfig::parse`] read libxl's text (userdata file or
//!   `xl list -l`), check every known field against the 4.17 IDL ([`schema`]) and report bad
//!   input with its JSON path, e.g. `disks[1].vdev: expected a string or null, found 7`.
//! * [`DomainConfig::to_libxl_json`] / [`Document::to_libxl_json`] print exactly as libxl
//!   does; a document libxl printed comes back byte for byte.
//! * [`normalize_libxl_417`] answers what libxl 4.17 itself would print after reading a
//!   document (defaults dropped, spellings canonical, wrong-typed keys ignored), or how it fails.
//! * [`StructView`] gives schema-typed getters ([`Uuid`], [`Mac`], [`Defbool`], bitmaps, enums).

pub mod error;
pub mod json;
pub mod normalize;
pub mod print;
pub mod schema;
pub mod types;
mod validate;
pub mod view;

#[cfg(feature = "testkit")]
pub mod arbitrary;

pub use error::{ConfigError, JsonPath, LibxlFailure, ParseWarning, PathSegment};
pub use normalize::normalize_libxl_417;
pub use types::{bitmap_from_json, bitmap_to_json, Defbool, Mac, Uuid};
pub use view::{EnumValue, StructView, UnionView};

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

    /// The schema of one element.
    pub fn element_def(self) -> &'static schema::StructDef {
        match schema::DOMAIN_CONFIG.field(self.key()).map(|f| &f.ty) {
            Some(schema::FieldType::Array(schema::FieldType::Struct(def))) => def,
            _ => unreachable!("every device array is an array of structs in the schema"),
        }
    }

    /// The device array stored under a `libxl_domain_config` key.
    pub fn from_key(key: &str) -> Option<DeviceArray> {
        DeviceArray::ALL.into_iter().find(|a| a.key() == key)
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
///
/// Equality compares the document (keys, values and key order); the warnings only describe the
/// text it was read from.
#[derive(Debug, Clone, Default)]
pub struct DomainConfig {
    root: Object,
    warnings: Vec<ParseWarning>,
}

impl PartialEq for DomainConfig {
    fn eq(&self, other: &DomainConfig) -> bool {
        self.root == other.root && key_orders_equal(&self.root, &other.root)
    }
}

/// `serde_json`'s ordered map compares as a map; libxl documents also differ by key order.
fn key_orders_equal(a: &Object, b: &Object) -> bool {
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => key_orders_equal(x, y),
            (Value::Array(x), Value::Array(y)) => x.iter().zip(y).all(|(p, q)| same(p, q)),
            _ => true,
        }
    }
    a.keys().eq(b.keys()) && a.values().zip(b.values()).all(|(x, y)| same(x, y))
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

/// Reads libxl JSON text: a userdata file (a bare config, trailing `\n\0` allowed) or
/// `xl list -l` output (`[{"domid": N, "config": {...}}, ...]`), validated against the 4.17
/// schema. Duplicate keys keep their first occurrence and are listed in each config's
/// [`DomainConfig::warnings`].
pub fn parse_document(bytes: &[u8]) -> Result<Document, ConfigError> {
    read_document(bytes, true)
}

/// Like [`parse_document`] but without the schema check: any JSON object is a config. For
/// reproducing libxl on hostile documents ([`normalize_libxl_417`] then decides what libxl
/// makes of each field).
pub fn parse_document_unvalidated(bytes: &[u8]) -> Result<Document, ConfigError> {
    read_document(bytes, false)
}

fn read_document(bytes: &[u8], validate: bool) -> Result<Document, ConfigError> {
    let json::ReadJson { value, warnings } = json::read_json(bytes)?;
    let (mut document, mut warnings) = match value {
        Value::Object(root) => {
            let mut config = DomainConfig { root, warnings };
            if validate {
                let found = config.validate()?;
                config.warnings.extend(found);
            }
            (Document::Bare(config), Vec::new())
        }
        Value::Array(items) => (Document::Listed(listed_domains(items, validate)?), warnings),
        other => {
            return Err(ConfigError::type_error(
                &JsonPath::root(),
                "a libxl_domain_config object or an `xl list -l` array",
                &other,
            ))
        }
    };
    // Reader warnings of a listed document carry full paths; give each to its own domain.
    if let Document::Listed(domains) = &mut document {
        for w in warnings.drain(..) {
            let index = match &w {
                ParseWarning::DuplicateKey { path } => match path.0.first() {
                    Some(PathSegment::Index(i)) => *i,
                    _ => 0,
                },
                _ => 0,
            };
            if let Some(d) = domains.get_mut(index) {
                d.config.warnings.push(w);
            }
        }
    }
    Ok(document)
}

fn listed_domains(items: Vec<Value>, validate: bool) -> Result<Vec<ListedDomain>, ConfigError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let path = JsonPath::root().index(i);
        let Value::Object(mut element) = item else {
            return Err(ConfigError::type_error(&path, "an object {\"domid\": N, \"config\": {...}}", &item));
        };
        if let Some(extra) = element.keys().find(|k| *k != "domid" && *k != "config") {
            return Err(ConfigError::invalid(&path.key(extra), "unexpected key in an `xl list -l` element"));
        }
        let domid = match element.get("domid") {
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| ConfigError::type_error(&path.key("domid"), "a domid (0..=4294967295)", v))?,
            None => return Err(ConfigError::invalid(&path, "missing \"domid\"")),
        };
        let root = match element.shift_remove("config") {
            Some(Value::Object(root)) => root,
            Some(other) => return Err(ConfigError::type_error(&path.key("config"), "an object", &other)),
            None => return Err(ConfigError::invalid(&path, "missing \"config\"")),
        };
        let mut config = DomainConfig::from_object(root);
        if validate {
            let mut p = path.key("config");
            let found = validate::validate_struct(&config.root, &schema::DOMAIN_CONFIG, &mut p, &mut config.warnings);
            found?;
        }
        out.push(ListedDomain { domid, config });
    }
    Ok(out)
}

impl Document {
    /// Prints the document as libxl/xl does: a bare config ends with one newline; `xl list -l`
    /// prints the array followed by an extra empty line.
    pub fn to_libxl_json(&self) -> String {
        match self {
            Document::Bare(config) => config.to_libxl_json(),
            Document::Listed(domains) => {
                let items = domains
                    .iter()
                    .map(|d| {
                        let mut element = Object::new();
                        element.insert("domid".to_string(), Value::from(d.domid));
                        element.insert("config".to_string(), Value::Object(d.config.root.clone()));
                        Value::Object(element)
                    })
                    .collect();
                let mut out = print::to_libxl_string(&Value::Array(items));
                out.push('\n');
                out
            }
        }
    }

    /// Every configuration in the document, in order.
    pub fn configs(&self) -> Vec<&DomainConfig> {
        match self {
            Document::Bare(c) => vec![c],
            Document::Listed(ds) => ds.iter().map(|d| &d.config).collect(),
        }
    }
}

/// The five `on_*` actions of `libxl_domain_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ShutdownEvent {
    Poweroff,
    Reboot,
    Watchdog,
    Crash,
    SoftReset,
}

impl ShutdownEvent {
    pub const ALL: [ShutdownEvent; 5] = [
        ShutdownEvent::Poweroff,
        ShutdownEvent::Reboot,
        ShutdownEvent::Watchdog,
        ShutdownEvent::Crash,
        ShutdownEvent::SoftReset,
    ];

    pub fn key(self) -> &'static str {
        match self {
            ShutdownEvent::Poweroff => "on_poweroff",
            ShutdownEvent::Reboot => "on_reboot",
            ShutdownEvent::Watchdog => "on_watchdog",
            ShutdownEvent::Crash => "on_crash",
            ShutdownEvent::SoftReset => "on_soft_reset",
        }
    }
}

impl DomainConfig {
    pub fn from_object(root: Object) -> DomainConfig {
        DomainConfig { root, warnings: Vec::new() }
    }

    /// Reads one bare configuration (a userdata file's bytes, `}\n\0` trailer allowed).
    pub fn parse(bytes: &[u8]) -> Result<DomainConfig, ConfigError> {
        match parse_document(bytes)? {
            Document::Bare(config) => Ok(config),
            Document::Listed(_) => Err(ConfigError::invalid(
                &JsonPath::root(),
                "expected one libxl_domain_config object, found an `xl list -l` array",
            )),
        }
    }

    /// Checks every known field against the 4.17 schema (what [`DomainConfig::parse`] does),
    /// returning the warnings (unknown enum spellings).
    pub fn validate(&self) -> Result<Vec<ParseWarning>, ConfigError> {
        let mut warnings = Vec::new();
        validate::validate_struct(&self.root, &schema::DOMAIN_CONFIG, &mut JsonPath::root(), &mut warnings)?;
        Ok(warnings)
    }

    /// What the reader tolerated: duplicate keys, unknown enum spellings, bytes after the NUL.
    pub fn warnings(&self) -> &[ParseWarning] {
        &self.warnings
    }

    /// The bytes libxl stores in `userdata-d.<domid>.<uuid>.libxl-json`: the JSON and a NUL.
    pub fn to_userdata_bytes(&self) -> Vec<u8> {
        let mut bytes = self.to_libxl_json().into_bytes();
        bytes.push(0);
        bytes
    }

    /// The whole document as a typed view.
    pub fn view(&self) -> StructView<'_> {
        StructView::new(&self.root, &schema::DOMAIN_CONFIG)
    }

    /// `c_info` as a typed view.
    pub fn c_info_view(&self) -> Option<StructView<'_>> {
        self.view().child("c_info")
    }

    /// `b_info` as a typed view.
    pub fn b_info_view(&self) -> Option<StructView<'_>> {
        self.view().child("b_info")
    }

    /// `c_info.uuid`.
    pub fn uuid(&self) -> Option<Uuid> {
        self.c_info_view()?.uuid("uuid")
    }

    /// `b_info.max_vcpus` (the size of `avail_vcpus` libxl allocates on retrieve).
    pub fn max_vcpus(&self) -> Option<i64> {
        self.b_info_view()?.int("max_vcpus")
    }

    /// `b_info.avail_vcpus`, ascending.
    pub fn avail_vcpus(&self) -> Option<Vec<u32>> {
        self.b_info_view()?.bitmap("avail_vcpus")
    }

    /// `b_info.max_memkb`; absent means `LIBXL_MEMKB_DEFAULT`.
    pub fn max_memkb(&self) -> Option<u64> {
        self.b_info_view()?.uint("max_memkb")
    }

    /// `b_info.target_memkb`.
    pub fn target_memkb(&self) -> Option<u64> {
        self.b_info_view()?.uint("target_memkb")
    }

    /// `b_info.video_memkb` (the retrieve fudge term).
    pub fn video_memkb(&self) -> Option<u64> {
        self.b_info_view()?.uint("video_memkb")
    }

    /// `c_info.poolid` and `c_info.pool_name` (JSON-only: stale after `xl cpupool-migrate`).
    pub fn pool(&self) -> (Option<u64>, Option<&str>) {
        match self.c_info_view() {
            Some(c) => (c.uint("poolid"), c.str("pool_name")),
            None => (None, None),
        }
    }

    /// `b_info.vcpu_hard_affinity`, one bitmap per vCPU (JSON-only: stale after `xl vcpu-pin`).
    pub fn vcpu_hard_affinity(&self) -> Option<Vec<Vec<u32>>> {
        self.b_info_view()?.bitmaps("vcpu_hard_affinity")
    }

    /// `b_info.sched_params`.
    pub fn sched_params(&self) -> Option<StructView<'_>> {
        self.b_info_view()?.child("sched_params")
    }

    /// `b_info.device_model_version` (decides the HVM vcpu query on retrieve).
    pub fn device_model_version(&self) -> Option<EnumValue<'_>> {
        self.b_info_view()?.enum_value("device_model_version")
    }

    /// An `on_*` action; `None` when absent (libxl's init value is `destroy`).
    pub fn on_shutdown(&self, event: ShutdownEvent) -> Option<EnumValue<'_>> {
        self.view().enum_value(event.key())
    }

    /// The elements of a device array as typed views (non-objects skipped).
    pub fn device_views(&self, array: DeviceArray) -> Vec<StructView<'_>> {
        self.view().items(array.key())
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

    /// Takes a device array's entries out, leaving it empty in its place for
    /// [`DomainConfig::set_devices`] to fill or remove: the entries are moved, not copied.
    pub fn take_devices(&mut self, array: DeviceArray) -> Vec<Value> {
        match self.root.get_mut(array.key()) {
            Some(Value::Array(v)) => std::mem::take(v),
            _ => Vec::new(),
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
    fn typed_getters_read_section_1_fields() {
        let c = DomainConfig::parse(
            br#"{"c_info": {"type": "pv", "name": "g", "uuid": "5B3E9F0C-6A1D-4C2E-9F7A-0D4E8B1C2A37", "poolid": 2, "pool_name": "p"},
                 "b_info": {"max_vcpus": 2, "avail_vcpus": [1, 0], "vcpu_hard_affinity": [[0], [1]],
                            "max_memkb": 1048576, "target_memkb": 1048576, "video_memkb": 0,
                            "sched_params": {"sched": "credit2", "weight": 256, "cap": 0},
                            "device_model_version": "QEMU_XEN", "type.pv": {}},
                 "on_reboot": "restart"}
"#,
        )
        .unwrap();
        assert_eq!(c.uuid().unwrap().to_string(), "5b3e9f0c-6a1d-4c2e-9f7a-0d4e8b1c2a37");
        assert_eq!(c.max_vcpus(), Some(2));
        assert_eq!(c.avail_vcpus(), Some(vec![0, 1]));
        assert_eq!(c.vcpu_hard_affinity(), Some(vec![vec![0], vec![1]]));
        assert_eq!((c.max_memkb(), c.target_memkb(), c.video_memkb()), (Some(1048576), Some(1048576), Some(0)));
        assert_eq!(c.pool(), (Some(2), Some("p")));
        let sched = c.sched_params().unwrap();
        assert!(sched.enum_value("sched").unwrap().is("credit2"));
        assert_eq!((sched.int("weight"), sched.int("cap")), (Some(256), Some(0)));
        assert!(c.device_model_version().unwrap().is("qemu_xen"));
        assert!(c.on_shutdown(ShutdownEvent::Reboot).unwrap().is("restart"));
        assert_eq!(c.on_shutdown(ShutdownEvent::Crash), None);
        assert_eq!(DeviceArray::from_key("vsnds"), Some(DeviceArray::Vsnds));
        assert_eq!(DeviceArray::Usbdevs.element_def().name, "device_usbdev");
    }

    #[test]
    fn equality_includes_key_order() {
        let a = cfg(r#"{"c_info": {"name": "a", "type": "pv"}}"#);
        let b = cfg(r#"{"c_info": {"type": "pv", "name": "a"}}"#);
        assert_ne!(a, b);
        assert_eq!(a, a.clone());
    }

    #[test]
    fn setters_follow_idl_order() {
        let mut c = cfg(
            r#"{"c_info": {"type": "pv", "uuid": "x"}, "b_info": {"max_vcpus": 2, "type.pv": {}}, "on_reboot": "restart"}"#,
        );
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
