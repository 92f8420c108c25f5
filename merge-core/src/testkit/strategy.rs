//! proptest strategies for guests and hosts.
//!
//! Everything is derived from the proptest seed, so a failing case replays exactly. Sizes stay
//! small (1–4 guests, a handful of devices each, a few hundred xenstore nodes) so that one run
//! of the real `xl list -l` on a generated host takes well under a second.

use super::model::*;
use super::perturb::{PerturbationKind, PerturbationSeed};
use super::{assemble, Generated};
use crate::hypervisor::{GuestType, Scheduler};
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use std::ops::RangeInclusive;

/// What a generated host may contain.
#[derive(Debug, Clone)]
pub struct HostProfile {
    /// How many guest domains (dom0 is always added).
    pub guests: RangeInclusive<usize>,
    /// How many perturbations to request; a request whose target does not exist is dropped.
    pub perturbations: RangeInclusive<usize>,
    /// The perturbation kinds to draw from.
    pub perturbation_kinds: Vec<PerturbationKind>,
    /// How many devices may be moved to a driver domain (another guest of the host).
    pub driver_domain_backends: RangeInclusive<usize>,
}

impl Default for HostProfile {
    fn default() -> HostProfile {
        HostProfile {
            guests: 1..=4,
            perturbations: 0..=3,
            perturbation_kinds: PerturbationKind::ALL.to_vec(),
            driver_domain_backends: 0..=2,
        }
    }
}

impl HostProfile {
    /// Consistent replicas: no perturbation (driver-domain backends still allowed).
    pub fn clean() -> HostProfile {
        HostProfile { perturbations: 0..=0, ..HostProfile::default() }
    }
}

/// A whole host: guests, the pool scheduler and the perturbations of `profile`.
pub fn host(profile: HostProfile) -> impl Strategy<Value = Generated> {
    let kinds = profile.perturbation_kinds.clone();
    let seeds = prop::collection::vec(
        (select(kinds), any::<u16>(), any::<u16>()).prop_map(|(kind, target, variant)| PerturbationSeed {
            kind,
            target,
            variant,
        }),
        if profile.perturbation_kinds.is_empty() { 0..=0 } else { profile.perturbations.clone() },
    );
    let drivers = prop::collection::vec((any::<u16>(), any::<u16>()), profile.driver_domain_backends.clone());
    (domids(profile.guests.clone()), scheduler(), seeds, drivers)
        .prop_flat_map(|(ids, sched, seeds, drivers)| {
            let guests: Vec<BoxedStrategy<GuestSpec>> = ids.iter().map(|&d| guest(d).boxed()).collect();
            (guests, Just(sched), Just(seeds), Just(drivers))
        })
        .prop_map(|(mut guests, sched, seeds, drivers)| {
            for (target, backend) in drivers {
                move_to_driver_domain(&mut guests, target, backend);
            }
            assemble(guests, sched, &seeds)
        })
}

/// Distinct guest domids, sorted.
fn domids(count: RangeInclusive<usize>) -> impl Strategy<Value = Vec<u32>> {
    let pool: Vec<u32> = (1..=40).collect();
    subsequence(pool, count)
}

/// The scheduler of cpupool 0, weighted towards Xen 4.17's default credit2.
pub fn scheduler() -> impl Strategy<Value = Scheduler> {
    prop_oneof![
        12 => Just(Scheduler::Credit2),
        5 => Just(Scheduler::Credit),
        2 => Just(Scheduler::Rtds),
        1 => Just(Scheduler::Null),
    ]
}

/// Kinds whose backend can run in a driver domain without changing what libxl 4.17 reads
/// (PCI is hard-wired to dom0, usb ports to dom0's tree, vfb/vkb/9pfs/qdisk are QEMU in dom0).
fn driver_domain_capable(d: &DeviceSpec) -> bool {
    match &d.detail {
        Device::Disk(disk) => matches!(disk.medium, DiskMedium::Phy { .. }),
        Device::Nic(_) | Device::Vtpm(_) | Device::Vdispl(_) | Device::Vsnd(_) | Device::Pvcallsif(_) => true,
        _ => false,
    }
}

