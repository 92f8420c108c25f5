//! Test kit: realistic Xen hosts, built the way libxl 4.17 would have written them, for the
//! differential law `reconcile(Policy::Libxl417) == xl list -l` and for benchmarks.
//!
//! Enabled by the `testkit` cargo feature (it pulls in `proptest`). Pure like the rest of
//! merge-core: no IO, and all "randomness" comes from a proptest seed or an explicit seed.
//!
//! # What a generated host is
//!
//! A [`Scenario`] is exactly the input of one `xl list -l` run, and of one reconcile:
//!
//! * [`Scenario::host`]: what the hypervisor (and QEMU) answer — domain handles, types,
//!   scheduler and its per-domain parameters, and for qemu-xen HVM guests the vCPUs QEMU
//!   reports ([`HypervisorDomain::qemu_cpus`](crate::hypervisor::HypervisorDomain)).
//! * [`Scenario::tree`]: the whole xenstore, dom0's `xen-init-dom0` nodes included, with
//!   libxl's permissions on every node.
//! * [`Scenario::userdata`]: the bytes of each `userdata-d.<domid>.<uuid>.libxl-json` file,
//!   printed as libxl prints them (yajl layout, trailing NUL).
//!
//! A [`Generated`] host adds what the scenario was made from: the [`GuestSpec`] of each
//! guest (the intent both replicas were rendered from), the JSON as a [`DomainConfig`] before
//! printing, and the [`Perturbation`]s applied afterwards, each naming its target.
//!
//! # Generating
//!
//! * [`host`]`(`[`HostProfile`]`)` — a proptest strategy: 1–4 guests of every type (PV, PVH,
//!   HVM with `dm-version` absent, `qemu_xen` or `qemu_xen_traditional`), devices of every kind
//!   (disk phy/qdisk/cdrom/empty cdrom, nic vif/vif_ioemu with mtu/mac/bridge/ip/script, vtpm,
//!   usbctrl pv/qusb/devicemodel with implicit usbdevs, pci, vdispl, vsnd, and the pass-through
//!   vfb, vkb, 9pfs, pvcalls, channels and consoles), some backends in driver domains, then up
//!   to three perturbations from issue 4's list ([`PerturbationKind`]).
//!   [`HostProfile::clean`] gives consistent replicas only.
//! * [`guest`] — one guest, for tests that assemble hosts by hand with [`assemble`].
//! * [`big_host`] — a deterministic large host (1,000 domains ≈ 160k nodes) for benchmarks.
//!
//! # Guarantees (checked against the real libxl by `xs-adapter/tests/oracle_generated.rs`)
//!
//! * Without perturbations other than the benign ones ([`Perturbation::is_benign_for_libxl`]),
//!   libxl 4.17 finds every JSON device in xenstore: `xl list -l` keeps every device array as
//!   stored and prints no warning.
//! * [`Perturbation::fails_libxl_retrieve`] names the cases where libxl omits the domain.
//! * Generation is a pure function of the seed; the same seed gives byte-identical scenarios.
//!
//! # Facts the model relies on (beyond spec §3)
//!
//! * xenstored lists children in creation order; the oracle writes nodes in the tree's sorted
//!   order, so the daemon's directory order is byte order of the child names.
//! * The oracle writes values only, not permissions: libxl reads as dom0 and is not affected.

mod big;
mod model;
mod perturb;
mod render;
mod strategy;

pub use big::big_host;
pub use model::*;
pub use perturb::{
    device_arrays, record_faults, DeviceRef, FaultPlace, Perturbation, PerturbationKind, PerturbationSeed, RecordFault,
};
pub use render::{device_json, device_paths, domain_json, userdata_bytes, DevicePaths};
pub use strategy::{guest, host, scheduler, HostProfile};

use crate::config::DomainConfig;
use crate::hypervisor::{HostInfo, Scheduler};
use crate::xenstore::Tree;
use std::collections::BTreeMap;

