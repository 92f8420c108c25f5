//! libxl 4.17's IDL (`libxl_types.idl`) as data: every struct reachable from
//! `libxl_domain_config`, each field's type and init value, every enum with its spellings.
//!
//! Field lists and order come from the installed 4.17 `_libxl_types.h` (generated from the IDL, so
//! it is the IDL order the JSON generator follows). Init values and enum spellings come from
//! `libxl_types.idl` and `libxl.h`. `const` fields (`type.pv.features`) are left out because libxl
//! never emits or parses them.
//!
//! One table drives everything in [`crate::config`]: key order ([`field_order`]), validation,
//! typed views, [`crate::config::normalize_libxl_417`] and the test generators.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The width and signedness of an IDL integer, as the JSON parser range-checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntKind {
    /// `integer` (C `int`): `INT_MIN..=INT_MAX`.
    Int,
    Uint8,
    Uint16,
    Uint32,
    /// `uint64`: printed from its unsigned decimal string.
    Uint64,
    /// `MemKB`: a `uint64` whose init value is `LIBXL_MEMKB_DEFAULT` (2^64-1).
    MemKb,
    /// `libxl_domid`: parsed as a `uint32`, no init value.
    Domid,
    /// `libxl_devid`: parsed as an `int`, init value -1.
    Devid,
}

impl IntKind {
    /// The values the JSON parser accepts (`libxl__int_parse_json`, `libxl__uintN_parse_json`).
    pub fn range(self) -> (i128, i128) {
        match self {
            IntKind::Int | IntKind::Devid => (i32::MIN as i128, i32::MAX as i128),
            IntKind::Uint8 => (0, u8::MAX as i128),
            IntKind::Uint16 => (0, u16::MAX as i128),
            IntKind::Uint32 | IntKind::Domid => (0, u32::MAX as i128),
            IntKind::Uint64 | IntKind::MemKb => (0, u64::MAX as i128),
        }
    }

    /// The C type name, for messages.
    pub fn c_name(self) -> &'static str {
        match self {
            IntKind::Int => "int",
            IntKind::Uint8 => "uint8",
            IntKind::Uint16 => "uint16",
            IntKind::Uint32 => "uint32",
            IntKind::Uint64 => "uint64",
            IntKind::MemKb => "MemKB",
            IntKind::Domid => "libxl_domid",
            IntKind::Devid => "libxl_devid",
        }
    }

    /// The type-level init value (field-level ones are in [`Field::init`]).
    pub fn type_init(self) -> Option<i128> {
        match self {
            IntKind::MemKb => Some(u64::MAX as i128),
            IntKind::Devid => Some(-1),
            _ => None,
        }
    }

    /// `uint64` and `MemKB` are printed with `libxl__uint64_gen_json`; the rest with
    /// `yajl_gen_integer`.
    pub fn is_64_bit_unsigned(self) -> bool {
        matches!(self, IntKind::Uint64 | IntKind::MemKb)
    }
}

/// An IDL enumeration: its values (lowercase JSON spelling, C value) and init value.
#[derive(Debug)]
pub struct EnumDef {
    pub name: &'static str,
    pub values: &'static [(&'static str, i32)],
    /// `init_val`: when set, a field is emitted iff it differs from this; otherwise iff it is
    /// non-zero.
    pub init: Option<i32>,
}

impl EnumDef {
    /// libxl's `<enum>_from_string`: a case-insensitive match (`strcasecmp`).
    pub fn lookup(&self, spelling: &str) -> Option<(&'static str, i32)> {
        self.values.iter().copied().find(|(name, _)| name.eq_ignore_ascii_case(spelling))
    }

    /// libxl's `<enum>_to_string`: `None` for a value outside the enum (printed as `null`).
    pub fn name_of(&self, value: i32) -> Option<&'static str> {
        self.values.iter().find(|(_, v)| *v == value).map(|(n, _)| *n)
    }

    /// The C value a freshly initialised field holds.
    pub fn initial(&self) -> i32 {
        self.init.unwrap_or(0)
    }

    /// Whether the generator emits this value (`!= init_val`, or `!= 0` without one).
    pub fn is_emitted(&self, value: i32) -> bool {
        value != self.initial()
    }
}

/// A keyed union (`KeyedUnion` in the IDL): no discriminator key of its own; the JSON key is
/// `"<keyvar>.<member>"` holding the member's struct (or `{}` for a member without one).
#[derive(Debug)]
pub struct UnionDef {
    /// The discriminator's field name (`type`, `connection`).
    pub keyvar: &'static str,
    pub keyvar_enum: &'static EnumDef,
    /// Members in declaration order (the parser tries them in this order).
    pub members: &'static [(&'static str, Option<&'static StructDef>)],
}

impl UnionDef {
    /// The JSON key of a member: `type.hvm`.
    pub fn member_key(&self, member: &str) -> String {
        format!("{}.{}", self.keyvar, member)
    }

    /// The member named by a JSON key (`type.pv` → `pv`), if it is one of ours.
    pub fn member_of_key(&self, key: &str) -> Option<(&'static str, Option<&'static StructDef>)> {
        let member = key.strip_prefix(self.keyvar)?.strip_prefix('.')?;
        self.members.iter().copied().find(|(m, _)| *m == member)
    }

    /// The discriminator's value for a member.
    pub fn member_value(&self, member: &str) -> i32 {
        self.keyvar_enum.lookup(member).map_or(0, |(_, v)| v)
    }
}

