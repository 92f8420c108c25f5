//! libxl 4.17.7's log lines, reproduced byte for byte.
//!
//! libxl formats a message as `<file>:<line>:<function>: Domain <D>:<text>` (the domain part
//! only for a valid guest domid, 1 ≤ D < 0x7FF0), and xl's stdio logger prints it as
//! `libxl: <level>: <message>[: <strerror(errno)>]`. The file, line and function are the
//! positions in the RELEASE-4.17.7 sources, so a decision can carry exactly the text libxl
//! writes to stderr.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Warn => "warning",
            Level::Error => "error",
        }
    }
}

/// Where in libxl's sources a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Site {
    pub file: &'static str,
    pub line: u32,
    pub func: &'static str,
    pub level: Level,
}

/// One line libxl logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogLine {
    pub site: Site,
    /// The domid libxl passes (`LOGD`), if any; printed only for a valid guest domid.
    pub domid: Option<u32>,
    pub text: String,
    /// `strerror(errno)` for the `LOGE*` variants.
    pub errno: Option<&'static str>,
}

impl LogLine {
    pub fn new(site: Site, domid: Option<u32>, text: impl Into<String>) -> LogLine {
        LogLine { site, domid, text: text.into(), errno: None }
    }

    pub fn with_errno(mut self, errno: &'static str) -> LogLine {
        self.errno = Some(errno);
        self
    }

    /// Whether xl's default logger prints it (debug lines are filtered out).
    pub fn printed_by_xl(&self) -> bool {
        self.site.level != Level::Debug
    }
}

impl fmt::Display for LogLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "libxl: {}: {}:{}:{}: ", self.site.level.as_str(), self.site.file, self.site.line, self.site.func)?;
        if let Some(d) = self.domid.filter(|d| *d > 0 && *d < 0x7FF0) {
            write!(f, "Domain {d}:")?;
        }
        f.write_str(&self.text)?;
        if let Some(e) = self.errno {
            write!(f, ": {e}")?;
        }
        Ok(())
    }
}

pub const ENOENT: &str = "No such file or directory";
pub const EACCES: &str = "Permission denied";
pub const EINVAL: &str = "Invalid argument";

macro_rules! sites {
    ($($name:ident = $file:literal : $line:literal : $func:literal : $level:ident;)*) => {
        $(pub const $name: Site = Site { file: $file, line: $line, func: $func, level: Level::$level };)*
    };
}

sites! {
    QMP_CONNECT_FAILED = "libxl_qmp.c":1334:"qmp_ev_lock_aquired":Error;
    USERDATA_EMPTY = "libxl_dom.c":1377:"libxl__userdata_retrieve":Error;
    GET_CONFIG_FAILED = "libxl_domain.c":2335:"retrieve_domain_configuration_lock_acquired":Error;
    NAME_FAILED = "libxl_domain.c":2442:"retrieve_domain_configuration_end":Error;
    DOMAIN_INFO_FAILED = "libxl_domain.c":2455:"retrieve_domain_configuration_end":Error;
    CPU_MAP_FAILED = "libxl_domain.c":2500:"retrieve_domain_configuration_end":Error;
    MEMORY_FAILED = "libxl_domain.c":2523:"retrieve_domain_configuration_end":Error;
    SCHED_FAILED = "libxl_domain.c":2542:"retrieve_domain_configuration_end":Error;
    NO_DEVICES_FROM_XENSTORE = "libxl_domain.c":2585:"retrieve_domain_configuration_end":Debug;
    JSON_ONLY_DEVICE = "libxl_domain.c":2603:"retrieve_domain_configuration_end":Warn;
    MEM_NO_TARGET = "libxl_mem.c":377:"libxl__get_memory_target":Error;
    MEM_NO_STATIC_MAX = "libxl_mem.c":381:"libxl__get_memory_target":Error;
    MEM_BAD_TARGET = "libxl_mem.c":388:"libxl__get_memory_target":Error;
    MEM_BAD_STATIC_MAX = "libxl_mem.c":394:"libxl__get_memory_target":Error;
    SCHED_SEDF = "libxl_sched.c":889:"libxl_domain_sched_params_get":Error;
    SCHED_UNKNOWN = "libxl_sched.c":905:"libxl_domain_sched_params_get":Error;
    DM_VERSION_WRONG = "libxl_internal.c":395:"libxl__device_model_version_running":Error;
    XS_READ_MANDATORY = "libxl_xshelp.c":206:"libxl__xs_read_mandatory":Error;
    XS_READ_CHECKED = "libxl_xshelp.c":218:"libxl__xs_read_checked":Error;
    BACKEND_PATH_UNPARSEABLE = "libxl_device.c":419:"libxl__backendpath_parse_domid":Error;
    DISK_NO_BACKEND = "libxl_disk.c":516:"libxl__disk_from_xenstore":Error;
    DISK_BACKEND_DOMID = "libxl_disk.c":523:"libxl__disk_from_xenstore":Error;
    DISK_NO_COLO_PORT = "libxl_disk.c":551:"libxl__disk_from_xenstore":Error;
    DISK_NO_COLO_PARAM = "libxl_disk.c":560:"libxl__disk_from_xenstore":Error;
    DISK_NO_TYPE = "libxl_disk.c":576:"libxl__disk_from_xenstore":Error;
    DISK_BAD_SPECIFICATION = "libxl_disk.c":589:"libxl__disk_from_xenstore":Error;
    DISK_NO_TRANSPORT = "libxl_disk.c":598:"libxl__disk_from_xenstore":Error;
    DISK_BAD_TRANSPORT = "libxl_disk.c":603:"libxl__disk_from_xenstore":Error;
    DISK_TRANSPORT_NOT_MMIO = "libxl_disk.c":607:"libxl__disk_from_xenstore":Error;
    DISK_NO_BASE = "libxl_disk.c":614:"libxl__disk_from_xenstore":Error;
    DISK_NO_IRQ = "libxl_disk.c":622:"libxl__disk_from_xenstore":Error;
    DISK_NO_DEV = "libxl_disk.c":631:"libxl__disk_from_xenstore":Error;
    DISK_NO_REMOVABLE = "libxl_disk.c":638:"libxl__disk_from_xenstore":Error;
    DISK_NO_MODE = "libxl_disk.c":645:"libxl__disk_from_xenstore":Error;
    DISK_NO_DEVICE_TYPE = "libxl_disk.c":656:"libxl__disk_from_xenstore":Error;
    DISK_BOTH_PATHS = "libxl_disk.c":696:"libxl__device_disk_get_path":Error;
    NIC_NO_BACKEND = "libxl_nic.c":294:"libxl__nic_from_xenstore":Error;
    VTPM_BAD_UUID = "libxl_vtpm.c":82:"libxl__vtpm_from_xenstore":Error;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_xl() {
        let l = LogLine::new(JSON_ONLY_DEVICE, Some(1), "Device present in JSON but not in xenstore, ignored");
        assert_eq!(
            l.to_string(),
            "libxl: warning: libxl_domain.c:2603:retrieve_domain_configuration_end: Domain 1:Device present in JSON but not in xenstore, ignored"
        );
        let l = LogLine::new(XS_READ_MANDATORY, None, "xenstore read failed: `/x'").with_errno(ENOENT);
        assert_eq!(l.to_string(), "libxl: error: libxl_xshelp.c:206:libxl__xs_read_mandatory: xenstore read failed: `/x': No such file or directory");
    }
}
