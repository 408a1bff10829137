//! The HTTP/1.1 fast path (`tether::proxy::h1`) against a node that answers byte for byte from a
//! script: bodies relayed with the framing they came with (chunked, length, until close, none for
//! `HEAD`), interim answers skipped, node connections reused exactly when the exchange ended cleanly and
//! replaced when the node closed them, pipelined requests answered in order, and request bodies on the
//! fast path too: a small JSON body read with the head, larger and chunked ones relayed with their
//! framing, a malformed one refused with 400 and a closed connection.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use support::{Cluster, ProxyHandle, client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What the scripted node does after a request.
enum Reply {
    /// Writes these bytes and waits for the next request on the connection.
    Bytes(Vec<u8>),
    /// Writes these bytes and closes the connection.
    BytesThenClose(Vec<u8>),
    /// Writes these bytes once the test releases the answer (`RawNode::release`).
    Held(Vec<u8>),
}

/// A node answering every request (but the proxy's health checks) from `script(method, target, body)`.
struct RawNode {
    addr: SocketAddr,
    /// Connections that carried at least one request other than a health check.
    connections: Arc<AtomicUsize>,
    /// Heads of the requests received, health checks left out.
    heads: Arc<Mutex<Vec<String>>>,
    /// Lets one held answer go.
    release: Arc<Notify>,
    shutdown: CancellationToken,
}

impl Drop for RawNode {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

type Script = fn(&str, &str, &[u8]) -> Reply;

impl RawNode {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let node = RawNode {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            heads: Arc::default(),
            release: Arc::default(),
            shutdown: CancellationToken::new(),
        };
        let (connections, heads, release, shutdown) =
            (node.connections.clone(), node.heads.clone(), node.release.clone(), node.shutdown.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = listener.accept() => match r { Ok((s, _)) => s, Err(_) => continue },
                };
                let (connections, heads, release) = (connections.clone(), heads.clone(), release.clone());
                tokio::spawn(async move {
                    let _ = serve_raw(stream, script, &connections, &heads, &release).await;
                });
            }
        });
        node
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().clone()
    }

    /// A proxy with this node alone behind it.
    async fn proxy(&self) -> ProxyHandle {
        in_front_of(self.addr).start().await
    }
}

async fn serve_raw(
    mut stream: TcpStream,
    script: Script,
    connections: &AtomicUsize,
    heads: &Mutex<Vec<String>>,
    release: &Notify,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut counted = false;
    loop {
        let Some((head, body)) = read_request(&mut stream, &mut buf).await? else { return Ok(()) };
        let mut words = head.split(' ');
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if target.contains("/health") {
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await?;
            continue;
        }
        if !counted {
            counted = true;
            connections.fetch_add(1, Ordering::SeqCst);
        }
        heads.lock().push(head.clone());
        match script(method, target, &body) {
            Reply::Bytes(bytes) => stream.write_all(&bytes).await?,
            Reply::BytesThenClose(bytes) => {
                stream.write_all(&bytes).await?;
                return stream.shutdown().await;
            }
            Reply::Held(bytes) => {
                release.notified().await;
                stream.write_all(&bytes).await?;
            }
        }
    }
}

