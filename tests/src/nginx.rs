//! A real TLS server for the https check: nginx (Debian's nginx-light) in
//! a lab host, with its own configuration, pid and log files in a
//! directory of its own, so it never touches the system's nginx setup.
//!
//! It runs in the foreground (`daemon off`) as a child of the test, in a
//! process group of its own, and is stopped on drop (also when the test
//! fails): SIGTERM to the group, SIGKILL if it does not go.

use std::{
    env, fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::Netns;

/// How long nginx gets to start listening, and to stop after SIGTERM.
const NGINX_PATIENCE: Duration = Duration::from_secs(10);

/// A running nginx serving HTTPS from [`Nginx::root`].
pub struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx in `ns`, serving `https://*:port/` (IPv4 and IPv6) from
    /// the files in [`Nginx::root`] with the PEM certificate chain and key
    /// given, and waits until it listens. Its files go to a fresh
    /// directory named after `name`.
    pub fn start_https(
        ns: &Netns,
        name: &str,
        port: u16,
        certificate_pem: &str,
        key_pem: &str,
    ) -> Result<Nginx> {
        let program = program()?;
        let dir = env::temp_dir().join(format!("ha-lab-nginx-{}-{name}", ns.name()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("www")).with_context(|| format!("create {}", dir.display()))?;
        fs::write(dir.join("server.pem"), certificate_pem)?;
        fs::write(dir.join("server.key"), key_pem)?;
        let config = dir.join("nginx.conf");
        fs::write(&config, configuration(&dir, port))?;
        let child = ns
            .command(&program)
            .arg("-c")
            .arg(&config)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("start {} in {}", program.display(), ns.name()))?;
        let mut nginx = Nginx {
            child: Some(child),
            dir,
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    /// The directory nginx serves: `<root>/x` is `https://host/x`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("www")
    }

    /// What nginx logged so far.
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// nginx writes its pid file once its sockets listen.
    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + NGINX_PATIENCE;
        let pid_file = self.dir.join("nginx.pid");
        loop {
            if pid_file.exists() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("nginx exited at start ({status}):\n{}", self.error_log());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "nginx not listening after {NGINX_PATIENCE:?}:\n{}",
                    self.error_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops nginx and every worker: SIGTERM to its process group, SIGKILL
    /// if it has not exited within the patience. Does nothing the second
    /// time.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id() as i32;
        signal_group(group, libc::SIGTERM);
        let deadline = Instant::now() + NGINX_PATIENCE;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        // Workers left behind, or a master that ignored SIGTERM.
        signal_group(group, libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn signal_group(group: i32, signal: i32) {
    // SAFETY: kill(2) has no memory effects; `group` is the process group
    // of our nginx child (it leads it), which the caller has not reaped
    // yet, or whose workers still hold the id.
    unsafe { libc::kill(-group, signal) };
}

/// The nginx binary, from PATH or /usr/sbin (not always in a test's PATH).
fn program() -> Result<PathBuf> {
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .context(
            "nginx not found (in PATH or /usr/sbin): install Debian's nginx-light \
             (`cargo xtask setup` does)",
        )
}

/// Everything in `dir`: no file of the system's nginx is read or written.
fn configuration(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    format!(
        "daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen {port} ssl;
        listen [::]:{port} ssl;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        root {dir}/www;
    }}
}}
"
    )
}