/// The type of one IDL field.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    Int(IntKind),
    /// C `bool`: JSON `true`/`false`, emitted iff true.
    Bool,
    /// `char *`: a JSON string, or `null` (= unset). `""` is a value and is emitted.
    String,
    Enum(&'static EnumDef),
    /// `libxl_defbool`: `"True"`, `"False"`, or `"<default>"` (omitted).
    Defbool,
    /// `libxl_uuid`: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, omitted when nil.
    Uuid,
    /// `libxl_mac`: `xx:xx:xx:xx:xx:xx`, omitted when all zero.
    Mac,
    /// `libxl_bitmap`: ascending indices of the set bits, omitted when none is set.
    Bitmap,
    /// `libxl_string_list`: an array of strings, omitted when empty.
    StringList,
    /// `libxl_key_value_list`: an object of string-or-null values, omitted when empty.
    KeyValueList,
    /// `libxl_cpuid_policy_list`: `{"cpuid": [...], "msr": [...]}` (the pre-4.17.2 bare array is
    /// still read). Kept raw by the typed layer.
    CpuidPolicyList,
    /// `libxl_ms_vm_genid`: 16 integers, omitted when all zero.
    MsVmGenid,
    /// A nested struct: always emitted, possibly as `{}`.
    Struct(&'static StructDef),
    /// `Array(elem, "num_x")`: emitted iff non-empty.
    Array(&'static FieldType),
    KeyedUnion(&'static UnionDef),
}

impl FieldType {
    /// What a JSON value of this type looks like, for "expected …" messages.
    pub fn expectation(&self) -> &'static str {
        match self {
            FieldType::Int(IntKind::Int | IntKind::Devid) => "an integer",
            FieldType::Int(_) => "a non-negative integer",
            FieldType::Bool => "true or false",
            FieldType::String => "a string or null",
            FieldType::Enum(_) => "a string (an enum value) or null",
            FieldType::Defbool => "\"True\", \"False\" or \"<default>\"",
            FieldType::Uuid => "a UUID string",
            FieldType::Mac => "a MAC address string",
            FieldType::Bitmap => "an array of bit indices",
            FieldType::StringList => "an array of strings",
            FieldType::KeyValueList => "an object of strings or nulls",
            FieldType::CpuidPolicyList => "a cpuid policy (an object or an array)",
            FieldType::MsVmGenid => "an array of 16 integers",
            FieldType::Struct(_) | FieldType::KeyedUnion(_) => "an object",
            FieldType::Array(_) => "an array",
        }
    }
}

/// One field of a struct, in IDL order.
#[derive(Debug)]
pub struct Field {
    /// The JSON key; for a keyed union, the discriminator's name (`type`).
    pub name: &'static str,
    pub ty: FieldType,
    /// A field-level `init_val` (integers only: sched params, `gfn`, grant limits).
    pub init: Option<i128>,
}

impl Field {
    /// The init value of an integer field (field-level, else type-level, else 0).
    pub fn int_init(&self) -> i128 {
        match self.ty {
            FieldType::Int(kind) => self.init.or(kind.type_init()).unwrap_or(0),
            _ => 0,
        }
    }
}

/// An IDL struct, named (`device_disk`) or anonymous (`domain_build_info.type.hvm`).
#[derive(Debug)]
pub struct StructDef {
    pub name: &'static str,
    pub fields: &'static [Field],
}

impl StructDef {
    pub fn field(&self, name: &str) -> Option<&'static Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The keyed union a `<keyvar>.<member>` key belongs to, with the member.
    pub fn union_for_key(
        &self,
        key: &str,
    ) -> Option<(&'static Field, &'static UnionDef, &'static str, Option<&'static StructDef>)> {
        self.fields.iter().find_map(|f| match f.ty {
            FieldType::KeyedUnion(u) => u.member_of_key(key).map(|(m, s)| (f, u, m, s)),
            _ => None,
        })
    }

    /// The field a JSON key belongs to: a plain field, or a keyed union's member key.
    pub fn field_for_key(&self, key: &str) -> Option<&'static Field> {
        self.field(key)
            .filter(|f| !matches!(f.ty, FieldType::KeyedUnion(_)))
            .or_else(|| self.union_for_key(key).map(|x| x.0))
    }
}

const fn f(name: &'static str, ty: FieldType) -> Field {
    Field { name, ty, init: None }
}

const fn fi(name: &'static str, ty: FieldType, init: i128) -> Field {
    Field { name, ty, init: Some(init) }
}

const INT: FieldType = FieldType::Int(IntKind::Int);
const U8: FieldType = FieldType::Int(IntKind::Uint8);
const U32: FieldType = FieldType::Int(IntKind::Uint32);
const U64: FieldType = FieldType::Int(IntKind::Uint64);
const MEMKB: FieldType = FieldType::Int(IntKind::MemKb);
const DOMID: FieldType = FieldType::Int(IntKind::Domid);
const DEVID: FieldType = FieldType::Int(IntKind::Devid);
const BOOL: FieldType = FieldType::Bool;
const STR: FieldType = FieldType::String;
const DEFBOOL: FieldType = FieldType::Defbool;
const BITMAP: FieldType = FieldType::Bitmap;
const STRINGS: FieldType = FieldType::StringList;
const KVL: FieldType = FieldType::KeyValueList;

/// `LIBXL_DOMAIN_SCHED_PARAM_*_DEFAULT`, `LIBXL_TIMER_MODE_DEFAULT`.
const MINUS_ONE: i128 = -1;
/// `LIBXL_MAX_GRANT_DEFAULT` = `~(uint32_t)0`; as the `int` `max_grant_version` it is -1.
const MAX_GRANT_DEFAULT: i128 = u32::MAX as i128;
/// `LIBXL_INVALID_GFN` = `~(uint64_t)0`.
const INVALID_GFN: i128 = u64::MAX as i128;

macro_rules! enums {
    ($($ident:ident = $name:literal, init $init:expr, [$($spelling:literal = $value:expr),* $(,)?];)*) => {
        $(pub static $ident: EnumDef = EnumDef { name: $name, values: &[$(($spelling, $value)),*], init: $init };)*
        /// Every enum of the 4.17 domain configuration.
        pub static ALL_ENUMS: &[&EnumDef] = &[$(&$ident),*];
    };
}

enums! {
    DOMAIN_TYPE = "domain_type", init Some(-1), ["invalid" = -1, "hvm" = 1, "pv" = 2, "pvh" = 3];
    RDM_RESERVE_STRATEGY = "rdm_reserve_strategy", init None, ["ignore" = 0, "host" = 1];
    RDM_RESERVE_POLICY = "rdm_reserve_policy", init Some(-1), ["invalid" = -1, "strict" = 0, "relaxed" = 1];
    CHANNEL_CONNECTION = "channel_connection", init None, ["unknown" = 0, "pty" = 1, "socket" = 2];
    DEVICE_MODEL_VERSION = "device_model_version", init None, ["unknown" = 0, "qemu_xen_traditional" = 1, "qemu_xen" = 2];
    DISK_FORMAT = "disk_format", init None,
        ["unknown" = 0, "qcow" = 1, "qcow2" = 2, "vhd" = 3, "raw" = 4, "empty" = 5, "qed" = 6];
    DISK_BACKEND = "disk_backend", init None, ["unknown" = 0, "phy" = 1, "tap" = 2, "qdisk" = 3, "standalone" = 4];
    DISK_SPECIFICATION = "disk_specification", init None, ["unknown" = 0, "xen" = 1, "virtio" = 2];
    DISK_TRANSPORT = "disk_transport", init None, ["unknown" = 0, "mmio" = 1];
    NIC_TYPE = "nic_type", init None, ["unknown" = 0, "vif_ioemu" = 1, "vif" = 2];
    ACTION_ON_SHUTDOWN = "action_on_shutdown", init Some(1), [
        "destroy" = 1, "restart" = 2, "restart_rename" = 3, "preserve" = 4,
        "coredump_destroy" = 5, "coredump_restart" = 6, "soft_reset" = 7,
    ];
    TSC_MODE = "tsc_mode", init None, ["default" = 0, "always_emulate" = 1, "native" = 2, "native_paravirt" = 3];
    GFX_PASSTHRU_KIND = "gfx_passthru_kind", init None, ["default" = 0, "igd" = 1];
    TIMER_MODE = "timer_mode", init Some(-1), [
        "unknown" = -1, "delay_for_missed_ticks" = 0, "no_delay_for_missed_ticks" = 1,
        "no_missed_ticks_pending" = 2, "one_missed_tick_pending" = 3,
    ];
    BIOS_TYPE = "bios_type", init None, ["unknown" = 0, "rombios" = 1, "seabios" = 2, "ovmf" = 3];
    SCHEDULER = "scheduler", init None, [
        "unknown" = 0, "sedf" = 4, "credit" = 5, "credit2" = 6, "arinc653" = 7, "rtds" = 8, "null" = 9,
    ];
    VGA_INTERFACE_TYPE = "vga_interface_type", init Some(0),
        ["unknown" = 0, "cirrus" = 1, "std" = 2, "none" = 3, "qxl" = 4];
    VENDOR_DEVICE = "vendor_device", init None, ["none" = 0, "xenserver" = 1];
    HDTYPE = "hdtype", init Some(1), ["ide" = 1, "ahci" = 2];
    VUART_TYPE = "vuart_type", init None, ["unknown" = 0, "sbsa_uart" = 1];
    VKB_BACKEND = "vkb_backend", init None, ["unknown" = 0, "qemu" = 1, "linux" = 2];
    PASSTHROUGH = "passthrough", init None,
        ["default" = 0, "disabled" = 1, "enabled" = 2, "sync_pt" = 3, "share_pt" = 4];
    GIC_VERSION = "gic_version", init Some(0), ["default" = 0, "v2" = 0x20, "v3" = 0x30];
    TEE_TYPE = "tee_type", init Some(0), ["none" = 0, "optee" = 1];
    ALTP2M_MODE = "altp2m_mode", init Some(0), ["disabled" = 0, "mixed" = 1, "external" = 2, "limited" = 3];
    USBCTRL_TYPE = "usbctrl_type", init None, ["auto" = 0, "pv" = 1, "devicemodel" = 2, "qusb" = 3];
    USBDEV_TYPE = "usbdev_type", init None, ["hostdev" = 1];
    VSND_PCM_FORMAT = "vsnd_pcm_format", init None, [
        "s8" = 1, "u8" = 2, "s16_le" = 3, "s16_be" = 4, "u16_le" = 5, "u16_be" = 6, "s24_le" = 7,
        "s24_be" = 8, "u24_le" = 9, "u24_be" = 10, "s32_le" = 11, "s32_be" = 12, "u32_le" = 13,
        "u32_be" = 14, "f32_le" = 15, "f32_be" = 16, "f64_le" = 17, "f64_be" = 18,
        "iec958_subframe_le" = 19, "iec958_subframe_be" = 20, "mu_law" = 21, "a_law" = 22,
        "ima_adpcm" = 23, "mpeg" = 24, "gsm" = 25,
    ];
    VSND_STREAM_TYPE = "vsnd_stream_type", init None, ["p" = 1, "c" = 2];
}

const fn e(name: &'static str, def: &'static EnumDef) -> Field {
    f(name, FieldType::Enum(def))
}

const fn s(name: &'static str, def: &'static StructDef) -> Field {
    f(name, FieldType::Struct(def))
}

pub static IOPORT_RANGE: StructDef = StructDef { name: "ioport_range", fields: &[f("first", U32), f("number", U32)] };

pub static IOMEM_RANGE: StructDef =
    StructDef { name: "iomem_range", fields: &[f("start", U64), f("number", U64), fi("gfn", U64, INVALID_GFN)] };

pub static VGA_INTERFACE_INFO: StructDef =
    StructDef { name: "vga_interface_info", fields: &[e("kind", &VGA_INTERFACE_TYPE)] };

pub static VNC_INFO: StructDef = StructDef {
    name: "vnc_info",
    fields: &[f("enable", DEFBOOL), f("listen", STR), f("passwd", STR), f("display", INT), f("findunused", DEFBOOL)],
};

pub static SPICE_INFO: StructDef = StructDef {
    name: "spice_info",
    fields: &[
        f("enable", DEFBOOL),
        f("port", INT),
        f("tls_port", INT),
        f("host", STR),
        f("disable_ticketing", DEFBOOL),
        f("passwd", STR),
        f("agent_mouse", DEFBOOL),
        f("vdagent", DEFBOOL),
        f("clipboard_sharing", DEFBOOL),
        f("usbredirection", INT),
        f("image_compression", STR),
        f("streaming_video", STR),
    ],
};

pub static SDL_INFO: StructDef = StructDef {
    name: "sdl_info",
    fields: &[f("enable", DEFBOOL), f("opengl", DEFBOOL), f("display", STR), f("xauthority", STR)],
};

pub static DOMAIN_CREATE_INFO: StructDef = StructDef {
    name: "domain_create_info",
    fields: &[
        e("type", &DOMAIN_TYPE),
        f("hap", DEFBOOL),
        f("oos", DEFBOOL),
        f("ssidref", U32),
        f("ssid_label", STR),
        f("name", STR),
        f("domid", DOMID),
        f("uuid", FieldType::Uuid),
        f("xsdata", KVL),
        f("platformdata", KVL),
        f("poolid", U32),
        f("pool_name", STR),
        f("run_hotplug_scripts", DEFBOOL),
        f("driver_domain", DEFBOOL),
        e("passthrough", &PASSTHROUGH),
        f("xend_suspend_evtchn_compat", DEFBOOL),
    ],
};

pub static DOMAIN_SCHED_PARAMS: StructDef = StructDef {
    name: "domain_sched_params",
    fields: &[
        e("sched", &SCHEDULER),
        fi("weight", INT, MINUS_ONE),
        fi("cap", INT, MINUS_ONE),
        fi("period", INT, MINUS_ONE),
        fi("budget", INT, MINUS_ONE),
        fi("extratime", INT, MINUS_ONE),
        fi("slice", INT, MINUS_ONE),
        fi("latency", INT, MINUS_ONE),
    ],
};

pub static VNODE_INFO: StructDef = StructDef {
    name: "vnode_info",
    fields: &[f("memkb", MEMKB), f("distances", FieldType::Array(&U32)), f("pnode", U32), f("vcpus", BITMAP)],
};

pub static RDM_RESERVE: StructDef = StructDef {
    name: "rdm_reserve",
    fields: &[e("strategy", &RDM_RESERVE_STRATEGY), e("policy", &RDM_RESERVE_POLICY)],
};

pub static BUILD_INFO_HVM: StructDef = StructDef {
    name: "domain_build_info.type.hvm",
    fields: &[
        f("firmware", STR),
        e("bios", &BIOS_TYPE),
        f("pae", DEFBOOL),
        f("apic", DEFBOOL),
        f("acpi", DEFBOOL),
        f("acpi_s3", DEFBOOL),
        f("acpi_s4", DEFBOOL),
        f("acpi_laptop_slate", DEFBOOL),
        f("nx", DEFBOOL),
        f("viridian", DEFBOOL),
        f("viridian_enable", BITMAP),
        f("viridian_disable", BITMAP),
        f("timeoffset", STR),
        f("hpet", DEFBOOL),
        f("vpt_align", DEFBOOL),
        f("mmio_hole_memkb", MEMKB),
        e("timer_mode", &TIMER_MODE),
        f("nested_hvm", DEFBOOL),
        f("altp2m", DEFBOOL),
        f("system_firmware", STR),
        f("smbios_firmware", STR),
        f("acpi_firmware", STR),
        e("hdtype", &HDTYPE),
        f("nographic", DEFBOOL),
        s("vga", &VGA_INTERFACE_INFO),
        s("vnc", &VNC_INFO),
        f("keymap", STR),
        s("sdl", &SDL_INFO),
        s("spice", &SPICE_INFO),
        f("gfx_passthru", DEFBOOL),
        e("gfx_passthru_kind", &GFX_PASSTHRU_KIND),
        f("serial", STR),
        f("boot", STR),
        f("usb", DEFBOOL),
        f("usbversion", INT),
        f("usbdevice", STR),
        f("vkb_device", DEFBOOL),
        f("soundhw", STR),
        f("xen_platform_pci", DEFBOOL),
        f("usbdevice_list", STRINGS),
        e("vendor_device", &VENDOR_DEVICE),
        f("ms_vm_genid", FieldType::MsVmGenid),
        f("serial_list", STRINGS),
        s("rdm", &RDM_RESERVE),
        f("rdm_mem_boundary_memkb", MEMKB),
        f("mca_caps", U64),
    ],
};

pub static BUILD_INFO_PV: StructDef = StructDef {
    name: "domain_build_info.type.pv",
    fields: &[
        f("kernel", STR),
        f("slack_memkb", MEMKB),
        f("bootloader", STR),
        f("bootloader_args", STRINGS),
        f("cmdline", STR),
        f("ramdisk", STR),
        f("e820_host", DEFBOOL),
    ],
};

pub static BUILD_INFO_PVH: StructDef = StructDef {
    name: "domain_build_info.type.pvh",
    fields: &[f("pvshim", DEFBOOL), f("pvshim_path", STR), f("pvshim_cmdline", STR), f("pvshim_extra", STR)],
};

pub static BUILD_INFO_TYPE: UnionDef = UnionDef {
    keyvar: "type",
    keyvar_enum: &DOMAIN_TYPE,
    members: &[
        ("hvm", Some(&BUILD_INFO_HVM)),
        ("pv", Some(&BUILD_INFO_PV)),
        ("pvh", Some(&BUILD_INFO_PVH)),
        ("invalid", None),
    ],
};

pub static ARCH_ARM: StructDef = StructDef {
    name: "domain_build_info.arch_arm",
    fields: &[e("gic_version", &GIC_VERSION), e("vuart", &VUART_TYPE)],
};

pub static ARCH_X86: StructDef = StructDef { name: "domain_build_info.arch_x86", fields: &[f("msr_relaxed", DEFBOOL)] };

pub static DOMAIN_BUILD_INFO: StructDef = StructDef {
    name: "domain_build_info",
    fields: &[
        f("max_vcpus", INT),
        f("avail_vcpus", BITMAP),
        f("cpumap", BITMAP),
        f("nodemap", BITMAP),
        f("vcpu_hard_affinity", FieldType::Array(&BITMAP)),
        f("vcpu_soft_affinity", FieldType::Array(&BITMAP)),
        f("numa_placement", DEFBOOL),
        e("tsc_mode", &TSC_MODE),
        f("max_memkb", MEMKB),
        f("target_memkb", MEMKB),
        f("video_memkb", MEMKB),
        f("shadow_memkb", MEMKB),
        f("iommu_memkb", MEMKB),
        f("rtc_timeoffset", U32),
        f("exec_ssidref", U32),
        f("exec_ssid_label", STR),
        f("localtime", DEFBOOL),
        f("disable_migrate", DEFBOOL),
        f("cpuid", FieldType::CpuidPolicyList),
        f("blkdev_start", STR),
        f("vnuma_nodes", FieldType::Array(&FieldType::Struct(&VNODE_INFO))),
        fi("max_grant_frames", U32, MAX_GRANT_DEFAULT),
        fi("max_maptrack_frames", U32, MAX_GRANT_DEFAULT),
        // An `int` compared with `~(uint32_t)0`: the comparison converts to unsigned, so -1 is
        // the default.
        fi("max_grant_version", INT, MINUS_ONE),
        e("device_model_version", &DEVICE_MODEL_VERSION),
        f("device_model_stubdomain", DEFBOOL),
        f("stubdomain_memkb", MEMKB),
        f("stubdomain_kernel", STR),
        f("stubdomain_cmdline", STR),
        f("stubdomain_ramdisk", STR),
        f("device_model", STR),
        f("device_model_ssidref", U32),
        f("device_model_ssid_label", STR),
        f("device_model_user", STR),
        f("extra", STRINGS),
        f("extra_pv", STRINGS),
        f("extra_hvm", STRINGS),
        s("sched_params", &DOMAIN_SCHED_PARAMS),
        f("ioports", FieldType::Array(&FieldType::Struct(&IOPORT_RANGE))),
        f("irqs", FieldType::Array(&U32)),
        f("iomem", FieldType::Array(&FieldType::Struct(&IOMEM_RANGE))),
        f("claim_mode", DEFBOOL),
        f("event_channels", U32),
        f("kernel", STR),
        f("cmdline", STR),
        f("ramdisk", STR),
        f("device_tree", STR),
        f("acpi", DEFBOOL),
        f("bootloader", STR),
        f("bootloader_args", STRINGS),
        e("timer_mode", &TIMER_MODE),
        f("nested_hvm", DEFBOOL),
        f("apic", DEFBOOL),
        f("dm_restrict", DEFBOOL),
        e("tee", &TEE_TYPE),
        f("type", FieldType::KeyedUnion(&BUILD_INFO_TYPE)),
        s("arch_arm", &ARCH_ARM),
        s("arch_x86", &ARCH_X86),
        e("altp2m", &ALTP2M_MODE),
        f("vmtrace_buf_kb", INT),
        f("vpmu", DEFBOOL),
    ],
};

pub static DEVICE_VFB: StructDef = StructDef {
    name: "device_vfb",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("devid", DEVID),
        s("vnc", &VNC_INFO),
        s("sdl", &SDL_INFO),
        f("keymap", STR),
    ],
};