/// One request head (as text) and its body (`Content-Length`, or `chunked` decoded), or `None` at a
/// clean end.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, Vec<u8>)>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let field = |name: &str| {
                head.lines()
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned())
            };
            if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                buf.drain(..end + 4);
                let Some(body) = read_chunked(stream, buf).await? else { return Ok(None) };
                return Ok(Some((head, body)));
            }
            let length = field("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + length].to_vec();
            buf.drain(..end + 4 + length);
            return Ok(Some((head, body)));
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes a chunked body at the start of `buf` (reading more as needed), trailers skipped.
async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Option<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        let Some(line) = buf.windows(2).position(|w| w == b"\r\n") else {
            if !read_more(stream, buf).await? {
                return Ok(None);
            }
            continue;
        };
        let size_text =
            String::from_utf8_lossy(&buf[..line]).split(';').next().unwrap_or("").trim().to_owned();
        let size = usize::from_str_radix(&size_text, 16).map_err(std::io::Error::other)?;
        if size == 0 {
            // Trailer section: lines up to an empty one.
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    return Ok(Some(body));
                }
                if !read_more(stream, buf).await? {
                    return Ok(None);
                }
            }
        }
        while buf.len() < line + 2 + size + 2 {
            if !read_more(stream, buf).await? {
                return Ok(None);
            }
        }
        body.extend_from_slice(&buf[line + 2..line + 2 + size]);
        buf.drain(..line + 2 + size + 2);
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Reads from `conn` until `want` bytes arrived or the connection closed (bounded by a deadline).
async fn read_exactly_or_close(conn: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        while got.len() < want {
            let mut chunk = [0u8; 4096];
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("the answer in time");
    got
}

const CHUNKED: &[u8] =
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n7;x=1\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";

#[tokio::test]
async fn a_chunked_answer_is_relayed_intact_and_its_node_connection_reused() {
    let node = RawNode::start(|_, _, _| Reply::Bytes(CHUNKED.to_vec())).await;
    let proxy = node.proxy().await;
    let http = client();
    for _ in 0..5 {
        let resp = http.get(proxy.url("/chunked")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "hello, world");
    }
    // Five exchanges on one node connection: the scanner found each body's end, trailers included.
    assert_eq!(node.connections(), 1);
}

#[tokio::test]
async fn a_body_delimited_by_close_reaches_the_client_whose_connection_then_closes() {
    let node =
        RawNode::start(|_, _, _| Reply::BytesThenClose(b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec()))
            .await;
    let proxy = node.proxy().await;
    for round in 1..=2 {
        let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
        conn.write_all(b"GET /close HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = String::from_utf8(read_exactly_or_close(&mut conn, usize::MAX).await).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nuntil the end"), "{answer}");
        assert_eq!(node.connections(), round, "a connection that ended its body is not reused");
    }
}

