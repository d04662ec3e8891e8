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
//! like), checks that a new incarnation is live (`Unproven`, below) and
//! runs the [`ReplayGuard`] (`Replayed`), counting every rejection by
//! reason. The replay state only moves on authenticated frames.
//!
//! ## New incarnations
//!
//! The replay window only knows the incarnations it has heard. A receiver
//! that restarted (or a peer that restarted meanwhile) meets incarnations
//! it has no window for, and a recording of an earlier life of a peer,
//! replayed then, would pass it: a dead peer would look alive, and its
//! claims would block the takeover, for as long as the recording lasts.
//! So a frame of an incarnation of its sender that this receiver has not
//! accepted yet is taken only with proof that the sender runs now; else it
//! is dropped as `Unproven`. Either
//!
//! - it reports this node's own incarnation with an echo sent less than
//!   `dead_after` ago: the sender heard this life of ours, which began
//!   after any recording made before it; or
//! - its incarnation (the sender's start, ms since the epoch) is at most
//!   `dead_after` older than this node's: the sender started about when
//!   this node did, or later, so no recording of it predates this node's
//!   start by more than `dead_after`.
//!
//! Of two nodes the later started passes the second test, and a node
//! answers a peer's new life at once, so the other passes the first one
//! round trip later: nobody waits on anybody. A peer that started earlier
//! and does not hear us (a one-way link) stays unproven here; its claims
//! still arrive in the reports of the peers that hear it. What remains:
//! frames sent during this node's current life that it never received can
//! arrive late, each once and in order, as any delayed frame.
//!
//! A frame of a lower incarnation than the one heard live (or of one the
//! receiver gave up, below) is a replay of an earlier life, except from a
//! peer silent for `dead_after` and with the first proof (a fresh echo of
//! this life): that is the peer restarted with its clock stepped back and
//! its incarnation file lost. Its old window is then forgotten and the old
//! incarnation given up: no frame of it or below it counts again, unless
//! it happens once more the same way. So a peer that restarted like that
//! is heard again after `dead_after`, not dropped until this node restarts.
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
//! accepted from that node (until it has been silent for `dead_after`, see
//! Receiving).
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
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::codec::{BufExt, Codec, DecodeError};
use super::{Heartbeat, NodeName, PeerReport};

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

// Offsets of the fixed fields (the module doc's table).
const OFF_VERSION: usize = MAGIC.len();
const OFF_FLAGS: usize = OFF_VERSION + 1;
const OFF_CLUSTER_ID: usize = OFF_FLAGS + 1;
const OFF_INCARNATION: usize = OFF_CLUSTER_ID + 8;
const OFF_SEQUENCE: usize = OFF_INCARNATION + 8;
const OFF_SENT_AT: usize = OFF_SEQUENCE + 8;
const OFF_PRIORITY: usize = OFF_SENT_AT + 8;
const OFF_NAME_LEN: usize = OFF_PRIORITY + 1;
const OFF_NAME: usize = OFF_NAME_LEN + 1;
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

/// Why a frame was dropped: the `reason` label of the drop counters.
/// Fieldless; `reason as usize` (= [`DropReason::index`]) is its position
/// in [`DropReason::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
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
    /// Authentic, but of an incarnation of its sender this node has not
    /// heard live and cannot tell from a recording (see [`Receiver`]).
    Unproven,
    /// A shared health view that changes the sender's view again within a
    /// heartbeat interval (never a heartbeat).
    RateLimited,
}

impl DropReason {
    /// Every reason, in declaration order.
    pub const ALL: [DropReason; 8] = [
        DropReason::Malformed,
        DropReason::Version,
        DropReason::Unauthenticated,
        DropReason::ForeignCluster,
        DropReason::Replayed,
        DropReason::FromSelf,
        DropReason::Unproven,
        DropReason::RateLimited,
    ];