/// Moves one capable device (picked by `target`) to another guest (picked by `backend`).
fn move_to_driver_domain(guests: &mut [GuestSpec], target: u16, backend: u16) {
    if guests.len() < 2 {
        return;
    }
    let candidates: Vec<(usize, usize)> = guests
        .iter()
        .enumerate()
        .flat_map(|(gi, g)| {
            g.devices
                .iter()
                .enumerate()
                .filter(|(_, d)| driver_domain_capable(d) && d.backend_domid == 0)
                .map(move |(di, _)| (gi, di))
        })
        .collect();
    if candidates.is_empty() {
        return;
    }
    let (gi, di) = candidates[target as usize % candidates.len()];
    let others: Vec<usize> = (0..guests.len()).filter(|&i| i != gi).collect();
    let b = others[backend as usize % others.len()];
    let (domid, name) = (guests[b].domid, guests[b].name.clone());
    let device = &mut guests[gi].devices[di];
    device.backend_domid = domid;
    device.backend_domname = Some(name);
}

fn uuid() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| {
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!("{}-{}-4{}-a{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
    })
}

fn mac() -> impl Strategy<Value = String> {
    any::<[u8; 3]>().prop_map(|b| format!("00:16:3e:{:02x}:{:02x}:{:02x}", b[0] & 0x7f, b[1], b[2]))
}

fn guest_type() -> impl Strategy<Value = GuestType> {
    prop_oneof![5 => Just(GuestType::Pv), 2 => Just(GuestType::Pvh), 4 => Just(GuestType::Hvm)]
}

fn dm_version(t: GuestType) -> BoxedStrategy<DmVersion> {
    match t {
        GuestType::Hvm => prop_oneof![
            3 => Just(DmVersion::QemuXen),
            1 => Just(DmVersion::QemuXenTraditional),
            1 => Just(DmVersion::Absent),
        ]
        .boxed(),
        _ => prop_oneof![9 => Just(DmVersion::QemuXen), 1 => Just(DmVersion::Absent)].boxed(),
    }
}

fn boot(t: GuestType, domid: u32) -> BoxedStrategy<Boot> {
    let kernel =
        (any::<bool>(), select(vec!["console=hvc0", "root=/dev/xvda1 ro", "quiet"])).prop_map(move |(rd, cmd)| {
            Boot::Kernel {
                kernel: format!("/var/lib/xen/images/dom{domid}/vmlinuz"),
                cmdline: cmd.to_string(),
                ramdisk: rd.then(|| format!("/var/lib/xen/images/dom{domid}/initrd.img")),
            }
        });
    match t {
        GuestType::Pv => prop_oneof![3 => kernel, 1 => Just(Boot::Pygrub)].boxed(),
        GuestType::Pvh => kernel.boxed(),
        GuestType::Hvm => Just(Boot::Firmware).boxed(),
    }
}

/// One guest with the given domid.
pub fn guest(domid: u32) -> impl Strategy<Value = GuestSpec> {
    guest_type().prop_flat_map(move |t| {
        let sizes = (1u32..=8).prop_flat_map(|max| (Just(max), 1..=max));
        let memory = (select(vec![512u64, 1024, 2048, 4096]), any::<bool>());
        let sched = (
            select(vec![128i64, 256, 256, 512, 1024]),
            select(vec![0i64, 0, 50, 100]),
            proptest::option::weighted(0.2, select(vec![128i64, 512, 2048])),
        );
        (
            Just(t),
            dm_version(t),
            boot(t, domid),
            uuid(),
            select(vec!["guest", "web", "db", "vm-", "build_"]),
            sizes,
            memory,
            sched,
        )
            .prop_flat_map(
                move |(
                    t,
                    dm,
                    boot,
                    uuid,
                    prefix,
                    (max_vcpus, online),
                    (mem_mib, balloon),
                    (weight, cap, configured_weight),
                )| {
                    let max_memkb = mem_mib * 1024;
                    // HVM guests may boot ballooned down (PoD): target below static-max.
                    let target_memkb = if balloon && t == GuestType::Hvm { max_memkb / 2 } else { max_memkb };
                    let spec = GuestSpec {
                        domid,
                        uuid,
                        name: format!("{prefix}{domid}"),
                        guest_type: t,
                        dm_version: dm,
                        boot,
                        max_vcpus,
                        online_vcpus: (0..online).collect(),
                        max_memkb,
                        target_memkb,
                        video_memkb: if t == GuestType::Hvm { 8192 } else { 0 },
                        weight,
                        cap,
                        configured_weight,
                        devices: Vec::new(),
                    };
                    (Just(spec), devices(domid, t, dm))
                },
            )
            .prop_map(|(mut spec, devices)| {
                spec.devices = devices;
                spec
            })
    })
}