pub static DEVICE_VKB: StructDef = StructDef {
    name: "device_vkb",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("devid", DEVID),
        e("backend_type", &VKB_BACKEND),
        f("unique_id", STR),
        f("feature_disable_keyboard", BOOL),
        f("feature_disable_pointer", BOOL),
        f("feature_abs_pointer", BOOL),
        f("feature_raw_pointer", BOOL),
        f("feature_multi_touch", BOOL),
        f("width", U32),
        f("height", U32),
        f("multi_touch_width", U32),
        f("multi_touch_height", U32),
        f("multi_touch_num_contacts", U32),
    ],
};

pub static DEVICE_DISK: StructDef = StructDef {
    name: "device_disk",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("pdev_path", STR),
        f("vdev", STR),
        e("backend", &DISK_BACKEND),
        e("format", &DISK_FORMAT),
        f("script", STR),
        f("removable", INT),
        f("readwrite", INT),
        f("is_cdrom", INT),
        f("direct_io_safe", BOOL),
        f("discard_enable", DEFBOOL),
        e("specification", &DISK_SPECIFICATION),
        e("transport", &DISK_TRANSPORT),
        f("irq", U32),
        f("base", U64),
        f("colo_enable", DEFBOOL),
        f("colo_restore_enable", DEFBOOL),
        f("colo_host", STR),
        f("colo_port", INT),
        f("colo_export", STR),
        f("active_disk", STR),
        f("hidden_disk", STR),
        f("trusted", DEFBOOL),
    ],
};

