//! Network namespaces: the lab's hosts.
//!
//! A `Netns` owns a named namespace (`ip netns add`) and deletes it on drop,
//! also while unwinding from a panic. Names get a per-process unique prefix
//! (`ha-<pid>-<counter>-`) so parallel tests and parallel runs never collide.
//!
//! Code enters a namespace in three ways: `exec` (plain `ip netns exec`, for
//! configuration), `command` (a child process that joins only the network
//! namespace, so it still sees the caller's mounts such as `/sys/fs/bpf`),
//! and `run`/`spawn` (a thread that joins it, for sockets made in Rust).

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::{fd::AsRawFd, unix::process::CommandExt},
    panic,
    process::{self, Command},
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    thread::{self, JoinHandle},
};

use anyhow::{Context, Result, bail};

use crate::cmd;

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// The first `ip netns add` on a machine turns /run/netns into a mount point;
/// two at once (parallel tests) may both do it and stack two mounts there.
static ADDING: Mutex<()> = Mutex::new(());

/// A named network namespace, deleted on drop.
///
/// Deleting it only drops the name: processes started with `command` and
/// threads started with `spawn` keep the namespace alive until they end, so
/// their owners should stop them first.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `ha-<pid>-<counter>-<name>`.
    pub fn create(name: &str) -> Result<Netns> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("invalid namespace name {name:?}: use letters, digits, '-' and '_'");
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("ha-{}-{n}-{name}", process::id());
        let _one_at_a_time = ADDING.lock().unwrap_or_else(PoisonError::into_inner);
        cmd::run(Command::new("ip").args(["netns", "add", &name])).with_context(|| {
            format!("cannot create network namespace {name} (the lab must run as root)")
        })?;
        Ok(Netns { name })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip netns exec <name> <args...>` and returns its standard output;
    /// an error with the command line and its stderr if it fails.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        cmd::run(
            Command::new("ip")
                .args(["netns", "exec", &self.name])
                .args(args),
        )
    }

    /// A `Command` whose process joins this network namespace, and only it:
    /// unlike `ip netns exec`, which remounts `/sys`, the child keeps the
    /// caller's mount namespace, so pinned BPF objects in `/sys/fs/bpf` stay
    /// visible. If the namespace cannot be entered, spawning fails.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let ns = self.open();
        let mut command = Command::new(program);
        // SAFETY: between fork and exec the closure only calls setns(2), which
        // is async-signal-safe, and builds io::Errors that do not allocate.
        // The namespace file is opened close-on-exec, so it does not leak.
        unsafe {
            command.pre_exec(move || match &ns {
                Ok(ns) => enter(ns),
                Err(e) => Err(io::Error::from(e.kind())),
            });
        }
        command
    }

    /// Runs `f` on a fresh thread that has entered this network namespace and
    /// waits for it; a panic in `f` is passed on. Sockets created inside stay
    /// in the namespace wherever they are used afterwards.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let ns = self.open_or_panic();
        thread::scope(|s| {
            s.spawn(move || {
                enter_or_panic(&ns, &self.name);
                f()
            })
            .join()
            .unwrap_or_else(|payload| panic::resume_unwind(payload))
        })
    }

    /// Like `run`, but returns at once with the thread's handle (for servers
    /// running in the background).
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let ns = self.open_or_panic();
        let name = self.name.clone();
        thread::spawn(move || {
            enter_or_panic(&ns, &name);
            f()
        })
    }

    fn open(&self) -> io::Result<File> {
        File::open(format!("/run/netns/{}", self.name))
    }

    fn open_or_panic(&self) -> File {
        self.open()
            .unwrap_or_else(|e| panic!("cannot open network namespace {}: {e}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = cmd::run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Moves the calling thread (or forked child) into the network namespace `ns`.
fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: setns(2) on a valid descriptor; it only changes this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn enter_or_panic(ns: &File, name: &str) {
    enter(ns).unwrap_or_else(|e| panic!("cannot enter network namespace {name}: {e}"));
}
