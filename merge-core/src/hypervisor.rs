//! What only the hypervisor (and QEMU) knows, given to the engine as explicit input.
//!
//! libxl's retrieve takes `c_info.uuid` from the domain handle, `b_info.sched_params` from the
//! scheduler of the domain's cpupool, and, for an HVM guest with qemu-xen, `avail_vcpus` from
//! QMP. xlsync never invents these: they arrive in a [`HostInfo`], and a decision says so when
//! one had to be defaulted. The `domains.txt` format of the oracle (one line per domain,
//! `key=value` tokens) maps onto [`HypervisorDomain`] field for field.

use std::collections::BTreeMap;

/// A cpupool's scheduler, as `xc_sched_id` / the cpupool info reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scheduler {
    Credit,
    Credit2,
    Rtds,
    Null,
    Arinc653,
    /// Removed from Xen; libxl fails with `ERROR_FEATURE_REMOVED`.
    Sedf,
}

impl Scheduler {
    /// libxl's spelling (`libxl_scheduler`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::Credit => "credit",
            Scheduler::Credit2 => "credit2",
            Scheduler::Rtds => "rtds",
            Scheduler::Null => "null",
            Scheduler::Arinc653 => "arinc653",
            Scheduler::Sedf => "sedf",
        }
    }

    pub fn parse(s: &str) -> Option<Scheduler> {
        Some(match s {
            "credit" => Scheduler::Credit,
            "credit2" => Scheduler::Credit2,
            "rtds" => Scheduler::Rtds,
            "null" => Scheduler::Null,
            "arinc653" => Scheduler::Arinc653,
            "sedf" => Scheduler::Sedf,
            _ => return None,
        })
    }
}

/// The hypervisor's view of a guest's type: what `xc_domain_getinfo` flags say, plus
/// `/libxl/<D>/type` to tell PVH from HVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuestType {
    Pv,
    Pvh,
    Hvm,
}

impl GuestType {
    pub fn as_str(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm => "hvm",
        }
    }

    pub fn parse(s: &str) -> Option<GuestType> {
        Some(match s {
            "pv" => GuestType::Pv,
            "pvh" => GuestType::Pvh,
            "hvm" => GuestType::Hvm,
            _ => return None,
        })
    }
}

/// Run state flags of a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunState {
    Running,
    Blocked,
    Paused,
    Shutdown,
    Dying,
}

/// One domain as the hypervisor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HypervisorDomain {
    pub domid: u32,
    /// The domain handle, lowercase `8-4-4-4-12` hex.
    pub uuid: String,
    pub guest_type: GuestType,
    pub max_memkb: u64,
    pub tot_memkb: u64,
    pub vcpus: u32,
    pub state: RunState,
    pub cpupool: u32,
    pub ssidref: u32,
    /// credit/credit2 weight and cap (`domains.txt` defaults: 256 and 0).
    pub weight: i64,
    pub cap: i64,
    /// For an HVM guest with qemu-xen: the `cpu-index` values QEMU's `query-cpus-fast` returns.
    /// `None` means QEMU did not answer (libxl then fails the retrieve).
    pub qemu_cpus: Option<Vec<u32>>,
}

impl HypervisorDomain {
    /// A running domain with the oracle's defaults.
    pub fn new(domid: u32, uuid: impl Into<String>, guest_type: GuestType) -> HypervisorDomain {
        HypervisorDomain {
            domid,
            uuid: uuid.into(),
            guest_type,
            max_memkb: 0,
            tot_memkb: 0,
            vcpus: 1,
            state: RunState::Running,
            cpupool: 0,
            ssidref: 0,
            weight: 256,
            cap: 0,
            qemu_cpus: None,
        }
    }
}

/// Everything the hypervisor would answer for a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Scheduler of each cpupool (pool 0 always exists).
    pub pool_schedulers: BTreeMap<u32, Scheduler>,
    pub domains: BTreeMap<u32, HypervisorDomain>,
}

impl Default for HostInfo {
    /// Xen 4.17's default: one pool, credit2.
    fn default() -> HostInfo {
        HostInfo { pool_schedulers: BTreeMap::from([(0, Scheduler::Credit2)]), domains: BTreeMap::new() }
    }
}

impl HostInfo {
    pub fn domain(&self, domid: u32) -> Option<&HypervisorDomain> {
        self.domains.get(&domid)
    }

    pub fn insert(&mut self, d: HypervisorDomain) {
        self.domains.insert(d.domid, d);
    }
}
