//! The idle-connections client of `bench/run.sh`: opens N keep-alive connections to one 127.0.0.1 port,
//! sends one request on each and reads its answer, prints `ready N`, then holds them all open and idle
//! for HOLD seconds (or until its standard input closes) and exits, closing them.
//!
//! `cargo run --release --example idle_conns -- PORT N HOLD_S` (needs `ulimit -n` above N).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const REQUEST: &[u8] = b"GET /idle HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: amlbcookie=01\r\n\r\n";
/// Connections opened at once.
const PARALLEL: usize = 256;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parse = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(port), Some(n), Some(hold)) = (parse(0), parse(1), parse(2)) else {
        eprintln!("usage: idle_conns PORT N HOLD_S");
        std::process::exit(2);
    };
    let port = u16::try_from(port).map_err(std::io::Error::other)?;
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async move {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut open = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        let mut remaining = n;
        while remaining > 0 {
            let batch = remaining.min(PARALLEL as u64);
            let tasks: Vec<_> = (0..batch).map(|_| tokio::spawn(one(addr))).collect();
            for t in tasks {
                open.push(t.await.map_err(std::io::Error::other)??);
            }
            remaining -= batch;
        }
        println!("ready {}", open.len());
        // Hold until the time is up or whoever started us closes our stdin.
        let (closed, stdin_closed) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = closed.send(());
        });
        let _ = tokio::time::timeout(Duration::from_secs(hold), stdin_closed).await;
        drop(open);
        Ok::<(), std::io::Error>(())
    })?;
    // The stdin reader may still be blocked; it must not keep the process alive.
    std::process::exit(0)
}

/// Connects, sends one keep-alive request and reads the whole answer (headers and `Content-Length` body).
async fn one(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(REQUEST).await?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the answer was complete"));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(buf.get(..end).unwrap_or_default()).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                let rest = String::from_utf8_lossy(buf.get(end..).unwrap_or_default()).into_owned();
                return Err(std::io::Error::other(format!("unexpected answer: {head}{rest}")));
            }
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return Ok(s);
            }
        }
    }
}
