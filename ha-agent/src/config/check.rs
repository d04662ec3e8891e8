//! Health checks as configured: the fields of a `[health]`, `[vip.check]`
//! or `[[cluster.track]]` check table, each validated on its own, then
//! merged (`[health]` gives defaults to every VIP's check) and turned into
//! a [`CheckConfig`] whose fields all belong to its type.

use std::ops::Range;
use std::time::Duration;

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
        let kind = or(local.kind, &self.kind);
        let same_type = kind.as_ref().map_or(CheckType::Tcp, |k| k.value) == self.check_type();
        let specific = |local: Option<Written<String>>, global: &Option<Written<String>>| {
            if same_type { or(local, global) } else { local }
        };
        CheckFields {
            kind,
            port: or(local.port, &self.port),
            interval: or(local.interval, &self.interval),
            timeout: or(local.timeout, &self.timeout),
            rise: or(local.rise, &self.rise),
            fall: or(local.fall, &self.fall),
            path: specific(local.path, &self.path),
            host: specific(local.host, &self.host),
            expect_status: if same_type {
                or(local.expect_status, &self.expect_status)
            } else {
                local.expect_status
            },
            expect_body: specific(local.expect_body, &self.expect_body),
            send: specific(local.send, &self.send),
            expect: specific(local.expect, &self.expect),
            command: if same_type {
                or(local.command, &self.command)
            } else {
                local.command
            },
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
        Ok(fields)
    }

    /// Rejects fields that do not belong to the check's type.
    pub(super) fn check_applies(&self, fields: &CheckFields) -> Result<(), ConfigError> {
        fn at<T>(w: &Option<Written<T>>) -> Option<(usize, &str)> {
            w.as_ref().map(|w| (w.offset, w.field.as_str()))
        }
        let check_type = fields.check_type();
        let specific = [
            ("path", CheckType::Http, at(&fields.path)),
            ("host", CheckType::Http, at(&fields.host)),
            ("expect_status", CheckType::Http, at(&fields.expect_status)),
            ("expect_body", CheckType::Http, at(&fields.expect_body)),
            ("send", CheckType::Udp, at(&fields.send)),
            ("expect", CheckType::Udp, at(&fields.expect)),
            ("command", CheckType::Exec, at(&fields.command)),
        ];
        for (name, owner, written) in specific {
            if let (Some((offset, field)), true) = (written, owner != check_type) {
                let of = match &fields.kind {
                    Some(kind) => format!("{} ({})", kind.value.name(), kind.field),
                    None => "tcp (the default)".to_owned(),
                };
                return Err(self.error(
                    offset,
                    field,
                    format!(
                        "`{name}` only applies to {} checks; this check's type is {of}",
                        owner.name()
                    ),
                ));
            }
        }
        Ok(())
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
