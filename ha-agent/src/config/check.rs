//! Health checks as configured: the fields of a `[health]`, `[vip.check]`
//! or `[[cluster.track]]` check table, each validated on its own, then
//! merged (`[health]` gives defaults to every VIP's check) and turned into
//! a [`CheckConfig`] whose fields all belong to its type.

use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::DnsName;

use super::error::Source;
use super::raw::{CheckType, RawCheck};
use super::{
    CheckConfig, CheckKind, ConfigError, DEFAULT_CHECK_FALL, DEFAULT_CHECK_INTERVAL,
    DEFAULT_CHECK_RISE, DEFAULT_CHECK_TIMEOUT, DEFAULT_HTTP_PATH, DEFAULT_HTTP_STATUS, MAX_EXPECT,
    MAX_RISE_FALL, MAX_UDP_PAYLOAD, format_duration,
};

/// A value of a check table after its own validation, with where it was
/// written: its offset and dotted field name.
#[derive(Clone)]
pub(super) struct Written<T> {
    value: T,
    offset: usize,
    field: String,
}

impl<T> Written<T> {
    fn new(value: T, (offset, field): (usize, String)) -> Written<T> {
        Written {
            value,
            offset,
            field,
        }
    }
}

/// A check table's fields, each validated on its own; `None` where not
/// written.
#[derive(Clone, Default)]
pub(super) struct CheckFields {
    kind: Option<Written<CheckType>>,
    port: Option<Written<u16>>,
    interval: Option<Written<Duration>>,
    timeout: Option<Written<Duration>>,
    rise: Option<Written<u32>>,
    fall: Option<Written<u32>>,
    path: Option<Written<String>>,
    host: Option<Written<String>>,
    expect_status: Option<Written<u16>>,
    expect_body: Option<Written<String>>,
    send: Option<Written<String>>,
    expect: Option<Written<String>>,
    command: Option<Written<Vec<String>>>,
    sni: Option<Written<String>>,
    ca_file: Option<Written<String>>,
    verify: Option<Written<bool>>,
}

impl CheckFields {
    /// The type, `tcp` when not written.
    fn check_type(&self) -> CheckType {
        self.kind.as_ref().map_or(CheckType::Tcp, |k| k.value)
    }

    /// These fields as defaults, overridden field by field by `local`.
    /// Type-specific fields (`path`, `send`, `command`, ...) are only
    /// inherited when the result has the type they were written for.
    pub(super) fn merged(&self, local: CheckFields) -> CheckFields {
        fn or<T: Clone>(
            local: Option<Written<T>>,
            global: &Option<Written<T>>,
        ) -> Option<Written<T>> {
            local.or_else(|| global.clone())
        }
        fn specific<T: Clone>(
            same_type: bool,
            local: Option<Written<T>>,
            global: &Option<Written<T>>,
        ) -> Option<Written<T>> {
            if same_type { or(local, global) } else { local }
        }
        let kind = or(local.kind, &self.kind);
        let same = kind.as_ref().map_or(CheckType::Tcp, |k| k.value) == self.check_type();
        CheckFields {
            kind,
            port: or(local.port, &self.port),
            interval: or(local.interval, &self.interval),
            timeout: or(local.timeout, &self.timeout),
            rise: or(local.rise, &self.rise),
            fall: or(local.fall, &self.fall),
            path: specific(same, local.path, &self.path),
            host: specific(same, local.host, &self.host),
            expect_status: specific(same, local.expect_status, &self.expect_status),
            expect_body: specific(same, local.expect_body, &self.expect_body),
            send: specific(same, local.send, &self.send),
            expect: specific(same, local.expect, &self.expect),
            command: specific(same, local.command, &self.command),
            sni: specific(same, local.sni, &self.sni),
            ca_file: specific(same, local.ca_file, &self.ca_file),
            verify: specific(same, local.verify, &self.verify),
        }
    }
}

