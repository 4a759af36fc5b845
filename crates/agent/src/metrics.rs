//! Prometheus text exposition on a loopback TCP port (`GET /metrics`).
//!
//! The text is rendered on each scrape from the endpoint's own counters
//! (through the node loop, like an admin request), so no counter is kept
//! twice.

use std::fmt::Write as _;
use std::net::SocketAddr;

use proto::endpoint::{DropReason, Endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use types::admin::{AdminRequest, AdminResponse};

use crate::admin::Pending;

/// `process_*` as Prometheus clients export them, from /proc/self.
fn process_metrics(o: &mut String) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces), from field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    let tick = 100.0; // USER_HZ on Linux
    let page = 4096.0;
    let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse::<f64>().ok())
    });
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).ok();
    let rows = [
        (
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time of meshd, seconds.",
            field(14).zip(field(15)).map(|(u, s)| (u + s) / tick),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of meshd, bytes.",
            field(24).map(|p| p * page),
        ),
        (
            "process_open_fds",
            "gauge",
            "Open file descriptors of meshd.",
            fds.map(|n| n as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "When meshd started, Unix seconds.",
            field(22).zip(boot).map(|(t, b)| b + t / tick),
        ),
    ];
    for (name, kind, help, v) in rows {
        if let Some(v) = v {
            family(o, name, kind, help);
            let _ = writeln!(o, "{name} {v}");
        }
    }
}

/// Per-peer traffic and handshake time, by certificate name.
fn peer_metrics(o: &mut String, peers: &[proto::endpoint::PeerInfo], now: std::time::Instant) {
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let named: Vec<(&str, &proto::endpoint::PeerInfo)> = peers
        .iter()
        .filter_map(|p| p.name.as_deref().map(|n| (n, p)))
        .collect();
    for (name, help, v) in [
        (
            "meshd_peer_rx_bytes_total",
            "Plaintext bytes received from a peer in its sessions: data and control (probes, link state) alike, as meshctl peers counts them.",
            &(|p: &proto::endpoint::PeerInfo| Some(p.stats.rx_bytes as f64))
                as &dyn Fn(&proto::endpoint::PeerInfo) -> Option<f64>,
        ),
        (
            "meshd_peer_tx_bytes_total",
            "Plaintext bytes sent to a peer in its sessions: data and control alike.",
            &|p: &proto::endpoint::PeerInfo| Some(p.stats.tx_bytes as f64),
        ),
        (
            "meshd_peer_last_handshake_seconds",
            "When the last handshake with a peer completed, Unix seconds.",
            &|p: &proto::endpoint::PeerInfo| {
                p.last_handshake
                    .map(|t| unix - now.saturating_duration_since(t).as_secs_f64())
            },
        ),
    ] {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        family(o, name, kind, help);
        for (peer, p) in &named {
            if let Some(v) = v(p) {
                let _ = writeln!(o, "{name}{{peer=\"{peer}\"}} {v:.0}");
            }
        }
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("metrics.address: cannot bind {addr}: {e}"))
}