    /// snake_case name, for logs and as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Version => "version",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::ForeignCluster => "foreign_cluster",
            DropReason::Replayed => "replayed",
            DropReason::FromSelf => "from_self",
            DropReason::Unproven => "unproven",
            DropReason::RateLimited => "rate_limited",
        }
    }

    /// Position in [`DropReason::ALL`] (and in [`Receiver::rejected`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for DropReason {}

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

    /// Appends the tag: HMAC-SHA256 over every byte of `frame` so far.
    pub(crate) fn append_tag(&self, frame: &mut Vec<u8>) {
        let tag = self.mac().chain_update(&*frame).finalize().into_bytes();
        frame.put_slice(&tag);
    }

    /// The bytes before `frame`'s tag (its last [`TAG_LEN`] bytes), if the
    /// tag is theirs; compared in constant time. Nothing in them has been
    /// looked at.
    pub(crate) fn verified_body<'a>(&self, frame: &'a [u8]) -> Result<&'a [u8], DropReason> {
        let Some(body_len) = frame.len().checked_sub(TAG_LEN) else {
            return Err(DropReason::Malformed);
        };
        let (body, tag) = frame.split_at(body_len);
        self.mac()
            .chain_update(body)
            .verify_slice(tag)
            .map_err(|_| DropReason::Unauthenticated)?;
        Ok(body)
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
    let mut frame = Vec::with_capacity(frame_len(hb));
    hb.encode(&mut frame);
    key.append_tag(&mut frame);
    debug_assert_eq!(frame.len(), frame_len(hb));
    frame
}

/// The length of `hb`'s frame.
pub fn frame_len(hb: &Heartbeat) -> usize {
    // The length bytes of the sets are in the fixed lengths.
    let set = |groups: &[u16]| GroupSet::of(groups).bitmap_len();
    FIXED_LEN
        + hb.node.len()
        + set(&hb.claims)
        + set(&hb.bids)
        + hb.peers
            .iter()
            .map(|r| REPORT_FIXED_LEN + r.node.len() + set(&r.claims) + set(&r.bids))
            .sum::<usize>()
}

/// The heartbeat in `frame`, if it is well formed, tagged with `key` and of
/// cluster `cluster_id`. Checks in the order given in the module doc.
pub fn decode(frame: &[u8], key: &Key, cluster_id: u64) -> Result<Heartbeat, DropReason> {
    if frame.len() <= OFF_FLAGS || frame[..2] != MAGIC {
        return Err(DropReason::Malformed);
    }
    if frame[OFF_VERSION] != VERSION {
        return Err(DropReason::Version);
    }
    if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
        return Err(DropReason::Malformed);
    }
    let body = key.verified_body(frame)?;
    // Authenticated. The cluster id is there (body >= MIN_FRAME_LEN - TAG_LEN).
    if u64::decode(&mut &body[OFF_CLUSTER_ID..])? != cluster_id {
        return Err(DropReason::ForeignCluster);
    }
    let mut rest = body;
    let hb = Heartbeat::decode(&mut rest)?;
    if rest.has_remaining() {
        return Err(DropReason::Malformed);
    }
    Ok(hb)
}

impl From<DecodeError> for DropReason {
    fn from(_: DecodeError) -> DropReason {
        DropReason::Malformed
    }
}

