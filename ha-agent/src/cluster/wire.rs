//! Heartbeat wire format: a versioned binary frame authenticated with
//! HMAC-SHA256 under the cluster's shared key, the receiver's filters
//! (authentication, cluster id, own frames looped back, replay window) and
//! the key file loader. Pure: no sockets, no clock.
//!
//! # Frame, version 1
//!
//! All integers big-endian. `n` is the name's length, `c` the number of
//! claims.
//!
//! | offset        | size | field        | meaning                                          |
//! |---------------|------|--------------|--------------------------------------------------|
//! | 0             | 2    | magic        | `b"HA"`                                          |
//! | 2             | 1    | version      | `1` ([`VERSION`])                                |
//! | 3             | 1    | flags        | bit 0 eligible, bit 1 leaving, bit 2 standby; bits 3..=7 zero |
//! | 4             | 8    | cluster_id   | u64                                              |
//! | 12            | 8    | incarnation  | u64                                              |
//! | 20            | 8    | sequence     | u64                                              |
//! | 28            | 8    | sent_at_ms   | u64, sender's clock, ms since the UNIX epoch     |
//! | 36            | 1    | priority     | u8                                               |
//! | 37            | 1    | name length  | `n`, 1..=32 ([`MAX_NAME_LEN`])                   |
//! | 38            | n    | node name    | UTF-8                                            |
//! | 38 + n        | 2    | claims count | `c`, u16, at most 256 ([`MAX_CLAIMS`])           |
//! | 40 + n        | 2c   | claims       | u16 each: VIP group indices                      |
//! | 40 + n + 2c   | 32   | digest       | configuration/operator-state digest              |
//! | 72 + n + 2c   | 32   | tag          | HMAC-SHA256 over bytes `0 .. 72 + n + 2c`        |
//!
//! A frame is `104 + n + 2c` bytes: at least [`MIN_FRAME_LEN`] (105) and at
//! most [`MAX_FRAME_LEN`] (648), so it always fits one UDP datagram in one
//! Ethernet frame (1500-byte MTU less 48 bytes of IPv6 and UDP headers).
//!
//! # Receiving
//!
//! [`decode`] checks, in this order: length, magic (`Malformed`) and
//! version (`Version`); the tag over everything before it, in constant time
//! (`Unauthenticated`), before any variable-length field is looked at; the
//! cluster id (`ForeignCluster`); then the fields themselves (`Malformed`:
//! name length out of range or not UTF-8, claims count over the limit,
//! lengths that do not add up to the frame's, unknown flag bits). A new
//! meaning for a flag bit therefore needs a new version.
//!
//! [`Receiver`] runs [`decode`], drops our own frames looped back
//! (`FromSelf`: also what a second node configured with our name looks
//! like) and runs the [`ReplayGuard`] (`Replayed`), counting every rejection
//! by reason. The replay state only moves on authenticated frames.
//!
//! Every holder of the shared key can speak for every node: the tag proves
//! cluster membership, not which member sent the frame.
//!
//! # Sending
//!
//! [`Sender`] stamps cluster id, incarnation and the next sequence number
//! into each frame. Seal one frame per interval and send the same bytes to
//! every peer. The incarnation must grow across restarts of a node (for
//! example the wall-clock milliseconds at start, or a persisted counter):
//! peers drop every frame of an older incarnation than the newest they have
//! accepted from that node.
//!
//! # Key file
//!
//! [`load_key`] reads the shared key file: a regular file, not accessible to
//! group or others (`chmod 600`), of at least 32 bytes. Its bytes are used
//! as they are, a trailing newline included, and the HMAC key is the
//! SHA-256 of a fixed label followed by them (so `sha256sum` of the file
//! does not print the key), so any length from 32 bytes on works; every node needs a
//! byte-identical copy (e.g. `head -c 32 /dev/urandom > key`, then copy the
//! file rather than retyping it).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, bail};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::Heartbeat;

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"HA";
/// The frame version this module writes and reads.
pub const VERSION: u8 = 1;
/// Flags bit: the sender is eligible to own VIPs.
pub const FLAG_ELIGIBLE: u8 = 1 << 0;
/// Flags bit: the sender stops on purpose.
pub const FLAG_LEAVING: u8 = 1 << 1;
/// Flags bit: the sender is in standby (refuses ownership).
pub const FLAG_STANDBY: u8 = 1 << 2;
const FLAGS_KNOWN: u8 = FLAG_ELIGIBLE | FLAG_LEAVING | FLAG_STANDBY;

/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Most claims one frame carries.
pub const MAX_CLAIMS: usize = 256;
/// Length of the configuration digest.
pub const DIGEST_LEN: usize = 32;
/// Length of the HMAC-SHA256 tag.
pub const TAG_LEN: usize = 32;