pub static DEVICE_NIC: StructDef = StructDef {
    name: "device_nic",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("devid", DEVID),
        f("mtu", INT),
        f("model", STR),
        f("mac", FieldType::Mac),
        f("ip", STR),
        f("bridge", STR),
        f("ifname", STR),
        f("script", STR),
        e("nictype", &NIC_TYPE),
        f("rate_bytes_per_interval", U64),
        f("rate_interval_usecs", U32),
        f("gatewaydev", STR),
        f("coloft_forwarddev", STR),
        f("colo_sock_mirror_id", STR),
        f("colo_sock_mirror_ip", STR),
        f("colo_sock_mirror_port", STR),
        f("colo_sock_compare_pri_in_id", STR),
        f("colo_sock_compare_pri_in_ip", STR),
        f("colo_sock_compare_pri_in_port", STR),
        f("colo_sock_compare_sec_in_id", STR),
        f("colo_sock_compare_sec_in_ip", STR),
        f("colo_sock_compare_sec_in_port", STR),
        f("colo_sock_compare_notify_id", STR),
        f("colo_sock_compare_notify_ip", STR),
        f("colo_sock_compare_notify_port", STR),
        f("colo_sock_redirector0_id", STR),
        f("colo_sock_redirector0_ip", STR),
        f("colo_sock_redirector0_port", STR),
        f("colo_sock_redirector1_id", STR),
        f("colo_sock_redirector1_ip", STR),
        f("colo_sock_redirector1_port", STR),
        f("colo_sock_redirector2_id", STR),
        f("colo_sock_redirector2_ip", STR),
        f("colo_sock_redirector2_port", STR),
        f("colo_filter_mirror_queue", STR),
        f("colo_filter_mirror_outdev", STR),
        f("colo_filter_redirector0_queue", STR),
        f("colo_filter_redirector0_indev", STR),
        f("colo_filter_redirector0_outdev", STR),
        f("colo_filter_redirector1_queue", STR),
        f("colo_filter_redirector1_indev", STR),
        f("colo_filter_redirector1_outdev", STR),
        f("colo_compare_pri_in", STR),
        f("colo_compare_sec_in", STR),
        f("colo_compare_out", STR),
        f("colo_compare_notify_dev", STR),
        f("colo_sock_sec_redirector0_id", STR),
        f("colo_sock_sec_redirector0_ip", STR),
        f("colo_sock_sec_redirector0_port", STR),
        f("colo_sock_sec_redirector1_id", STR),
        f("colo_sock_sec_redirector1_ip", STR),
        f("colo_sock_sec_redirector1_port", STR),
        f("colo_filter_sec_redirector0_queue", STR),
        f("colo_filter_sec_redirector0_indev", STR),
        f("colo_filter_sec_redirector0_outdev", STR),
        f("colo_filter_sec_redirector1_queue", STR),
        f("colo_filter_sec_redirector1_indev", STR),
        f("colo_filter_sec_redirector1_outdev", STR),
        f("colo_filter_sec_rewriter0_queue", STR),
        f("colo_checkpoint_host", STR),
        f("colo_checkpoint_port", STR),
        f("trusted", DEFBOOL),
    ],
};