impl Source<'_> {
    /// The fields of a `[health]` or `[vip.check]` table (`section`), each
    /// validated on its own.
    pub(super) fn check_fields(
        &self,
        raw: &RawCheck,
        section: &str,
    ) -> Result<CheckFields, ConfigError> {
        let field = |name: &str| format!("{section}.{name}");
        let written = |at: Range<usize>, name: &str| (at.start, field(name));
        let mut fields = CheckFields::default();
        if let Some(kind) = &raw.kind {
            fields.kind = Some(Written::new(*kind.get_ref(), written(kind.span(), "type")));
        }
        if let Some(port) = &raw.port {
            if *port.get_ref() == 0 {
                return Err(self.at(port, field("port"), "must be 1..=65535"));
            }
            fields.port = Some(Written::new(*port.get_ref(), written(port.span(), "port")));
        }
        for (raw, name, out) in [
            (&raw.interval, "interval", &mut fields.interval),
            (&raw.timeout, "timeout", &mut fields.timeout),
        ] {
            if let Some(raw) = raw {
                let value = self.duration(raw, &field(name))?;
                *out = Some(Written::new(value, written(raw.span(), name)));
            }
        }
        for (raw, name, out) in [
            (&raw.rise, "rise", &mut fields.rise),
            (&raw.fall, "fall", &mut fields.fall),
        ] {
            if let Some(raw) = raw {
                if !(1..=MAX_RISE_FALL).contains(raw.get_ref()) {
                    return Err(self.at(raw, field(name), format!("must be 1..={MAX_RISE_FALL}")));
                }
                *out = Some(Written::new(*raw.get_ref(), written(raw.span(), name)));
            }
        }
        if let Some(path) = &raw.path {
            let text = path.get_ref();
            if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.at(
                    path,
                    field("path"),
                    "must start with `/` and have no whitespace or control characters (percent-encode them)",
                ));
            }
            fields.path = Some(Written::new(text.clone(), written(path.span(), "path")));
        }
        if let Some(host) = &raw.host {
            let text = host.get_ref();
            if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(self.at(
                    host,
                    field("host"),
                    "must be a host name or address without whitespace or control characters",
                ));
            }
            fields.host = Some(Written::new(text.clone(), written(host.span(), "host")));
        }
        if let Some(status) = &raw.expect_status {
            if !(100..=599).contains(status.get_ref()) {
                return Err(self.at(status, field("expect_status"), "must be 100..=599"));
            }
            fields.expect_status = Some(Written::new(
                *status.get_ref(),
                written(status.span(), "expect_status"),
            ));
        }
        // An empty substring would match anything: leave it out instead.
        for (raw, name, out) in [
            (&raw.expect_body, "expect_body", &mut fields.expect_body),
            (&raw.expect, "expect", &mut fields.expect),
        ] {
            if let Some(raw) = raw {
                let text = raw.get_ref();
                if text.is_empty() || text.len() > MAX_EXPECT {
                    return Err(self.at(
                        raw,
                        field(name),
                        format!(
                            "must be 1..={MAX_EXPECT} bytes (leave it out to accept any answer)"
                        ),
                    ));
                }
                *out = Some(Written::new(text.clone(), written(raw.span(), name)));
            }
        }
        if let Some(send) = &raw.send {
            if send.get_ref().len() > MAX_UDP_PAYLOAD {
                return Err(self.at(
                    send,
                    field("send"),
                    format!("must be at most {MAX_UDP_PAYLOAD} bytes (one datagram)"),
                ));
            }
            fields.send = Some(Written::new(
                send.get_ref().clone(),
                written(send.span(), "send"),
            ));
        }
        if let Some(command) = &raw.command {
            fields.command = Some(Written::new(
                self.command(command, &field("command"))?,
                written(command.span(), "command"),
            ));
        }
        if let Some(sni) = &raw.sni {
            let text = sni.get_ref();
            server_name(text).map_err(|m| self.at(sni, field("sni"), m))?;
            fields.sni = Some(Written::new(text.clone(), written(sni.span(), "sni")));
        }
        if let Some(ca_file) = &raw.ca_file {
            let text = ca_file.get_ref();
            if !Path::new(text).is_absolute() || text.contains('\0') {
                return Err(self.at(ca_file, field("ca_file"), "must be an absolute path"));
            }
            fields.ca_file = Some(Written::new(
                text.clone(),
                written(ca_file.span(), "ca_file"),
            ));
        }
        if let Some(verify) = &raw.verify {
            fields.verify = Some(Written::new(
                *verify.get_ref(),
                written(verify.span(), "verify"),
            ));
        }
        Ok(fields)
    }

    /// Rejects fields that do not belong to the check's type.
    pub(super) fn check_applies(&self, fields: &CheckFields) -> Result<(), ConfigError> {
        fn at<T>(w: &Option<Written<T>>) -> Option<(usize, &str)> {
            w.as_ref().map(|w| (w.offset, w.field.as_str()))
        }
        const WEB: &[CheckType] = &[CheckType::Http, CheckType::Https];
        const HTTPS: &[CheckType] = &[CheckType::Https];
        const UDP: &[CheckType] = &[CheckType::Udp];
        const EXEC: &[CheckType] = &[CheckType::Exec];
        let check_type = fields.check_type();
        let specific = [
            ("path", WEB, at(&fields.path)),
            ("host", WEB, at(&fields.host)),
            ("expect_status", WEB, at(&fields.expect_status)),
            ("expect_body", WEB, at(&fields.expect_body)),
            ("sni", HTTPS, at(&fields.sni)),
            ("ca_file", HTTPS, at(&fields.ca_file)),
            ("verify", HTTPS, at(&fields.verify)),
            ("send", UDP, at(&fields.send)),
            ("expect", UDP, at(&fields.expect)),
            ("command", EXEC, at(&fields.command)),
        ];
        for (name, owners, written) in specific {
            if let (Some((offset, field)), false) = (written, owners.contains(&check_type)) {
                let of = match &fields.kind {
                    Some(kind) => format!("{} ({})", kind.value.name(), kind.field),
                    None => "tcp (the default)".to_owned(),
                };
                let owners: Vec<&str> = owners.iter().map(|t| t.name()).collect();
                return Err(self.error(
                    offset,
                    field,
                    format!(
                        "`{name}` only applies to {} checks; this check's type is {of}",
                        owners.join(" and ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `verify = false` accepts any certificate, which contradicts an `sni`
    /// or `ca_file` to verify it with. The error points at the one of the
    /// two written in the VIP's own check, else at `verify`; `for_vip`
    /// names the VIP when the field is not its own.
    fn verify_contradiction(
        &self,
        fields: &CheckFields,
        for_vip: impl Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        let Some(verify) = fields.verify.as_ref().filter(|v| !v.value) else {
            return Ok(());
        };
        let verifies = [
            ("sni", "names the server", &fields.sni),
            ("ca_file", "names the CAs", &fields.ca_file),
        ];
        let Some((name, purpose, other)) = verifies
            .into_iter()
            .find_map(|(name, purpose, w)| w.as_ref().map(|w| (name, purpose, w)))
        else {
            return Ok(());
        };
        Err(
            if for_vip(&other.field).is_empty() && !for_vip(&verify.field).is_empty() {
                self.error(
                    other.offset,
                    &other.field,
                    format!(
                        "`{name}` {purpose} the certificate is verified against, but verify = false ({}) accepts any certificate; leave one of them out",
                        verify.field
                    ),
                )
            } else {
                self.error(
                    verify.offset,
                    &verify.field,
                    format!(
                        "false accepts any certificate, but `{name}` ({}) {purpose} it is verified against; leave one of them out{}",
                        other.field,
                        for_vip(&verify.field)
                    ),
                )
            },
        )
    }

    /// The check of the VIP at `vip_path` from its merged fields.
    pub(super) fn check(
        &self,
        fields: CheckFields,
        vip_port: u16,
        vip_path: &str,
    ) -> Result<CheckConfig, ConfigError> {
        self.check_applies(&fields)?;
        // Where the problem is not written in this VIP, say which VIP has it.
        let for_vip = |field: &str| {
            if field.starts_with(&format!("{vip_path}.")) {
                String::new()
            } else {
                format!(" (for {vip_path})")
            }
        };
        let interval = fields
            .interval
            .as_ref()
            .map_or(DEFAULT_CHECK_INTERVAL, |w| w.value);
        let timeout = fields
            .timeout
            .as_ref()
            .map_or(DEFAULT_CHECK_TIMEOUT, |w| w.value);
        if timeout > interval {
            // Point at the more specific of the two; the defaults alone
            // are consistent, so at least one of them was written.
            let section =
                |w: &Written<Duration>| w.field.rsplit_once('.').map(|(s, _)| s.to_owned());
            let origin = |other: &Option<Written<Duration>>, this: &Written<Duration>| match other {
                None => " (default)".to_owned(),
                Some(o) if section(o) == section(this) => String::new(),
                Some(o) => format!(" ({})", o.field),
            };
            let rank = |w: &Written<Duration>| if for_vip(&w.field).is_empty() { 2 } else { 1 };
            return Err(match (&fields.timeout, &fields.interval) {
                (Some(t), Some(i)) if rank(i) > rank(t) => self.error(
                    i.offset,
                    &i.field,
                    format!(
                        "interval {} is shorter than the timeout {}{}, which must not exceed it{}",
                        format_duration(interval),
                        format_duration(timeout),
                        origin(&fields.timeout, i),
                        for_vip(&i.field),
                    ),
                ),
                (Some(t), _) => self.error(
                    t.offset,
                    &t.field,
                    format!(
                        "timeout {} must not exceed the interval {}{}{}",
                        format_duration(timeout),
                        format_duration(interval),
                        origin(&fields.interval, t),
                        for_vip(&t.field),
                    ),
                ),
                (None, Some(i)) => self.error(
                    i.offset,
                    &i.field,
                    format!(
                        "interval {} is shorter than the timeout {} (default), which must not exceed it{}",
                        format_duration(interval),
                        format_duration(timeout),
                        for_vip(&i.field),
                    ),
                ),
                (None, None) => unreachable!("the default timeout fits the default interval"),
            });
        }
        let kind = match fields.check_type() {
            CheckType::None => CheckKind::None,
            CheckType::Tcp => CheckKind::Tcp,
            CheckType::Http => CheckKind::Http {
                path: fields
                    .path
                    .map_or_else(|| DEFAULT_HTTP_PATH.to_owned(), |w| w.value),
                host: fields.host.map(|w| w.value),
                expect_status: fields
                    .expect_status
                    .map_or(DEFAULT_HTTP_STATUS, |w| w.value),
                expect_body: fields.expect_body.map(|w| w.value),
            },
            CheckType::Https => {
                self.verify_contradiction(&fields, for_vip)?;
                // A Host header `name` or `name:port` names the server too.
                let host_name = |host: &str| {
                    let name = match host.rsplit_once(':') {
                        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                        _ => host,
                    };
                    server_name(name).ok().map(str::to_owned)
                };
                let sni = match (fields.sni, &fields.host) {
                    (Some(sni), _) => Some(sni.value),
                    (None, Some(host)) => host_name(&host.value),
                    (None, None) => None,
                };
                CheckKind::Https {
                    path: fields
                        .path
                        .map_or_else(|| DEFAULT_HTTP_PATH.to_owned(), |w| w.value),
                    host: fields.host.map(|w| w.value),
                    expect_status: fields
                        .expect_status
                        .map_or(DEFAULT_HTTP_STATUS, |w| w.value),
                    expect_body: fields.expect_body.map(|w| w.value),
                    sni,
                    ca_file: fields.ca_file.map(|w| PathBuf::from(w.value)),
                    verify: fields.verify.is_none_or(|w| w.value),
                }
            }
            CheckType::Udp => CheckKind::Udp {
                send: fields.send.map(|w| w.value).unwrap_or_default(),
                expect: fields.expect.map(|w| w.value),
            },
            CheckType::Exec => match (fields.command, &fields.kind) {
                (Some(command), _) => CheckKind::Exec {
                    command: command.value,
                },
                (None, kind) => {
                    // `exec` was written somewhere: the default is tcp.
                    let (offset, field) = kind
                        .as_ref()
                        .map_or((0, "(document)"), |k| (k.offset, k.field.as_str()));
                    return Err(self.error(
                        offset,
                        field,
                        format!(
                            "an exec check needs `command`, e.g. command = [\"/usr/local/bin/check\", \"--quick\"]{}",
                            for_vip(field)
                        ),
                    ));
                }
            },
        };
        Ok(CheckConfig {
            kind,
            port: fields.port.map_or(vip_port, |w| w.value),
            interval,
            timeout,
            rise: fields.rise.map_or(DEFAULT_CHECK_RISE, |w| w.value),
            fall: fields.fall.map_or(DEFAULT_CHECK_FALL, |w| w.value),
        })
    }
}

/// Checks a server name for SNI: a DNS name (what rustls sends and verifies
/// certificates against), not an IP address.
fn server_name(text: &str) -> Result<&str, &'static str> {
    if text.parse::<IpAddr>().is_ok() {
        return Err(
            "must be a DNS name, not an IP address (leave it out to verify the certificate against the backend's address)",
        );
    }
    match DnsName::try_from(text) {
        Ok(_) => Ok(text),
        Err(_) => Err("must be a DNS name such as www.example.org"),
    }
}