/// Zero to `max` items with probability `p_some` of having any.
fn some_of<S: Strategy + 'static>(
    p_some: f64,
    max: usize,
    item: impl Fn(u32) -> S + 'static,
) -> BoxedStrategy<Vec<S::Value>>
where
    S::Value: std::fmt::Debug + Clone,
{
    if p_some <= 0.0 {
        return Just(Vec::new()).boxed();
    }
    proptest::option::weighted(p_some, 1..=max)
        .prop_flat_map(move |n| (0..n.unwrap_or(0) as u32).map(&item).collect::<Vec<S>>())
        .boxed()
}

/// Every device of one guest, in the order `xl create` attaches them.
fn devices(domid: u32, t: GuestType, dm: DmVersion) -> impl Strategy<Value = Vec<DeviceSpec>> {
    let hvm = t == GuestType::Hvm;
    let pv_like = !hvm;
    let vdev_pool: Vec<&'static str> = if hvm {
        vec!["hda", "hdb", "hdc", "hdd", "xvde", "xvdf"]
    } else {
        vec!["xvda", "xvdb", "xvdc", "xvdd", "xvde"]
    };
    let disks = subsequence(vdev_pool, 0..=3)
        .prop_flat_map(move |vdevs| vdevs.into_iter().map(|v| disk(domid, v)).collect::<Vec<_>>());
    let nics = some_of(0.8, 3, move |devid| nic(domid, devid, hvm));
    let vtpms = some_of(0.15, 1, |devid| uuid().prop_map(move |uuid| Vtpm { devid, uuid }));
    let usbctrl_types: Vec<UsbctrlType> = if hvm && dm == DmVersion::QemuXen {
        vec![UsbctrlType::Pv, UsbctrlType::Qusb, UsbctrlType::Devicemodel]
    } else {
        vec![UsbctrlType::Pv, UsbctrlType::Qusb]
    };
    let auto_type = if hvm && dm == DmVersion::QemuXen { UsbctrlType::Devicemodel } else { UsbctrlType::Qusb };
    let usbctrls = some_of(0.2, 2, move |devid| {
        (select(usbctrl_types.clone()), 1u32..=3, 2u32..=8).prop_map(move |(ctrl_type, version, ports)| Usbctrl {
            devid,
            ctrl_type,
            version,
            ports,
            automatic: false,
        })
    });
    let usbdevs = some_of(0.15, 2, |_| (1u8..=4, 2u8..=30));
    let pcis = if t == GuestType::Pvh {
        Just(Vec::new()).boxed()
    } else {
        proptest::option::weighted(
            0.15,
            subsequence(vec![(3u32, 0u32, 0u32), (4, 0, 1), (0, 2, 0), (0x81, 0, 0)], 1..=2),
        )
        .prop_flat_map(move |bdfs| {
            bdfs.unwrap_or_default()
                .into_iter()
                .enumerate()
                .map(|(i, (bus, dev, func))| {
                    (any::<bool>(), any::<bool>(), any::<bool>(), select(vec!["strict", "relaxed"])).prop_map(
                        move |(permissive, msitranslate, power_mgmt, rdm_policy)| Pci {
                            domain: 0,
                            bus,
                            dev,
                            func,
                            permissive,
                            msitranslate,
                            power_mgmt,
                            rdm_policy,
                            vdevfn: if hvm { 0x28 + 8 * i as u32 } else { 0 },
                        },
                    )
                })
                .collect::<Vec<_>>()
        })
        .boxed()
    };
    let vdispls = some_of(0.1, 1, |devid| {
        (
            any::<bool>(),
            prop::collection::vec((select(vec![1920u32, 1280, 800]), select(vec![1080u32, 720, 600])), 1..=2),
        )
            .prop_map(move |(be_alloc, sizes)| Vdispl {
                devid,
                be_alloc,
                connectors: sizes.into_iter().enumerate().map(|(i, (w, h))| (format!("con{i}"), w, h)).collect(),
            })
    });
    let vsnds = some_of(0.1, 1, vsnd);
    let vfbs = some_of(if pv_like { 0.25 } else { 0.0 }, 1, move |devid| {
        (select(vec!["127.0.0.1", "0.0.0.0"]), 0u32..10, proptest::option::of(select(vec!["de", "en-us", "fr"])))
            .prop_map(move |(listen, display, keymap)| Vfb {
                devid,
                vnc_listen: listen.to_string(),
                vnc_display: display,
                keymap: keymap.map(str::to_string),
            })
    });
    let extra_vkb = proptest::option::weighted(0.1, any::<bool>());
    let p9s = some_of(0.1, 1, move |devid| {
        Just(P9 { devid, tag: "share".into(), path: format!("/srv/share-{domid}"), security_model: "none" })
    });
    let pvcalls = some_of(0.1, 1, |devid| Just(Pvcallsif { devid }));
    let channels = some_of(0.2, 2, move |devid| {
        prop_oneof![
            Just(ChannelConnection::Pty),
            Just(ChannelConnection::Socket { path: format!("/run/xen/channel-{domid}-{devid}.sock") })
        ]
        .prop_map(move |connection| Channel {
            devid,
            name: if devid == 0 { "org.qemu.guest_agent.0".into() } else { format!("org.xen.ch{devid}") },
            connection,
        })
    });
    ((disks, nics, vtpms, usbctrls, usbdevs, pcis), (vdispls, vsnds, vfbs, extra_vkb, p9s, pvcalls, channels)).prop_map(
        move |(
            (disks, nics, vtpms, mut usbctrls, usbdevs, pcis),
            (vdispls, vsnds, vfbs, extra_vkb, p9s, pvcalls, channels),
        )| {
            let mut out: Vec<DeviceSpec> = Vec::new();
            let mut push = |d: Device| out.push(DeviceSpec::in_dom0(d));
            disks.into_iter().for_each(|d| push(Device::Disk(d)));
            push(Device::Console);
            // xl adds a keyboard next to every PV framebuffer.
            let vkbs: Vec<Vkb> = vfbs
                .iter()
                .map(|f| Vkb { devid: f.devid, linux_backend: false })
                .chain(extra_vkb.map(|linux| Vkb { devid: vfbs.len() as u32, linux_backend: linux }))
                .collect();
            vfbs.into_iter().for_each(|v| push(Device::Vfb(v)));
            vkbs.into_iter().for_each(|v| push(Device::Vkb(v)));
            p9s.into_iter().for_each(|v| push(Device::P9(v)));
            pvcalls.into_iter().for_each(|v| push(Device::Pvcallsif(v)));
            channels.into_iter().for_each(|v| push(Device::Channel(v)));
            nics.into_iter().for_each(|v| push(Device::Nic(v)));
            vtpms.into_iter().for_each(|v| push(Device::Vtpm(v)));
            // A usbdev with no controller makes libxl create one, never recorded in the JSON.
            if !usbdevs.is_empty() && usbctrls.is_empty() {
                usbctrls.push(Usbctrl { devid: 0, ctrl_type: auto_type, version: 2, ports: 8, automatic: true });
            }
            let mut slots = usbctrls.iter().flat_map(|c| (1..=c.ports).map(move |p| (c.devid, p)));
            let placed: Vec<Usbdev> = usbdevs
                .into_iter()
                .filter_map(|(hostbus, hostaddr)| {
                    slots.next().map(|(ctrl, port)| Usbdev {
                        ctrl,
                        port,
                        hostbus,
                        hostaddr,
                        stored: UsbdevStored::Implicit,
                    })
                })
                .collect();
            usbctrls.into_iter().for_each(|v| push(Device::Usbctrl(v)));
            placed.into_iter().for_each(|v| push(Device::Usbdev(v)));
            pcis.into_iter().for_each(|v| push(Device::Pci(v)));
            vdispls.into_iter().for_each(|v| push(Device::Vdispl(v)));
            vsnds.into_iter().for_each(|v| push(Device::Vsnd(v)));
            out
        },
    )
}

