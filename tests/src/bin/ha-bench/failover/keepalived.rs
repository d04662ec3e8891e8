//! The keepalived side of the failover bench: its config, its processes
//! in the lab, and its rounds.

use super::*;

/// keepalived's version line (`keepalived --version` prints to stderr).
pub(super) fn keepalived_version() -> Result<String> {
    let out = Command::new(keepalived_binary())
        .arg("--version")
        .output()
        .context("run keepalived --version (apt-get install keepalived)")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .context("keepalived --version printed nothing")
}

fn keepalived_binary() -> &'static str {
    if Path::new("/usr/sbin/keepalived").is_file() {
        "/usr/sbin/keepalived"
    } else {
        "keepalived"
    }
}

/// The keepalived configuration of one LB: one VRRPv3 instance for the
/// VIP on eth0, unicast to the peer, preempting (the default);
/// `max_auto_priority` lets keepalived raise itself to real-time
/// scheduling when its timers run late (its own start-up notice
/// recommends it for performance).
fn keepalived_config(name: &str, priority: u8, me: Ipv4Addr, peer: Ipv4Addr) -> String {
    format!(
        "global_defs {{
    router_id {name}
    vrrp_version 3
    max_auto_priority
}}

vrrp_instance web {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int {KEEPALIVED_ADVERT}
    unicast_src_ip {me}
    unicast_peer {{
        {peer}
    }}
    virtual_ipaddress {{
        {VIP}/32 dev eth0
    }}
}}
"
    )
}

/// keepalived's VRRP process as a child inside a lab namespace; killed
/// (SIGKILL, both its processes) on `kill` and on drop.
struct Keepalived {
    child: Option<Child>,
    /// The VRRP process (a real pid, > 1), once it has written its pidfile.
    vrrp_pid: Option<i32>,
    log: PathBuf,
}

