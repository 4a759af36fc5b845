//! The admin-socket client: one JSON request line to the running meshd,
//! one answer line back; each command prints the answer's `types` struct
//! as JSON (`--json`) or through `render`.

use std::path::Path;

use types::admin::{AdminRequest, AdminResponse};

use crate::cli::{AdminArgs, PingArgs, TraceArgs};
use crate::render;
use crate::Result;

/// Sends one request to meshd's admin socket and reads the answer.
pub fn ask(socket: &Path, req: &AdminRequest) -> Result<AdminResponse> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => format!(
            "{}: meshd is not running (no admin socket); start it with 'meshd --config FILE' or pass --socket",
            socket.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied; the admin socket is mode 0600, run meshctl as the user meshd runs as (usually root)",
            socket.display()
        ),
        _ => format!("{}: {e}", socket.display()),
    })?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    match serde_json::from_str(&answer)? {
        AdminResponse::Error { message } => Err(format!("meshd: {message}").into()),
        r => Ok(r),
    }
}

/// Prints `v` as JSON, or as `text` renders it.
fn show<T: serde::Serialize + ?Sized>(
    json: bool,
    v: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(v)?);
    } else {
        out!("{}", text(v));
    }
    Ok(())
}

/// `meshctl revoked`.
pub fn revoked(a: &AdminArgs) -> Result<()> {
    let r = ask(&a.socket, &AdminRequest::Revocations)?;
    let AdminResponse::Revocations { .. } = &r else {
        return Err("meshd answered something other than its revocation list".into());
    };
    show(a.json, &r, render::revoked)
}

/// `meshctl alerts`.
pub fn alerts(a: &AdminArgs) -> Result<()> {
    let r = ask(&a.socket, &AdminRequest::Alerts)?;
    let AdminResponse::Alerts { .. } = &r else {
        return Err("meshd answered something other than its alerts".into());
    };
    show(a.json, &r, render::alerts)
}

/// `meshctl quarantine [--release PEER]`.
pub fn quarantine(a: &crate::cli::QuarantineArgs) -> Result<()> {
    let req = AdminRequest::Quarantine {
        release: a.release.clone(),
    };
    let r = ask(&a.admin.socket, &req)?;
    match &r {
        AdminResponse::Quarantine { .. } => show(a.admin.json, &r, render::quarantine),
        AdminResponse::Error { message } => Err(message.clone().into()),
        _ => Err("meshd answered something other than its sanctions".into()),
    }
}

/// `meshctl rekey PEER`.
pub fn rekey(a: &crate::cli::RekeyArgs) -> Result<()> {
    let req = AdminRequest::Rekey {
        peer: a.peer.clone(),
    };
    let r = ask(&a.admin.socket, &req)?;
    match &r {
        AdminResponse::Rekeying { .. } => show(a.admin.json, &r, render::rekeying),
        AdminResponse::Error { message } => Err(message.clone().into()),
        _ => Err("meshd answered something other than a rekey".into()),
    }
}

/// `meshctl reload`.
pub fn reload(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Reloaded(v) = ask(&a.socket, &AdminRequest::Reload)? else {
        return Err("meshd answered something other than a reload".into());
    };
    show(a.json, &v, render::reload)
}

/// `meshctl status`.
pub fn status(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Status(s) = ask(&a.socket, &AdminRequest::Status)? else {
        return Err("meshd answered something other than a status".into());
    };
    show(a.json, &*s, render::status)
}

/// `meshctl ping`: `count` probes, `interval_ms` apart.
pub fn ping(a: &PingArgs) -> Result<()> {
    let mut results = Vec::new();
    for i in 0..a.count {
        if i > 0 {
            std::thread::sleep(std::time::Duration::from_millis(a.interval_ms));
        }
        let req = AdminRequest::Ping {
            target: a.target.clone(),
            timeout_ms: a.timeout_ms,
        };
        let AdminResponse::Ping(v) = ask(&a.admin.socket, &req)? else {
            return Err("meshd answered something other than a ping result".into());
        };
        if !a.admin.json {
            outln!("{}", render::ping_line(&v));
        }
        results.push(v);
    }
    if a.admin.json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        out!("{}", render::ping_summary(&results));
    }
    if results.iter().all(|v| v.rtt_ms.is_none()) {
        return Err(format!("no reply from {}", a.target).into());
    }
    Ok(())
}

/// `meshctl routes`.
pub fn routes(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Routes { routes } = ask(&a.socket, &AdminRequest::Routes)? else {
        return Err("meshd answered something other than a route table".into());
    };
    show(a.json, &routes[..], render::routes)
}

/// `meshctl trace`.
pub fn trace(a: &TraceArgs) -> Result<()> {
    let req = AdminRequest::Trace {
        target: a.target.clone(),
        timeout_ms: a.timeout_ms,
    };
    let AdminResponse::Trace(t) = ask(&a.admin.socket, &req)? else {
        return Err("meshd answered something other than a trace".into());
    };
    show(a.admin.json, &t, |t| render::trace(t, a.timeout_ms))?;
    if t.rtt_ms.is_none() {
        return Err(format!("no reply from {}", a.target).into());
    }
    Ok(())
}

/// `meshctl peers`.
pub fn peers(a: &AdminArgs) -> Result<()> {
    let AdminResponse::Peers { peers } = ask(&a.socket, &AdminRequest::Peers)? else {
        return Err("meshd answered something other than a peer list".into());
    };
    show(a.json, &peers[..], render::peers)
}