pub static DEVICE_PCI: StructDef = StructDef {
    name: "device_pci",
    fields: &[
        f("func", U8),
        f("dev", U8),
        f("bus", U8),
        f("domain", INT),
        f("vdevfn", U32),
        f("vfunc_mask", U32),
        f("msitranslate", BOOL),
        f("power_mgmt", BOOL),
        f("permissive", BOOL),
        f("seize", BOOL),
        e("rdm_policy", &RDM_RESERVE_POLICY),
        f("name", STR),
    ],
};

pub static DEVICE_RDM: StructDef =
    StructDef { name: "device_rdm", fields: &[f("start", U64), f("size", U64), e("policy", &RDM_RESERVE_POLICY)] };

pub static DEVICE_USBCTRL: StructDef = StructDef {
    name: "device_usbctrl",
    fields: &[
        e("type", &USBCTRL_TYPE),
        f("devid", DEVID),
        f("version", INT),
        f("ports", INT),
        f("backend_domid", DOMID),
        f("backend_domname", STR),
    ],
};

pub static USBDEV_HOSTDEV: StructDef =
    StructDef { name: "device_usbdev.type.hostdev", fields: &[f("hostbus", U8), f("hostaddr", U8)] };

pub static USBDEV_TYPE_UNION: UnionDef =
    UnionDef { keyvar: "type", keyvar_enum: &USBDEV_TYPE, members: &[("hostdev", Some(&USBDEV_HOSTDEV))] };

