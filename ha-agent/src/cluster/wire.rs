//! Heartbeat wire format: a versioned binary frame authenticated with
//! HMAC-SHA256 under the cluster's shared key, the receiver's filters
//! (authentication, cluster id, own frames looped back, replay window) and
//! the key file loader. Pure: no sockets, no clock.
//!
//! # Frame, version 2
//!
//! All integers big-endian. `n` is the name's length.
//!
//! | offset | size | field        | meaning                                          |
//! |--------|------|--------------|--------------------------------------------------|
//! | 0      | 2    | magic        | `b"HA"`                                          |
//! | 2      | 1    | version      | `2` ([`VERSION`])                                |
//! | 3      | 1    | flags        | bit 0 eligible, bit 1 leaving, bit 2 standby; bits 3..=7 zero |
//! | 4      | 8    | cluster_id   | u64                                              |
//! | 12     | 8    | incarnation  | u64                                              |
//! | 20     | 8    | sequence     | u64                                              |
//! | 28     | 8    | sent_at_us   | u64, µs on the sender's monotonic clock; only the sender interprets it |
//! | 36     | 1    | priority     | u8                                               |
//! | 37     | 1    | name length  | `n`, 1..=32 ([`MAX_NAME_LEN`])                   |
//! | 38     | n    | node name    | UTF-8                                            |
//! |        |      | claims       | group set: the groups the sender owns            |
//! |        |      | bids         | group set: the groups it means to take           |
//! |        | 1    | report count | `r`, at most 15 ([`MAX_REPORTS`])                |
//! |        |      | reports      | `r` peer reports, below                          |
//! |        | 32   | digest       | configuration/operator-state digest              |
//! |        | 32   | tag          | HMAC-SHA256 over every byte before it            |
//!
//! A *group set* is a length byte `k`, 0..=8, then `k` bytes: bit `j`
//! (least significant first) of byte `i` is VIP group `8i + j`, so groups
//! 0..64 ([`MAX_GROUPS`]); the last byte is not zero (one encoding per
//! set). A bitmap keeps the worst frame small: every peer's report carries
//! two sets.
//!
//! A *peer report* (what the sender last accepted from one peer it
//! considers UP) is:
//!
//! | size | field       | meaning                                                 |
//! |------|-------------|---------------------------------------------------------|
//! | 1    | name length | `m`, 1..=32                                             |
//! | m    | node name   | UTF-8; never the sender's, never twice in one frame     |
//! | 8    | incarnation | of that peer's newest frame                             |
//! | 8    | sequence    | of that frame                                           |
//! | 4    | age_us      | u32, µs from receiving it to sending this one (saturating) |
//! | 8    | echo_us     | that frame's `sent_at_us`                               |
//! | 1    | priority    | that frame's priority                                   |
//! |      | claims      | group set: that frame's claims                          |
//! |      | bids        | group set: that frame's bids                            |
//!
//! A frame is at least [`MIN_FRAME_LEN`] (106) bytes (one-byte name, empty
//! sets, no reports) and at most [`MAX_FRAME_LEN`] (1353: 32-byte names,
//! full sets, 15 reports), so it always fits one UDP datagram in one
//! Ethernet frame (1500-byte MTU less 48 bytes of IPv6 and UDP headers).
//! Settled, a 3-node cluster with 4 groups and 3-byte names sends frames
//! of 180 bytes.
//!
//! # Receiving
//!
//! [`decode`] checks, in this order: length, magic (`Malformed`) and
//! version (`Version`); the tag over everything before it, in constant time
//! (`Unauthenticated`), before any variable-length field is looked at; the
//! cluster id (`ForeignCluster`); then the fields themselves (`Malformed`:
//! a name length out of range or a name not UTF-8, a group set longer than
//! 8 bytes or ending in a zero byte, more than 15 reports, a report about
//! the sender or a second one about the same node, lengths that do not add
//! up to the frame's, unknown flag bits). A new meaning for a flag bit
//! therefore needs a new version.
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

use super::{Heartbeat, PeerReport};

/// First two bytes of every frame.
pub const MAGIC: [u8; 2] = *b"HA";
/// The frame version this module writes and reads.
pub const VERSION: u8 = 2;
/// Flags bit: the sender is eligible to own VIPs.
pub const FLAG_ELIGIBLE: u8 = 1 << 0;
/// Flags bit: the sender stops on purpose.
pub const FLAG_LEAVING: u8 = 1 << 1;
/// Flags bit: the sender is in standby (refuses ownership).
pub const FLAG_STANDBY: u8 = 1 << 2;
const FLAGS_KNOWN: u8 = FLAG_ELIGIBLE | FLAG_LEAVING | FLAG_STANDBY;

