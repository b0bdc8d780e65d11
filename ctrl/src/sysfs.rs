//! What tandemd reads about a Linux device from /sys/class/net: existence,
//! MAC address, MTU, administrative and operational state. Rooted at a
//! configurable directory so tests can use a fake tree.

use std::path::{Path, PathBuf};

use crate::api::parse_mac;

/// `IFF_UP` in /sys/class/net/DEV/flags.
const IFF_UP: u32 = 0x1;

#[derive(Clone, Debug)]
pub struct SysNet {
    root: PathBuf,
}

impl Default for SysNet {
    fn default() -> Self {
        SysNet {
            root: PathBuf::from("/sys/class/net"),
        }
    }
}

impl SysNet {
    pub fn at(root: &Path) -> SysNet {
        SysNet {
            root: root.to_path_buf(),
        }
    }

    fn read(&self, dev: &str, file: &str) -> std::io::Result<String> {
        std::fs::read_to_string(self.root.join(dev).join(file)).map(|s| s.trim().to_string())
    }

    pub fn exists(&self, dev: &str) -> bool {
        // A device name never contains '/', but a config might; do not let
        // it walk out of the directory.
        !dev.contains('/') && self.root.join(dev).exists()
    }

    /// The device's MAC address.
    pub fn mac(&self, dev: &str) -> Result<[u8; 6], String> {
        let text = self
            .read(dev, "address")
            .map_err(|e| format!("reading /sys/class/net/{dev}/address: {e}"))?;
        parse_mac(&text).ok_or_else(|| {
            format!("/sys/class/net/{dev}/address is \"{text}\", not an Ethernet MAC address")
        })
    }

    pub fn mtu(&self, dev: &str) -> Option<u32> {
        self.read(dev, "mtu").ok()?.parse().ok()
    }

    /// Administratively up (`ip link set DEV up`).
    pub fn admin_up(&self, dev: &str) -> Option<bool> {
        let flags = self.read(dev, "flags").ok()?;
        let v = u32::from_str_radix(flags.trim_start_matches("0x"), 16).ok()?;
        Some(v & IFF_UP != 0)
    }

    /// Operationally up (carrier), from `operstate`; `None` when the
    /// driver does not say (`unknown`).
    pub fn link_up(&self, dev: &str) -> Option<bool> {
        match self.read(dev, "operstate").ok()?.as_str() {
            "up" => Some(true),
            "down" | "lowerlayerdown" | "notpresent" | "dormant" => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_fake_tree() {
        let dir = crate::testutil::TempDir::new("sysfs");
        let dev = dir.path().join("out0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("address"), "02:00:00:00:00:01\n").unwrap();
        std::fs::write(dev.join("mtu"), "1500\n").unwrap();
        std::fs::write(dev.join("flags"), "0x1003\n").unwrap();
        std::fs::write(dev.join("operstate"), "down\n").unwrap();
        let s = SysNet::at(dir.path());
        assert!(s.exists("out0"));
        assert!(!s.exists("in0"));
        assert!(!s.exists("../out0"));
        assert_eq!(s.mac("out0").unwrap(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(s.mtu("out0"), Some(1500));
        assert_eq!(s.admin_up("out0"), Some(true));
        assert_eq!(s.link_up("out0"), Some(false));
        assert!(s
            .mac("in0")
            .unwrap_err()
            .starts_with("reading /sys/class/net/in0/address"));
        std::fs::write(dev.join("address"), "\n").unwrap();
        assert!(s.mac("out0").is_err());
    }
}