/// Paths near a domain's home, odd and ordinary: every combination of a home prefix (doubled
/// or misspelt slashes), a domid (empty, not a number, too large), a part, a device kind and a
/// tail. Shortcuts that place a path in or out of libxl's reads without splitting it are
/// checked on these against the rule that splits it.
pub fn odd_home_paths() -> Vec<String> {
    let mut out = Vec::new();
    for home in ["/local/domain/", "/local/domain//", "//local/domain/", "/local/domainx/"] {
        for domid in ["0", "5", "017", "", "x", "5x", "4294967296"] {
            for part in ["device", "backend", "devices", "name", "memory", "console", "vm", "vmx", ""] {
                for kind in ["vsnd", "vsndx", "vtpm", "vusb", "pci", "vbd", "", "vtpm-1"] {
                    for tail in ["", "/", "/1", "/1/state", "//1", "/1/frontend"] {
                        out.push(format!("{home}{domid}/{part}/{kind}{tail}"));
                    }
                }
            }
        }
    }
    out
}

/// The complete input of one retrieve: hypervisor answers, xenstore, userdata files.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub host: HostInfo,
    pub tree: Tree,
    /// Userdata file bytes per domid. A domain without an entry has no file.
    pub userdata: BTreeMap<u32, Vec<u8>>,
}

impl Scenario {
    /// The pool-0 scheduler (`credit2` if the host names none).
    pub fn scheduler(&self) -> Scheduler {
        self.host.pool_schedulers.get(&0).copied().unwrap_or(Scheduler::Credit2)
    }
}

/// A generated host and how it was made.
#[derive(Clone)]
pub struct Generated {
    pub scenario: Scenario,
    /// The guests, sorted by domid (dom0 is not listed).
    pub guests: Vec<GuestSpec>,
    /// The JSON of each guest as stored (`None`: no userdata file), after perturbations.
    pub configs: BTreeMap<u32, Option<DomainConfig>>,
    /// What was done to the consistent replicas, in order.
    pub perturbations: Vec<Perturbation>,
}

impl Generated {
    pub fn guest(&self, domid: u32) -> Option<&GuestSpec> {
        self.guests.iter().find(|g| g.domid == domid)
    }

    /// The perturbations that touch `domid`.
    pub fn perturbations_of(&self, domid: u32) -> impl Iterator<Item = &Perturbation> {
        self.perturbations.iter().filter(move |p| p.domid() == domid)
    }

    /// Whether every perturbation of `domid` is one libxl handles without loss or warning.
    pub fn is_clean_for_libxl(&self, domid: u32) -> bool {
        self.perturbations_of(domid).all(Perturbation::is_benign_for_libxl)
    }

    /// The domids `xl list -l` lists (every guest with userdata whose retrieve does not fail),
    /// sorted.
    pub fn listed_by_libxl(&self) -> Vec<u32> {
        self.guests
            .iter()
            .map(|g| g.domid)
            .filter(|&d| !self.perturbations_of(d).any(Perturbation::fails_libxl_retrieve))
            .collect()
    }

    /// A multi-line description for failure messages.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for g in &self.guests {
            let kinds: Vec<String> = g.devices.iter().map(|d| DeviceRef::of(g.domid, &d.detail).to_string()).collect();
            s.push_str(&format!(
                "dom {} {} {:?} dm={:?}: {}\n",
                g.domid,
                g.name,
                g.guest_type,
                g.dm_version,
                kinds.join(", ")
            ));
        }
        for p in &self.perturbations {
            s.push_str(&format!("perturbation: {p}\n"));
        }
        s
    }
}

/// Short on purpose: proptest prints failing inputs with `Debug`, and the whole tree would bury
/// the description. [`Generated::describe`] plus the node count identify the case; the seed
/// replays it.
impl std::fmt::Debug for Generated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Generated ({} xenstore nodes, scheduler {}):\n{}",
            self.scenario.tree.len(),
            self.scenario.scheduler().as_str(),
            self.describe()
        )
    }
}

