//! The https health check against a real TLS server (run as root): nginx
//! (Debian's nginx-light) in a backend's namespace, serving a certificate
//! for a name that a CA made by the test signed. The agent checks it with
//! `type = "https"`, SNI and that CA file; the backend is up while nginx
//! answers `/healthz` with 200 and down when the page is gone (404) or
//! nginx is stopped. A CA file that cannot be read refuses the start and a
//! reload, naming the file.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    time::Duration,
};

use ha_tests::{
    agent::{Agent, hactl},
    dsr::DsrLab,
    nginx::Nginx,
    wait_until,
};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 100));
const HTTPS_PORT: u16 = 443;
/// The name the backend's certificate carries, sent as SNI.
const SERVER_NAME: &str = "b1.lab.example";
/// Detection takes `fall` checks 500 ms apart; generous for a loaded
/// 2-core machine.
const SWITCH: Duration = Duration::from_secs(10);

/// A test CA and a certificate it signed for SERVER_NAME, as PEM files in
/// a directory of their own (removed on drop).
struct Pki {
    dir: PathBuf,
    certificate: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "ha lab CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let certificate = CertificateParams::new(vec![SERVER_NAME.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir = std::env::temp_dir().join(format!("ha-lab-pki-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `[vip.check]` of the tests: https on port 443 with SNI, trusting
/// `ca_file`, expecting 200 and `ok` in the body.
fn https_check(ca_file: &Path) -> String {
    format!(
        "  [vip.check]\n  type = \"https\"\n  port = {HTTPS_PORT}\n  path = \"/healthz\"\n  \
         sni = \"{SERVER_NAME}\"\n  ca_file = \"{}\"\n  expect_body = \"ok\"\n  \
         interval = \"500ms\"\n  timeout = \"500ms\"\n  rise = 2\n  fall = 2\n",
        ca_file.display()
    )
}

/// Whether the agent reports its one backend up.
fn backend_up(agent: &Agent) -> bool {
    agent.status().expect("hactl status")["vips"][0]["backends"][0]["up"] == true
}

fn wait_backend(agent: &Agent, up: bool, what: &str) {
    assert!(
        wait_until(SWITCH, || backend_up(agent) == up),
        "{what}: the backend is not {} after {SWITCH:?}:\n{}",
        if up { "up" } else { "down" },
        agent.log()
    );
}

#[test]
fn an_https_backend_is_up_while_nginx_answers_and_down_otherwise() {
    let pki = Pki::new("up-down");
    let dsr = DsrLab::new(VIP, &["b1"], &https_check(&pki.ca_file())).expect("build the lab");
    let mut nginx = Nginx::start_https(
        &dsr.lab.host("b1").ns,
        "b1",
        HTTPS_PORT,
        &pki.certificate,
        &pki.key,
    )
    .expect("start nginx");
    let page = nginx.root().join("healthz");
    fs::write(&page, "ok\n").unwrap();

    // Started, the agent waits until the maps show the backend healthy.
    let agent = dsr.start_agent(false).expect("start the agent");
    assert!(backend_up(&agent), "{}", agent.log());

    // The page gone: nginx answers 404.
    fs::remove_file(&page).unwrap();
    wait_backend(&agent, false, "page removed");
    assert!(
        agent.log().contains("http status 404, expected 200"),
        "{}",
        agent.log()
    );
    fs::write(&page, "ok\n").unwrap();
    wait_backend(&agent, true, "page back");

    // A reload with a CA file that cannot be read is refused, naming it;
    // the checks go on as they were.
    let config = fs::read_to_string(&agent.config).unwrap();
    let missing = pki.dir.join("missing-ca.pem");
    let ca_file = pki.ca_file().display().to_string();
    fs::write(
        &agent.config,
        config.replace(&ca_file, &missing.display().to_string()),
    )
    .unwrap();
    let socket = agent.control_socket().to_string_lossy().to_string();
    let refused = hactl(&["reload", "--socket", &socket], false)
        .expect_err("a reload with a missing CA file must be refused");
    let message = format!("{refused:#}");
    assert!(
        message.contains(&missing.display().to_string()),
        "the error names the CA file: {message}"
    );
    fs::write(&agent.config, &config).unwrap();
    assert!(backend_up(&agent), "{}", agent.log());

    // nginx stopped: nothing listens.
    nginx.stop();
    wait_backend(&agent, false, "nginx stopped");
    assert!(
        agent.log().contains("connect: connection refused"),
        "{}",
        agent.log()
    );
    println!(
        "https check: up with nginx, down on 404 and when stopped; nginx log:\n{}",
        nginx.error_log()
    );
}

#[test]
fn an_unreadable_ca_file_refuses_the_start_naming_it() {
    let missing =
        std::env::temp_dir().join(format!("ha-lab-missing-ca-{}.pem", std::process::id()));
    let dsr = DsrLab::new(VIP, &["b1"], &https_check(&missing)).expect("build the lab");
    let error = dsr
        .start_agent(false)
        .err()
        .expect("the agent must not start");
    let message = format!("{error:#}");
    assert!(
        message.contains("exited early") && message.contains(&missing.display().to_string()),
        "the agent exits naming the CA file: {message}"
    );
}
