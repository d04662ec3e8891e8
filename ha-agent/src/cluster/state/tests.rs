use super::*;

const I: Duration = DEFAULT_INTERVAL;
const D: Duration = Duration::from_millis(200);
/// One-way delay of the test network.
const DELAY: Duration = Duration::from_millis(1);
const MS: Duration = Duration::from_millis(1);

/// A few machines on an instant-ish network: every frame arrives after
/// `DELAY` unless the link is cut; ticks at `next_timeout`. After every
/// step it asserts that no group has two quorate owners.
struct Lab {
    now: Duration,
    params: Vec<ClusterParams>,
    nodes: Vec<Option<Cluster>>,
    incarnation: Vec<u64>,
    sequence: Vec<u64>,
    cut: Vec<Vec<bool>>,
    wire: Vec<(Duration, usize, Heartbeat)>,
    log: Vec<(Duration, usize, Action)>,
}

impl Lab {
    /// Nodes named by `prios` (name, priority); none started yet.
    fn new(prios: &[(&str, u8)], groups: usize, tweak: impl Fn(&mut ClusterParams)) -> Lab {
        let names: Vec<&str> = prios.iter().map(|(n, _)| *n).collect();
        let params: Vec<ClusterParams> = prios
            .iter()
            .map(|(n, prio)| {
                let mut p = ClusterParams::new(n, *prio, &names, groups);
                tweak(&mut p);
                p
            })
            .collect();
        let n = prios.len();
        Lab {
            now: Duration::ZERO,
            params,
            nodes: (0..n).map(|_| None).collect(),
            incarnation: vec![0; n],
            sequence: vec![0; n],
            cut: vec![vec![false; n]; n],
            wire: Vec::new(),
            log: Vec::new(),
        }
    }

    fn idx(&self, name: &str) -> usize {
        self.params.iter().position(|p| p.me == name).unwrap()
    }

    fn start(&mut self, name: &str) {
        let i = self.idx(name);
        self.incarnation[i] += 1;
        let c = Cluster::new(self.params[i].clone(), self.now, self.incarnation[i]).unwrap();
        self.nodes[i] = Some(c);
        self.input(name, |now| Input::Eligibility {
            now,
            eligible: true,
        });
    }

    fn start_all(&mut self) {
        let names: Vec<String> = self.params.iter().map(|p| p.me.clone()).collect();
        for n in names {
            self.start(&n);
        }
    }

    fn crash(&mut self, name: &str) {
        let i = self.idx(name);
        self.nodes[i] = None;
    }

    /// Cuts (or restores) both directions between `a` and `b`.
    fn cut(&mut self, a: &str, b: &str, cut: bool) {
        let (a, b) = (self.idx(a), self.idx(b));
        self.cut[a][b] = cut;
        self.cut[b][a] = cut;
    }

    fn node(&self, name: &str) -> &Cluster {
        self.nodes[self.idx(name)].as_ref().unwrap()
    }

    fn input(&mut self, name: &str, f: impl FnOnce(Duration) -> Input) {
        let i = self.idx(name);
        let input = f(self.now);
        self.feed(i, input);
    }

    fn feed(&mut self, i: usize, input: Input) {
        let Some(c) = self.nodes[i].as_mut() else {
            return;
        };
        for a in c.handle(input) {
            if let Action::Send(o) = &a {
                self.sequence[i] += 1;
                let hb = o.to_heartbeat(1, self.sequence[i]);
                for to in 0..self.nodes.len() {
                    if to != i && !self.cut[i][to] {
                        self.wire.push((self.now + DELAY, to, hb.clone()));
                    }
                }
            } else {
                self.log.push((self.now, i, a));
            }
        }
        self.assert_safe();
    }