pub static DEVICE_USBDEV: StructDef = StructDef {
    name: "device_usbdev",
    fields: &[f("ctrl", DEVID), f("port", INT), f("type", FieldType::KeyedUnion(&USBDEV_TYPE_UNION))],
};

pub static DEVICE_DTDEV: StructDef = StructDef { name: "device_dtdev", fields: &[f("path", STR)] };

pub static DEVICE_VTPM: StructDef = StructDef {
    name: "device_vtpm",
    fields: &[f("backend_domid", DOMID), f("backend_domname", STR), f("devid", DEVID), f("uuid", FieldType::Uuid)],
};

pub static DEVICE_P9: StructDef = StructDef {
    name: "device_p9",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("tag", STR),
        f("path", STR),
        f("security_model", STR),
        f("devid", DEVID),
    ],
};

pub static DEVICE_PVCALLSIF: StructDef = StructDef {
    name: "device_pvcallsif",
    fields: &[f("backend_domid", DOMID), f("backend_domname", STR), f("devid", DEVID)],
};

pub static CHANNEL_SOCKET: StructDef =
    StructDef { name: "device_channel.connection.socket", fields: &[f("path", STR)] };

pub static CHANNEL_CONNECTION_UNION: UnionDef = UnionDef {
    keyvar: "connection",
    keyvar_enum: &CHANNEL_CONNECTION,
    members: &[("unknown", None), ("pty", None), ("socket", Some(&CHANNEL_SOCKET))],
};

