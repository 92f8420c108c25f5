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
    /// RTDS period and budget (µs) as `xc_sched_rtds_domain_get` reports them.
    pub rtds_period: i64,
    pub rtds_budget: i64,
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
            rtds_period: 10000,
            rtds_budget: 4000,
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

/// A malformed `domains.txt` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DomainsTxtError {
    pub line: usize,
    pub message: String,
}

impl HostInfo {
    /// Reads the oracle's `domains.txt`: one domain per line as `key=value` tokens (`domid= uuid=
    /// type= max_memkb= tot_memkb= vcpus= state= cpupool= ssidref= weight= cap=`), `#` starts a
    /// comment. `scheduler` is pool 0's scheduler (the oracle's `XLSHIM_SCHED`). Optional
    /// extensions: `period=`/`budget=` (RTDS) and `qemu_cpus=0,1,…` (QEMU's answer).
    pub fn parse_domains_txt(text: &str, scheduler: Scheduler) -> Result<HostInfo, DomainsTxtError> {
        let mut host = HostInfo { pool_schedulers: BTreeMap::from([(0, scheduler)]), domains: BTreeMap::new() };
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let err = |message: String| DomainsTxtError { line, message };
            let mut d = HypervisorDomain::new(u32::MAX, "00000000-0000-0000-0000-000000000000", GuestType::Pv);
            for tok in content.split_whitespace() {
                let (k, v) = tok.split_once('=').ok_or_else(|| err(format!("`{tok}` is not key=value")))?;
                let num = |v: &str| v.parse::<u64>().map_err(|_| err(format!("{k}={v}: not a number")));
                let int = |v: &str| v.parse::<i64>().map_err(|_| err(format!("{k}={v}: not a number")));
                match k {
                    "domid" => d.domid = u32::try_from(num(v)?).map_err(|_| err(format!("domid {v} out of range")))?,
                    "uuid" => d.uuid = v.to_string(),
                    "type" => d.guest_type = GuestType::parse(v).ok_or_else(|| err(format!("unknown type {v}")))?,
                    "max_memkb" => d.max_memkb = num(v)?,
                    "tot_memkb" => d.tot_memkb = num(v)?,
                    "vcpus" => d.vcpus = num(v)? as u32,
                    "state" => {
                        d.state = match v {
                            "running" => RunState::Running,
                            "blocked" => RunState::Blocked,
                            "paused" => RunState::Paused,
                            "shutdown" => RunState::Shutdown,
                            "dying" => RunState::Dying,
                            _ => return Err(err(format!("unknown state {v}"))),
                        }
                    }
                    "cpupool" => d.cpupool = num(v)? as u32,
                    "ssidref" => d.ssidref = num(v)? as u32,
                    "weight" => d.weight = int(v)?,
                    "cap" => d.cap = int(v)?,
                    "period" => d.rtds_period = int(v)?,
                    "budget" => d.rtds_budget = int(v)?,
                    "qemu_cpus" => {
                        let cpus: Result<Vec<u32>, _> =
                            v.split(',').filter(|s| !s.is_empty()).map(|s| s.parse::<u32>()).collect();
                        d.qemu_cpus = Some(cpus.map_err(|_| err(format!("qemu_cpus={v}: not a list of numbers")))?);
                    }
                    _ => return Err(err(format!("unknown key `{k}`"))),
                }
            }
            if d.domid == u32::MAX {
                return Err(err("no domid= token".into()));
            }
            host.insert(d);
        }
        Ok(host)
    }
}