    fn assert_safe(&self) {
        for g in 0..self.params[0].groups {
            let quorate_owners = self
                .nodes
                .iter()
                .flatten()
                .filter(|c| c.owns(g) && c.has_quorum())
                .count();
            assert!(
                quorate_owners <= 1,
                "two quorate owners of {g} at {:?}",
                self.now
            );
        }
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let delivery = self.wire.iter().map(|w| w.0).min();
            let tick = (0..self.nodes.len())
                .filter_map(|i| self.nodes[i].as_ref().map(|c| (c.next_timeout(), i)))
                .min();
            let next = match (delivery, tick) {
                (Some(d), Some((t, _))) => d.min(t),
                (Some(d), None) => d,
                (None, Some((t, _))) => t,
                (None, None) => end,
            };
            if next > end {
                self.now = end;
                return;
            }
            self.now = next.max(self.now);
            if delivery == Some(next) {
                let k = self.wire.iter().position(|w| w.0 == next).unwrap();
                let (_, to, hb) = self.wire.remove(k);
                let now = self.now;
                self.feed(to, Input::Heartbeat { now, hb });
            } else if let Some((_, i)) = tick {
                let now = self.now;
                self.feed(i, Input::Tick { now });
            }
        }
    }

    fn owners(&self, g: usize) -> Vec<&str> {
        self.nodes
            .iter()
            .flatten()
            .filter(|c| c.owns(g))
            .map(|c| c.params().me.as_str())
            .collect()
    }

    /// Actions of `name` since `since`, in order.
    fn actions(&self, name: &str, since: Duration) -> Vec<(Duration, Action)> {
        let i = self.idx(name);
        self.log
            .iter()
            .filter(|(t, n, _)| *n == i && *t >= since)
            .map(|(t, _, a)| (*t, a.clone()))
            .collect()
    }

    fn takes(&self, name: &str, since: Duration) -> Vec<(Duration, usize, OwnershipCause)> {
        self.actions(name, since)
            .into_iter()
            .filter_map(|(t, a)| match a {
                Action::Take { group, cause } => Some((t, group, cause)),
                _ => None,
            })
            .collect()
    }

    fn releases(&self, name: &str, since: Duration) -> Vec<(Duration, usize, OwnershipCause)> {
        self.actions(name, since)
            .into_iter()
            .filter_map(|(t, a)| match a {
                Action::Release { group, cause } => Some((t, group, cause)),
                _ => None,
            })
            .collect()
    }
}

const ABC: &[(&str, u8)] = &[("a", 30), ("b", 20), ("c", 10)];

fn settled(prios: &[(&str, u8)], groups: usize, tweak: impl Fn(&mut ClusterParams)) -> Lab {
    let mut lab = Lab::new(prios, groups, tweak);
    lab.start_all();
    lab.run_for(Duration::from_secs(1));
    lab
}

#[test]
fn params_are_validated() {
    let mut p = ClusterParams::new("x", 1, &["a", "b"], 1);
    assert_eq!(p.validate(), Err(ParamsError::NotAMember("x".into())));
    p = ClusterParams::new("a", 1, &["a", "b", "a"], 1);
    assert_eq!(p.validate(), Err(ParamsError::Duplicate("a".into())));
    p = ClusterParams::new("a", 1, &["a", "b", "c"], 1);
    p.quorum = Quorum::TwoNode { tie_breaker: false };
    assert_eq!(p.validate(), Err(ParamsError::TwoNodeSize(3)));
    p = ClusterParams::new("a", 1, &["a", "b"], 1);
    p.dead_after = I;
    assert!(matches!(
        p.validate(),
        Err(ParamsError::DeadAfterTooShort { .. })
    ));
    p.dead_after = 4 * I;
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(p.succession_hold(), 4 * I);
    for (dead, take) in [(4, I * 3 / 2), (3, I * 3 / 4), (2, I / 2), (10, I * 3 / 2)] {
        p.dead_after = dead * I;
        assert_eq!(p.take_window(), take, "{dead} intervals");
        let drift = p.dead_after / 256;
        assert_eq!(p.quorum_window() + take + drift, p.dead_after);
    }
    let names: Vec<String> = (0..=MAX_NODES).map(|i| i.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    p = ClusterParams::new("0", 1, &names, 1);
    assert_eq!(p.validate(), Err(ParamsError::TooManyNodes(MAX_NODES + 1)));
    p = ClusterParams::new("0", 1, &names[..MAX_NODES], MAX_GROUPS + 1);
    assert_eq!(
        p.validate(),
        Err(ParamsError::TooManyGroups(MAX_GROUPS + 1))
    );
}

#[test]
fn cold_start_elects_the_best_once() {
    let lab = settled(ABC, 2, |_| {});
    assert_eq!(lab.owners(0), ["a"]);
    assert_eq!(lab.owners(1), ["a"]);
    let takes = lab.takes("a", Duration::ZERO);
    assert_eq!(takes.len(), 2);
    // Ready once a peer answers its first frame, then it bids for D.
    assert!(takes[0].0 >= D && takes[0].0 <= D + I, "{takes:?}");
    assert_eq!(takes[0].2, OwnershipCause::Elected);
    assert!(lab.takes("b", Duration::ZERO).is_empty());
    assert!(lab.takes("c", Duration::ZERO).is_empty());
    assert!(lab.peers_agree());
}

impl Lab {
    fn peers_agree(&self) -> bool {
        self.nodes.iter().flatten().all(|c| {
            c.has_quorum() && c.is_ready() && c.peers().iter().all(|p| p.up && p.digest_matches)
        })
    }
}

#[test]
fn owner_crash_next_best_takes_after_dead_after() {
    let mut lab = settled(ABC, 1, |_| {});
    let t0 = lab.now;
    lab.crash("a");
    lab.run_for(Duration::from_secs(1));
    let takes = lab.takes("b", t0);
    assert_eq!(takes.len(), 1, "{takes:?}");
    let (t, _, cause) = &takes[0];
    assert_eq!(*cause, OwnershipCause::OwnerDown("a".into()));
    // a's last frame left at most one interval before the crash.
    assert!(*t >= t0 + D - I && *t <= t0 + D + DELAY, "{:?}", *t - t0);
    assert!(lab.takes("c", t0).is_empty());
    assert_eq!(lab.owners(0), ["b"]);
}

#[test]
fn leaving_owner_is_replaced_at_once() {
    let mut lab = settled(ABC, 2, |_| {});
    let t0 = lab.now;
    lab.input("a", |now| Input::Leave { now });
    assert_eq!(lab.releases("a", t0).len(), 2);
    lab.run_for(10 * MS);
    let takes = lab.takes("b", t0);
    assert_eq!(takes.len(), 2);
    assert!(
        takes
            .iter()
            .all(|(t, _, r)| *t <= t0 + DELAY && *r == OwnershipCause::OwnerLeft("a".into()))
    );
    assert!(lab.actions("b", t0).contains(&(
        t0 + DELAY,
        Action::PeerDown {
            node: "a".into(),
            leaving: true
        }
    )));
    // The node that left stays gone while it keeps saying LEAVING.
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["b"]);
    assert!(lab.node("b").peers().iter().any(|p| p.node == "a" && !p.up));
}

