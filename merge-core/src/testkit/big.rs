//! A large, realistic host for benchmarks: the same guest model, drawn from a fixed seed.

use super::model::*;
use super::{assemble, guest, Generated};
use crate::hypervisor::Scheduler;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A host with `n_domains` guests (domids `1..=n_domains`), deterministic in `seed`.
///
/// Every guest has one disk, one nic and a console, sometimes a channel or a framebuffer, drawn
/// from the [`guest`] strategy (so every guest type, backend type and driver-domain-free layout
/// of the proptest hosts), and no perturbation: a busy production host. 1,000 domains give
/// about 160,000 xenstore nodes (seed 42: 158,641). The same `(n_domains, seed)` always gives
/// the same host.
pub fn big_host(n_domains: u32, seed: u64) -> Generated {
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    // Only the RNG decides values; the runner's config (read from PROPTEST_* by proptest) does
    // not affect `new_tree` for the explicit-size strategies used here.
    let mut runner = TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let guests: Vec<GuestSpec> = (1..=n_domains)
        .map(|domid| {
            let mut g = guest(domid).new_tree(&mut runner).expect("guest strategy never rejects").current();
            trim_to_production_shape(&mut g);
            ensure_disk_and_nic(&mut g);
            g
        })
        .collect();
    assemble(guests, Scheduler::Credit2, &[])
}

/// A typical production guest: its first disk and nic, its console, and a channel or a
/// framebuffer when it drew one; the rarer kinds are left to the proptest hosts.
fn trim_to_production_shape(g: &mut GuestSpec) {
    let mut kept = std::collections::BTreeMap::<Kind, usize>::new();
    g.devices.retain(|d| {
        let cap = match d.kind() {
            Kind::Disk | Kind::Nic | Kind::Console | Kind::Channel | Kind::Vfb | Kind::Vkb => 1,
            _ => 0,
        };
        let n = kept.entry(d.kind()).or_default();
        *n += 1;
        *n <= cap
    });
}

fn ensure_disk_and_nic(g: &mut GuestSpec) {
    if g.devices_of(Kind::Disk).next().is_none() {
        let vdev = if g.is_hvm() { "hda" } else { "xvda" };
        let disk = Disk {
            vdev: vdev.to_string(),
            medium: DiskMedium::Phy { path: format!("/dev/vg0/dom{}-{vdev}", g.domid) },
            readwrite: true,
            cdrom: false,
            explicit_backend: false,
        };
        g.devices.insert(0, DeviceSpec::in_dom0(Device::Disk(disk)));
    }
    if g.devices_of(Kind::Nic).next().is_none() {
        let nic = Nic {
            devid: 0,
            mac: format!(
                "00:16:3e:{:02x}:{:02x}:{:02x}",
                (g.domid >> 16) & 0x7f,
                (g.domid >> 8) & 0xff,
                g.domid & 0xff
            ),
            bridge: Some("xenbr0".to_string()),
            mtu: None,
            ip: None,
            script: None,
            nictype: if g.is_hvm() { NicType::VifIoemu } else { NicType::Vif },
            model: None,
        };
        g.devices.push(DeviceSpec::in_dom0(Device::Nic(nic)));
    }
}