fn disk(domid: u32, vdev: &'static str) -> impl Strategy<Value = Disk> {
    let cdrom_weight = if vdev == "hdc" { 0.6 } else { 0.15 };
    (proptest::bool::weighted(cdrom_weight), 0u8..10, any::<bool>(), proptest::bool::weighted(0.85)).prop_map(
        move |(cdrom, pick, explicit_backend, rw)| {
            let medium = if cdrom {
                if pick < 3 {
                    DiskMedium::Empty
                } else {
                    DiskMedium::Qdisk { path: format!("/srv/iso/install-{pick}.iso"), format: ImageFormat::Raw }
                }
            } else {
                match pick {
                    0..=5 => DiskMedium::Phy { path: format!("/dev/vg0/dom{domid}-{vdev}") },
                    6 | 7 => DiskMedium::Qdisk {
                        path: format!("/srv/xen/dom{domid}-{vdev}.qcow2"),
                        format: ImageFormat::Qcow2,
                    },
                    8 => {
                        DiskMedium::Qdisk { path: format!("/srv/xen/dom{domid}-{vdev}.img"), format: ImageFormat::Raw }
                    }
                    _ => {
                        DiskMedium::Qdisk { path: format!("/srv/xen/dom{domid}-{vdev}.vhd"), format: ImageFormat::Vhd }
                    }
                }
            };
            let explicit_backend = explicit_backend && matches!(medium, DiskMedium::Qdisk { .. });
            Disk { vdev: vdev.to_string(), medium, readwrite: rw && !cdrom, cdrom, explicit_backend }
        },
    )
}