/// b owns, then a (better) starts at t0: returns (b's release, a's take).
fn preemption(
    tweak: impl Fn(&mut ClusterParams),
) -> (Lab, Duration, Option<Duration>, Option<Duration>) {
    let mut lab = Lab::new(ABC, 1, tweak);
    lab.start("b");
    lab.start("c");
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["b"]);
    let t0 = lab.now;
    lab.start("a");
    lab.run_for(Duration::from_secs(2));
    let released = lab.releases("b", t0).first().map(|r| r.0);
    let taken = lab.takes("a", t0).first().map(|r| r.0);
    (lab, t0, released, taken)
}

#[test]
fn preempt_hands_over_after_the_succession_hold() {
    let (lab, t0, released, taken) = preemption(|_| {});
    let (released, taken) = (released.unwrap(), taken.unwrap());
    // a is ready within a round trip (b and c answer its first frame),
    // b gives way once a has been a candidate for dead_after, a takes
    // on b's release.
    assert!(
        released >= t0 + D && released <= t0 + D + 3 * DELAY,
        "{:?}",
        released - t0
    );
    assert_eq!(taken, released + DELAY);
    assert_eq!(
        lab.releases("b", t0)[0].2,
        OwnershipCause::Preempted("a".into())
    );
    assert_eq!(
        lab.takes("a", t0)[0].2,
        OwnershipCause::OwnerReleased("b".into())
    );
    assert_eq!(lab.owners(0), ["a"]);
}

#[test]
fn preempt_delay_postpones_the_handover() {
    let (_, t0, released, _) = preemption(|p| p.preempt_delay = 10 * I);
    let released = released.unwrap();
    assert!(released >= t0 + 10 * I && released <= t0 + 10 * I + 3 * DELAY);
}

#[test]
fn without_preempt_the_owner_keeps_the_group() {
    let (mut lab, t0, released, taken) = preemption(|p| p.preempt = false);
    assert_eq!((released, taken), (None, None));
    assert_eq!(lab.owners(0), ["b"]);
    // It changes hands when b fails: the heir (a) takes over.
    let t1 = lab.now;
    lab.crash("b");
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["a"]);
    assert!(lab.takes("a", t0)[0].0 <= t1 + D + DELAY);
}