const OFF_VERSION: usize = 2;
const OFF_FLAGS: usize = 3;
const OFF_CLUSTER_ID: usize = 4;
const OFF_INCARNATION: usize = 12;
const OFF_SEQUENCE: usize = 20;
const OFF_SENT_AT: usize = 28;
const OFF_PRIORITY: usize = 36;
const OFF_NAME_LEN: usize = 37;
const OFF_NAME: usize = 38;
/// Bytes of a frame besides the name and the claims.
const FIXED_LEN: usize = OFF_NAME + 2 + DIGEST_LEN + TAG_LEN;

/// Shortest valid frame: a one-byte name, no claims.
pub const MIN_FRAME_LEN: usize = FIXED_LEN + 1;
/// Longest valid frame: a 32-byte name, 256 claims.
pub const MAX_FRAME_LEN: usize = FIXED_LEN + MAX_NAME_LEN + 2 * MAX_CLAIMS;
const _: () = assert!(FIXED_LEN == 104 && MIN_FRAME_LEN == 105 && MAX_FRAME_LEN == 648);
// One datagram in one Ethernet frame, even over IPv6 (40 + 8 header bytes).
const _: () = assert!(MAX_FRAME_LEN + 48 <= 1500);

/// Shortest key file, in bytes.
pub const MIN_KEY_FILE_LEN: usize = 32;
/// Prefixed to the key file's contents before hashing them into the key.
const KEY_LABEL: &[u8] = b"ha heartbeat key v1\0";
/// Sequence numbers of one sender a receiver remembers below the highest.
pub const REPLAY_WINDOW: u64 = 64;

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Why a frame was dropped. Fieldless; `reason as usize` (= [`Reject::index`])
/// is its position in [`Reject::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Too short or long, bad magic, or (authenticated but) inconsistent fields.
    Malformed,
    /// Magic right, version not [`VERSION`].
    Version,
    /// The tag does not match: wrong key, forged or corrupted.
    Unauthenticated,
    /// Authenticated, but for another cluster id.
    ForeignCluster,
    /// Duplicate, older than the replay window, or an older incarnation.
    Replayed,
    /// Our own name: a frame of ours looped back (or a name clash).
    FromSelf,
}

impl Reject {
    /// Every reason, in declaration order.
    pub const ALL: [Reject; 6] = [
        Reject::Malformed,
        Reject::Version,
        Reject::Unauthenticated,
        Reject::ForeignCluster,
        Reject::Replayed,
        Reject::FromSelf,
    ];

    /// snake_case name, for logs and as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::Version => "version",
            Reject::Unauthenticated => "unauthenticated",
            Reject::ForeignCluster => "foreign_cluster",
            Reject::Replayed => "replayed",
            Reject::FromSelf => "from_self",
        }
    }

    /// Position in [`Reject::ALL`] (and in [`Receiver::rejected`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Reject {}

/// The cluster's shared HMAC key: SHA-256 of a fixed label and the key
/// file's bytes. Its
/// `Debug` prints `Key(..)`, never the bytes.
#[derive(Clone)]
pub struct Key([u8; 32]);

/// Key material that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key material is {len} bytes; at least {MIN_KEY_FILE_LEN} are required")]
    TooShort { len: usize },
}

impl Key {
    /// The key for `material` (a key file's bytes, as they are): SHA-256
    /// of [`KEY_LABEL`] and them. At least [`MIN_KEY_FILE_LEN`] bytes.
    pub fn from_bytes(material: &[u8]) -> Result<Key, KeyError> {
        if material.len() < MIN_KEY_FILE_LEN {
            return Err(KeyError::TooShort {
                len: material.len(),
            });
        }
        // Domain-separated, so `sha256sum` of the key file does not print
        // the HMAC key itself.
        Ok(Key(Sha256::new()
            .chain_update(KEY_LABEL)
            .chain_update(material)
            .finalize()
            .into()))
    }