/// Longest node name, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Groups a group set can name: `0..MAX_GROUPS`.
pub const MAX_GROUPS: usize = 64;
const SET_BYTES: usize = MAX_GROUPS / 8;
/// Most peer reports one frame carries: one per peer of a cluster of the
/// largest size the configuration allows.
pub const MAX_REPORTS: usize = 15;
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
/// Bytes of a frame besides the name, the group sets' contents and the
/// reports: the header, two set lengths, the report count, digest and tag.
const FIXED_LEN: usize = OFF_NAME + 2 + 1 + DIGEST_LEN + TAG_LEN;
/// Bytes of a report besides its name and its sets' contents.
const REPORT_FIXED_LEN: usize = 1 + 8 + 8 + 4 + 8 + 1 + 2;
const MAX_REPORT_LEN: usize = REPORT_FIXED_LEN + MAX_NAME_LEN + 2 * SET_BYTES;

/// Shortest valid frame: a one-byte name, empty sets, no reports.
pub const MIN_FRAME_LEN: usize = FIXED_LEN + 1;
/// Longest valid frame: 32-byte names, full sets, [`MAX_REPORTS`] reports.
pub const MAX_FRAME_LEN: usize =
    FIXED_LEN + MAX_NAME_LEN + 2 * SET_BYTES + MAX_REPORTS * MAX_REPORT_LEN;
const _: () = assert!(FIXED_LEN == 105 && MIN_FRAME_LEN == 106 && MAX_FRAME_LEN == 1353);
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
/// If a name (the sender's or a report's) is empty or longer than
/// [`MAX_NAME_LEN`] bytes, a group is [`MAX_GROUPS`] or more, there are more
/// than [`MAX_REPORTS`] reports, or a report names the sender or a node
/// already reported: configuration validation and the state machine rule
/// these out.
pub fn encode(hb: &Heartbeat, key: &Key) -> Vec<u8> {
    write_frame(hb, hb.cluster_id, hb.incarnation, hb.sequence, key)
}

/// The length of `hb`'s frame.
pub fn frame_len(hb: &Heartbeat) -> usize {
    // The length bytes of the sets are in the fixed lengths.
    let set = |groups: &[u16]| set_bytes(groups).len() - 1;
    FIXED_LEN
        + hb.node.len()
        + set(&hb.claims)
        + set(&hb.bids)
        + hb.peers
            .iter()
            .map(|r| REPORT_FIXED_LEN + r.node.len() + set(&r.claims) + set(&r.bids))
            .sum::<usize>()
}

fn write_frame(
    hb: &Heartbeat,
    cluster_id: u64,
    incarnation: u64,
    sequence: u64,
    key: &Key,
) -> Vec<u8> {
    assert!(
        hb.peers.len() <= MAX_REPORTS,
        "heartbeat reports {} peers; at most {MAX_REPORTS} fit the frame",
        hb.peers.len()
    );
    for (i, r) in hb.peers.iter().enumerate() {
        assert!(
            r.node != hb.node && hb.peers[..i].iter().all(|o| o.node != r.node),
            "heartbeat of {:?} reports {:?} twice or about itself",
            hb.node,
            r.node
        );
    }
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
    let mut f = Vec::with_capacity(frame_len(hb));
    f.extend_from_slice(&MAGIC);
    f.push(VERSION);
    f.push(flags);
    f.extend_from_slice(&cluster_id.to_be_bytes());
    f.extend_from_slice(&incarnation.to_be_bytes());
    f.extend_from_slice(&sequence.to_be_bytes());
    f.extend_from_slice(&hb.sent_at_us.to_be_bytes());
    f.push(hb.priority);
    put_name(&mut f, &hb.node);
    put_set(&mut f, &hb.claims);
    put_set(&mut f, &hb.bids);
    f.push(hb.peers.len() as u8);
    for r in &hb.peers {
        put_name(&mut f, &r.node);
        f.extend_from_slice(&r.incarnation.to_be_bytes());
        f.extend_from_slice(&r.sequence.to_be_bytes());
        f.extend_from_slice(&r.age_us.to_be_bytes());
        f.extend_from_slice(&r.echo_us.to_be_bytes());
        f.push(r.priority);
        put_set(&mut f, &r.claims);
        put_set(&mut f, &r.bids);
    }
    f.extend_from_slice(&hb.digest);
    let tag: [u8; TAG_LEN] = key.mac().chain_update(&f).finalize().into_bytes().into();
    f.extend_from_slice(&tag);
    debug_assert_eq!(f.len(), f.capacity());
    f
}