/// A lone machine that owns group 0 (quorum disabled).
fn lone_owner(me: &str, prio: u8) -> (Cluster, Duration) {
    let mut p = ClusterParams::new(me, prio, &["a", "b", "c"], 1);
    p.quorum = Quorum::Disabled;
    let mut c = Cluster::new(p, Duration::ZERO, 1).unwrap();
    c.handle(Input::Eligibility {
        now: Duration::ZERO,
        eligible: true,
    });
    let acts = c.handle(Input::Tick { now: D });
    assert!(acts.contains(&Action::Take {
        group: 0,
        cause: OwnershipCause::Elected
    }));
    (c, D)
}

fn frame(node: &str, prio: u8, seq: u64, claims: &[u16]) -> Heartbeat {
    Heartbeat {
        cluster_id: 1,
        node: node.into(),
        incarnation: 1,
        sequence: seq,
        sent_at_us: 0,
        priority: prio,
        eligible: true,
        claims: claims.to_vec(),
        bids: Vec::new(),
        leaving: false,
        standby: false,
        peers: Vec::new(),
        digest: [0; 32],
    }
}

#[test]
fn of_two_claims_the_lower_yields_at_once() {
    let (mut b, t) = lone_owner("b", 20);
    let acts = b.handle(Input::Heartbeat {
        now: t,
        hb: frame("a", 30, 1, &[0]),
    });
    assert!(acts.contains(&Action::Release {
        group: 0,
        cause: OwnershipCause::Yielded("a".into())
    }));
    assert!(!b.owns(0));
    // A reordered older frame without the claim changes nothing.
    b.handle(Input::Heartbeat {
        now: t + MS,
        hb: frame("a", 30, 0, &[]),
    });
    assert_eq!(b.peers()[0].claims, [0]);
    let acts = b.handle(Input::Tick { now: t + D / 2 });
    assert!(!acts.iter().any(|a| matches!(a, Action::Take { .. })));
}

/// `b`'s frame `seq` reporting `a`'s frame `a_seq` (claiming `claims`)
/// received `age` before.
fn relay(seq: u64, a_seq: u64, claims: &[u16], age: Duration) -> Heartbeat {
    let mut hb = frame("b", 20, seq, &[]);
    hb.peers.push(PeerReport {
        node: "a".into(),
        incarnation: 1,
        sequence: a_seq,
        age_us: age.as_micros() as u32,
        echo_us: 0,
        priority: 30,
        claims: claims.to_vec(),
        bids: Vec::new(),
    });
    hb
}

#[test]
fn relayed_claims_live_dead_after_less_their_age_and_yield_to_fresher_frames() {
    let mut p = ClusterParams::new("c", 10, &["a", "b", "c"], 2);
    p.quorum = Quorum::Disabled;
    let mut c = Cluster::new(p, Duration::ZERO, 1).unwrap();
    let a = |c: &Cluster| c.peers().into_iter().find(|p| p.node == "a").unwrap();
    let t = D;
    c.handle(Input::Heartbeat {
        now: t,
        hb: relay(1, 7, &[0], 3 * MS),
    });
    let view = a(&c);
    assert!(!view.up && view.claims == [0] && view.priority == 30);
    // Another copy of that frame, relayed later: the earlier expiry.
    c.handle(Input::Heartbeat {
        now: t + MS,
        hb: relay(2, 7, &[0], MS),
    });
    c.handle(Input::Tick {
        now: t + D - 3 * MS - Duration::from_micros(1),
    });
    assert_eq!(a(&c).claims, [0]);
    c.handle(Input::Tick {
        now: t + D - 3 * MS,
    });
    assert!(a(&c).claims.is_empty());
    // A newer frame heard directly is not undone by an older relay.
    let t = 3 * D;
    c.handle(Input::Heartbeat {
        now: t,
        hb: frame("a", 30, 9, &[1]),
    });
    c.handle(Input::Heartbeat {
        now: t,
        hb: relay(3, 8, &[0], MS),
    });
    assert_eq!(a(&c).claims, [1]);
    // A newer relayed frame replaces it; a relay about c itself is no
    // knowledge.
    let mut hb = relay(4, 10, &[], MS);
    hb.peers[0].node = "c".into();
    hb.peers[0].claims = vec![0, 1];
    c.handle(Input::Heartbeat { now: t, hb });
    c.handle(Input::Heartbeat {
        now: t,
        hb: relay(5, 10, &[], MS),
    });
    assert!(a(&c).claims.is_empty());
}