/// Serves scrapes until the process ends: from loopback, or from a
/// source `[metrics] allow` names (others are closed unanswered).
pub async fn serve(
    listener: TcpListener,
    to_node: mpsc::Sender<Pending>,
    cfg: types::config::MetricsSection,
) {
    let on_loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    loop {
        let Ok((mut stream, from)) = listener.accept().await else {
            continue;
        };
        if !cfg.allows(from.ip()) {
            continue; // dropped: closed unanswered
        }
        let to_node = to_node.clone();
        tokio::spawn(async move {
            let mut req = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut req),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let head = String::from_utf8_lossy(&req[..n]);
            let (status, body) = if on_loopback && !host_is_loopback(&head) {
                // A web page in a local browser, its name rebound to
                // 127.0.0.1, must not read the node's metrics.
                (
                    "421 Misdirected Request",
                    "metrics answer only requests for a loopback host (Host: 127.0.0.1, [::1] or localhost)\n".to_string(),
                )
            } else if head.starts_with("GET /metrics") || head.starts_with("GET / ") {
                let (tx, rx) = oneshot::channel();
                if to_node.send((AdminRequest::Metrics, tx)).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(AdminResponse::Metrics { text }) => ("200 OK", text),
                    _ => (
                        "503 Service Unavailable",
                        "meshd is shutting down\n".to_string(),
                    ),
                }
            } else {
                ("404 Not Found", "try GET /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        });
    }
}

/// Whether an HTTP request's `Host` header, if it has one, names a
/// loopback host (DNS rebinding defence; a request without one, as from
/// curl 0.9 or a scraper speaking HTTP/1.0, passes).
fn host_is_loopback(head: &str) -> bool {
    let Some(host) = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
    }) else {
        return true;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter family with one series per key of `values` (labelled
/// `label`), in key order; keys never counted have no series.
fn labelled_counter(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &std::collections::HashMap<&'static str, u64>,
) {
    family(out, name, "counter", help);
    let mut sorted: Vec<_> = values.iter().collect();
    sorted.sort();
    for (key, n) in sorted {
        let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {n}");
    }
}

/// Renders the endpoint's counters.
pub fn render(
    ep: &Endpoint,
    now: std::time::Instant,
    uptime_secs: u64,
    [no_route, local_scope]: [u64; 2],
    [queue_codel, queue_full]: [u64; 2],
    workers: &[[u64; 2]],
) -> String {
    let mut o = String::new();
    let peers = ep.peers(now);
    let s = ep.stats();
    family(
        &mut o,
        "meshd_uptime_seconds",
        "gauge",
        "Seconds since meshd started.",
    );
    let _ = writeln!(o, "meshd_uptime_seconds {uptime_secs}");
    family(
        &mut o,
        "meshd_build_info",
        "gauge",
        "The meshd version and the commit it was built from (always 1).",
    );
    let _ = writeln!(
        o,
        "meshd_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("MESHD_COMMIT")
    );
    process_metrics(&mut o);
    peer_metrics(&mut o, &peers, now);
    family(
        &mut o,
        "meshd_adverts_unacknowledged",
        "gauge",
        "Adverts and sync requests sent to neighbours and not acknowledged yet (each is sent again until it is, a few times at most).",
    );
    let _ = writeln!(o, "meshd_adverts_unacknowledged {}", ep.adverts_unacked());
    family(
        &mut o,
        "meshd_ids_alerts_total",
        "counter",
        "Intrusion-detection alerts raised against peers, by scenario and the response taken (meshctl alerts).",
    );
    for ((scenario, response), n) in ep.alert_counts() {
        let r = response.name();
        let _ = writeln!(
            o,
            "meshd_ids_alerts_total{{scenario=\"{scenario}\",response=\"{r}\"}} {n}"
        );
    }
    family(
        &mut o,
        "meshd_ids_sanctioned_peers",
        "gauge",
        "Peers under an intrusion-detection sanction now, by response (meshctl quarantine).",
    );
    let held = ep.sanctioned(now);
    for r in [
        proto::ids::Response::RateLimit,
        proto::ids::Response::Quarantine,
    ] {
        let n = held.iter().filter(|x| x.response == r).count();
        let _ = writeln!(
            o,
            "meshd_ids_sanctioned_peers{{response=\"{}\"}} {n}",
            r.name()
        );
    }
    family(
        &mut o,
        "meshd_certificate_not_after_seconds",
        "gauge",
        "End of a certificate's validity, Unix seconds: this node's (peer=\"\") and each peer's whose certificate is known. Alert on it minus time() (meshctl cert renew, then reload).",
    );
    let own = ep.identity().certificate().body().not_after;
    let _ = writeln!(o, "meshd_certificate_not_after_seconds{{peer=\"\"}} {own}");
    for p in &peers {
        if let (Some(name), Some(c)) = (&p.name, &p.cert) {
            let _ = writeln!(
                o,
                "meshd_certificate_not_after_seconds{{peer=\"{name}\"}} {}",
                c.body().not_after
            );
        }
    }
    family(
        &mut o,
        "meshd_peer_clock_offset_seconds",
        "gauge",
        "A peer's clock minus this node's, from the timestamp of its latest handshake initiation this node answered. Certificates, revocation lists and policy versions are judged by wall clocks: alert on its absolute value (run NTP on every node).",
    );
    for p in &peers {
        if let (Some(name), Some(ms)) = (&p.name, p.clock_offset_ms) {
            let _ = writeln!(
                o,
                "meshd_peer_clock_offset_seconds{{peer=\"{name}\"}} {:.3}",
                ms as f64 / 1e3
            );
        }
    }
    family(
        &mut o,
        "meshd_worker_packets_total",
        "counter",
        "Packets each worker took in, from the TUN device (tun) or UDP (udp).",
    );
    for (i, w) in workers.iter().enumerate() {
        let _ = writeln!(
            o,
            "meshd_worker_packets_total{{worker=\"{i}\",from=\"tun\"}} {}",
            w[0]
        );
        let _ = writeln!(
            o,
            "meshd_worker_packets_total{{worker=\"{i}\",from=\"udp\"}} {}",
            w[1]
        );
    }
    family(&mut o, "meshd_peers", "gauge", "Peers known.");
    let _ = writeln!(o, "meshd_peers {}", peers.len());
    family(
        &mut o,
        "meshd_sessions",
        "gauge",
        "Peers with a usable session.",
    );
    let _ = writeln!(
        o,
        "meshd_sessions {}",
        peers.iter().filter(|p| p.has_session).count()
    );
    let (mut txp, mut rxp, mut txb, mut rxb) = (0u64, 0u64, 0u64, 0u64);
    for p in &peers {
        txp += p.stats.tx_packets;
        rxp += p.stats.rx_packets;
        txb += p.stats.tx_bytes;
        rxb += p.stats.rx_bytes;
    }
    family(
        &mut o,
        "meshd_packets_total",
        "counter",
        "Transport packets, including keepalives.",
    );
    let _ = writeln!(o, "meshd_packets_total{{direction=\"tx\"}} {txp}");
    let _ = writeln!(o, "meshd_packets_total{{direction=\"rx\"}} {rxp}");
    family(
        &mut o,
        "meshd_bytes_total",
        "counter",
        "Inner (overlay) payload bytes.",
    );
    let _ = writeln!(o, "meshd_bytes_total{{direction=\"tx\"}} {txb}");
    let _ = writeln!(o, "meshd_bytes_total{{direction=\"rx\"}} {rxb}");
    family(
        &mut o,
        "meshd_handshakes_completed_total",
        "counter",
        "Hybrid handshakes completed, either role.",
    );
    let _ = writeln!(
        o,
        "meshd_handshakes_completed_total {}",
        s.handshakes_completed
    );
    family(
        &mut o,
        "meshd_handshake_initiations_sent_total",
        "counter",
        "Handshake initiations sent, including retries.",
    );
    let _ = writeln!(
        o,
        "meshd_handshake_initiations_sent_total {}",
        s.initiations_sent
    );
    family(
        &mut o,
        "meshd_handshake_failures_total",
        "counter",
        "Handshakes rejected, by reason.",
    );
    let mut reasons: Vec<_> = s.handshake_failures.iter().collect();
    reasons.sort();
    for (reason, n) in reasons {
        let _ = writeln!(
            o,
            "meshd_handshake_failures_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        &mut o,
        "meshd_cookie_replies_sent_total",
        "counter",
        "Cookie replies sent under handshake load.",
    );
    let _ = writeln!(
        o,
        "meshd_cookie_replies_sent_total {}",
        s.cookie_replies_sent
    );
    for (name, help, v) in [
        (
            "meshd_key_probes_sent_total",
            "Key probes sent to bootstrap addresses.",
            s.key_requests_sent,
        ),
        (
            "meshd_key_probe_replies_sent_total",
            "Key probes answered with this node's public key.",
            s.key_replies_sent,
        ),
        (
            "meshd_members_learned_total",
            "Members known from the mesh that became peers when traffic or a name lookup asked for them.",
            s.members_learned,
        ),
        (
            "meshd_lookups_sent_total",
            "Member lookups a stub sent its relay (traffic or a name for a member it held no certificate of).",
            s.lookups_sent,
        ),
        (
            "meshd_lookups_answered_total",
            "Member lookups of other nodes answered with a certificate.",
            s.lookups_answered,
        ),
        (
            "meshd_lookups_refused_total",
            "Member lookups not answered: above this node's budget of 200 a second.",
            s.lookups_refused,
        ),
        (
            "meshd_members_looked_up_total",
            "Members learned from the answer to a lookup.",
            s.members_looked_up,
        ),
        (
            "meshd_lookup_answers_refused_total",
            "Answers to lookups refused (CA check failed, revoked, or outside this node's enclaves).",
            s.lookup_answers_refused,
        ),
        (
            "meshd_punches_sent_total",
            "Punches sent: this node's candidate endpoints, to a member reached through a relay.",
            s.punches_sent,
        ),
        (
            "meshd_punches_answered_total",
            "Punches of other members answered with probes to their candidates.",
            s.punches_answered,
        ),
        (
            "meshd_punch_probes_sent_total",
            "Probes sent directly to a member's candidate endpoints.",
            s.punch_probes_sent,
        ),
        (
            "meshd_endpoints_silent_total",
            "Times a peer's direct address did not answer handshakes (its traffic then goes through a relay).",
            s.endpoints_silent,
        ),
        (
            "meshd_direct_paths_punched_total",
            "Direct paths opened by punching (an answer to a punch probe came back).",
            s.direct_paths_punched,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        &mut o,
        "meshd_punch_refusals_total",
        "counter",
        "Punches not acted on: rate (above one a second per member or the budget), candidate (an address never probed).",
    );
    for reason in ["rate", "candidate"] {
        let n = s.punch_refusals.get(reason).copied().unwrap_or(0);
        let _ = writeln!(o, "meshd_punch_refusals_total{{reason=\"{reason}\"}} {n}");
    }
    family(
        &mut o,
        "meshd_dropped_packets_total",
        "counter",
        "Packets and datagrams dropped, by reason.",
    );
    for r in DropReason::ALL {
        let _ = writeln!(
            o,
            "meshd_dropped_packets_total{{reason=\"{}\"}} {}",
            r.name(),
            s.drops(r)
        );
    }
    let _ = writeln!(
        o,
        "meshd_dropped_packets_total{{reason=\"no_route\"}} {no_route}"
    );
    let _ = writeln!(
        o,
        "meshd_dropped_packets_total{{reason=\"queue_codel\"}} {queue_codel}"
    );
    let _ = writeln!(
        o,
        "meshd_dropped_packets_total{{reason=\"queue_full\"}} {queue_full}"
    );
    family(
        &mut o,
        "meshd_tun_local_scope_packets_total",
        "counter",
        "Packets from the TUN device to multicast, broadcast or link-local addresses (the kernel's router solicitations, MLD reports), which the mesh does not carry; not drops.",
    );
    let _ = writeln!(o, "meshd_tun_local_scope_packets_total {local_scope}");
    for (name, help, value) in [
        (
            "meshd_route_changes_total",
            "Times a peer's path changed (direct, or which relay).",
            s.route_changes,
        ),
        (
            "meshd_failovers_total",
            "Times a peer's path moved from direct to a relay.",
            s.failovers,
        ),
        (
            "meshd_suspicions_total",
            "Relays suspected gone: another relay stopped listing its link to them while they still listed it; routes left them for a short hold.",
            s.suspicions,
        ),
        (
            "meshd_stub_catch_ups_total",
            "Syncs this stub sent to a relay that became its designated one (the relay that passes it other relays' changes).",
            s.stub_catch_ups,
        ),
        (
            "meshd_relayed_packets_total",
            "Datagrams forwarded as a relay for other nodes.",
            s.relayed_packets,
        ),
        (
            "meshd_relayed_bytes_total",
            "Bytes forwarded as a relay for other nodes.",
            s.relayed_bytes,
        ),
        (
            "meshd_probes_sent_total",
            "Link probes sent.",
            s.probes_sent,
        ),
        (
            "meshd_gossip_bytes_sent_total",
            "Link-state bytes sent: adverts (own, flooded, sent again), acknowledgements, summaries, sync requests.",
            s.gossip_bytes_sent,
        ),
        (
            "meshd_adverts_retransmitted_total",
            "Adverts sent again because a neighbour did not acknowledge them in time (lost on the way, or the neighbour was slow).",
            s.adverts_retransmitted,
        ),
        (
            "meshd_adverts_duplicate_total",
            "Adverts received that were already held at that sequence number (crossing floods, retransmissions whose acknowledgement was lost, database syncs).",
            s.adverts_duplicate,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {value}");
    }
    let probed: Vec<_> = peers
        .iter()
        .filter_map(|p| Some((p.cert.as_ref()?.name(), p.link?)))
        .collect();
    family(
        &mut o,
        "meshd_link_up",
        "gauge",
        "Direct link to the peer is up by its probes (1) or down (0).",
    );
    for (name, l) in &probed {
        let _ = writeln!(o, "meshd_link_up{{peer=\"{name}\"}} {}", u8::from(l.up));
    }
    family(
        &mut o,
        "meshd_link_rtt_seconds",
        "gauge",
        "Smoothed probe round trip on the direct link to the peer.",
    );
    for (name, l) in &probed {
        if let Some(rtt) = l.srtt {
            let _ = writeln!(
                o,
                "meshd_link_rtt_seconds{{peer=\"{name}\"}} {}",
                rtt.as_secs_f64()
            );
        }
    }
    family(
        &mut o,
        "meshd_link_loss_ratio",
        "gauge",
        "Fraction of recent probes lost on the direct link to the peer.",
    );
    for (name, l) in &probed {
        let _ = writeln!(o, "meshd_link_loss_ratio{{peer=\"{name}\"}} {}", l.loss);
    }
    family(
        &mut o,
        "meshd_link_path_mtu_bytes",
        "gauge",
        "Largest datagram (outer IP and UDP headers included) the direct link to the peer carries, by path MTU discovery.",
    );
    for (name, l) in &probed {
        if let Some(mtu) = l.path_mtu {
            let _ = writeln!(o, "meshd_link_path_mtu_bytes{{peer=\"{name}\"}} {mtu}");
        }
    }
    family(
        &mut o,
        "meshd_pmtu_probes_sent_total",
        "counter",
        "Path MTU probes sent.",
    );
    let _ = writeln!(
        o,
        "meshd_pmtu_probes_sent_total {}",
        ep.stats().pmtu_probes_sent
    );
    let f = ep.filter();
    family(
        &mut o,
        "meshd_policy_denied_total",
        "counter",
        "Inner packets refused by the policy, by direction and reason (enclave, deny_rule, default).",
    );
    for (d, dir) in ["out", "in"].iter().enumerate() {
        for (r, reason) in proto::filter::REASON_NAMES.iter().enumerate() {
            let _ = writeln!(
                o,
                "meshd_policy_denied_total{{direction=\"{dir}\",reason=\"{reason}\"}} {}",
                f.stats().denied[d][r]
            );
        }
    }
    family(
        &mut o,
        "meshd_policy_rule_denied_total",
        "counter",
        "Inner packets refused by each deny rule (1-based, file order).",
    );
    if let Some(p) = ep.policy() {
        for (i, rule) in p.rules().iter().enumerate() {
            if rule.action == proto::policy::Action::Deny {
                let n = f.stats().rule_denied.get(i).copied().unwrap_or(0);
                let _ = writeln!(
                    o,
                    "meshd_policy_rule_denied_total{{rule=\"{}\"}} {n}",
                    i + 1
                );
            }
        }
    }
    family(
        &mut o,
        "meshd_conntrack_flows",
        "gauge",
        "Flows tracked by the policy filter.",
    );
    let _ = writeln!(o, "meshd_conntrack_flows {}", f.flow_count());
    family(
        &mut o,
        "meshd_conntrack_full_total",
        "counter",
        "New flows not tracked because the table was full of answered flows.",
    );
    let _ = writeln!(o, "meshd_conntrack_full_total {}", f.stats().conntrack_full);
    family(
        &mut o,
        "meshd_conntrack_quota_total",
        "counter",
        "New flows not tracked because their remote address held its quota of unanswered flows.",
    );
    let _ = writeln!(
        o,
        "meshd_conntrack_quota_total {}",
        f.stats().conntrack_quota
    );
    family(
        &mut o,
        "meshd_conntrack_evicted_total",
        "counter",
        "Unanswered flows dropped from a full table to make room for a new one.",
    );
    let _ = writeln!(
        o,
        "meshd_conntrack_evicted_total {}",
        f.stats().conntrack_evicted
    );
    family(
        &mut o,
        "meshd_bundle_version",
        "gauge",
        "Version of the signed bundle in force (0: none).",
    );
    for kind in proto::bundle::BundleKind::ALL {
        let v = ep.bundle(kind).map_or(0, |b| b.version());
        let _ = writeln!(o, "meshd_bundle_version{{kind=\"{kind}\"}} {v}");
    }
    labelled_counter(
        &mut o,
        "meshd_bundle_rejects_total",
        "Bundles refused (forged, older, malformed, invalid content), by reason.",
        "reason",
        &s.bundle_rejects,
    );
    labelled_counter(
        &mut o,
        "meshd_control_bytes_sent_total",
        "Control plaintext bytes sent to neighbours and peers (link state, acknowledgements, certificates, bundles, lookups, accusations; probes and path traversal apart), by message kind.",
        "kind",
        &s.control_bytes_by_kind,
    );
    family(
        &mut o,
        "meshd_advert_rejects_total",
        "counter",
        "Link-state adverts refused: bad_signature (altered or forged), bad_certificate, inadmissible_origin, parked_full, checks_full (signature checks queued to their bound).",
    );
    for reason in [
        "bad_signature",
        "bad_certificate",
        "inadmissible_origin",
        "parked_full",
        "checks_full",
    ] {
        let n = s.advert_rejects.get(reason).copied().unwrap_or(0);
        let _ = writeln!(o, "meshd_advert_rejects_total{{reason=\"{reason}\"}} {n}");
    }
    for (name, help, n) in [
        (
            "meshd_accusations_originated_total",
            "Accusations (signed alerts) this node sent about its own quarantines: new, refreshed every 10 s, withdrawn.",
            s.accusations_originated,
        ),
        (
            "meshd_accusations_taken_total",
            "Accusations of other members taken as news and flooded on.",
            s.accusations_taken,
        ),
        (
            "meshd_accusations_sent_total",
            "Accusation messages sent to neighbours (own and flooded on).",
            s.accusations_sent,
        ),
    ] {
        family(&mut o, name, "counter", help);
        let _ = writeln!(o, "{name} {n}");
    }
    family(
        &mut o,
        "meshd_accusation_rejects_total",
        "counter",
        "Accusations refused, by reason (bad_signature, bad_certificate, inadmissible_accuser, expired, self_accusation, too_many, rate, book_full).",
    );
    for reason in [
        "bad_signature",
        "bad_certificate",
        "inadmissible_accuser",
        "expired",
        "self_accusation",
        "too_many",
        "rate",
        "book_full",
    ] {
        let n = s.accusation_rejects.get(reason).copied().unwrap_or(0);
        let _ = writeln!(
            o,
            "meshd_accusation_rejects_total{{reason=\"{reason}\"}} {n}"
        );
    }
    family(
        &mut o,
        "meshd_origin_certs_fetched_total",
        "counter",
        "Certificates of advert origins fetched from neighbours.",
    );
    let _ = writeln!(o, "meshd_origin_certs_fetched_total {}", s.certs_fetched);
    family(
        &mut o,
        "meshd_signature_checks_total",
        "counter",
        "Ed25519 signatures checked for the link state (adverts, origin and accuser certificates, accusations).",
    );
    let _ = writeln!(o, "meshd_signature_checks_total {}", s.signatures_checked);
    family(
        &mut o,
        "meshd_signature_checks_queued",
        "gauge",
        "Signature checks of adverts and certificates waiting for the checks thread.",
    );
    let _ = writeln!(o, "meshd_signature_checks_queued {}", ep.checks_pending());
    family(
        &mut o,
        "meshd_peers_retired_total",
        "counter",
        "Peers that introduced themselves and were retired after their link stayed down 60 s.",
    );
    let _ = writeln!(o, "meshd_peers_retired_total {}", s.peers_retired);
    family(
        &mut o,
        "meshd_peers_removed_total",
        "counter",
        "Learned peers removed once they held nothing (retired, or no session for 60 s): the peer table returns to its size.",
    );
    let _ = writeln!(o, "meshd_peers_removed_total {}", s.peers_removed);
    family(
        &mut o,
        "meshd_local_stalls_total",
        "counter",
        "Times meshd's own timers ran 100 ms or more late (it was not running); probes in flight were not blamed on the links.",
    );
    let _ = writeln!(o, "meshd_local_stalls_total {}", s.local_stalls);
    family(
        &mut o,
        "meshd_peers_refused",
        "gauge",
        "Peers refused: revoked, or outside this node's enclaves.",
    );
    let _ = writeln!(
        o,
        "meshd_peers_refused {}",
        peers.iter().filter(|p| p.refused).count()
    );
    o
}

#[cfg(test)]
mod tests {
    use super::host_is_loopback;

    #[test]
    fn only_loopback_hosts_are_answered() {
        for ok in [
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9720\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nhost: localhost:9720\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: [::1]:9720\r\n\r\n",
            "GET /metrics HTTP/1.0\r\n\r\n",
        ] {
            assert!(host_is_loopback(ok), "{ok}");
        }
        for bad in [
            "GET /metrics HTTP/1.1\r\nHost: evil.example:9720\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nHost: 198.18.0.1:9720\r\n\r\n",
        ] {
            assert!(!host_is_loopback(bad), "{bad}");
        }
    }
}