fn put_name(f: &mut Vec<u8>, name: &str) {
    assert!(
        (1..=MAX_NAME_LEN).contains(&name.len()),
        "heartbeat node name {name:?} is {} bytes; 1..={MAX_NAME_LEN} fit the frame",
        name.len()
    );
    f.push(name.len() as u8);
    f.extend_from_slice(name.as_bytes());
}

/// A group set's bytes: the length byte, then the bitmap up to its last
/// non-zero byte.
fn set_bytes(groups: &[u16]) -> Vec<u8> {
    let mut bits = 0u64;
    for &g in groups {
        assert!(
            usize::from(g) < MAX_GROUPS,
            "heartbeat names group {g}; groups 0..{MAX_GROUPS} fit the frame"
        );
        bits |= 1 << g;
    }
    let len = (u64::BITS - bits.leading_zeros()).div_ceil(8) as usize;
    let mut out = vec![len as u8];
    out.extend_from_slice(&bits.to_le_bytes()[..len]);
    out
}

fn put_set(f: &mut Vec<u8>, groups: &[u16]) {
    f.extend_from_slice(&set_bytes(groups));
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
    let node = rest.name()?;
    let claims = rest.set()?;
    let bids = rest.set()?;
    let count = usize::from(rest.u8()?);
    if count > MAX_REPORTS {
        return Err(Reject::Malformed);
    }
    let mut peers: Vec<PeerReport> = Vec::with_capacity(count);
    for _ in 0..count {
        let name = rest.name()?;
        if name == node || peers.iter().any(|r| r.node == name) {
            return Err(Reject::Malformed);
        }
        peers.push(PeerReport {
            node: name,
            incarnation: rest.u64()?,
            sequence: rest.u64()?,
            age_us: rest.u32()?,
            echo_us: rest.u64()?,
            priority: rest.u8()?,
            claims: rest.set()?,
            bids: rest.set()?,
        });
    }
    let digest = rest.take(DIGEST_LEN)?.try_into().expect("32 bytes");
    if !rest.0.is_empty() {
        return Err(Reject::Malformed);
    }
    Ok(Heartbeat {
        cluster_id,
        node,
        incarnation: u64_at(OFF_INCARNATION),
        sequence: u64_at(OFF_SEQUENCE),
        sent_at_us: u64_at(OFF_SENT_AT),
        priority: body[OFF_PRIORITY],
        eligible: flags & FLAG_ELIGIBLE != 0,
        claims,
        bids,
        leaving: flags & FLAG_LEAVING != 0,
        standby: flags & FLAG_STANDBY != 0,
        peers,
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

    fn u32(&mut self) -> Result<u32, Reject> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, Reject> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// A length byte (1..=[`MAX_NAME_LEN`]) and that many bytes of UTF-8.
    fn name(&mut self) -> Result<String, Reject> {
        let len = usize::from(self.u8()?);
        if !(1..=MAX_NAME_LEN).contains(&len) {
            return Err(Reject::Malformed);
        }
        std::str::from_utf8(self.take(len)?)
            .map(str::to_owned)
            .map_err(|_| Reject::Malformed)
    }

    /// A group set (see the module doc), as ascending group indices.
    fn set(&mut self) -> Result<Vec<u16>, Reject> {
        let len = usize::from(self.u8()?);
        if len > SET_BYTES {
            return Err(Reject::Malformed);
        }
        let bytes = self.take(len)?;
        if bytes.last() == Some(&0) {
            return Err(Reject::Malformed);
        }
        let mut bits = [0; 8];
        bits[..len].copy_from_slice(bytes);
        let bits = u64::from_le_bytes(bits);
        Ok((0..MAX_GROUPS as u16)
            .filter(|&g| bits & (1 << g) != 0)
            .collect())
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
            sent_at_us: 12_345_678,
            priority: 200,
            eligible: true,
            claims: vec![0, 3, 63],
            bids: vec![9],
            leaving: true,
            standby: true,
            peers: vec![
                PeerReport {
                    node: "lb-1.example".to_owned(),
                    incarnation: 1_700_000_000_001,
                    sequence: 7,
                    age_us: 1234,
                    echo_us: 9_876_543,
                    priority: 100,
                    claims: vec![1],
                    bids: vec![],
                },
                PeerReport {
                    node: "lb-3".to_owned(),
                    incarnation: 5,
                    sequence: u64::MAX,
                    age_us: u32::MAX,
                    echo_us: 0,
                    priority: 0,
                    claims: vec![],
                    bids: vec![0, 8],
                },
            ],
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
        assert_eq!(frame.len(), 210);
        assert_eq!(frame.len(), frame_len(&hb));
        assert_eq!(decode(&frame, &key(), CLUSTER), Ok(hb));
    }

    /// A report of `name` (of `len` bytes) with every field at its widest.
    fn widest_report(name: String) -> PeerReport {
        PeerReport {
            node: name,
            incarnation: u64::MAX,
            sequence: u64::MAX,
            age_us: u32::MAX,
            echo_us: u64::MAX,
            priority: u8::MAX,
            claims: (0..MAX_GROUPS as u16).collect(),
            bids: (0..MAX_GROUPS as u16).collect(),
        }
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
            hb.bids.clear();
            hb.peers.clear();
            let frame = encode(&hb, &key());
            assert_eq!(frame.len(), MIN_FRAME_LEN);
            assert_eq!(decode(&frame, &key(), CLUSTER).as_ref(), Ok(&hb));
        }
        hb.node = "é".repeat(16); // 32 bytes of UTF-8
        hb.claims = (0..MAX_GROUPS as u16).collect();
        hb.bids = hb.claims.clone();
        hb.peers = (0..MAX_REPORTS)
            .map(|i| widest_report(format!("{i:0>32}")))
            .collect();
        hb.sequence = u64::MAX;
        hb.sent_at_us = u64::MAX;
        hb.priority = u8::MAX;
        let frame = encode(&hb, &key());
        assert_eq!(frame.len(), MAX_FRAME_LEN);
        assert_eq!(decode(&frame, &key(), CLUSTER), Ok(hb));
    }

    /// A group set's bitmap ends at its highest group, and every set of
    /// groups decodes to itself, ascending.
    #[test]
    fn wire_group_sets() {
        assert_eq!(set_bytes(&[]), [0]);
        assert_eq!(set_bytes(&[0]), [1, 0x01]);
        assert_eq!(set_bytes(&[7, 8]), [2, 0x80, 0x01]);
        assert_eq!(set_bytes(&[63]), [8, 0, 0, 0, 0, 0, 0, 0, 0x80]);
        let mut hb = full();
        for groups in [vec![], vec![5], vec![1, 2, 3, 62], vec![8, 16, 24, 32, 40]] {
            hb.claims = groups.clone();
            hb.bids = groups.iter().map(|g| 63 - g).rev().collect();
            hb.peers[0].claims = groups.clone();
            let got = decode(&encode(&hb, &key()), &key(), CLUSTER).unwrap();
            assert_eq!(got, hb, "{groups:?}");
        }
    }

    /// Pins the byte layout and the tag (computed independently with
    /// Python's hmac/hashlib over the same bytes, built from the module
    /// doc's table).
    #[test]
    fn wire_golden_frame() {
        let frame = encode(&full(), &key());
        let expected_body = concat!(
            "4841",                       // magic
            "02",                         // version
            "07",                         // flags
            "0123456789abcdef",           // cluster id
            "0000018bcfe5687b",           // incarnation
            "000000000000002a",           // sequence
            "0000000000bc614e",           // sent_at_us
            "c8",                         // priority
            "0c6c622d322e6578616d706c65", // name
            "080900000000000080",         // claims 0, 3, 63
            "020002",                     // bids 9
            "02",                         // 2 reports
            "0c6c622d312e6578616d706c65", // report: name
            "0000018bcfe56801",           // incarnation
            "0000000000000007",           // sequence
            "000004d2",                   // age_us
            "000000000096b43f",           // echo_us
            "64",                         // priority
            "0102",                       // claims 1
            "00",                         // no bids
            "046c622d33",                 // report: name
            "0000000000000005",           // incarnation
            "ffffffffffffffff",           // sequence
            "ffffffff",                   // age_us
            "0000000000000000",           // echo_us
            "00",                         // priority
            "00",                         // no claims
            "020101",                     // bids 0, 8
            "a5a4a7a6a1a0a3a2adacafaea9a8abaab5b4b7b6b1b0b3b2bdbcbfbeb9b8bbba",
        );
        assert_eq!(hex(&body(&frame)), expected_body);
        assert_eq!(
            hex(&frame[frame.len() - TAG_LEN..]),
            "a8950bcce58961c80fb38743edc1692f6a8d32f0cb9d6ceb4ca4ad9114d551fb"
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
        frame[OFF_VERSION] = 1;
        assert_eq!(decode(&frame, &key(), CLUSTER), Err(Reject::Version));
        assert_eq!(decode(b"HA\x01\x00", &key(), CLUSTER), Err(Reject::Version));
        assert_eq!(decode(b"HA\x03\x00", &key(), CLUSTER), Err(Reject::Version));
        assert_eq!(
            decode(b"HA\x02\x00", &key(), CLUSTER),
            Err(Reject::Malformed)
        );
        assert_eq!(
            decode(b"XA\x02\x00", &key(), CLUSTER),
            Err(Reject::Malformed)
        );
    }

    /// A report of `name` with zero numbers and empty sets.
    fn raw_report(name: &[u8]) -> Vec<u8> {
        let mut r = vec![name.len() as u8];
        r.extend_from_slice(name);
        r.extend_from_slice(&[0; REPORT_FIXED_LEN - 1]);
        r
    }

    /// Authenticated but inconsistent frames (a buggy or malicious key
    /// holder) are Malformed, not accepted and not a panic.
    #[test]
    fn wire_authenticated_garbage_is_malformed() {
        let good = body(&encode(&full(), &key()));
        let name_end = OFF_NAME + "lb-2.example".len();
        let bids_at = name_end + 1 + 8; // after the claims: 0, 3, 63
        let count_at = bids_at + 1 + 2; // after the bids: 9
        let digest = &good[good.len() - DIGEST_LEN..];
        let with_reports = |count: u8, reports: &[Vec<u8>]| {
            let mut b = good[..count_at].to_vec();
            b.push(count);
            reports.iter().for_each(|r| b.extend_from_slice(r));
            b.extend_from_slice(digest);
            b
        };
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
        b[name_end] = 9; // and a ninth byte: otherwise consistent
        b.insert(bids_at, 1);
        cases.push(("group set longer than 8 bytes", b));

        let mut b = good.clone();
        b[bids_at] = 3;
        b.insert(count_at, 0);
        cases.push(("group set ending in a zero byte", b));

        let mut b = good.clone();
        b[bids_at] = 8;
        cases.push(("group set past the data", b));

        let mut b = good.clone();
        b[count_at] = 3;
        cases.push(("report count past the data", b));

        let mut b = good.clone();
        b[count_at] = 1;
        cases.push(("report count short: trailing bytes", b));

        let many: Vec<Vec<u8>> = (b'a'..=b'p').map(|n| raw_report(&[n])).collect();
        let b = with_reports(16, &many);
        assert!(b.len() + TAG_LEN <= MAX_FRAME_LEN);
        cases.push(("16 reports", b));

        cases.push(("report about the sender", {
            with_reports(1, &[raw_report(b"lb-2.example")])
        }));
        cases.push(("two reports about one node", {
            with_reports(2, &[raw_report(b"x"), raw_report(b"x")])
        }));
        cases.push(("report name empty", with_reports(1, &[raw_report(b"")])));
        cases.push(("report name not UTF-8", {
            with_reports(1, &[raw_report(b"\xff")])
        }));
        cases.push(("report name too long", {
            with_reports(1, &[raw_report(&[b'x'; 33])])
        }));

        let mut b = good.clone();
        b.push(0);
        cases.push(("trailing byte", b));

        let mut b = good.clone();
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
        // The report builder itself makes valid reports.
        let fine = with_reports(2, &[raw_report(b"x"), raw_report(b"y")]);
        assert!(decode(&tagged(&fine), &key(), CLUSTER).is_ok());
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

    #[test]
    #[should_panic(expected = "groups 0..64")]
    fn encode_refuses_group_64() {
        let mut hb = full();
        hb.peers[1].bids.push(64);
        encode(&hb, &key());
    }

    #[test]
    #[should_panic(expected = "twice or about itself")]
    fn encode_refuses_a_report_about_the_sender() {
        let mut hb = full();
        hb.peers[0].node = hb.node.clone();
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
