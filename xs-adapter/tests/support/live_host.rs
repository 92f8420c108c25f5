//! A big, realistic xenstore for the live-client tests and benchmarks: `n` guest domains, each
//! with a disk, two NICs and a console, laid out as libxl 4.17 writes them (frontend, backend in
//! dom0, the `/libxl` copy, `/vm/<uuid>`), about 128 nodes per domain. Deterministic.

/// `(path, value)` pairs of the host, parents before children.
pub fn big_host(n_domains: u32) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(n_domains as usize * 130);
    let mut put = |p: String, v: String| out.push((p, v));
    for d in 1..=n_domains {
        let home = format!("/local/domain/{d}");
        let uuid = format!("{:08x}-{:04x}-4000-8000-{:012x}", d.wrapping_mul(2654435761), d % 65536, d);
        put(format!("{home}/name"), format!("guest-{d}"));
        put(format!("{home}/domid"), d.to_string());
        put(format!("{home}/vm"), format!("/vm/{uuid}"));
        for (k, v) in [("static-max", "1048576"), ("target", "1047552"), ("videoram", "-1")] {
            put(format!("{home}/memory/{k}"), v.into());
        }
        for cpu in 0..2 {
            put(format!("{home}/cpu/{cpu}/availability"), "online".into());
        }
        for k in ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend", "sysrq"] {
            put(
                format!("{home}/control/{k}"),
                if k == "shutdown" || k == "sysrq" { String::new() } else { "1".into() },
            );
        }
        for (k, v) in
            [("ring-ref", "1234"), ("port", "2"), ("limit", "1048576"), ("type", "xenconsoled"), ("tty", "/dev/pts/3")]
        {
            put(format!("{home}/console/{k}"), v.into());
        }
        put(format!("{home}/data/updated"), "1".into());

        let vbd_fe = format!("{home}/device/vbd/51712");
        let vbd_be = format!("/local/domain/0/backend/vbd/{d}/51712");
        for (k, v) in [
            ("backend", vbd_be.clone()),
            ("backend-id", "0".into()),
            ("state", "4".into()),
            ("virtual-device", "51712".into()),
            ("device-type", "disk".into()),
            ("event-channel", "15".into()),
            ("ring-ref", "8".into()),
            ("protocol", "x86_64-abi".into()),
        ] {
            put(format!("{vbd_fe}/{k}"), v);
        }
        let vbd_keys: Vec<(&str, String)> = vec![
            ("frontend", vbd_fe.clone()),
            ("params", format!("/dev/vg0/guest-{d}-disk")),
            ("script", "/etc/xen/scripts/block".into()),
            ("frontend-id", d.to_string()),
            ("online", "1".into()),
            ("removable", "0".into()),
            ("bootable", "1".into()),
            ("state", "4".into()),
            ("dev", "xvda".into()),
            ("type", "phy".into()),
            ("mode", "w".into()),
            ("device-type", "disk".into()),
            ("discard-enable", "1".into()),
            ("physical-device", "fe:3".into()),
            ("physical-device-path", format!("/dev/dm-{d}")),
            ("hotplug-status", "connected".into()),
            ("feature-flush-cache", "1".into()),
            ("feature-discard", "1".into()),
            ("sectors", "20971520".into()),
            ("info", "0".into()),
            ("sector-size", "512".into()),
        ];
        for (k, v) in &vbd_keys {
            put(format!("{vbd_be}/{k}"), v.clone());
        }
        for nic in 0..2 {
            let fe = format!("{home}/device/vif/{nic}");
            let be = format!("/local/domain/0/backend/vif/{d}/{nic}");
            let mac = format!("00:16:3e:{:02x}:{:02x}:{:02x}", (d >> 8) & 0xff, d & 0xff, nic);
            for (k, v) in [
                ("backend", be.clone()),
                ("backend-id", "0".into()),
                ("state", "4".into()),
                ("handle", nic.to_string()),
                ("mac", mac.clone()),
                ("tx-ring-ref", "9".into()),
                ("rx-ring-ref", "10".into()),
                ("event-channel", "16".into()),
                ("request-rx-copy", "1".into()),
                ("feature-rx-notify", "1".into()),
            ] {
                put(format!("{fe}/{k}"), v);
            }
            let nic_keys: Vec<(&str, String)> = vec![
                ("frontend", fe.clone()),
                ("frontend-id", d.to_string()),
                ("online", "1".into()),
                ("state", "4".into()),
                ("script", "/etc/xen/scripts/vif-bridge".into()),
                ("mac", mac),
                ("bridge", "xenbr0".into()),
                ("handle", nic.to_string()),
                ("type", "vif".into()),
                ("hotplug-status", "connected".into()),
                ("feature-sg", "1".into()),
            ];
            for (k, v) in &nic_keys {
                put(format!("{be}/{k}"), v.clone());
            }
            for (k, v) in &nic_keys {
                put(format!("/libxl/{d}/device/vif/{nic}/{k}"), v.clone());
            }
        }
        let con_be = format!("/local/domain/0/backend/console/{d}/0");
        for (k, v) in [
            ("frontend", format!("{home}/console")),
            ("frontend-id", d.to_string()),
            ("online", "1".into()),
            ("state", "1".into()),
            ("protocol", "vt100".into()),
        ] {
            put(format!("{con_be}/{k}"), v);
        }
        for (k, v) in &vbd_keys {
            put(format!("/libxl/{d}/device/vbd/51712/{k}"), v.clone());
        }
        put(format!("/libxl/{d}/type"), "pvh".into());
        put(format!("/libxl/{d}/dm-version"), "qemu_xen".into());
        for (k, v) in
            [("name", format!("guest-{d}")), ("uuid", uuid.clone()), ("start_time", "1700000000.00".to_string())]
        {
            put(format!("/vm/{uuid}/{k}"), v);
        }
    }
    out
}
