//! The README's main job, end to end: the handshake demo over real loopback
//! UDP sockets must complete, deliver every packet and drop every attack.

use std::process::Command;

#[test]
fn handshake_demo_runs_end_to_end() {
    let out = Command::new(env!("CARGO_BIN_EXE_mesh-harness"))
        .args(["handshake-demo", "--packets", "300"])
        .output()
        .expect("run mesh-harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "handshake initiation fragment 1/2",
        "handshake response fragment 2/2",
        "handshake complete with 'beta' as initiator",
        "alpha got 300, beta got 300",
        "dropped a transport packet (decrypt)",
        "dropped a transport packet (replay)",
        "demo passed",
    ] {
        assert!(
            stdout.contains(expected),
            "missing '{expected}' in:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("fits a 1280-byte path MTU: false"),
        "{stdout}"
    );
}
