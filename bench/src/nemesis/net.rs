//! The network the nemesis runs on: one network namespace per node and one for the clients,
//! joined by a bridge, all made for this run under unique names and removed on drop (also when
//! a round fails). Addresses (10.77.0.0/24) exist only inside these namespaces; the root
//! namespace gets none, so nothing here can reach or be reached from any outside network.
//!
//! This kernel has no `netem` and no traffic classifiers (checked: `tc qdisc … netem` is an
//! unknown qdisc, `tc filter` has no classifier), and no iptables/nft binary. Partitions are
//! therefore blackhole routes inside the node namespaces (a packet to a cut-off peer is dropped
//! silently, as on a dead link), and delays come from the user-space relay in `relay.rs`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The private subnet inside the namespaces (a /24).
const SUBNET: &str = "10.77.0";
/// The client namespace's host number.
const CLIENT_HOST: u32 = 100;

static RUNS: AtomicU32 = AtomicU32::new(0);

fn run(args: &[&str]) -> Result<(), String> {
    let output = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The namespaces, links and bridge of one run.
pub struct Net {
    /// Unique per process and run: names never collide with a parallel run.
    tag: String,
    made_bridge: bool,
    made: Vec<u32>,
    /// The node pairs cut off from each other now (smaller id first).
    cut: BTreeSet<(u32, u32)>,
}

impl Net {
    /// Whether this machine lets us make network namespaces (root, and a kernel with them).
    pub fn available() -> bool {
        let probe = format!(
            "esdb-nmprobe{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        );
        let ok = run(&["ip", "netns", "add", &probe]).is_ok()
            && run(&[
                "ip", "netns", "exec", &probe, "ip", "link", "set", "lo", "up",
            ])
            .is_ok();
        let _ = run(&["ip", "netns", "del", &probe]);
        ok
    }

    /// Makes `size` node namespaces and the client namespace on one bridge.
    pub fn make(size: u32) -> Result<Net, String> {
        assert!((1..CLIENT_HOST).contains(&size), "node count");
        let run_no = RUNS.fetch_add(1, Ordering::Relaxed);
        let mut net = Net {
            tag: format!("{}{}", std::process::id() % 100_000, run_no % 10),
            made_bridge: false,
            made: Vec::new(),
            cut: BTreeSet::new(),
        };
        let bridge = net.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        net.made_bridge = true;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for n in (1..=size).chain([CLIENT_HOST]) {
            net.add_host(n)?;
        }
        Ok(net)
    }

    fn add_host(&mut self, n: u32) -> Result<(), String> {
        let ns = self.namespace(n);
        let outer = self.outer_link(n);
        run(&["ip", "netns", "add", &ns])?;
        self.made.push(n);
        run(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        run(&["ip", "link", "set", &outer, "master", &self.bridge()])?;
        run(&["ip", "link", "set", &outer, "up"])?;
        let inner = format!("{}/24", self.ip(n));
        run(&["ip", "-n", &ns, "addr", "add", &inner, "dev", "eth0"])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])
    }

    pub fn namespace(&self, n: u32) -> String {
        format!("esdb-nm{}-{n}", self.tag)
    }

    pub fn client_namespace(&self) -> String {
        self.namespace(CLIENT_HOST)
    }

    fn outer_link(&self, n: u32) -> String {
        format!("nm{}h{n}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("nm{}br", self.tag)
    }

    pub fn ip(&self, n: u32) -> String {
        format!("{SUBNET}.{n}")
    }

    /// Cuts nodes `a` and `b` off from each other (both directions), or joins them again.
    pub fn set_cut(&mut self, a: u32, b: u32, cut: bool) -> Result<(), String> {
        let pair = (a.min(b), a.max(b));
        if cut == self.cut.contains(&pair) {
            return Ok(());
        }
        let verb = if cut { "add" } else { "del" };
        for (from, to) in [(a, b), (b, a)] {
            let dest = format!("{}/32", self.ip(to));
            run(&[
                "ip",
                "-n",
                &self.namespace(from),
                "route",
                verb,
                "blackhole",
                &dest,
            ])?;
        }
        if cut {
            self.cut.insert(pair);
        } else {
            self.cut.remove(&pair);
        }
        Ok(())
    }

    /// Joins every pair again.
    pub fn heal(&mut self) -> Result<(), String> {
        for (a, b) in self.cut.clone() {
            self.set_cut(a, b, false)?;
        }
        Ok(())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for &n in &self.made {
            // The pair goes with either end; deleting the outer one does not wait for the
            // kernel to free the namespace.
            let _ = run(&["ip", "link", "del", &self.outer_link(n)]);
            let _ = run(&["ip", "netns", "del", &self.namespace(n)]);
        }
        if self.made_bridge {
            let _ = run(&["ip", "link", "del", &self.bridge()]);
        }
    }
}

/// Moves the calling thread into the named network namespace: every socket it makes from then
/// on lives there (a socket keeps its namespace wherever it is used).
pub fn enter(namespace: &str) -> Result<(), String> {
    let path = format!("/var/run/netns/{namespace}");
    let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
    // SAFETY: setns on a valid namespace descriptor; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!("setns {path}: {}", std::io::Error::last_os_error()))
    }
}