/// a and c do not hear each other, both hear b: each thinks itself the
/// heir and bids; c learns a's higher bid from b and steps back.
#[test]
fn of_two_bidders_the_lower_steps_back() {
    let mut lab = Lab::new(ABC, 1, |_| {});
    lab.cut("a", "c", true);
    lab.start_all();
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["a"]);
    assert!(lab.takes("c", Duration::ZERO).is_empty());
    assert!(lab.nodes.iter().flatten().all(|c| c.has_quorum()));
}

/// c hears only b, which echoes c's frames: c bids, and takes after
/// dead_after, unless b restarted meanwhile. A restarted b counts
/// toward a take only once heard for dead_after: it may have forgotten
/// a claim (of a, which c cannot hear) that it relayed before.
#[test]
fn a_restarted_peer_counts_toward_takes_after_dead_after() {
    let mut c = Cluster::new(ClusterParams::new("c", 20, &["a", "b", "c"], 1), MS, 1).unwrap();
    c.handle(Input::Eligibility {
        now: MS,
        eligible: true,
    });
    let mut echo = 0;
    let mut taken = None;
    let (mut incarnation, mut seq) = (1, 0);
    for k in 1..40u32 {
        let now = k * I / 2;
        if now == 3 * D / 2 {
            (incarnation, seq) = (2, 0);
        }
        seq += 1;
        let mut hb = frame("b", 10, seq, &[]);
        hb.incarnation = incarnation;
        hb.peers.push(PeerReport {
            node: "c".into(),
            incarnation: 1,
            sequence: 0,
            age_us: 0,
            echo_us: echo,
            priority: 20,
            claims: Vec::new(),
            bids: Vec::new(),
        });
        for a in c.handle(Input::Heartbeat { now, hb }) {
            match a {
                Action::Send(o) => echo = o.sent_at.as_micros() as u64,
                Action::Take { .. } => taken = taken.or(Some(now)),
                _ => {}
            }
        }
        if now == D + I {
            assert!(c.owns(0), "took at {taken:?}");
            c.handle(Input::Standby { now, on: true });
            c.handle(Input::Standby { now, on: false });
            taken = None;
        }
    }
    // Bidding again from D + I, it could take at 2D + I; b restarted at
    // 1.5 D, so it counts from 2.5 D.
    assert_eq!(taken, Some(5 * D / 2));
}

#[test]
fn round_trips_are_measured_from_echoes() {
    let lab = settled(ABC, 1, |_| {});
    for c in lab.nodes.iter().flatten() {
        for p in c.peers() {
            assert_eq!((p.rtt, p.rtt_sample), (Some(2 * DELAY), Some(2 * DELAY)));
        }
    }
    let fresh = Cluster::new(ClusterParams::new("a", 1, &["a", "b"], 1), D, 1).unwrap();
    assert_eq!(fresh.peers()[0].rtt, None);
}

#[test]
fn the_higher_keeps_until_the_lower_claims_for_dead_after() {
    let (mut a, t) = lone_owner("a", 30);
    // b keeps claiming although a claims too: b evidently does not hear a.
    let mut seq = 0;
    let mut released = None;
    for k in 0..10u32 {
        seq += 1;
        let now = t + k * I;
        let acts = a.handle(Input::Heartbeat {
            now,
            hb: frame("b", 20, seq, &[0]),
        });
        if acts.iter().any(|a| {
            matches!(
                a,
                Action::Release {
                    cause: OwnershipCause::Unanswered(_),
                    ..
                }
            )
        }) {
            released = Some(now - t);
            break;
        }
        assert!(a.owns(0), "released early at {:?}", now - t);
    }
    assert_eq!(released, Some(D));
}

