//! Field order of libxl 4.17's IDL structs (`libxl_types.idl`), as libxl's JSON generator emits them.
//!
//! PRELIMINARY: key orders only. To be replaced by the full schema (types, init values).

/// The IDL field names of `libxl_<name>`, in declaration order. Keyed unions appear under
/// their discriminator name (`type` for usbdev, `connection` for channel); the JSON key is
/// `<keyvar>.<member>`.
pub fn field_order(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "domain_create_info" => &["type", "hap", "oos", "ssidref", "ssid_label", "name", "domid", "uuid", "xsdata", "platformdata", "poolid", "pool_name", "run_hotplug_scripts", "driver_domain", "passthrough", "xend_suspend_evtchn_compat"],
        "domain_sched_params" => &["sched", "weight", "cap", "period", "budget", "extratime", "slice", "latency"],
        "device_vfb" => &["backend_domid", "backend_domname", "devid", "vnc", "sdl", "keymap"],
        "device_vkb" => &["backend_domid", "backend_domname", "devid", "backend_type", "unique_id", "feature_disable_keyboard", "feature_disable_pointer", "feature_abs_pointer", "feature_raw_pointer", "feature_multi_touch", "width", "height", "multi_touch_width", "multi_touch_height", "multi_touch_num_contacts"],
        "device_disk" => &["backend_domid", "backend_domname", "pdev_path", "vdev", "backend", "format", "script", "removable", "readwrite", "is_cdrom", "direct_io_safe", "discard_enable", "specification", "transport", "irq", "base", "colo_enable", "colo_restore_enable", "colo_host", "colo_port", "colo_export", "active_disk", "hidden_disk", "trusted"],
        "device_nic" => &["backend_domid", "backend_domname", "devid", "mtu", "model", "mac", "ip", "bridge", "ifname", "script", "nictype", "rate_bytes_per_interval", "rate_interval_usecs", "gatewaydev", "coloft_forwarddev", "colo_sock_mirror_id", "colo_sock_mirror_ip", "colo_sock_mirror_port", "colo_sock_compare_pri_in_id", "colo_sock_compare_pri_in_ip", "colo_sock_compare_pri_in_port", "colo_sock_compare_sec_in_id", "colo_sock_compare_sec_in_ip", "colo_sock_compare_sec_in_port", "colo_sock_compare_notify_id", "colo_sock_compare_notify_ip", "colo_sock_compare_notify_port", "colo_sock_redirector0_id", "colo_sock_redirector0_ip", "colo_sock_redirector0_port", "colo_sock_redirector1_id", "colo_sock_redirector1_ip", "colo_sock_redirector1_port", "colo_sock_redirector2_id", "colo_sock_redirector2_ip", "colo_sock_redirector2_port", "colo_filter_mirror_queue", "colo_filter_mirror_outdev", "colo_filter_redirector0_queue", "colo_filter_redirector0_indev", "colo_filter_redirector0_outdev", "colo_filter_redirector1_queue", "colo_filter_redirector1_indev", "colo_filter_redirector1_outdev", "colo_compare_pri_in", "colo_compare_sec_in", "colo_compare_out", "colo_compare_notify_dev", "colo_sock_sec_redirector0_id", "colo_sock_sec_redirector0_ip", "colo_sock_sec_redirector0_port", "colo_sock_sec_redirector1_id", "colo_sock_sec_redirector1_ip", "colo_sock_sec_redirector1_port", "colo_filter_sec_redirector0_queue", "colo_filter_sec_redirector0_indev", "colo_filter_sec_redirector0_outdev", "colo_filter_sec_redirector1_queue", "colo_filter_sec_redirector1_indev", "colo_filter_sec_redirector1_outdev", "colo_filter_sec_rewriter0_queue", "colo_checkpoint_host", "colo_checkpoint_port", "trusted"],
        "device_pci" => &["func", "dev", "bus", "domain", "vdevfn", "vfunc_mask", "msitranslate", "power_mgmt", "permissive", "seize", "rdm_policy", "name"],
        "device_rdm" => &["start", "size", "policy"],
        "device_usbctrl" => &["type", "devid", "version", "ports", "backend_domid", "backend_domname"],
        "device_usbdev" => &["ctrl", "port", "type"],
        "device_dtdev" => &["path"],
        "device_vtpm" => &["backend_domid", "backend_domname", "devid", "uuid"],
        "device_p9" => &["backend_domid", "backend_domname", "tag", "path", "security_model", "devid"],
        "device_pvcallsif" => &["backend_domid", "backend_domname", "devid"],
        "device_channel" => &["backend_domid", "backend_domname", "devid", "name", "connection"],
        "device_vdispl" => &["backend_domid", "backend_domname", "devid", "be_alloc", "connectors"],
        "device_vsnd" => &["backend_domid", "backend_domname", "devid", "short_name", "long_name", "params", "pcms"],
        "domain_config" => &["c_info", "b_info", "disks", "nics", "pcidevs", "rdms", "dtdevs", "vfbs", "vkbs", "vtpms", "p9s", "pvcallsifs", "vdispls", "vsnds", "channels", "usbctrls", "usbdevs", "on_poweroff", "on_reboot", "on_watchdog", "on_crash", "on_soft_reset"],
        "domain_build_info" => &[
            "max_vcpus", "avail_vcpus", "cpumap", "nodemap", "vcpu_hard_affinity", "vcpu_soft_affinity",
            "numa_placement", "tsc_mode", "max_memkb", "target_memkb", "video_memkb", "shadow_memkb",
            "iommu_memkb", "rtc_timeoffset", "exec_ssidref", "exec_ssid_label", "localtime",
            "disable_migrate", "cpuid", "blkdev_start", "vnuma_nodes", "max_grant_frames",
            "max_maptrack_frames", "max_grant_version", "device_model_version",
            "device_model_stubdomain", "stubdomain_memkb", "stubdomain_kernel", "stubdomain_cmdline",
            "stubdomain_ramdisk", "device_model", "device_model_ssidref", "device_model_ssid_label",
            "device_model_user", "extra", "extra_pv", "extra_hvm", "sched_params", "ioports", "irqs",
            "iomem", "claim_mode", "event_channels", "kernel", "cmdline", "ramdisk", "device_tree",
            "acpi", "bootloader", "bootloader_args", "timer_mode", "nested_hvm", "apic", "dm_restrict",
            "tee", "type", "arch_arm", "arch_x86", "altp2m", "vmtrace_buf_kb", "vpmu",
        ],
        _ => return None,
    })
}