/// A frame's bytes before the tag (the module doc's table). Decoding checks
/// every field but the cluster id, which [`decode`] checks first.
impl Codec for Heartbeat {
    fn decode<B: Buf>(buf: &mut B) -> Result<Heartbeat, DecodeError> {
        if buf.get::<[u8; 2]>()? != MAGIC || buf.get::<u8>()? != VERSION {
            return Err(DecodeError);
        }
        let flags = buf.get::<u8>()?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(DecodeError);
        }
        let cluster_id = buf.get()?;
        let incarnation = buf.get()?;
        let sequence = buf.get()?;
        let sent_at_us = buf.get()?;
        let priority = buf.get()?;
        let node: NodeName = buf.get()?;
        let claims = buf.get::<GroupSet>()?.groups();
        let bids = buf.get::<GroupSet>()?.groups();
        let count = usize::from(buf.get::<u8>()?);
        if count > MAX_REPORTS {
            return Err(DecodeError);
        }
        let mut peers: Vec<PeerReport> = Vec::with_capacity(count);
        for _ in 0..count {
            let report = buf.get::<PeerReport>()?;
            if report.node == node || peers.iter().any(|r| r.node == report.node) {
                return Err(DecodeError);
            }
            peers.push(report);
        }
        Ok(Heartbeat {
            cluster_id,
            node,
            incarnation,
            sequence,
            sent_at_us,
            priority,
            eligible: flags & FLAG_ELIGIBLE != 0,
            claims,
            bids,
            leaving: flags & FLAG_LEAVING != 0,
            standby: flags & FLAG_STANDBY != 0,
            peers,
            digest: buf.get()?,
        })
    }

    /// # Panics
    ///
    /// As [`encode`].
    fn encode<B: BufMut>(&self, buf: &mut B) {
        assert!(
            self.peers.len() <= MAX_REPORTS,
            "heartbeat reports {} peers; at most {MAX_REPORTS} fit the frame",
            self.peers.len()
        );
        for (i, r) in self.peers.iter().enumerate() {
            assert!(
                r.node != self.node && self.peers[..i].iter().all(|o| o.node != r.node),
                "heartbeat of {:?} reports {:?} twice or about itself",
                self.node,
                r.node
            );
        }
        let mut flags = 0;
        if self.eligible {
            flags |= FLAG_ELIGIBLE;
        }
        if self.leaving {
            flags |= FLAG_LEAVING;
        }
        if self.standby {
            flags |= FLAG_STANDBY;
        }
        MAGIC.encode(buf);
        VERSION.encode(buf);
        flags.encode(buf);
        self.cluster_id.encode(buf);
        self.incarnation.encode(buf);
        self.sequence.encode(buf);
        self.sent_at_us.encode(buf);
        self.priority.encode(buf);
        self.node.encode(buf);
        GroupSet::of(&self.claims).encode(buf);
        GroupSet::of(&self.bids).encode(buf);
        (self.peers.len() as u8).encode(buf);
        for r in &self.peers {
            r.encode(buf);
        }
        self.digest.encode(buf);
    }
}

/// A peer report (the module doc's second table).
impl Codec for PeerReport {
    fn decode<B: Buf>(buf: &mut B) -> Result<PeerReport, DecodeError> {
        Ok(PeerReport {
            node: buf.get()?,
            incarnation: buf.get()?,
            sequence: buf.get()?,
            age_us: buf.get()?,
            echo_us: buf.get()?,
            priority: buf.get()?,
            claims: buf.get::<GroupSet>()?.groups(),
            bids: buf.get::<GroupSet>()?.groups(),
        })
    }

    /// # Panics
    ///
    /// As [`encode`].
    fn encode<B: BufMut>(&self, buf: &mut B) {
        self.node.encode(buf);
        self.incarnation.encode(buf);
        self.sequence.encode(buf);
        self.age_us.encode(buf);
        self.echo_us.encode(buf);
        self.priority.encode(buf);
        GroupSet::of(&self.claims).encode(buf);
        GroupSet::of(&self.bids).encode(buf);
    }
}

/// A node name: a length byte (1..=[`MAX_NAME_LEN`]) and that many bytes
/// of UTF-8.
impl Codec for NodeName {
    fn decode<B: Buf>(buf: &mut B) -> Result<NodeName, DecodeError> {
        let len = usize::from(buf.get::<u8>()?);
        if !(1..=MAX_NAME_LEN).contains(&len) {
            return Err(DecodeError);
        }
        let mut name = vec![0; len];
        buf.try_copy_to_slice(&mut name)?;
        String::from_utf8(name).map_err(|_| DecodeError)
    }