#[test]
fn partition_minority_releases_majority_keeps_one_owner() {
    let mut lab = settled(ABC, 2, |_| {});
    let t0 = lab.now;
    lab.cut("a", "b", true);
    lab.cut("a", "c", true);
    lab.run_for(Duration::from_secs(1));
    let released = lab.releases("a", t0);
    assert_eq!(released.len(), 2);
    assert_eq!(released[0].2, OwnershipCause::QuorumLost);
    let window = ClusterParams::new("a", 0, &["a"], 0).quorum_window();
    assert!(released[0].0 <= t0 + window + DELAY);
    let takes = lab.takes("b", t0);
    assert_eq!(takes.len(), 2);
    assert_eq!(takes[0].2, OwnershipCause::OwnerDown("a".into()));
    assert!(takes[0].0 > released[0].0);
    assert!(lab.node("a").faults().contains(&Fault::QuorumLost));
    assert_eq!((lab.owners(0), lab.owners(1)), (vec!["b"], vec!["b"]));
    // Healed: a rejoins, and preempts b after bidding for D. a is ready
    // once b or c answers its next frame (an interval and a round
    // trip), b learns that a delay later and gives way D after that, a
    // takes on b's release: four delays in all.
    let t1 = lab.now;
    lab.cut("a", "b", false);
    lab.cut("a", "c", false);
    lab.run_for(Duration::from_secs(1));
    assert_eq!((lab.owners(0), lab.owners(1)), (vec!["a"], vec!["a"]));
    let taken = lab.takes("a", t1)[0].0;
    assert!(taken <= t1 + I + D + 4 * DELAY, "{:?}", taken - t1);
    assert!(lab.takes("c", Duration::ZERO).is_empty());
}

#[test]
fn fencing_required_fences_before_taking() {
    for success in [true, false] {
        let mut lab = settled(ABC, 1, |p| p.fencing = Fencing::Required);
        assert_eq!(lab.owners(0), ["a"]);
        let t0 = lab.now;
        lab.crash("a");
        lab.run_for(D + I);
        let fence = Action::Fence { node: "a".into() };
        let asked: Vec<_> = lab
            .actions("b", t0)
            .into_iter()
            .filter(|(_, a)| *a == fence)
            .collect();
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(lab.takes("b", t0).is_empty(), "took before fencing");
        assert!(lab.actions("c", t0).iter().all(|(_, a)| *a != fence));
        assert!(lab.node("b").peers()[0].needs_fencing);
        let t1 = lab.now;
        lab.input("b", |now| Input::FenceDone {
            now,
            node: "a".into(),
            success,
        });
        lab.run_for(10 * MS);
        if success {
            assert_eq!(lab.takes("b", t1).len(), 1);
            assert_eq!(lab.owners(0), ["b"]);
        } else {
            assert!(lab.takes("b", t1).is_empty());
            assert!(
                lab.actions("b", t1)
                    .contains(&(t1, Action::Fault(Fault::FenceFailed("a".into()))))
            );
            // Retried after dead_after.
            lab.run_for(D);
            let again = lab
                .actions("b", t1)
                .into_iter()
                .filter(|(_, a)| *a == fence)
                .count();
            assert_eq!(again, 1);
        }
    }
}

#[test]
fn a_reload_on_the_owner_first_keeps_its_group_and_the_other_takes_only_once_it_is_down() {
    let mut lab = Lab::new(&[("a", 10), ("b", 20)], 1, |p| {
        p.quorum = Quorum::TwoNode { tie_breaker: false }
    });
    lab.start_all();
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["b"]);
    // The owner reloads first: it keeps serving, both say so loudly.
    lab.input("b", |now| Input::Digest {
        now,
        digest: [7; 32],
    });
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["b"]);
    assert!(lab.node("a").faults().contains(&Fault::DigestMismatch));
    assert!(lab.node("b").faults().contains(&Fault::DigestMismatch));
    // a never took over meanwhile; the owner dies before a reloads:
    // once it is down nothing disagrees, and a takes over.
    assert!(
        !lab.actions("a", Duration::ZERO)
            .iter()
            .any(|(_, a)| matches!(a, Action::Take { .. }))
    );
    lab.crash("b");
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["a"]);
    assert!(lab.node("a").faults().is_empty());
}

#[test]
fn a_node_with_another_digest_faults_and_takes_nothing() {
    let mut lab = Lab::new(ABC, 1, |_| {});
    lab.start_all();
    lab.input("a", |now| Input::Digest {
        now,
        digest: [1; 32],
    });
    lab.run_for(Duration::from_secs(1));
    // a (the best) disagrees with b and c: b owns.
    assert_eq!(lab.owners(0), ["b"]);
    let faults: Vec<_> = lab
        .actions("a", Duration::ZERO)
        .into_iter()
        .filter(|(_, a)| *a == Action::Fault(Fault::DigestMismatch))
        .collect();
    assert_eq!(faults.len(), 1);
    assert!(!lab.node("a").is_ready());
    assert!(lab.node("b").faults().is_empty());
    assert!(!lab.node("b").peers()[0].digest_matches);
    // Without c, b sees one node that agrees of two: it faults, and
    // keeps what it holds (a differing digest never releases).
    let t0 = lab.now;
    lab.crash("c");
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["b"]);
    assert!(lab.node("b").faults().contains(&Fault::DigestMismatch));
    // The operator fixes a: it agrees again and preempts after the hold.
    lab.input("a", |now| Input::Digest {
        now,
        digest: [0; 32],
    });
    assert!(
        lab.actions("a", t0)
            .iter()
            .any(|(_, a)| *a == Action::Recovered(Fault::DigestMismatch))
    );
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["a"]);
}