pub static DEVICE_CHANNEL: StructDef = StructDef {
    name: "device_channel",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("devid", DEVID),
        f("name", STR),
        f("connection", FieldType::KeyedUnion(&CHANNEL_CONNECTION_UNION)),
    ],
};

pub static CONNECTOR_PARAM: StructDef =
    StructDef { name: "connector_param", fields: &[f("unique_id", STR), f("width", U32), f("height", U32)] };

pub static DEVICE_VDISPL: StructDef = StructDef {
    name: "device_vdispl",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("devid", DEVID),
        f("be_alloc", BOOL),
        f("connectors", FieldType::Array(&FieldType::Struct(&CONNECTOR_PARAM))),
    ],
};

pub static VSND_PARAMS: StructDef = StructDef {
    name: "vsnd_params",
    fields: &[
        f("sample_rates", FieldType::Array(&U32)),
        f("sample_formats", FieldType::Array(&FieldType::Enum(&VSND_PCM_FORMAT))),
        f("channels_min", U32),
        f("channels_max", U32),
        f("buffer_size", U32),
    ],
};

pub static VSND_STREAM: StructDef = StructDef {
    name: "vsnd_stream",
    fields: &[f("unique_id", STR), e("type", &VSND_STREAM_TYPE), s("params", &VSND_PARAMS)],
};

pub static VSND_PCM: StructDef = StructDef {
    name: "vsnd_pcm",
    fields: &[
        f("name", STR),
        s("params", &VSND_PARAMS),
        f("streams", FieldType::Array(&FieldType::Struct(&VSND_STREAM))),
    ],
};

pub static DEVICE_VSND: StructDef = StructDef {
    name: "device_vsnd",
    fields: &[
        f("backend_domid", DOMID),
        f("backend_domname", STR),
        f("devid", DEVID),
        f("short_name", STR),
        f("long_name", STR),
        s("params", &VSND_PARAMS),
        f("pcms", FieldType::Array(&FieldType::Struct(&VSND_PCM))),
    ],
};

/// An array-of-structs field (a macro: the element type must be promoted to `'static`).
macro_rules! devices {
    ($name:literal, $def:expr) => {
        f($name, FieldType::Array(&FieldType::Struct($def)))
    };
}

pub static DOMAIN_CONFIG: StructDef = StructDef {
    name: "domain_config",
    fields: &[
        s("c_info", &DOMAIN_CREATE_INFO),
        s("b_info", &DOMAIN_BUILD_INFO),
        devices!("disks", &DEVICE_DISK),
        devices!("nics", &DEVICE_NIC),
        devices!("pcidevs", &DEVICE_PCI),
        devices!("rdms", &DEVICE_RDM),
        devices!("dtdevs", &DEVICE_DTDEV),
        devices!("vfbs", &DEVICE_VFB),
        devices!("vkbs", &DEVICE_VKB),
        devices!("vtpms", &DEVICE_VTPM),
        devices!("p9s", &DEVICE_P9),
        devices!("pvcallsifs", &DEVICE_PVCALLSIF),
        devices!("vdispls", &DEVICE_VDISPL),
        devices!("vsnds", &DEVICE_VSND),
        devices!("channels", &DEVICE_CHANNEL),
        devices!("usbctrls", &DEVICE_USBCTRL),
        devices!("usbdevs", &DEVICE_USBDEV),
        e("on_poweroff", &ACTION_ON_SHUTDOWN),
        e("on_reboot", &ACTION_ON_SHUTDOWN),
        e("on_watchdog", &ACTION_ON_SHUTDOWN),
        e("on_crash", &ACTION_ON_SHUTDOWN),
        e("on_soft_reset", &ACTION_ON_SHUTDOWN),
    ],
};

