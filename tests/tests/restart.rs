//! Restarts under traffic (root; CI runs as root): for each way two nodes
//! can know each other, either one is killed and started again while a
//! 1,000 datagram/s stream runs each way, then again with a stream towards
//! it alone (its own packets would make it handshake; then only the other
//! side can notice). The outage is the longer of a receiver's longest
//! silence and the datagrams that never arrived. Each case builds its own
//! hosts and removes them on drop.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use meshd_tests::{netns_available, Mesh, MeshOptions};

/// How h0 and h1 know each other (h2 is there in every case, a relay).
#[derive(Clone, Copy, Debug)]
enum Knowing {
    /// Each lists the other as a `[[peer]]`.
    ListedBothWays,
    /// h0 lists h1; h1 lists only h2.
    ListedOneWay,
    /// Neither lists anyone: both join with h2's address and learn each
    /// other from the mesh.
    Learned,
}

fn mesh(knowing: Knowing) -> Mesh {
    // Release builds: the outage includes a start (key generation, the
    // first handshakes), which a debug build makes several times slower
    // and a busy machine slower again; the bound is about the protocol.
    let release = MeshOptions {
        release: true,
        ..MeshOptions::default()
    };
    let opts = match knowing {
        Knowing::Learned => MeshOptions {
            bootstrap: vec![2],
            ..release
        },
        _ => release,
    };
    let mesh = Mesh::new(3, opts);
    if let Knowing::ListedOneWay = knowing {
        // Drop h1's [[peer]] entry for h0.
        let path = &mesh.hosts[1].config;
        let text = std::fs::read_to_string(path).unwrap();
        let entry = format!(
            "\n[[peer]]\ncertificate = \"h0.crt\"\nendpoint = \"{}:51820\"\n",
            mesh.hosts[0].public
        );
        assert!(text.contains(&entry), "{text}");
        std::fs::write(path, text.replace(&entry, "")).unwrap();
    }
    mesh
}

/// After either side of any pair restarts (listed both ways, one way, or
/// learned), traffic is back in both directions within 2 s.
#[test]
fn after_either_side_of_any_pair_restarts_traffic_is_back_within_2_s_both_ways() {
    if !netns_available() {
        return;
    }
    let mut outages = Vec::new();
    for knowing in [
        Knowing::ListedBothWays,
        Knowing::ListedOneWay,
        Knowing::Learned,
    ] {
        for restarted in [0, 1] {
            let mut mesh = mesh(knowing);
            mesh.start_all();
            // Both ways work first (a learned pair meets here).
            for (a, b) in [(0, "h1"), (1, "h0")] {
                let deadline = Instant::now() + Duration::from_secs(20);
                let ok = loop {
                    if mesh.ping_name(a, b) {
                        break true;
                    }
                    if Instant::now() > deadline {
                        break false;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                };
                assert!(ok, "{knowing:?}: h{a} -> {b} before the restart");
            }
            let forward = mesh.udp_stream(0, 1, 6000, 4);
            let back = mesh.udp_stream(1, 0, 6001, 4);
            std::thread::sleep(Duration::from_secs(2));
            mesh.kill9(restarted);
            mesh.start(restarted);
            let gaps = [mesh.stream_gap(forward), mesh.stream_gap(back)];
            eprintln!(
                "{knowing:?}, h{restarted} restarted: outage h0->h1 {:.0} ms, h1->h0 {:.0} ms",
                gaps[0], gaps[1]
            );
            // Again, with traffic only towards the restarted node (its
            // own packets would make it handshake; here only the survivor
            // can notice).
            let survivor = 1 - restarted;
            let toward = mesh.udp_stream(survivor, restarted, 6002, 4);
            std::thread::sleep(Duration::from_secs(2));
            mesh.kill9(restarted);
            mesh.start(restarted);
            let one_way = mesh.stream_gap(toward);
            eprintln!(
                "{knowing:?}, h{restarted} restarted, traffic only towards it: outage {one_way:.0} ms"
            );
            outages.push((knowing, restarted, [gaps[0], gaps[1], one_way]));
        }
    }
    let over: Vec<_> = (outages.iter())
        .filter(|(_, _, g)| g.iter().any(|&ms| ms >= 2000.0))
        .collect();
    assert!(over.is_empty(), "outages of 2 s or more: {over:?}");
}