#[test]
fn two_node_with_a_tie_breaker() {
    let two = &[("a", 30), ("b", 20)];
    let mut lab = settled(two, 1, |p| p.quorum = Quorum::TwoNode { tie_breaker: true });
    assert_eq!(lab.owners(0), ["a"]);
    let t0 = lab.now;
    lab.crash("a");
    lab.run_for(Duration::from_secs(1));
    // Alone and the tie-breaker has not answered: no quorum.
    assert!(lab.owners(0).is_empty());
    assert!(!lab.node("b").has_quorum());
    lab.input("b", |now| Input::TieBreaker {
        now,
        reachable: true,
    });
    let t1 = lab.now;
    lab.run_for(Duration::from_secs(1));
    let takes = lab.takes("b", t0);
    assert_eq!(takes.len(), 1);
    // b only just became ready: it bids for D first.
    assert_eq!(takes[0].0, t1 + D);
    // Losing the tie-breaker too: release at once.
    lab.input("b", |now| Input::TieBreaker {
        now,
        reachable: false,
    });
    assert!(lab.owners(0).is_empty());
}

#[test]
fn two_node_without_a_tie_breaker_waits_for_all_once() {
    let two = &[("a", 30), ("b", 20)];
    let tweak = |p: &mut ClusterParams| p.quorum = Quorum::TwoNode { tie_breaker: false };
    let mut lab = settled(two, 1, tweak);
    let t0 = lab.now;
    lab.crash("a");
    lab.run_for(Duration::from_secs(1));
    // b has seen a since it started: the survivor carries on.
    let takes = lab.takes("b", t0);
    assert_eq!(takes.len(), 1);
    assert!(takes[0].0 <= t0 + D + DELAY);
    // A node started alone never saw its peer: no quorum.
    let mut alone = Lab::new(two, 1, tweak);
    alone.start("b");
    alone.run_for(Duration::from_secs(2));
    assert!(alone.owners(0).is_empty());
    assert!(!alone.node("b").has_quorum());
}

#[test]
fn ineligible_or_standby_releases_at_once() {
    let mut lab = settled(ABC, 2, |_| {});
    let t0 = lab.now;
    lab.input("a", |now| Input::Eligibility {
        now,
        eligible: false,
    });
    assert!(lab.owners(0).is_empty() && lab.owners(1).is_empty());
    assert_eq!(lab.releases("a", t0)[0].2, OwnershipCause::Ineligible);
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["b"]);
    lab.input("b", |now| Input::Standby { now, on: true });
    assert_eq!(lab.releases("b", t0)[0].2, OwnershipCause::Standby);
    lab.run_for(Duration::from_secs(1));
    assert_eq!(lab.owners(0), ["c"]);
    // a is back: everything returns to it.
    lab.input("a", |now| Input::Eligibility {
        now,
        eligible: true,
    });
    lab.run_for(Duration::from_secs(1));
    assert_eq!((lab.owners(0), lab.owners(1)), (vec!["a"], vec!["a"]));
}

#[test]
fn failover_moves_a_group_to_the_named_node_for_good() {
    let mut lab = settled(ABC, 2, |_| {});
    let t0 = lab.now;
    for n in ["a", "b", "c"] {
        lab.input(n, |now| Input::Failover {
            now,
            group: 0,
            to: Some("c".into()),
        });
    }
    assert_eq!(lab.releases("a", t0), [(t0, 0, OwnershipCause::Failover)]);
    lab.run_for(Duration::from_secs(2));
    assert_eq!(lab.owners(0), ["c"]);
    assert_eq!(lab.owners(1), ["a"]);
    // c is not the best: it claims during its hold, then owns.
    let takes = lab.takes("c", t0);
    assert_eq!(takes.len(), 1);
    assert!(takes[0].0 <= t0 + D + 2 * DELAY);
    assert!(lab.takes("b", t0).is_empty());
    // a does not preempt it back.
    assert!(lab.takes("a", t0).is_empty());
}

