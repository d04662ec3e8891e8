//! `ha-lab-server`: a backend server as a real process, so a lab test can
//! kill it with SIGKILL like a crashed service.
//!
//! Usage: `ha-lab-server --name NAME --port PORT [--udp]`
//!
//! TCP: listens on `[::]:PORT` dual-stack (IPV6_V6ONLY off, so IPv4 too:
//! the host's own addresses and any VIP on `lo`); answers each connection
//! with `NAME\n`, then echoes every byte until EOF and closes. One thread per
//! connection. With `--udp` it also answers each datagram on `[::]:PORT`
//! with `NAME:<payload>`, sent from the address the datagram was sent to (a
//! VIP included, for direct server return). Prints `ready` once listening.

use std::{
    io::{self, Read, Write},
    mem,
    net::{TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    process::ExitCode,
    sync::Arc,
    thread,
    time::Duration,
};

/// Stack of a connection thread: it only copies bytes.
const CONNECTION_STACK: usize = 64 * 1024;
/// Largest datagram answered, the name prefix included.
const MAX_DATAGRAM: usize = 65_536;

const USAGE: &str = "usage: ha-lab-server --name NAME --port PORT [--udp]";

struct Args {
    name: String,
    port: u16,
    udp: bool,
}

fn parse_args() -> Result<Args, String> {
    let (mut name, mut port, mut udp) = (None, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--name" => name = Some(args.next().ok_or("--name needs a value")?),
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                port = Some(
                    value
                        .parse::<u16>()
                        .map_err(|e| format!("bad --port {value:?}: {e}"))?,
                );
            }
            "--udp" => udp = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let name = name.ok_or("--name is required")?;
    if name.is_empty() || name.contains('\n') {
        return Err(format!("bad --name {name:?}"));
    }
    Ok(Args {
        name,
        port: port.ok_or("--port is required")?,
        udp,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ha-lab-server: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ha-lab-server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Args) -> io::Result<()> {
    let name: Arc<str> = args.name.into();
    let listener = tcp_listener(args.port)
        .map_err(|e| io::Error::new(e.kind(), format!("tcp [::]:{}: {e}", args.port)))?;
    let udp = if args.udp {
        Some(
            udp_socket(args.port)
                .map_err(|e| io::Error::new(e.kind(), format!("udp [::]:{}: {e}", args.port)))?,
        )
    } else {
        None
    };
    if let Some(socket) = udp {
        let name = name.clone();
        thread::Builder::new()
            .name("udp".into())
            .spawn(move || udp_echo(&socket, &name))?;
    }
    {
        let mut out = io::stdout().lock();
        writeln!(out, "ready")?;
        out.flush()?;
    }
    loop {
        match listener.accept() {
            Ok((conn, _)) => {
                let name = name.clone();
                let spawned = thread::Builder::new()
                    .stack_size(CONNECTION_STACK)
                    .spawn(move || tcp_echo(conn, &name));
                if let Err(e) = spawned {
                    eprintln!("ha-lab-server: no thread for a connection: {e}");
                }
            }
            Err(e) => {
                // Out of descriptors or an aborted handshake: go on.
                eprintln!("ha-lab-server: accept: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// One connection: the name line, then an echo of everything until EOF.
fn tcp_echo(mut conn: TcpStream, name: &str) {
    let _ = conn.set_nodelay(true);
    if conn.write_all(format!("{name}\n").as_bytes()).is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A socket of `kind` on `[::]:port` that takes IPv4 as well.
fn dual_stack_socket(kind: libc::c_int, port: u16) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET6, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(fd.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 0)?;
    set_option(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    // SAFETY: all-zero is a valid sockaddr_in6 (the unspecified address).
    let mut addr: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    addr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    addr.sin6_port = port.to_be();
    // SAFETY: a valid sockaddr_in6 and its size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const addr).cast(),
            size_of_val(&addr) as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn set_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: an int option and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of_val(&value) as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn tcp_listener(port: u16) -> io::Result<TcpListener> {
    let fd = dual_stack_socket(libc::SOCK_STREAM, port)?;
    // SAFETY: listen(2) on our bound socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 4096) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// A UDP socket that reports each datagram's destination address (IPv4 as
/// IP_PKTINFO, IPv6 as IPV6_PKTINFO), so the answer can leave from it.
fn udp_socket(port: u16) -> io::Result<OwnedFd> {
    let fd = dual_stack_socket(libc::SOCK_DGRAM, port)?;
    set_option(
        fd.as_raw_fd(),
        libc::IPPROTO_IPV6,
        libc::IPV6_RECVPKTINFO,
        1,
    )?;
    set_option(fd.as_raw_fd(), libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
    Ok(fd)
}

/// Where a datagram was sent to: the source of its answer.
#[derive(Clone, Copy)]
enum Local {
    V4(libc::in_addr),
    V6(libc::in6_addr),
}

/// Room for the control messages of a datagram: an IPv4 one on this IPv6
/// socket comes with both IPV6_PKTINFO (v4-mapped) and IP_PKTINFO.
#[repr(C, align(8))]
struct ControlBuffer([u8; 128]);

fn udp_echo(socket: &OwnedFd, name: &str) {
    let prefix = format!("{name}:");
    let mut reply = vec![0u8; MAX_DATAGRAM];
    reply[..prefix.len()].copy_from_slice(prefix.as_bytes());
    let mut payload = vec![0u8; MAX_DATAGRAM - prefix.len()];
    loop {
        match receive(socket, &mut payload) {
            Ok((n, peer, local)) => {
                let len = prefix.len() + n;
                reply[prefix.len()..len].copy_from_slice(&payload[..n]);
                if let Err(e) = send(socket, &reply[..len], &peer, local) {
                    eprintln!("ha-lab-server: udp send: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("ha-lab-server: udp receive: {e}");
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn receive(
    socket: &OwnedFd,
    buf: &mut [u8],
) -> io::Result<(usize, libc::sockaddr_in6, Option<Local>)> {
    // SAFETY: all-zero is a valid sockaddr_in6 and msghdr.
    let mut peer: libc::sockaddr_in6 = unsafe { mem::zeroed() };
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: as above, all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&raw mut peer).cast();
    msg.msg_namelen = size_of_val(&peer) as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len();
    // SAFETY: every pointer in `msg` points to live buffers of the given sizes.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut local = None;
    // SAFETY: the CMSG_* walk stays within the control buffer the kernel
    // filled (msg_controllen); data is read unaligned.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            match ((*cmsg).cmsg_level, (*cmsg).cmsg_type) {
                (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                    let info: libc::in_pktinfo = data.cast::<libc::in_pktinfo>().read_unaligned();
                    local = Some(Local::V4(info.ipi_addr));
                }
                (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if local.is_none() => {
                    let info: libc::in6_pktinfo = data.cast::<libc::in6_pktinfo>().read_unaligned();
                    local = Some(Local::V6(info.ipi6_addr));
                }
                _ => {}
            }
            cmsg = libc::CMSG_NXTHDR(&raw const msg, cmsg);
        }
    }
    Ok((n as usize, peer, local))
}

fn send(
    socket: &OwnedFd,
    data: &[u8],
    peer: &libc::sockaddr_in6,
    local: Option<Local>,
) -> io::Result<()> {
    let mut control = ControlBuffer([0; 128]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: all-zero is a valid msghdr.
    // SAFETY: as above, all-zero is a valid msghdr.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_name = (&raw const *peer).cast_mut().cast();
    msg.msg_namelen = size_of_val(peer) as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if let Some(local) = local {
        let (level, kind, len) = match local {
            Local::V4(_) => (
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                size_of::<libc::in_pktinfo>(),
            ),
            Local::V6(_) => (
                libc::IPPROTO_IPV6,
                libc::IPV6_PKTINFO,
                size_of::<libc::in6_pktinfo>(),
            ),
        };
        // SAFETY: CMSG_SPACE/LEN are pure arithmetic; the header and its data
        // fit in the 128-byte, 8-aligned buffer (at most 16 + 20 bytes).
        unsafe {
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(len as u32) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
            (*cmsg).cmsg_level = level;
            (*cmsg).cmsg_type = kind;
            (*cmsg).cmsg_len = libc::CMSG_LEN(len as u32) as _;
            let out = libc::CMSG_DATA(cmsg);
            match local {
                Local::V4(addr) => {
                    out.cast::<libc::in_pktinfo>()
                        .write_unaligned(libc::in_pktinfo {
                            ipi_ifindex: 0,
                            ipi_spec_dst: addr,
                            ipi_addr: libc::in_addr { s_addr: 0 },
                        })
                }
                Local::V6(addr) => {
                    out.cast::<libc::in6_pktinfo>()
                        .write_unaligned(libc::in6_pktinfo {
                            ipi6_addr: addr,
                            ipi6_ifindex: 0,
                        })
                }
            }
        }
    }
    // SAFETY: every pointer in `msg` points to live buffers of the given sizes.
    let n = unsafe { libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