    pub(crate) fn mac(&self) -> HmacSha256 {
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// Reads the shared key file at `path` (see the module doc): refuses
/// anything but a regular file, a file group or others may read or write
/// (`mode & 0o077 != 0`), and a file shorter than 32 bytes. The bytes are
/// used as they are (no newline is trimmed). Every error names the path.
pub fn load_key(path: &Path) -> anyhow::Result<Key> {
    let shown = path.display();
    let mut file =
        File::open(path).with_context(|| format!("cannot open heartbeat key file {shown}"))?;
    // The metadata of the file opened, not of whatever the path names now.
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat heartbeat key file {shown}"))?;
    if !meta.is_file() {
        bail!("heartbeat key file {shown} is not a regular file");
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        bail!(
            "heartbeat key file {shown} is mode {mode:04o}: group or others may access it; chmod 600 it"
        );
    }
    let mut material = Vec::new();
    file.read_to_end(&mut material)
        .with_context(|| format!("cannot read heartbeat key file {shown}"))?;
    Key::from_bytes(&material).map_err(|e| match e {
        KeyError::TooShort { len } => anyhow::anyhow!(
            "heartbeat key file {shown} is {len} bytes; at least {MIN_KEY_FILE_LEN} are required \
             (e.g. head -c 32 /dev/urandom > {shown})"
        ),
    })
}

/// The frame for `hb`, tagged with `key`. Senders use [`Sender::seal`],
/// which also numbers the frames.
///
/// # Panics
///
/// If `hb.node` is empty or longer than [`MAX_NAME_LEN`] bytes, or
/// `hb.claims` has more than [`MAX_CLAIMS`] entries: configuration
/// validation must rule these out.
pub fn encode(hb: &Heartbeat, key: &Key) -> Vec<u8> {
    write_frame(hb, hb.cluster_id, hb.incarnation, hb.sequence, key)
}

fn write_frame(
    hb: &Heartbeat,
    cluster_id: u64,
    incarnation: u64,
    sequence: u64,
    key: &Key,
) -> Vec<u8> {
    let name = hb.node.as_bytes();
    assert!(
        (1..=MAX_NAME_LEN).contains(&name.len()),
        "heartbeat node name {:?} is {} bytes; 1..={MAX_NAME_LEN} fit the frame",
        hb.node,
        name.len()
    );
    assert!(
        hb.claims.len() <= MAX_CLAIMS,
        "heartbeat claims {} groups; at most {MAX_CLAIMS} fit the frame",
        hb.claims.len()
    );
    let mut flags = 0;
    if hb.eligible {
        flags |= FLAG_ELIGIBLE;
    }
    if hb.leaving {
        flags |= FLAG_LEAVING;
    }
    if hb.standby {
        flags |= FLAG_STANDBY;
    }
    let mut f = Vec::with_capacity(FIXED_LEN + name.len() + 2 * hb.claims.len());
    f.extend_from_slice(&MAGIC);
    f.push(VERSION);
    f.push(flags);
    f.extend_from_slice(&cluster_id.to_be_bytes());
    f.extend_from_slice(&incarnation.to_be_bytes());
    f.extend_from_slice(&sequence.to_be_bytes());
    f.extend_from_slice(&hb.sent_at_ms.to_be_bytes());
    f.push(hb.priority);
    f.push(name.len() as u8);
    f.extend_from_slice(name);
    f.extend_from_slice(&(hb.claims.len() as u16).to_be_bytes());
    for claim in &hb.claims {
        f.extend_from_slice(&claim.to_be_bytes());
    }
    f.extend_from_slice(&hb.digest);
    let tag: [u8; TAG_LEN] = key.mac().chain_update(&f).finalize().into_bytes().into();
    f.extend_from_slice(&tag);
    debug_assert_eq!(f.len(), f.capacity());
    f
}

/// The heartbeat in `frame`, if it is well formed, tagged with `key` and of
/// cluster `cluster_id`. Checks in the order given in the module doc.
pub fn decode(frame: &[u8], key: &Key, cluster_id: u64) -> Result<Heartbeat, Reject> {
    if frame.len() <= OFF_FLAGS || frame[..2] != MAGIC {
        return Err(Reject::Malformed);
    }
    if frame[OFF_VERSION] != VERSION {
        return Err(Reject::Version);
    }
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
        return Err(Reject::Malformed);
    }
    let (body, tag) = frame.split_at(frame.len() - TAG_LEN);
    key.mac()
        .chain_update(body)
        .verify_slice(tag)
        .map_err(|_| Reject::Unauthenticated)?;

    // Authenticated. The fixed part is there (body >= MIN_FRAME_LEN - TAG_LEN).
    let u64_at = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    if u64_at(OFF_CLUSTER_ID) != cluster_id {
        return Err(Reject::ForeignCluster);
    }
    let flags = body[OFF_FLAGS];
    if flags & !FLAGS_KNOWN != 0 {
        return Err(Reject::Malformed);
    }
    let mut rest = Reader(&body[OFF_NAME_LEN..]);
    let name_len = usize::from(rest.u8()?);
    if !(1..=MAX_NAME_LEN).contains(&name_len) {
        return Err(Reject::Malformed);
    }
    let node = std::str::from_utf8(rest.take(name_len)?)
        .map_err(|_| Reject::Malformed)?
        .to_owned();
    let count = usize::from(rest.u16()?);
    if count > MAX_CLAIMS {
        return Err(Reject::Malformed);
    }
    let claims = rest
        .take(2 * count)?
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let digest = rest.take(DIGEST_LEN)?.try_into().expect("32 bytes");
    if !rest.0.is_empty() {
        return Err(Reject::Malformed);
    }
    Ok(Heartbeat {
        cluster_id,
        node,
        incarnation: u64_at(OFF_INCARNATION),
        sequence: u64_at(OFF_SEQUENCE),
        sent_at_ms: u64_at(OFF_SENT_AT),
        priority: body[OFF_PRIORITY],
        eligible: flags & FLAG_ELIGIBLE != 0,
        claims,
        leaving: flags & FLAG_LEAVING != 0,
        standby: flags & FLAG_STANDBY != 0,
        digest,
    })
}

/// Reads the variable part of an authenticated frame; running short is
/// `Malformed`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Reject> {
        if self.0.len() < n {
            return Err(Reject::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, Reject> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Reject> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

/// Anti-replay state of a receiver: per sender node, the newest incarnation
/// accepted, the highest sequence accepted in it and which of the
/// [`REPLAY_WINDOW`] sequences below that were accepted (a sliding bitmap,
/// as in IPsec). Frames reordered within the window are accepted once.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    peers: HashMap<String, Window>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    incarnation: u64,
    /// Highest sequence accepted in `incarnation`.
    top: u64,
    /// Bit `i` set: sequence `top - i` was accepted (bit 0 is `top`).
    seen: u64,
}

impl Window {
    fn new(incarnation: u64, sequence: u64) -> Window {
        Window {
            incarnation,
            top: sequence,
            seen: 1,
        }
    }
}

impl ReplayGuard {
    pub fn new() -> ReplayGuard {
        ReplayGuard::default()
    }

    /// Accepts (and records) sequence `sequence` of incarnation
    /// `incarnation` from `node`, or `Err(Reject::Replayed)` for an older
    /// incarnation, a sequence already accepted, or one [`REPLAY_WINDOW`] or
    /// more below the highest accepted. A newer incarnation (the sender
    /// restarted) starts a new window. Call only for authenticated frames.
    pub fn accept(&mut self, node: &str, incarnation: u64, sequence: u64) -> Result<(), Reject> {
        let Some(w) = self.peers.get_mut(node) else {
            self.peers
                .insert(node.to_owned(), Window::new(incarnation, sequence));
            return Ok(());
        };
        if incarnation < w.incarnation {
            return Err(Reject::Replayed);
        }
        if incarnation > w.incarnation {
            *w = Window::new(incarnation, sequence);
            return Ok(());
        }
        if sequence > w.top {
            let ahead = sequence - w.top;
            w.seen = if ahead >= REPLAY_WINDOW {
                0
            } else {
                w.seen << ahead
            } | 1;
            w.top = sequence;
            return Ok(());
        }
        let behind = w.top - sequence;
        if behind >= REPLAY_WINDOW || w.seen & (1 << behind) != 0 {
            return Err(Reject::Replayed);
        }
        w.seen |= 1 << behind;
        Ok(())
    }
}

/// The receiving end: [`decode`], then own frames out (`FromSelf`), then
/// the [`ReplayGuard`]; every rejection counted by reason.
#[derive(Debug)]
pub struct Receiver {
    key: Key,
    cluster_id: u64,
    me: String,
    replay: ReplayGuard,
    /// Frames rejected, by reason; index = [`Reject::index`].
    pub rejected: [u64; 6],
    /// Frames accepted.
    pub accepted: u64,
}

impl Receiver {
    /// A receiver for node `me` of cluster `cluster_id`.
    pub fn new(key: Key, cluster_id: u64, me: impl Into<String>) -> Receiver {
        Receiver {
            key,
            cluster_id,
            me: me.into(),
            replay: ReplayGuard::new(),
            rejected: [0; 6],
            accepted: 0,
        }
    }

    /// The heartbeat in `frame`, or why it was dropped (and counted).
    pub fn receive(&mut self, frame: &[u8]) -> Result<Heartbeat, Reject> {
        let result = self.check(frame);
        match &result {
            Ok(_) => self.accepted += 1,
            Err(reason) => self.rejected[reason.index()] += 1,
        }
        result
    }

    fn check(&mut self, frame: &[u8]) -> Result<Heartbeat, Reject> {
        let hb = decode(frame, &self.key, self.cluster_id)?;
        if hb.node == self.me {
            return Err(Reject::FromSelf);
        }
        self.replay.accept(&hb.node, hb.incarnation, hb.sequence)?;
        Ok(hb)
    }
}

/// The sending end: numbers and seals this node's heartbeats.
#[derive(Debug)]
pub struct Sender {
    key: Key,
    cluster_id: u64,
    incarnation: u64,
    /// Sequence of the last frame sealed; 0 before the first.
    sequence: u64,
}

impl Sender {
    /// A sender for one run of the agent: `incarnation` must be higher than
    /// that of any earlier run of this node (see the module doc).
    pub fn new(key: Key, cluster_id: u64, incarnation: u64) -> Sender {
        Sender {
            key,
            cluster_id,
            incarnation,
            sequence: 0,
        }
    }

    /// The next frame: `hb` with this sender's cluster id, incarnation and
    /// the next sequence number (1 for the first frame) in place of its
    /// own. Seal once per interval and send the same bytes to every peer.
    ///
    /// # Panics
    ///
    /// As [`encode`].
    pub fn seal(&mut self, hb: &Heartbeat) -> Vec<u8> {
        self.sequence += 1;
        write_frame(
            hb,
            self.cluster_id,
            self.incarnation,
            self.sequence,
            &self.key,
        )
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Sequence of the last frame sealed; 0 before the first.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const CLUSTER: u64 = 0x0123_4567_89ab_cdef;

    fn key() -> Key {
        Key::from_bytes(b"0123456789abcdef0123456789abcdef\n").unwrap()
    }

    fn full() -> Heartbeat {
        Heartbeat {
            cluster_id: CLUSTER,
            node: "lb-2.example".to_owned(),
            incarnation: 1_700_000_000_123,
            sequence: 42,
            sent_at_ms: 1_700_000_012_345,
            priority: 200,
            eligible: true,
            claims: vec![0, 3, 65535],
            leaving: true,
            standby: true,
            digest: std::array::from_fn(|i| i as u8 ^ 0xa5),
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `body` (a frame without its tag) with a valid tag under `key()`.
    fn tagged(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        let tag: [u8; 32] = key()
            .mac()
            .chain_update(body)
            .finalize()
            .into_bytes()
            .into();
        f.extend_from_slice(&tag);
        f
    }

    fn body(frame: &[u8]) -> Vec<u8> {
        frame[..frame.len() - TAG_LEN].to_vec()
    }

    #[test]
    fn wire_round_trip_full_heartbeat() {
        let hb = full();
        let frame = encode(&hb, &key());
        assert_eq!(frame.len(), 104 + hb.node.len() + 2 * hb.claims.len());
        assert_eq!(decode(&frame, &key(), CLUSTER), Ok(hb));
    }

    #[test]
    fn wire_round_trip_extremes_and_sizes() {
        let mut hb = full();
        for (eligible, leaving, standby) in [(false, false, false), (true, false, false)] {
            hb.eligible = eligible;
            hb.leaving = leaving;
            hb.standby = standby;
            hb.node = "a".to_owned();
            hb.claims.clear();
            let frame = encode(&hb, &key());
            assert_eq!(frame.len(), MIN_FRAME_LEN);
            assert_eq!(decode(&frame, &key(), CLUSTER).as_ref(), Ok(&hb));
        }
        hb.node = "é".repeat(16); // 32 bytes of UTF-8
        hb.claims = (0..MAX_CLAIMS as u16)
            .map(|i| i.wrapping_mul(257))
            .collect();
        hb.sequence = u64::MAX;
        hb.priority = u8::MAX;
        let frame = encode(&hb, &key());
        assert_eq!(frame.len(), MAX_FRAME_LEN);
        assert_eq!(decode(&frame, &key(), CLUSTER), Ok(hb));
    }

    /// Pins the byte layout and the tag (computed independently with
    /// Python's hmac/hashlib over the same bytes).
    #[test]
    fn wire_golden_frame() {
        let frame = encode(&full(), &key());
        let expected_body = concat!(
            "4841",             // magic
            "01",               // version
            "07",               // flags
            "0123456789abcdef", // cluster id
            "0000018bcfe5687b", // incarnation
            "000000000000002a", // sequence
            "0000018bcfe59839", // sent_at_ms
            "c8",               // priority
            "0c",               // name length
            "6c622d322e6578616d706c65",
            "0003",
            "00000003ffff",
            "a5a4a7a6a1a0a3a2adacafaea9a8abaab5b4b7b6b1b0b3b2bdbcbfbeb9b8bbba",
        );
        assert_eq!(hex(&body(&frame)), expected_body);
        assert_eq!(
            hex(&frame[frame.len() - TAG_LEN..]),
            "76dd35f21591e3c1687109fd2b115ef36e59b66e4d8efdc5979a32e13607060a"
        );
    }

    #[test]
    fn wire_every_bit_flip_rejected() {
        let frame = encode(&full(), &key());
        for bit in 0..frame.len() * 8 {
            let mut bad = frame.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let got = decode(&bad, &key(), CLUSTER);
            let want = match bit / 8 {
                0 | 1 => Reject::Malformed,
                OFF_VERSION => Reject::Version,
                _ => Reject::Unauthenticated,
            };
            assert_eq!(got, Err(want), "bit {bit} flipped");
        }
    }

    #[test]
    fn wire_truncated_at_every_length_rejected() {
        let frame = encode(&full(), &key());
        for len in 0..frame.len() {
            let got = decode(&frame[..len], &key(), CLUSTER);
            let want = if len <= OFF_FLAGS || len < MIN_FRAME_LEN {
                Reject::Malformed
            } else {
                Reject::Unauthenticated
            };
            assert_eq!(got, Err(want), "truncated to {len} bytes");
        }
        // Bytes appended: the tag is read from the wrong place.
        let mut long = frame.clone();
        long.push(0);
        assert_eq!(decode(&long, &key(), CLUSTER), Err(Reject::Unauthenticated));
        // Longer than any valid frame: dropped before the HMAC.
        let mut huge = frame;
        huge.resize(MAX_FRAME_LEN + 1, 0);
        assert_eq!(decode(&huge, &key(), CLUSTER), Err(Reject::Malformed));
    }

    #[test]
    fn wire_wrong_key_rejected() {
        let frame = encode(&full(), &key());
        let other = Key::from_bytes(b"0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(
            decode(&frame, &other, CLUSTER),
            Err(Reject::Unauthenticated)
        );
        // Authentication comes before the cluster id.
        assert_eq!(
            decode(&frame, &other, CLUSTER + 1),
            Err(Reject::Unauthenticated)
        );
    }

    #[test]
    fn wire_foreign_cluster_rejected_after_auth() {
        let frame = encode(&full(), &key());
        assert_eq!(
            decode(&frame, &key(), CLUSTER + 1),
            Err(Reject::ForeignCluster)
        );
    }

    #[test]
    fn wire_version_checked_before_auth_and_length() {
        let mut frame = encode(&full(), &key());
        frame[OFF_VERSION] = 2;
        assert_eq!(decode(&frame, &key(), CLUSTER), Err(Reject::Version));
        assert_eq!(decode(b"HA\x02\x00", &key(), CLUSTER), Err(Reject::Version));
        assert_eq!(
            decode(b"HA\x01\x00", &key(), CLUSTER),
            Err(Reject::Malformed)
        );
        assert_eq!(
            decode(b"XA\x01\x00", &key(), CLUSTER),
            Err(Reject::Malformed)
        );
    }

    /// Authenticated but inconsistent frames (a buggy or malicious key
    /// holder) are Malformed, not accepted and not a panic.
    #[test]
    fn wire_authenticated_garbage_is_malformed() {
        let good = body(&encode(&full(), &key()));
        let name_end = OFF_NAME + "lb-2.example".len();
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

        let mut b = good.clone();
        b[OFF_FLAGS] |= 0x08;
        cases.push(("unknown flag bit", b));

        let mut b = good.clone();
        b[OFF_NAME] = 0xff;
        cases.push(("name not UTF-8", b));

        let mut b = good.clone();
        b[OFF_NAME_LEN] = 0;
        cases.push(("empty name", b));

        let mut b = good.clone();
        b[OFF_NAME_LEN] = 33; // and 33 bytes of name: otherwise consistent
        b.splice(name_end..name_end, [b'x'; 21]);
        cases.push(("name too long", b));

        let mut b = good.clone();
        b[OFF_NAME_LEN] += 1;
        cases.push(("name length past its bytes", b));

        let mut b = good.clone();
        b[name_end..name_end + 2].copy_from_slice(&4u16.to_be_bytes());
        cases.push(("claims count past the data", b));

        let mut b = good.clone();
        b[name_end..name_end + 2].copy_from_slice(&2u16.to_be_bytes());
        cases.push(("claims count short: trailing bytes", b));

        let mut b = good[..name_end].to_vec();
        b.extend_from_slice(&257u16.to_be_bytes());
        b.extend(std::iter::repeat_n(0, 2 * 257 + DIGEST_LEN));
        assert!(b.len() + TAG_LEN <= MAX_FRAME_LEN);
        cases.push(("too many claims", b));

        let mut b = good.clone();
        b.push(0);
        cases.push(("trailing byte", b));

        let mut b = good;
        b.pop();
        cases.push(("digest short", b));

        for (what, body) in cases {
            let frame = tagged(&body);
            assert_eq!(
                decode(&frame, &key(), CLUSTER),
                Err(Reject::Malformed),
                "{what}"
            );
        }
    }

    #[test]
    fn replay_duplicate_rejected() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.accept("b", 1, 10), Ok(()));
        assert_eq!(g.accept("b", 1, 10), Err(Reject::Replayed));
        assert_eq!(g.accept("b", 1, 11), Ok(()));
        assert_eq!(g.accept("b", 1, 11), Err(Reject::Replayed));
        assert_eq!(g.accept("b", 1, 10), Err(Reject::Replayed));
        // Per node: another sender's numbers are its own.
        assert_eq!(g.accept("c", 1, 10), Ok(()));
    }

    #[test]
    fn replay_reordered_within_window_accepted_once() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.accept("b", 1, 100), Ok(()));
        assert_eq!(g.accept("b", 1, 105), Ok(()));
        for seq in [103, 101, 104, 102] {
            assert_eq!(g.accept("b", 1, seq), Ok(()), "{seq}");
        }
        for seq in 100..=105 {
            assert_eq!(g.accept("b", 1, seq), Err(Reject::Replayed), "{seq}");
        }
        // The oldest sequence the window still holds.
        assert_eq!(g.accept("b", 1, 105 - (REPLAY_WINDOW - 1)), Ok(()));
        // Sliding keeps the bits of what was seen.
        assert_eq!(g.accept("b", 1, 110), Ok(()));
        for seq in 100..=105 {
            assert_eq!(g.accept("b", 1, seq), Err(Reject::Replayed), "{seq}");
        }
        for seq in 106..110 {
            assert_eq!(g.accept("b", 1, seq), Ok(()), "{seq}");
        }
    }

    #[test]
    fn replay_older_than_window_rejected() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.accept("b", 1, 1000), Ok(()));
        assert_eq!(
            g.accept("b", 1, 1000 - REPLAY_WINDOW),
            Err(Reject::Replayed)
        );
        assert_eq!(g.accept("b", 1, 0), Err(Reject::Replayed));
        // A jump of a whole window or more forgets everything below.
        assert_eq!(g.accept("b", 1, 1000 + REPLAY_WINDOW), Ok(()));
        assert_eq!(g.accept("b", 1, 1000), Err(Reject::Replayed));
        assert_eq!(g.accept("b", 1, 1001), Ok(()));
        assert_eq!(g.accept("b", 1, u64::MAX), Ok(()));
        assert_eq!(g.accept("b", 1, u64::MAX), Err(Reject::Replayed));
    }

    #[test]
    fn replay_new_incarnation_resets_window() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.accept("b", 5, 1_000_000), Ok(()));
        // Restarted: numbering starts over.
        assert_eq!(g.accept("b", 6, 1), Ok(()));
        assert_eq!(g.accept("b", 6, 1), Err(Reject::Replayed));
        assert_eq!(g.accept("b", 6, 2), Ok(()));
        // The old run's frames are replays now, however high their sequence.
        assert_eq!(g.accept("b", 5, 1_000_001), Err(Reject::Replayed));
    }

    #[test]
    fn replay_older_incarnation_rejected() {
        let mut g = ReplayGuard::new();
        assert_eq!(g.accept("b", 7, 3), Ok(()));
        assert_eq!(g.accept("b", 6, 4), Err(Reject::Replayed));
        assert_eq!(g.accept("b", 0, u64::MAX), Err(Reject::Replayed));
        assert_eq!(g.accept("b", 7, 4), Ok(()));
    }

    #[test]
    fn receiver_rejects_from_self() {
        let mut me = Sender::new(key(), CLUSTER, 1);
        let frame = me.seal(&full());
        let mut rx = Receiver::new(key(), CLUSTER, "lb-2.example");
        assert_eq!(rx.receive(&frame), Err(Reject::FromSelf));
        let mut other = Receiver::new(key(), CLUSTER, "lb-1.example");
        assert!(other.receive(&frame).is_ok());
    }

    #[test]
    fn receiver_counts_each_reason() {
        let mut tx = Sender::new(key(), CLUSTER, 9);
        let mut rx = Receiver::new(key(), CLUSTER, "me");
        let f1 = tx.seal(&full());
        let f2 = tx.seal(&full());
        let mut own = full();
        own.node = "me".to_owned();
        let own = tx.seal(&own);
        let mut versioned = f1.clone();
        versioned[OFF_VERSION] = 9;
        let mut forged = f1.clone();
        forged[OFF_PRIORITY] ^= 1;
        let foreign = Sender::new(key(), CLUSTER + 1, 9).seal(&full());

        assert_eq!(rx.receive(&f2).map(|hb| hb.sequence), Ok(2));
        assert_eq!(rx.receive(&f1).map(|hb| hb.sequence), Ok(1)); // reordered
        let rejections = [
            (&f1[..3], Reject::Malformed),
            (&versioned[..], Reject::Version),
            (&forged[..], Reject::Unauthenticated),
            (&forged[..], Reject::Unauthenticated),
            (&foreign[..], Reject::ForeignCluster),
            (&f1[..], Reject::Replayed),
            (&f2[..], Reject::Replayed),
            (&f2[..], Reject::Replayed),
            (&own[..], Reject::FromSelf),
        ];
        for (frame, reason) in rejections {
            assert_eq!(rx.receive(frame), Err(reason));
        }
        assert_eq!(rx.accepted, 2);
        assert_eq!(rx.rejected, [1, 1, 2, 1, 3, 1]);
        for (i, reason) in Reject::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
        let names: Vec<_> = Reject::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "malformed",
                "version",
                "unauthenticated",
                "foreign_cluster",
                "replayed",
                "from_self"
            ]
        );
    }

    #[test]
    fn sender_stamps_cluster_incarnation_and_sequence() {
        let mut tx = Sender::new(key(), CLUSTER, 77);
        let mut hb = full();
        hb.cluster_id = 1;
        hb.incarnation = 2;
        hb.sequence = 3;
        assert_eq!(tx.sequence(), 0);
        for want in 1..=3 {
            let got = decode(&tx.seal(&hb), &key(), CLUSTER).unwrap();
            assert_eq!(
                (got.cluster_id, got.incarnation, got.sequence),
                (CLUSTER, 77, want)
            );
            assert_eq!(got.node, hb.node);
            assert_eq!(got.claims, hb.claims);
        }
        assert_eq!((tx.incarnation(), tx.sequence()), (77, 3));
    }

    #[test]
    #[should_panic(expected = "1..=32")]
    fn encode_refuses_long_name() {
        let mut hb = full();
        hb.node = "x".repeat(33);
        encode(&hb, &key());
    }

    static SERIAL: AtomicUsize = AtomicUsize::new(0);

    /// A key file in the temp dir, removed on drop.
    struct TempKey(PathBuf);

    impl TempKey {
        fn new(contents: &[u8], mode: u32) -> TempKey {
            let path = std::env::temp_dir().join(format!(
                "ha-wire-test-{}-{}.key",
                std::process::id(),
                SERIAL.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .unwrap();
            f.write_all(contents).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            TempKey(path)
        }
    }

    impl Drop for TempKey {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    const MATERIAL: &[u8] = b"0123456789abcdef0123456789abcdef\n";

    #[test]
    fn key_file_mode_0600_ok() {
        let file = TempKey::new(MATERIAL, 0o600);
        let loaded = load_key(&file.0).unwrap();
        assert_eq!(loaded.0, key().0);
        let file = TempKey::new(MATERIAL, 0o400);
        assert_eq!(load_key(&file.0).unwrap().0, key().0);
    }

    #[test]
    fn key_file_group_or_world_access_refused() {
        for (mode, shown) in [
            (0o640, "0640"),
            (0o604, "0604"),
            (0o620, "0620"),
            (0o644, "0644"),
        ] {
            let file = TempKey::new(MATERIAL, mode);
            let err = format!("{:#}", load_key(&file.0).unwrap_err());
            assert!(err.contains(&file.0.display().to_string()), "{err}");
            assert!(err.contains(&format!("mode {shown}")), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
        }
    }

    #[test]
    fn key_file_short_refused() {
        let file = TempKey::new(&MATERIAL[..31], 0o600);
        let err = format!("{}", load_key(&file.0).unwrap_err());
        assert!(err.contains(&file.0.display().to_string()), "{err}");
        assert!(err.contains("31 bytes"), "{err}");
        let file = TempKey::new(b"", 0o600);
        assert!(load_key(&file.0).is_err());
        assert_eq!(
            Key::from_bytes(&[0; 31]).unwrap_err(),
            KeyError::TooShort { len: 31 }
        );
        assert!(Key::from_bytes(&[0; 32]).is_ok());
    }

    #[test]
    fn key_file_missing_or_not_a_file_refused() {
        let path =
            std::env::temp_dir().join(format!("ha-wire-test-{}-missing.key", std::process::id()));
        let err = format!("{:#}", load_key(&path).unwrap_err());
        assert!(err.contains(&path.display().to_string()), "{err}");
        let dir = std::env::temp_dir();
        let err = format!("{:#}", load_key(&dir).unwrap_err());
        assert!(err.contains(&dir.display().to_string()), "{err}");
    }

    #[test]
    fn key_derivation_golden() {
        // SHA-256 of the label followed by the 33 bytes
        // "0123456789abcdef0123456789abcdef\n" (computed with Python's
        // hashlib): the newline is part of the key material.
        assert_eq!(
            hex(&key().0),
            "76ad9c91c2492a526e4d2e9a526258aad61576b69dc37930990de196e1696bc5"
        );
        assert_ne!(
            key().0,
            Key::from_bytes(&MATERIAL[..32]).unwrap().0,
            "no trimming"
        );
        assert_eq!(format!("{:?}", key()), "Key(..)");
    }
}
