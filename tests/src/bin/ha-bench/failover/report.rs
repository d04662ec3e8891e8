//! The failover bench's report: tables, ratios, the markdown section and
//! the plot.

use super::*;

/// Outside the outages: the longest gap between two successful requests
/// and how many requests failed, over all rounds.
pub(super) fn disturbances(variants: &[Variant]) -> String {
    let rounds = variants.iter().flat_map(|v| &v.rounds);
    let longest = rounds
        .clone()
        .map(|r| r.longest_other)
        .max()
        .unwrap_or_default();
    let failed: usize = rounds.map(|r| r.failed_before).sum();
    format!(
        "this run: at most {} ms, and {failed} requests failed outside the outages",
        longest.as_millis()
    )
}

pub(super) fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn outages(variant: &Variant) -> Vec<Duration> {
    variant.rounds.iter().map(|r| r.outage).collect()
}

pub(super) fn table(variants: &[Variant]) -> String {
    let mut out = String::from(
        "| variant | rounds | min (ms) | p50 | p90 | max | failed requests per round (min / p50 / max) | kill to link down, p50 (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for v in variants {
        let mut o = outages(v);
        let mut failed: Vec<Duration> = v
            .rounds
            .iter()
            .map(|r| Duration::from_millis(r.failed as u64))
            .collect();
        let mut cuts: Vec<Duration> = v.rounds.iter().map(|r| r.cut).collect();
        out += &format!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} / {} / {} | {:.1} |\n",
            v.label,
            v.rounds.len(),
            millis(percentile(&mut o, 0.0)),
            millis(percentile(&mut o, 50.0)),
            millis(percentile(&mut o, 90.0)),
            millis(percentile(&mut o, 100.0)),
            percentile(&mut failed, 0.0).as_millis(),
            percentile(&mut failed, 50.0).as_millis(),
            percentile(&mut failed, 100.0).as_millis(),
            millis(percentile(&mut cuts, 50.0)),
        );
    }
    out
}

/// The median outage of each ha variant over keepalived's (the last).
pub(super) fn ratios(variants: &[Variant]) -> String {
    let Some((keepalived, ha)) = variants.split_last() else {
        return String::new();
    };
    let reference = millis(percentile(&mut outages(keepalived), 50.0));
    ha.iter()
        .map(|v| {
            let median = millis(percentile(&mut outages(v), 50.0));
            format!(
                "Median outage ratio ha/keepalived, {}: {:.0} / {:.0} ms = {:.2}\n",
                v.label,
                median,
                reference,
                median / reference
            )
        })
        .collect()
}

pub(super) fn markdown(
    table: &str,
    ratios: &str,
    keepalived_version: &str,
    discarded: &[String],
    stale: &[String],
    root_untouched: bool,
    others: &str,
) -> String {
    let ratios: String = ratios.lines().map(|l| format!("- {l}\n")).collect();
    let discarded = if discarded.is_empty() {
        "Every round measured a failover (none discarded).".to_string()
    } else {
        format!(
            "Rounds discarded (no failover measured), replaced by further rounds: {}.",
            discarded.join("; ")
        )
    };
    let stale = if stale.is_empty() {
        "Before every round the client's neighbour entry for the VIP named lb1.".to_string()
    } else {
        format!(
            "Before {} rounds the client's neighbour entry for the VIP still named another MAC address than lb1's, \
             although lb1 had taken the VIP back: such a round would have measured nothing (the client never used lb1), \
             so the entry was flushed and the client resolved the VIP again (to lb1) before the round: {}.",
            stale.len(),
            stale.join("; ")
        )
    };
    format!(
        "Outage window in milliseconds when the VIP's owner fails, {ROUNDS} failovers per variant, this machine ({} cores), all variants in one run.\n\n\
{table}\n{ratios}\n\
![failover](failover.png)\n\n\
Each dot is one failover; the box spans p25 to p75, the bar is the median, the whiskers reach min and max.\n\n\
Method. Each variant gets its own lab from the harness (`DsrLab::cluster`: namespaces on one bridge, 198.18.0.0/24): a client, \
lb1 (priority 200) and lb2 (priority 100); for ha also two DSR backends. A round: the client opens a new TCP connection to the \
VIP every 5 ms for {:.1} s (each must connect and read the server's name line within {} ms); {:.1} s in, lb1, the owner, fails: \
kill -9 of its agent (ha) or of both keepalived processes (keepalived), immediately followed by cutting its link \
(`link set eth0 down` written to an `ip -n <lb1> -batch -` started before the round, so the cut follows the signal within \
a few ms, last column; starting `ip netns exec` at that moment took 12-28 ms, as long as a 10 ms-variant failover, while the \
owner goes on forwarding). The outage is the time from the start of the last successful request begun before the link was \
down to the start of the next successful one: with no other disturbance, the longest time between two successful requests \
(the longest gap elsewhere in the rounds is printed by the bench; {}). A round is discarded if the standby did not take the \
VIP within 2 s, no request failed, or any request failed after traffic resumed. Failed requests: those begun during the outage (each fails on \
its 500 ms timeout: a lost SYN is retried only after 1 s). Then lb1 is restored as after a reboot (ha: the killed agent's pins \
removed; keepalived: the VIP it left on eth0 removed), its link comes up, its daemon restarts and takes the VIP back \
(preempt, on in both), and the next round starts once the client reaches the VIP again.\n\n\
ha: `quorum = \"two_node\"`, defaults otherwise (3 gratuitous ARPs 100 ms apart on takeover); interval 50 ms with \
dead_after 200 ms (default, 4 intervals), and `interval = \"10ms\"` with dead_after 40 ms (its default).\n\n\
keepalived: {keepalived_version} from Debian, VRRP only (`keepalived --dont-fork --log-console --no-syslog --vrrp -f <conf> -p <pid> -r <vrrp pid>`), \
started as a child inside each LB's namespace (nothing in the root namespace; its addresses and routes were {} during the run). \
`global_defs` with `vrrp_version 3` and `max_auto_priority` (real-time scheduling when its timers run late, which keepalived's start-up notice recommends), and per LB one `vrrp_instance` with `advert_int {KEEPALIVED_ADVERT}` (10 ms, the smallest it accepts: \
`keepalived -t` rejects 0.005 as \"outside range [0.010000, 255.000000]\"), `state BACKUP` on both, priority 200 / 100, \
preempt (the default, as ha's), `unicast_src_ip` + `unicast_peer` to the other LB (unicast, like ha's heartbeats; VRRPv3 has \
no authentication, ha's heartbeats carry an HMAC), `virtual_ipaddress {{ {VIP}/32 dev eth0 }}`, gratuitous ARP defaults \
(5 at once on becoming master). The backup declares the master down after 3 x advert_int + skew = 30 + 6 ms. keepalived \
does not balance: the LB that holds the VIP answers the requests itself (each LB runs the lab's server on port 80).\n\n\
{discarded} {stale}\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        RUN.as_secs_f64(),
        REQUEST_TIMEOUT.as_millis(),
        FAIL_AT.as_secs_f64(),
        others,
        if root_untouched {
            "unchanged"
        } else {
            "CHANGED (see the run's output)"
        },
    )
}