    /// # Panics
    ///
    /// If the name is empty or longer than [`MAX_NAME_LEN`] bytes.
    fn encode<B: BufMut>(&self, buf: &mut B) {
        assert!(
            (1..=MAX_NAME_LEN).contains(&self.len()),
            "heartbeat node name {self:?} is {} bytes; 1..={MAX_NAME_LEN} fit the frame",
            self.len()
        );
        (self.len() as u8).encode(buf);
        buf.put_slice(self.as_bytes());
    }
}

/// A group set (see the module doc): bit `g` is group `g`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GroupSet(u64);

impl GroupSet {
    /// # Panics
    ///
    /// If a group is [`MAX_GROUPS`] or more.
    fn of(groups: &[u16]) -> GroupSet {
        let mut bits = 0u64;
        for &g in groups {
            assert!(
                usize::from(g) < MAX_GROUPS,
                "heartbeat names group {g}; groups 0..{MAX_GROUPS} fit the frame"
            );
            bits |= 1 << g;
        }
        GroupSet(bits)
    }

    /// The groups, ascending.
    fn groups(self) -> Vec<u16> {
        (0..MAX_GROUPS as u16)
            .filter(|&g| self.0 & (1 << g) != 0)
            .collect()
    }

    /// Bytes of the bitmap on the wire: up to its last non-zero byte.
    fn bitmap_len(self) -> usize {
        (u64::BITS - self.0.leading_zeros()).div_ceil(8) as usize
    }
}

/// A length byte `k` (0..=8), then the bitmap's `k` least significant
/// bytes, the last one not zero (one encoding per set).
impl Codec for GroupSet {
    fn decode<B: Buf>(buf: &mut B) -> Result<GroupSet, DecodeError> {
        let len = usize::from(buf.get::<u8>()?);
        if len > SET_BYTES {
            return Err(DecodeError);
        }
        let mut bits = [0; SET_BYTES];
        buf.try_copy_to_slice(&mut bits[..len])?;
        if len > 0 && bits[len - 1] == 0 {
            return Err(DecodeError);
        }
        Ok(GroupSet(u64::from_le_bytes(bits)))
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        let len = self.bitmap_len();
        (len as u8).encode(buf);
        buf.put_slice(&self.0.to_le_bytes()[..len]);
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

    /// The incarnation of `node` whose frames are accepted: the newest
    /// accepted so far.
    pub fn incarnation(&self, node: &str) -> Option<u64> {
        self.peers.get(node).map(|w| w.incarnation)
    }

    /// Forgets everything accepted from `node`.
    pub fn forget(&mut self, node: &str) {
        self.peers.remove(node);
    }

    /// Accepts (and records) sequence `sequence` of incarnation
    /// `incarnation` from `node`, or `Err(DropReason::Replayed)` for an older
    /// incarnation, a sequence already accepted, or one [`REPLAY_WINDOW`] or
    /// more below the highest accepted. A newer incarnation (the sender
    /// restarted) starts a new window. Call only for authenticated frames.
    pub fn accept(
        &mut self,
        node: &str,
        incarnation: u64,
        sequence: u64,
    ) -> Result<(), DropReason> {
        let Some(w) = self.peers.get_mut(node) else {
            self.peers
                .insert(node.to_owned(), Window::new(incarnation, sequence));
            return Ok(());
        };
        if incarnation < w.incarnation {
            return Err(DropReason::Replayed);
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
            return Err(DropReason::Replayed);
        }
        w.seen |= 1 << behind;
        Ok(())
    }
}

/// The receiving end: [`decode`], then own frames out (`FromSelf`), then
/// new incarnations without proof of life out (`Unproven`, see the module
/// doc), then the [`ReplayGuard`]; every rejection counted by reason.
#[derive(Debug)]
pub struct Receiver {
    key: Key,
    cluster_id: u64,
    me: String,
    /// This node's incarnation: an echo of it was made in this life.
    incarnation: u64,
    dead_after: Duration,
    replay: ReplayGuard,
    /// Per sender: when a frame of it was last accepted (the caller's clock).
    heard_at: HashMap<String, Duration>,
    /// Per sender: the highest incarnation given up for a lower one.
    given_up: HashMap<String, u64>,
    /// Frames rejected, by reason; index = [`DropReason::index`].
    pub rejected: [u64; DropReason::ALL.len()],
    /// Frames accepted.
    pub accepted: u64,
}

impl Receiver {
    /// A receiver for node `me`, running as `incarnation`, of cluster
    /// `cluster_id` whose peers are down after `dead_after`.
    pub fn new(
        key: Key,
        cluster_id: u64,
        me: impl Into<String>,
        incarnation: u64,
        dead_after: Duration,
    ) -> Receiver {
        Receiver {
            key,
            cluster_id,
            me: me.into(),
            incarnation,
            dead_after,
            replay: ReplayGuard::new(),
            heard_at: HashMap::new(),
            given_up: HashMap::new(),
            rejected: [0; DropReason::ALL.len()],
            accepted: 0,
        }
    }