/// Every struct reachable from `libxl_domain_config`, the root first.
pub static ALL_STRUCTS: &[&StructDef] = &[
    &DOMAIN_CONFIG,
    &DOMAIN_CREATE_INFO,
    &DOMAIN_BUILD_INFO,
    &DOMAIN_SCHED_PARAMS,
    &VNODE_INFO,
    &IOPORT_RANGE,
    &IOMEM_RANGE,
    &RDM_RESERVE,
    &VGA_INTERFACE_INFO,
    &VNC_INFO,
    &SDL_INFO,
    &SPICE_INFO,
    &BUILD_INFO_HVM,
    &BUILD_INFO_PV,
    &BUILD_INFO_PVH,
    &ARCH_ARM,
    &ARCH_X86,
    &DEVICE_DISK,
    &DEVICE_NIC,
    &DEVICE_PCI,
    &DEVICE_RDM,
    &DEVICE_DTDEV,
    &DEVICE_VFB,
    &DEVICE_VKB,
    &DEVICE_VTPM,
    &DEVICE_P9,
    &DEVICE_PVCALLSIF,
    &DEVICE_VDISPL,
    &CONNECTOR_PARAM,
    &DEVICE_VSND,
    &VSND_PARAMS,
    &VSND_PCM,
    &VSND_STREAM,
    &DEVICE_CHANNEL,
    &CHANNEL_SOCKET,
    &DEVICE_USBCTRL,
    &DEVICE_USBDEV,
    &USBDEV_HOSTDEV,
];

/// A struct by its IDL name (`device_disk`, `domain_build_info.type.hvm`, …).
pub fn struct_def(name: &str) -> Option<&'static StructDef> {
    ALL_STRUCTS.iter().copied().find(|d| d.name == name)
}

/// The IDL field names of `libxl_<name>`, in declaration order. Keyed unions appear under
/// their discriminator name (`type` for b_info and usbdev, `connection` for channel); the JSON
/// key is `<keyvar>.<member>`.
pub fn field_order(name: &str) -> Option<&'static [&'static str]> {
    static ORDERS: OnceLock<HashMap<&'static str, Vec<&'static str>>> = OnceLock::new();
    let orders = ORDERS
        .get_or_init(|| ALL_STRUCTS.iter().map(|d| (d.name, d.fields.iter().map(|f| f.name).collect())).collect());
    orders.get(name).map(Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reachable_struct_is_listed_once() {
        fn walk(def: &'static StructDef, seen: &mut Vec<&'static str>) {
            if seen.contains(&def.name) {
                return;
            }
            seen.push(def.name);
            for field in def.fields {
                visit(&field.ty, seen);
            }
        }
        fn visit(ty: &FieldType, seen: &mut Vec<&'static str>) {
            match ty {
                FieldType::Struct(d) => walk(d, seen),
                FieldType::Array(elem) => visit(elem, seen),
                FieldType::KeyedUnion(u) => {
                    for (_, member) in u.members {
                        if let Some(d) = member {
                            walk(d, seen);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut seen = Vec::new();
        walk(&DOMAIN_CONFIG, &mut seen);
        let mut listed: Vec<&str> = ALL_STRUCTS.iter().map(|d| d.name).collect();
        seen.sort_unstable();
        listed.sort_unstable();
        assert_eq!(seen, listed);
    }

    #[test]
    fn field_names_are_unique_within_a_struct() {
        for def in ALL_STRUCTS {
            let mut names: Vec<&str> = def.fields.iter().map(|f| f.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), def.fields.len(), "{}", def.name);
        }
    }

    #[test]
    fn enum_spellings_are_lowercase_and_unique() {
        for def in ALL_ENUMS {
            for (i, (name, value)) in def.values.iter().enumerate() {
                assert_eq!(*name, name.to_ascii_lowercase(), "{}", def.name);
                assert!(def.values[i + 1..].iter().all(|(n, v)| n != name && v != value), "{}", def.name);
            }
            if let Some(init) = def.init {
                assert!(def.name_of(init).is_some(), "{} init", def.name);
            }
        }
    }

    #[test]
    fn field_orders_match_the_4_17_header() {
        assert_eq!(field_order("device_usbdev").unwrap(), ["ctrl", "port", "type"]);
        assert_eq!(
            field_order("device_channel").unwrap(),
            ["backend_domid", "backend_domname", "devid", "name", "connection"]
        );
        let b = field_order("domain_build_info").unwrap();
        assert_eq!(b.len(), 61);
        assert_eq!(&b[b.len() - 6..], ["type", "arch_arm", "arch_x86", "altp2m", "vmtrace_buf_kb", "vpmu"]);
        assert_eq!(field_order("device_nic").unwrap().len(), 64);
        assert_eq!(field_order("domain_build_info.type.hvm").unwrap().len(), 46);
        assert!(field_order("nonexistent").is_none());
    }

    #[test]
    fn union_keys_resolve_to_members() {
        let (field, union, member, def) = DOMAIN_BUILD_INFO.union_for_key("type.pvh").unwrap();
        assert_eq!((field.name, member), ("type", "pvh"));
        assert_eq!(union.member_value(member), 3);
        assert_eq!(def.unwrap().name, "domain_build_info.type.pvh");
        assert!(DOMAIN_BUILD_INFO.union_for_key("type.bogus").is_none());
        assert!(DOMAIN_BUILD_INFO.field_for_key("type").is_none(), "the bare keyvar is not a JSON key");
        assert_eq!(DEVICE_CHANNEL.field_for_key("connection.socket").unwrap().name, "connection");
    }
}