impl Keepalived {
    fn start(
        ns: &Netns,
        dir: &Path,
        name: &str,
        priority: u8,
        me: Ipv4Addr,
        peer: Ipv4Addr,
    ) -> Result<Keepalived> {
        let config = dir.join(format!("{name}.conf"));
        let pid = dir.join(format!("{name}.pid"));
        let vrrp_pid = dir.join(format!("{name}-vrrp.pid"));
        let log = dir.join(format!("{name}.log"));
        fs::write(&config, keepalived_config(name, priority, me, peer))?;
        let _ = fs::remove_file(&vrrp_pid);
        let _ = fs::remove_file(&pid);
        let test = ns
            .command(keepalived_binary())
            .arg("-t")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .output()
            .context("keepalived -t")?;
        if !test.status.success() {
            bail!(
                "keepalived rejects {}: {}",
                config.display(),
                String::from_utf8_lossy(&test.stderr)
            );
        }
        let log_file = fs::File::options().create(true).append(true).open(&log)?;
        let mut command = ns.command(keepalived_binary());
        command
            .args([
                "--dont-fork",
                "--log-console",
                "--no-syslog",
                "--vrrp",
                "-f",
            ])
            .arg(&config)
            .arg("-p")
            .arg(&pid)
            .arg("-r")
            .arg(&vrrp_pid);
        // A process group of its own: kill -9 reaches the parent and its
        // VRRP child in one kill(2).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // SAFETY: prctl(2) only, async-signal-safe. If the bench dies
        // without its destructors (SIGKILL), keepalived goes with it.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start keepalived")?;
        let mut keepalived = Keepalived {
            child: Some(child),
            vrrp_pid: None,
            log,
        };
        let mut pid = None;
        wait_until(Duration::from_secs(5), || {
            pid = fs::read_to_string(&vrrp_pid)
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .filter(|p| *p > 1);
            pid.is_some()
        });
        keepalived.vrrp_pid = Some(pid.with_context(|| {
            format!(
                "keepalived on {name} started no VRRP process:\n{}",
                keepalived.log()
            )
        })?);
        Ok(keepalived)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9 of the VRRP process, then of its parent's process group
    /// (the parent and anything else it started). VRRP first: a parent
    /// killed first would have its VRRP child stopped gracefully (SIGTERM,
    /// a priority-0 advert), a faster handover than a crash.
    fn signal(&self) {
        let Some(child) = &self.child else {
            return;
        };
        // Never 0 or -1 (our own group, every process): only real pids.
        let group = i32::try_from(child.id()).ok().filter(|p| *p > 1);
        for target in [self.vrrp_pid, group.map(|g| -g)].into_iter().flatten() {
            // SAFETY: kill(2) on the VRRP process we started (not reaped
            // yet, so its pid is not reused) and on our child's group.
            unsafe { libc::kill(target, libc::SIGKILL) };
        }
    }

    /// `signal`, then reaps both processes (the orphaned VRRP process is
    /// ours: the bench is a child subreaper).
    fn kill(&mut self) {
        self.signal();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.wait();
        if let Some(pid) = self.vrrp_pid {
            // SAFETY: waitpid(2) on a pid that is our child (or it fails
            // with ECHILD); it was sent SIGKILL, so this ends.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether host `lb` has the VIP on eth0.
fn holds_vip(dsr: &DsrLab, lb: &str) -> bool {
    dsr.lab
        .host(lb)
        .ns
        .exec(&["ip", "-o", "-4", "addr", "show", "dev", "eth0"])
        .is_ok_and(|out| out.contains(&format!(" {VIP}/")))
}

/// keepalived in the same lab: no ha-agent, no backends; each LB serves
/// port 80 itself and keepalived moves the VIP between them.
pub(super) fn keepalived_rounds(
    on_round: &mut dyn FnMut(RateRun, Failure, bool) -> bool,
) -> Result<()> {
    // Orphans (keepalived's VRRP process once its parent is killed) are
    // handed to us to reap, not to pid 1.
    // SAFETY: prctl(2) with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dsr = DsrLab::cluster(IpAddr::V4(VIP), &LBS, &[], "")?;
    let dir = std::env::temp_dir().join(format!("ha-bench-{}", dsr.lab.switch().name()));
    fs::create_dir_all(&dir)?;
    let result = keepalived_lab(&dsr, &dir, on_round);
    let _ = fs::remove_dir_all(&dir);
    result
}

fn keepalived_lab(
    dsr: &DsrLab,
    dir: &Path,
    on_round: &mut dyn FnMut(RateRun, Failure, bool) -> bool,
) -> Result<()> {
    let host = |lb: &str| dsr.lab.host(lb);
    let _servers = [
        ServerProcess::start(&host("lb1").ns, "lb1", PORT)?,
        ServerProcess::start(&host("lb2").ns, "lb2", PORT)?,
    ];
    let start = |lb: &str, priority: u8, peer: &str| {
        Keepalived::start(
            &host(lb).ns,
            dir,
            lb,
            priority,
            host(lb).ipv4,
            host(peer).ipv4,
        )
    };
    let mut lb1 = start("lb1", LBS[0].1, "lb2")?;
    let lb2 = start("lb2", LBS[1].1, "lb1")?;
    loop {
        if !wait_until(Duration::from_secs(10), || {
            holds_vip(dsr, "lb1") && !holds_vip(dsr, "lb2")
        }) {
            bail!(
                "lb1 did not (re)take the VIP:\nlb1:\n{}\nlb2:\n{}",
                lb1.log(),
                lb2.log()
            );
        }
        let (run, failure) = round(dsr, "lb1", || {
            lb1.signal();
            Ok(())
        })?;
        let took_over = wait_until(Duration::from_secs(2), || holds_vip(dsr, "lb2"));
        lb1.kill();
        // Restore lb1 as after a reboot: a killed keepalived leaves the VIP
        // configured; the address goes, the link comes back, keepalived
        // starts again.
        host("lb1").ns.exec(&[
            "ip",
            "addr",
            "flush",
            "dev",
            "eth0",
            "to",
            &format!("{VIP}/32"),
        ])?;
        dsr.set_link("lb1", true)?;
        let go_on = on_round(run, failure, took_over);
        lb1 = start("lb1", LBS[0].1, "lb2")?;
        if !go_on {
            return Ok(());
        }
    }
}
