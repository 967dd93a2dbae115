//! Each pod's network identity: a network namespace whose `eth0` (one end of a veth pair) is on
//! a bridge of the node's own, all inside this machine. The bridge holds the subnet's first
//! address, so the machine's own processes (a test, a user's shell) reach every pod IP; nothing
//! is routed anywhere else (no default route in the pods, no forwarding, no NAT).

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

use crate::Error;

/// Pod subnets are `10.244.<index>.0/24`; each node agent takes the first free index.
const SUBNET_BASE: [u8; 2] = [10, 244];

/// The node's bridge and the pod addresses on it; dropping it removes the bridge.
pub struct PodNetwork {
    index: u8,
    addresses: Mutex<Addresses>,
}

/// Which host numbers are taken, and the last one given out: numbers are handed out round the
/// subnet, so a pod's address (and its interface names) is not reused while the kernel may still
/// be tearing down the previous holder's namespace.
struct Addresses {
    used: Vec<bool>,
    last: u8,
}

/// One pod's namespace and address.
#[derive(Debug, Clone)]
pub struct PodInterface {
    pub namespace: String,
    pub address: Ipv4Addr,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The network namespace of the pod at `address`.
fn namespace_of(address: Ipv4Addr) -> String {
    let octets = address.octets();
    format!("mo-{}-{}", octets[2], octets[3])
}

/// Opens a TCP connection from inside the network namespace of the pod at `pod_ip`, as one of
/// its containers would: how a test shows what the pod's peers (and NetworkPolicies) let it
/// reach. The socket keeps the pod's namespace whichever thread then uses it.
pub fn connect_from_pod(
    pod_ip: Ipv4Addr,
    target: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> std::io::Result<std::net::TcpStream> {
    use std::os::fd::AsRawFd;
    let namespace = std::fs::File::open(format!("/var/run/netns/{}", namespace_of(pod_ip)))?;
    // Entering a network namespace changes only the calling thread's: a thread of its own.
    std::thread::spawn(move || {
        // SAFETY: setns on a namespace file this thread owns, affecting only this thread.
        if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        std::net::TcpStream::connect_timeout(&target, timeout)
    })
    .join()
    .map_err(|_| std::io::Error::other("the connecting thread panicked"))?
}

impl PodNetwork {
    /// Creates the bridge on the first free subnet (root only: `ip link add`).
    pub fn create() -> Result<PodNetwork, Error> {
        for index in 0..=255u8 {
            let bridge = Self::bridge_name(index);
            if ip(&["link", "add", &bridge, "type", "bridge"]).is_err() {
                continue;
            }
            let network = PodNetwork {
                index,
                addresses: Mutex::new(Addresses {
                    used: vec![false; 256],
                    last: 1,
                }),
            };
            let gateway = format!("{}/24", network.address(1));
            ip(&["addr", "add", &gateway, "dev", &bridge]).map_err(Error::Network)?;
            ip(&["link", "set", &bridge, "up"]).map_err(Error::Network)?;
            return Ok(network);
        }
        Err(Error::Network(
            "no free pod subnet: 256 bridges named mo-pods-* exist (left by killed test runs? `ip link del` them)".into(),
        ))
    }

    fn bridge_name(index: u8) -> String {
        format!("mo-pods-{index}")
    }

    fn address(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], self.index, host)
    }

    /// The bridge's address: the node's own address as pods see it.
    pub fn gateway(&self) -> Ipv4Addr {
        self.address(1)
    }

    /// A namespace with an address for a new pod.
    pub(crate) fn attach(&self) -> Result<PodInterface, Error> {
        let host = {
            let mut addresses = self.addresses.lock().unwrap();
            let last = u16::from(addresses.last);
            let host = (1..=253u16)
                .map(|step| (2 + (last + 251 + step) % 253) as u8)
                .find(|h| !addresses.used[usize::from(*h)])
                .ok_or_else(|| Error::Network(format!("pod subnet {} is full", self.address(0))))?;
            addresses.used[usize::from(host)] = true;
            addresses.last = host;
            host
        };
        let interface = self.interface(host);
        let outside = Self::outside_name(&interface);
        let ns = interface.namespace.as_str();
        // A namespace deleted earlier may still be on its way out, its veth with it; and one of a
        // node agent that was killed may still be there: the bridge (this index) is ours now, so
        // whatever bears its names is left over.
        let _ = ip(&["link", "del", &outside]);
        let _ = ip(&["netns", "del", ns]);
        let cidr = format!("{}/24", interface.address);
        let steps: [&[&str]; 6] = [
            &["netns", "add", ns],
            &[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", ns,
            ],
            &[
                "link",
                "set",
                &outside,
                "master",
                &Self::bridge_name(self.index),
                "up",
            ],
            &["-n", ns, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", ns, "link", "set", "eth0", "up"],
            &["-n", ns, "link", "set", "lo", "up"],
        ];
        for step in steps {
            if let Err(e) = ip(step) {
                self.detach(&interface);
                return Err(Error::Network(e));
            }
        }
        Ok(interface)
    }

    /// The namespace and address of host number `host`.
    fn interface(&self, host: u8) -> PodInterface {
        let address = self.address(host);
        PodInterface {
            namespace: namespace_of(address),
            address,
        }
    }

    /// The machine's end of the pod's veth pair.
    fn outside_name(interface: &PodInterface) -> String {
        let octets = interface.address.octets();
        format!("mo-{}v{}", octets[2], octets[3])
    }

    /// Removes the pod's veth pair and namespace, and frees its address.
    pub(crate) fn detach(&self, interface: &PodInterface) {
        let _ = ip(&["link", "del", &Self::outside_name(interface)]);
        let _ = ip(&["netns", "del", &interface.namespace]);
        let host = interface.address.octets()[3];
        self.addresses.lock().unwrap().used[usize::from(host)] = false;
    }
}

impl Drop for PodNetwork {
    /// Removes what pods still hold (their workers were stopped with the node) and the bridge.
    fn drop(&mut self) {
        let used = self.addresses.lock().unwrap().used.clone();
        for host in (0..=255u8).filter(|h| used[usize::from(*h)]) {
            self.detach(&self.interface(host));
        }
        let _ = ip(&["link", "del", &Self::bridge_name(self.index)]);
    }
}