    /// The heartbeat in `frame`, arrived at `now` (the clock this node
    /// stamps its own frames' `sent_at_us` with), or why it was dropped
    /// (and counted).
    pub fn receive(&mut self, frame: &[u8], now: Duration) -> Result<Heartbeat, DropReason> {
        let result = self.check(frame, now);
        match &result {
            Ok(_) => self.accepted += 1,
            Err(reason) => self.rejected[reason.index()] += 1,
        }
        result
    }

    /// The incarnation of `node` heard live: the one whose frames are
    /// accepted (shared state is taken from it alone).
    pub fn live_incarnation(&self, node: &str) -> Option<u64> {
        self.replay.incarnation(node)
    }

    fn check(&mut self, frame: &[u8], now: Duration) -> Result<Heartbeat, DropReason> {
        let hb = decode(frame, &self.key, self.cluster_id)?;
        if hb.node == self.me {
            return Err(DropReason::FromSelf);
        }
        let live = self.replay.incarnation(&hb.node);
        let given_up = self.given_up.get(&hb.node).copied();
        let newer = live.is_none_or(|live| hb.incarnation > live)
            && given_up.is_none_or(|gone| hb.incarnation > gone);
        if newer {
            if !self.proves_life(&hb, now) {
                return Err(DropReason::Unproven);
            }
        } else if live != Some(hb.incarnation) {
            // An earlier life: a replay, or a restart with the clock set back.
            let silent = self
                .heard_at
                .get(&hb.node)
                .is_none_or(|&heard| now >= heard + self.dead_after);
            if !(silent && self.echoes_this_life(&hb, now)) {
                return Err(DropReason::Replayed);
            }
            if let Some(live) = live {
                let gone = given_up.map_or(live, |gone| gone.max(live));
                self.given_up.insert(hb.node.clone(), gone);
            }
            self.replay.forget(&hb.node);
        }
        self.replay.accept(&hb.node, hb.incarnation, hb.sequence)?;
        self.heard_at.insert(hb.node.clone(), now);
        Ok(hb)
    }

    /// Whether `hb`, of an incarnation not heard yet, shows that its
    /// sender runs now (the module doc's two tests).
    fn proves_life(&self, hb: &Heartbeat, now: Duration) -> bool {
        let grace_ms = self.dead_after.as_millis() as u64;
        hb.incarnation.saturating_add(grace_ms) >= self.incarnation
            || self.echoes_this_life(hb, now)
    }

    /// Whether `hb` reports a frame of this node's current life sent less
    /// than `dead_after` before `now`.
    fn echoes_this_life(&self, hb: &Heartbeat, now: Duration) -> bool {
        hb.peers.iter().any(|r| {
            let sent = Duration::from_micros(r.echo_us);
            r.node == self.me
                && r.incarnation == self.incarnation
                && now
                    .checked_sub(sent)
                    .is_some_and(|ago| ago < self.dead_after)
        })
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
        let stamped = Heartbeat {
            cluster_id: self.cluster_id,
            incarnation: self.incarnation,
            sequence: self.sequence,
            ..hb.clone()
        };
        encode(&stamped, &self.key)
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
mod tests;