#[test]
fn restart_with_a_new_incarnation_is_a_new_life() {
    let mut lab = settled(ABC, 1, |_| {});
    let t0 = lab.now;
    lab.input("a", |now| Input::Leave { now });
    lab.run_for(10 * MS);
    assert_eq!(lab.owners(0), ["b"]);
    lab.crash("a");
    lab.start("a");
    lab.run_for(Duration::from_secs(1));
    assert!(
        lab.node("b")
            .peers()
            .iter()
            .any(|p| p.node == "a" && p.up && p.incarnation == Some(2))
    );
    assert_eq!(lab.owners(0), ["a"]);
    // Ready once a peer answers its first frame, then it bids for D.
    assert!(lab.takes("a", t0)[0].0 <= t0 + 10 * MS + I + D + 3 * DELAY);
}

#[test]
fn heartbeats_go_out_every_interval_and_on_change() {
    let mut p = ClusterParams::new("a", 1, &["a", "b", "c"], 1);
    p.quorum = Quorum::Disabled;
    let mut c = Cluster::new(p, Duration::ZERO, 7).unwrap();
    let sends = |acts: &[Action]| acts.iter().filter(|a| matches!(a, Action::Send(_))).count();
    assert_eq!(
        sends(&c.handle(Input::Tick {
            now: Duration::ZERO
        })),
        1
    );
    assert_eq!(c.next_timeout(), I);
    assert_eq!(sends(&c.handle(Input::Tick { now: I / 2 })), 0);
    // A change goes out at once and does not shift the schedule.
    let acts = c.handle(Input::Eligibility {
        now: I * 3 / 4,
        eligible: true,
    });
    let Some(Action::Send(o)) = acts.iter().find(|a| matches!(a, Action::Send(_))) else {
        panic!("no send: {acts:?}");
    };
    assert!(o.eligible && o.incarnation == 7 && o.node == "a");
    assert_eq!(sends(&c.handle(Input::Tick { now: I })), 1);
}

/// A peer whose clock stepped back restarts with a lower incarnation (its
/// incarnation file lost): a stale frame while its old life may still be
/// heard, a new life once it has been silent for dead_after; the old
/// life's claim is gone with it.
#[test]
fn a_lower_incarnation_is_a_new_life_once_the_peer_was_silent_for_dead_after() {
    let mut p = ClusterParams::new("b", 1, &["a", "b", "c"], 1);
    p.quorum = Quorum::Disabled;
    let mut c = Cluster::new(p, Duration::ZERO, 1).unwrap();
    let life = |incarnation, seq, claims: &[u16]| Heartbeat {
        incarnation,
        ..frame("a", 9, seq, claims)
    };
    let t0 = 10 * MS;
    c.handle(Input::Heartbeat {
        now: t0,
        hb: life(2_000, 5, &[0]),
    });
    let a = |c: &Cluster| c.peers().into_iter().find(|p| p.node == "a").unwrap();
    assert_eq!((a(&c).up, a(&c).incarnation), (true, Some(2_000)));
    // Within dead_after of the old life's last frame: ignored.
    c.handle(Input::Heartbeat {
        now: t0 + D / 2,
        hb: life(1_500, 1, &[]),
    });
    assert_eq!(a(&c).incarnation, Some(2_000));
    // Silent for dead_after: the lower incarnation is a new life.
    let acts = c.handle(Input::Heartbeat {
        now: t0 + D,
        hb: life(1_500, 2, &[]),
    });
    assert!(
        acts.contains(&Action::PeerUp { node: "a".into() }),
        "{acts:?}"
    );
    assert_eq!((a(&c).up, a(&c).incarnation), (true, Some(1_500)));
    assert!(a(&c).claims.is_empty());
    // Its frames go on as one life; the old one's stay stale.
    c.handle(Input::Heartbeat {
        now: t0 + D + I,
        hb: life(1_500, 3, &[0]),
    });
    assert_eq!(a(&c).claims, [0]);
    c.handle(Input::Heartbeat {
        now: t0 + D + 2 * I,
        hb: life(1_500, 2, &[]),
    });
    assert_eq!(a(&c).claims, [0]);
}