/// Builds a host from guest specs: renders both replicas, records driver-domain backends,
/// applies the perturbation requests in order, and prints the userdata files.
pub fn assemble(mut guests: Vec<GuestSpec>, scheduler: Scheduler, seeds: &[PerturbationSeed]) -> Generated {
    guests.sort_by_key(|g| g.domid);
    let mut tree = Tree::new();
    render::write_dom0(&mut tree);
    let mut host = HostInfo::default();
    host.pool_schedulers.insert(0, scheduler);
    host.insert(render::hypervisor_dom0());
    let mut configs = BTreeMap::new();
    let mut perturbations = Vec::new();
    for g in &guests {
        render::write_guest(&mut tree, g);
        host.insert(render::hypervisor_domain(g));
        configs.insert(g.domid, Some(render::domain_json(g)));
        for d in g.devices.iter().filter(|d| d.backend_domid != 0) {
            perturbations.push(Perturbation::DriverDomainBackend {
                device: DeviceRef::of(g.domid, &d.detail),
                backend_domid: d.backend_domid,
            });
        }
    }
    let mut replicas = perturb::Replicas { guests: &guests, tree: &mut tree, host: &mut host, configs: &mut configs };
    for seed in seeds {
        if let Some(p) = replicas.apply(*seed) {
            perturbations.push(p);
        }
    }
    let userdata =
        configs.iter().filter_map(|(&domid, c)| c.as_ref().map(|c| (domid, render::userdata_bytes(c)))).collect();
    Generated { scenario: Scenario { host, tree, userdata }, guests, configs, perturbations }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    fn draw(seed: u8, profile: HostProfile) -> Generated {
        let mut runner =
            TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]));
        host(profile).new_tree(&mut runner).expect("host strategy").current()
    }

    #[test]
    fn same_seed_same_host() {
        for seed in 0..8 {
            let (a, b) = (draw(seed, HostProfile::default()), draw(seed, HostProfile::default()));
            assert_eq!(a.scenario, b.scenario, "seed {seed}");
            assert_eq!(a.perturbations, b.perturbations, "seed {seed}");
        }
    }

    #[test]
    fn userdata_is_libxl_json_with_trailing_nul() {
        let gen = draw(1, HostProfile::clean());
        for (domid, bytes) in &gen.scenario.userdata {
            assert_eq!(bytes.last(), Some(&0), "dom {domid}");
            assert!(bytes.ends_with(b"}\n\0"), "dom {domid}");
            let config = gen.configs[domid].as_ref().expect("config");
            assert_eq!(&bytes[..bytes.len() - 1], config.to_libxl_json().as_bytes());
        }
    }

    /// Every `/libxl` record of a clean host points at a backend that exists and points back.
    #[test]
    fn clean_records_point_at_live_backends() {
        for seed in 0..16 {
            let gen = draw(seed, HostProfile::clean());
            for g in &gen.guests {
                for d in &g.devices {
                    let Some(paths) = device_paths(g, d) else { continue };
                    let record_backend = gen.scenario.tree.text(&format!("{}/backend", paths.record));
                    assert_eq!(
                        record_backend,
                        paths.backend.as_deref(),
                        "seed {seed} {}",
                        DeviceRef::of(g.domid, &d.detail)
                    );
                    if let Some(be) = &paths.backend {
                        assert_eq!(gen.scenario.tree.text(&format!("{be}/frontend")), Some(paths.frontend.as_str()));
                    }
                }
            }
        }
    }

    #[test]
    fn big_host_is_deterministic_and_large() {
        let a = big_host(1000, 42);
        assert_eq!(a.guests.len(), 1000);
        let nodes = a.scenario.tree.len();
        assert!((100_000..=170_000).contains(&nodes), "1,000 domains gave {nodes} nodes");
        let b = big_host(1000, 42);
        assert!(a.scenario.tree == b.scenario.tree && a.scenario.userdata == b.scenario.userdata);
        assert!(a
            .guests
            .iter()
            .all(|g| g.devices_of(Kind::Disk).next().is_some() && g.devices_of(Kind::Nic).next().is_some()));
        assert!(a.perturbations.iter().all(Perturbation::is_benign_for_libxl));
    }
}
