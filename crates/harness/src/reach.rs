//! Reachability probes for policy tests: `serve` answers TCP connections
//! and echoes UDP datagrams on a set of ports for a bounded time; `probe`
//! tries one TCP connection or one UDP round trip with a timeout. Used by
//! the segment-escape attack test, where every disallowed pair must fail.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Answers on every port in `ports` at `addr` until `secs` pass: a TCP
/// client gets "ok\n" and the connection closed, a UDP datagram is echoed.
pub fn serve(addr: IpAddr, ports: &[u16], secs: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs.min(600));
    let mut threads = Vec::new();
    for &port in ports {
        let sa = SocketAddr::new(addr, port);
        let tcp = TcpListener::bind(sa).map_err(|e| format!("tcp {sa}: {e}"))?;
        tcp.set_nonblocking(true).map_err(|e| e.to_string())?;
        let udp = UdpSocket::bind(sa).map_err(|e| format!("udp {sa}: {e}"))?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| e.to_string())?;
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while Instant::now() < deadline {
                if let Ok((mut s, _)) = tcp.accept() {
                    let _ = s.write_all(b"ok\n");
                }
                if let Ok((n, from)) = udp.recv_from(&mut buf) {
                    let _ = udp.send_to(&buf[..n], from);
                }
            }
        }));
    }
    println!("serving");
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

/// One TCP connect (and read of the greeting) or one UDP round trip.
/// `Ok(true)` if the far end answered within `timeout`.
pub fn probe(udp: bool, to: SocketAddr, timeout: Duration) -> Result<bool, String> {
    if udp {
        let bind: SocketAddr = if to.is_ipv4() {
            "0.0.0.0:0".parse().map_err(|_| "bind")?
        } else {
            "[::]:0".parse().map_err(|_| "bind")?
        };
        let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.send_to(b"probe", to).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        return Ok(matches!(s.recv_from(&mut buf), Ok((5, _))));
    }
    match TcpStream::connect_timeout(&to, timeout) {
        Ok(mut s) => {
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 3];
            Ok(s.read_exact(&mut buf).is_ok() && &buf == b"ok\n")
        }
        Err(_) => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_reaches_serve_on_loopback_and_not_a_closed_port() {
        let addr: IpAddr = "127.0.0.1".parse().unwrap();
        let port = {
            let l = TcpListener::bind((addr, 0)).unwrap();
            l.local_addr().unwrap().port()
        };
        let t = std::thread::spawn(move || serve(addr, &[port], 2));
        std::thread::sleep(Duration::from_millis(200));
        let to = SocketAddr::new(addr, port);
        assert_eq!(probe(false, to, Duration::from_secs(1)), Ok(true));
        assert_eq!(probe(true, to, Duration::from_secs(1)), Ok(true));
        let closed = SocketAddr::new(addr, port.wrapping_add(1).max(1));
        assert_eq!(probe(false, closed, Duration::from_millis(300)), Ok(false));
        t.join().unwrap().unwrap();
    }
}