#[tokio::test]
async fn head_answers_carry_no_body_whatever_their_length_says() {
    let node = RawNode::start(|method, _, _| match method {
        "HEAD" => Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n".to_vec()),
        _ => Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nafter".to_vec()),
    })
    .await;
    let proxy = node.proxy().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let head = String::from_utf8(read_head(&mut conn).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("content-length: 5"), "{head}");
    // The same connection carries a GET next: nothing of a body was expected or sent after the HEAD.
    conn.write_all(b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let next = String::from_utf8(read_head(&mut conn).await).unwrap();
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
    assert_eq!(read_exactly_or_close(&mut conn, 5).await, b"after");
    assert_eq!(node.connections(), 1);
}

/// Reads one answer head, byte by byte so nothing after it is consumed.
async fn read_head(conn: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            match conn.read(&mut b).await {
                Ok(1) => head.push(b[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("a head in time");
    head
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let node = RawNode::start(|_, _, _| {
        Reply::Bytes(
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                .to_vec(),
        )
    })
    .await;
    let proxy = node.proxy().await;
    let resp = client().get(proxy.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn pooled_connections_the_node_closed_are_replaced_without_an_error() {
    // The node closes every connection right after its answer, without saying so: the pooled
    // connection is dead by the next request, which must still succeed.
    let node = RawNode::start(|_, _, _| {
        Reply::BytesThenClose(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec())
    })
    .await;
    let proxy = node.proxy().await;
    let http = client();
    for i in 0..30 {
        let resp = http.get(proxy.url("/")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(node.connections(), 30);
}

#[tokio::test]
async fn a_malformed_answer_is_a_502_in_am_shape_and_the_client_connection_survives() {
    let node = RawNode::start(|_, target, _| match target {
        "/bad" => Reply::BytesThenClose(b"THIS IS NOT HTTP\r\n\r\n".to_vec()),
        _ => Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()),
    })
    .await;
    let proxy = node.proxy().await;
    let http = client();
    let resp = http.get(proxy.url("/bad")).send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["code"], 502);
    assert!(v["message"].as_str().unwrap().contains("malformed"), "{v}");
    assert_eq!(http.get(proxy.url("/good")).send().await.unwrap().text().await.unwrap(), "ok");
}

#[tokio::test]
async fn pipelined_requests_with_and_without_bodies_are_answered_in_order_on_the_fast_path() {
    // Echoes method, target and body length, so each answer names its request.
    let node = RawNode::start(|method, target, body| {
        let text = format!("{method} {target} {}", body.len());
        Reply::Bytes(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len()).into_bytes())
    })
    .await;
    let proxy = node.proxy().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    // Bodiless requests, a relayed body, a chunked one and a JSON one read with its head: one write.
    conn.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b?q=1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz\
          POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n\
          POST /f HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\
          GET /d HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    for want in ["GET /a 0", "GET /b?q=1 0", "POST /c 3", "POST /e 2", "POST /f 2", "GET /d 0"] {
        let head = String::from_utf8(read_head(&mut conn).await).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .and_then(|v| v.parse().ok())
            .expect("a length");
        assert_eq!(String::from_utf8(read_exactly_or_close(&mut conn, length).await).unwrap(), want);
    }
    let heads = node.heads();
    assert_eq!(heads.len(), 6, "{heads:?}");
    assert!(heads.iter().all(|h| h.to_ascii_lowercase().contains("x-forwarded-for: 127.0.0.1")), "{heads:?}");
    assert_only_the_fast_path_reached(&proxy);
}

/// Every exchange with the node went through the fast path: its pool holds raw streams and not one
/// connection of hyper's client.
fn assert_only_the_fast_path_reached(proxy: &ProxyHandle) {
    let conns = Arc::clone(&proxy.proxy.snapshot().upstreams.backend("01").unwrap().conns);
    let (senders, streams) = conns.idle_by_path();
    assert_eq!((senders, streams), (0, 1), "one pooled fast-path stream, no hyper connection");
}

/// Echoes method, target, body length and a checksum of the body.
fn echo_body(method: &str, target: &str, body: &[u8]) -> Reply {
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{method} {target} {} {sum}", body.len());
    Reply::Bytes(format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}", text.len()).into_bytes())
}

/// Reads one answer with a `Content-Length` body: (head, body).
async fn read_answer(conn: &mut TcpStream) -> (String, String) {
    let head = String::from_utf8(read_head(conn).await).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (head, String::from_utf8(read_exactly_or_close(conn, length).await).unwrap())
}

#[tokio::test]
async fn a_large_body_and_a_chunked_one_arriving_in_pieces_are_relayed_intact() {
    let node = RawNode::start(echo_body).await;
    let proxy = node.proxy().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    // 200 KiB, more than the peek limit, written in pieces.
    let body: Vec<u8> = (0..200 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let head = format!("PUT /big HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len());
    conn.write_all(head.as_bytes()).await.unwrap();
    for piece in body.chunks(7 * 1024) {
        conn.write_all(piece).await.unwrap();
    }
    let (status, text) = read_answer(&mut conn).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(text, format!("PUT /big {} {sum}", body.len()));
    // A chunked body whose chunk headers, data and trailer arrive split across writes.
    conn.write_all(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r")
        .await
        .unwrap();
    conn.write_all(b"\nwiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Sum").await.unwrap();
    conn.write_all(b": 1\r\n\r\n").await.unwrap();
    let (status, text) = read_answer(&mut conn).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let sum: u64 = b"wikipedia".iter().map(|&b| u64::from(b)).sum();
    assert_eq!(text, format!("POST /chunks 9 {sum}"));
    let heads = node.heads();
    let chunked = heads[1].to_ascii_lowercase();
    assert_eq!(chunked.matches("transfer-encoding: chunked").count(), 1, "{chunked}");
    assert_only_the_fast_path_reached(&proxy);
}

#[tokio::test]
async fn a_malformed_chunked_body_gets_400_and_both_connections_close() {
    let node = RawNode::start(echo_body).await;
    let proxy = node.proxy().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"POST /bad HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(read_exactly_or_close(&mut conn, usize::MAX).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":400") && answer.contains("malformed chunked body"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1").count(), 1, "nothing after the bad body is answered: {answer}");
    // The node's connection carried half a request: it is never reused (the node would read the next
    // request as chunk data and fail it).
    let http = client();
    assert_eq!(http.post(proxy.url("/good")).body("x").send().await.unwrap().status(), 200);
    let heads = node.heads();
    assert_eq!(heads.len(), 1, "only the good request was complete: {heads:?}");
    assert!(heads[0].starts_with("POST /good"), "{heads:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let node =
        RawNode::start(|_, _, _| Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()))
            .await;
    let proxy = in_front_of(node.addr).proxy("request_header_timeout_ms", 200).start().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let head = String::from_utf8(read_head(&mut conn).await).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(read_exactly_or_close(&mut conn, 2).await, b"ok");
    // Then nothing: the proxy closes the keep-alive connection once the header timeout has passed.
    let mut rest = [0u8; 16];
    let closed =
        tokio::time::timeout(Duration::from_secs(10), conn.read(&mut rest)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

/// The proxy config with the node at `addr` alone behind it, as `01`.
fn in_front_of(addr: SocketAddr) -> Cluster {
    Cluster::of(&[]).backend_at(0, "01", &format!("http://{addr}"), "active")
}

#[tokio::test]
async fn an_answer_slower_than_the_header_timeout_but_within_the_response_timeout_arrives() {
    // One timer serves both deadlines; the head's must not cut off the answer's.
    let node =
        RawNode::start(|_, _, _| Reply::Held(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow".to_vec()))
            .await;
    let proxy = in_front_of(node.addr)
        .proxy("request_header_timeout_ms", 200)
        .proxy("response_timeout_ms", 10000)
        .start()
        .await;
    let url = proxy.url("/");
    let request = tokio::spawn(async move { client().get(url).send().await });
    support::eventually("the node has the request", Duration::from_secs(5), async || node.heads().len() == 1)
        .await;
    // A connection opened now and left idle is closed by the proxy one header timeout later, so by then
    // the request's own head deadline (earlier) has passed too. Only then does the node answer.
    let mut witness = TcpStream::connect(proxy.addr).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), witness.read(&mut [0u8; 1])).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the idle witness was closed: {closed:?}");
    node.release.notify_one();
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "slow");
}

#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let node =
        RawNode::start(|_, _, _| Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()))
            .await;
    // A grace period far longer than the test's deadline: only closing the idle connection ends the drain.
    let proxy = in_front_of(node.addr).proxy("shutdown_grace_s", 120).start().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(String::from_utf8(read_head(&mut conn).await).unwrap().starts_with("HTTP/1.1 200"));
    assert_eq!(read_exactly_or_close(&mut conn, 2).await, b"ok");
    tokio::time::timeout(Duration::from_secs(5), proxy.shutdown())
        .await
        .expect("drained without waiting for grace");
    let mut rest = [0u8; 16];
    assert!(matches!(conn.read(&mut rest).await, Ok(0) | Err(_)), "the idle connection was closed");
}

#[tokio::test]
async fn an_ambiguous_request_on_a_keep_alive_connection_gets_400_and_the_connection_closes() {
    let node =
        RawNode::start(|_, _, _| Reply::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec()))
            .await;
    let proxy = node.proxy().await;
    let mut conn = TcpStream::connect(proxy.addr).await.unwrap();
    // One plain request, then one with two `Host` fields, then one more that must never be read.
    conn.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n\
          GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut all)).await.unwrap().unwrap();
    let all = String::from_utf8(all).unwrap();
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");
    let rest = &all[all.find("\r\n\r\nok").expect("the first answer") + 6..];
    assert!(rest.starts_with("HTTP/1.1 400"), "{rest}");
    assert!(rest.contains("connection: close"), "{rest}");
    assert!(rest.contains(r#""code":400"#) && rest.contains("More than one Host"), "{rest}");
    assert_eq!(rest.matches("HTTP/1.1").count(), 1, "nothing after the refusal is answered: {rest}");
    let heads = node.heads();
    assert_eq!(heads.len(), 1, "only the first request reached the node: {heads:?}");
}