/// Box-and-strip chart of the outages, one row per variant.
pub(super) fn plot(path: &Path, variants: &[Variant], font: Vec<u8>) -> Result<()> {
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{FONT} is not a usable font"))?;
    let all: Vec<f64> = variants
        .iter()
        .flat_map(|v| v.rounds.iter().map(|r| millis(r.outage)))
        .collect();
    let hi = (all.iter().copied().fold(0.0, f64::max) * 1.15).max(10.0);
    let rows = variants.len();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = BitMapBackend::new(path, (1000, 460)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Failover outage, {ROUNDS} kill -9 + link cut per variant"),
                ("sans-serif", 24),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(300)
            .build_cartesian_2d(0f64..hi, -0.5f64..(rows as f64 - 0.5))?;
        let names: Vec<&str> = variants.iter().map(|v| v.label).collect();
        let row_of = |i: usize| (rows - 1 - i) as f64;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows)
            .y_label_formatter(&|y| {
                let r = y.round();
                if (y - r).abs() < 0.01 && r >= 0.0 && (r as usize) < rows {
                    names[rows - 1 - r as usize].to_string()
                } else {
                    String::new()
                }
            })
            .x_desc("outage (ms): longest time between two successful requests, one every 5 ms")
            .x_labels(12)
            .light_line_style(RGBColor(235, 235, 235))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 16))
            .draw()?;
        let colors = [
            RGBColor(31, 90, 200),
            RGBColor(20, 150, 60),
            RGBColor(210, 40, 40),
        ];
        for (i, v) in variants.iter().enumerate() {
            let y = row_of(i);
            let color = colors[i % colors.len()];
            let mut o = outages(v);
            let q = |o: &mut Vec<Duration>, p: f64| millis(percentile(o, p));
            let (min, p25, p50, p75, max) = (
                q(&mut o, 0.0),
                q(&mut o, 25.0),
                q(&mut o, 50.0),
                q(&mut o, 75.0),
                q(&mut o, 100.0),
            );
            let stroke = color.stroke_width(2);
            chart.draw_series([
                PathElement::new(vec![(min, y), (p25, y)], stroke),
                PathElement::new(vec![(p75, y), (max, y)], stroke),
                PathElement::new(vec![(min, y - 0.1), (min, y + 0.1)], stroke),
                PathElement::new(vec![(max, y - 0.1), (max, y + 0.1)], stroke),
                PathElement::new(vec![(p50, y - 0.3), (p50, y + 0.3)], color.stroke_width(4)),
            ])?;
            chart.draw_series([Rectangle::new([(p25, y - 0.22), (p75, y + 0.22)], stroke)])?;
            chart.draw_series(v.rounds.iter().enumerate().map(|(k, r)| {
                // Spread the dots vertically (golden-ratio sequence) so
                // equal outages stay visible.
                let jitter = ((k as f64 * 0.618_034).fract() - 0.5) * 0.36;
                Circle::new((millis(r.outage), y + jitter), 4, color.mix(0.55).filled())
            }))?;
            chart.draw_series([Text::new(
                format!("p50 {p50:.0} ms"),
                (p50 + hi * 0.006, y + 0.42),
                ("sans-serif", 15).into_font().color(&BLACK),
            )])?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| anyhow!("draw {}: {e}", path.display()))
}