fn nic(domid: u32, devid: u32, hvm: bool) -> impl Strategy<Value = Nic> {
    (
        mac(),
        proptest::option::weighted(0.7, select(vec!["xenbr0", "xenbr1"])),
        proptest::option::weighted(0.2, select(vec![9000u32, 1400])),
        proptest::bool::weighted(0.2),
        proptest::option::weighted(0.2, select(vec!["vif-nat", "vif-route", "/etc/xen/scripts/vif-custom"])),
        proptest::bool::weighted(0.8),
        proptest::bool::weighted(0.4),
    )
        .prop_map(move |(mac, bridge, mtu, ip, script, ioemu, model)| Nic {
            devid,
            mac,
            bridge: bridge.map(str::to_string),
            mtu,
            ip: ip.then(|| format!("10.0.{domid}.{}", devid + 2)),
            script: script.map(str::to_string),
            nictype: if hvm && ioemu { NicType::VifIoemu } else { NicType::Vif },
            model: (hvm && ioemu && model).then(|| "e1000".to_string()),
        })
}

fn vsnd_params() -> impl Strategy<Value = VsndParams> {
    (
        subsequence(vec![8000u32, 22050, 44100, 48000], 0..=2),
        subsequence(vec!["s8", "u8", "s16_le", "s16_be", "s24_le", "s32_le", "f32_le"], 0..=2),
        proptest::option::weighted(0.3, (1u32..=2, 2u32..=8)),
        proptest::option::weighted(0.3, select(vec![4096u32, 65536])),
    )
        .prop_map(|(rates, formats, channels, buffer)| VsndParams {
            sample_rates: rates,
            sample_formats: formats,
            channels_min: channels.map_or(0, |c| c.0),
            channels_max: channels.map_or(0, |c| c.1),
            buffer_size: buffer.unwrap_or(0),
        })
}

fn vsnd(devid: u32) -> impl Strategy<Value = Vsnd> {
    let stream = |i: usize, j: usize| {
        (select(vec!["p", "c"]), vsnd_params()).prop_map(move |(stream_type, params)| VsndStream {
            unique_id: format!("stream{i}{j}"),
            stream_type,
            params,
        })
    };
    let pcm = move |i: usize| {
        (vsnd_params(), 1usize..=2).prop_flat_map(move |(params, n)| {
            (Just(params), (0..n).map(|j| stream(i, j)).collect::<Vec<_>>())
                .prop_map(move |(params, streams)| VsndPcm { name: format!("pcm{i}"), params, streams })
        })
    };
    (
        proptest::option::weighted(0.7, select(vec!["Main", "HDMI"])),
        proptest::option::weighted(0.3, Just("Virtual sound card")),
        vsnd_params(),
        (1usize..=2).prop_flat_map(move |n| (0..n).map(pcm).collect::<Vec<_>>()),
    )
        .prop_map(move |(short, long, params, pcms)| Vsnd {
            devid,
            short_name: short.map(str::to_string),
            long_name: long.map(str::to_string),
            params,
            pcms,
        })
}
