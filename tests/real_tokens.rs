//! Real AM tokens through the proxy: every form AM (and the clients in front of it) writes a session
//! token in, sent as the session cookie, the session header and the `tokenId` query parameter, reaches
//! the node its `S1` (else `SI`) names; a token without extensions or a garbage one is balanced like a
//! request without a hint, and never gets an error from the proxy. Also an 8.6 KB `authId` whose
//! `sessionId` is a real-form token, a renamed session cookie, and 16 KiB tokens over HTTP/1.1 and h2.
//!
//! The tokens are built here, by this file's own encoder (Java `writeUTF` pairs, base64, AM's c66, URL
//! encodings, quoting), not by tether's, so the proxy is checked against the layout rather than against
//! itself.

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use support::am_token::{c66, ext};
use support::{BackendHandle, Cluster, ProxyHandle, TestBackend, client, h2c_client, served_by};

// ---------------------------------------------------------------------------------------------------------
// The test's own AM token encoder
// ---------------------------------------------------------------------------------------------------------

/// An encrypted-ID-like part: `AQIC` and base64 that holds `+`, `/` and `=`, so c66 has work to do.
fn enc_id(seed: u8) -> String {
    let bytes: Vec<u8> = (0..34u8).map(|i| i.wrapping_mul(37).wrapping_add(seed) | 0xF8).collect();
    format!("AQIC{}", STANDARD.encode(bytes))
}

/// AM's native layout, `SessionID.makeSessionID`: `<encId>@<ext>#<tail>`.
fn native(seed: u8, pairs: &[(&str, &str)], tail: &str) -> String {
    format!("{}@{}#{tail}", enc_id(seed), ext(pairs))
}

/// `java.net.URLEncoder.encode(s, "UTF-8")`, as AM's `com.iplanet.am.cookie.encode` applies it:
/// alphanumerics and `.-*_` stay, a space is `+`, everything else `%XX`.
fn java_url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => char::from(b).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Everything but alphanumerics as `%XX`: the encoders that also escape `*` (`%2A`).
fn encode_all(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// A query parameter value: RFC 3986 unreserved characters stay, the rest `%XX`.
fn query_value(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A JWT-shaped tail (client-side sessions carry the session JWT there), `pad` bytes of claims long.
fn jwt(pad: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"demo","pad":"{}"}}"#, "p".repeat(pad)));
    format!("{header}.{claims}.c2lnbmF0dXJlLV8")
}

/// The extension pairs of a server in a site (`SI` the site, `S1` the node, as AM writes them), in
/// Java `HashMap` order (`SI`, `SK`, `S1`: the buckets of their hash codes in a 16-slot table).
fn in_site(node: &str) -> Vec<(&str, &str)> {
    vec![("SI", "10"), ("SK", "-6466190869487384488"), ("S1", node)]
}

/// Every form of a token naming `node`, by name.
fn forms(node: &str) -> Vec<(&'static str, String)> {
    let site = in_site(node);
    let reordered = [site[2], site[0], site[1]];
    let sk_first = [site[1], site[2], site[0]];
    let no_site = [("SI", node), ("SK", "1822248024")];
    let empty_s1 = [("S1", ""), ("SI", node), ("SK", "42")];
    let c = c66(&native(1, &site, ""));
    let client_side = [("SI", "10"), ("type", "JWT"), ("S1", node), ("SK", "7")];
    let client_auth = [("type", "JWT_AUTH"), ("SI", node)];
    let long = c66(&native(7, &client_side, &jwt(0)));
    // A tail grown until the whole token is 16 KiB, the longest a hint reads.
    let sixteen_kib = format!("{long}{}", "x".repeat(16 * 1024 - long.len()));
    vec![
        ("c66", c.clone()),
        ("native", native(2, &site, "")),
        ("c66, S1 first", c66(&native(3, &reordered, ""))),
        ("native, SK first", native(4, &sk_first, "")),
        ("no site: SI only", c66(&native(5, &no_site, ""))),
        ("empty S1, c66", c66(&native(6, &empty_s1, ""))),
        ("empty S1, native", native(6, &empty_s1, "")),
        ("AM cookie-encoded native", java_url_encode(&native(8, &site, ""))),
        ("AM cookie-encoded handle", java_url_encode(&format!("shandle:{}", native(8, &site, "")))),
        ("percent-encoded c66 (%2A)", encode_all(&c)),
        ("quoted", format!("\"{c}\"")),
        ("spaces around", format!("  {c}  ")),
        ("quoted, spaces inside", format!("\" {c} \"")),
        ("session handle", format!("shandle:{}", c66(&native(9, &site, "")))),
        ("session handle, native", format!("shandle:{}", native(9, &site, ""))),
        ("stars in the tail", c66(&native(10, &site, "a#b#"))),
        ("client-side, type=JWT", long),
        ("client-side, JWT_AUTH, no ID", format!("*{}*{}", c66(&ext(&client_auth)), jwt(40))),
        // Its request head is over the fast path's 16 KiB: hyper's path serves it.
        ("client-side, 16 KiB", sixteen_kib),
    ]
}

/// Tokens the proxy must balance: no extension (AM reads none), garbage, or an unknown node.
fn unroutable() -> Vec<(&'static str, String)> {
    let site = in_site("02");
    let c = c66(&native(1, &site, ""));
    vec![
        ("no separators", enc_id(1)),
        ("c66 without the closing *", c.trim_end_matches('*').to_owned()),
        ("native without #", format!("{}@{}", enc_id(2), ext(&site))),
        ("garbage", "!!not-a-token!!".into()),
        ("stars only", "***".into()),
        ("bad base64", "AQIC*%%%*".into()),
        ("truncated pair", format!("AQIC*{}*", &ext(&site)[..7])),
        ("unknown node", c66(&native(3, &in_site("09"), ""))),
        ("over 16 KiB", c66(&native(4, &site, &"x".repeat(16 * 1024)))),
    ]
}

// ---------------------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Transport {
    Cookie,
    Header,
    Query,
}

const TRANSPORTS: [Transport; 3] = [Transport::Cookie, Transport::Header, Transport::Query];

/// A GET carrying `token` in `transport` under the session cookie name `name`: the node that served it,
/// or the proxy's status when it is not a node's answer.
async fn send(
    http: &reqwest::Client,
    proxy: &ProxyHandle,
    name: &str,
    transport: Transport,
    token: &str,
) -> String {
    let path = "/am/json/realms/root/users?_action=idFromSession";
    let req = match transport {
        Transport::Cookie => http.get(proxy.url(path)).header("cookie", format!("a=1; {name}={token}; b=2")),
        Transport::Header => http.get(proxy.url(path)).header(name, token),
        Transport::Query => http.get(proxy.url(&format!("{path}&tokenId={}", query_value(token)))),
    };
    let resp = req.send().await.expect("the proxy answers");
    let status = resp.status();
    assert_eq!(status, 200, "{transport:?} {token:.80}: the proxy answered itself");
    served_by(resp).await
}

async fn two_nodes(configure: impl FnOnce(Cluster) -> Cluster) -> (ProxyHandle, [BackendHandle; 2]) {
    let (a, b) = (TestBackend::start("01").await, TestBackend::start("02").await);
    let proxy = configure(Cluster::of(&[&a, &b])).start().await;
    (proxy, [a, b])
}

/// Each form in each transport, twice in a row (round-robin alone would send the two to different
/// nodes), reaches `node`. Returns the failures, so one run names all of them.
async fn route_every_form(http: &reqwest::Client, proxy: &ProxyHandle, name: &str) -> Vec<String> {
    let mut wrong = Vec::new();
    for node in ["01", "02"] {
        for (form, token) in forms(node) {
            for transport in TRANSPORTS {
                for _ in 0..2 {
                    let got = send(http, proxy, name, transport, &token).await;
                    if got != node {
                        wrong.push(format!("{form} via {transport:?} for {node} reached {got}"));
                    }
                }
            }
        }
    }
    wrong
}

// ---------------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_real_token_form_in_every_transport_reaches_the_node_it_names() {
    let (proxy, _nodes) = two_nodes(|c| c).await;
    let wrong = route_every_form(&client(), &proxy, "iPlanetDirectoryPro").await;
    assert!(wrong.is_empty(), "{} misrouted:\n{}", wrong.len(), wrong.join("\n"));
}

#[tokio::test]
async fn sixteen_kib_tokens_are_routed_over_h2_as_well() {
    let (proxy, _nodes) = two_nodes(|c| c).await;
    let h2 = h2c_client();
    for node in ["01", "02"] {
        let (_, token) = forms(node).pop().expect("the 16 KiB form comes last");
        assert_eq!(token.len(), 16 * 1024);
        for transport in TRANSPORTS {
            for _ in 0..2 {
                assert_eq!(
                    send(&h2, &proxy, "iPlanetDirectoryPro", transport, &token).await,
                    node,
                    "{transport:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn tokens_without_extension_or_garbage_are_balanced_never_refused() {
    let (proxy, _nodes) = two_nodes(|c| c).await;
    let http = client();
    for (form, token) in unroutable() {
        for transport in TRANSPORTS {
            let mut served = Vec::new();
            for _ in 0..4 {
                served.push(send(&http, &proxy, "iPlanetDirectoryPro", transport, &token).await);
            }
            served.sort();
            served.dedup();
            assert_eq!(served, ["01", "02"], "{form} via {transport:?} is balanced");
        }
    }
}

#[tokio::test]
async fn a_renamed_session_cookie_is_read_under_its_name_only() {
    for name in ["AMSession", "a5f3c2e19b0d4e7f"] {
        let (proxy, _nodes) = two_nodes(|c| c.affinity("session_cookie", name)).await;
        let http = client();
        let wrong = route_every_form(&http, &proxy, name).await;
        assert!(wrong.is_empty(), "{name}: {} misrouted:\n{}", wrong.len(), wrong.join("\n"));
        // AM's default name is no longer the session cookie: balanced like any other cookie.
        let token = c66(&native(1, &in_site("02"), ""));
        let mut served = Vec::new();
        for transport in [Transport::Cookie, Transport::Header] {
            for _ in 0..2 {
                served.push(send(&http, &proxy, "iPlanetDirectoryPro", transport, &token).await);
            }
        }
        assert!(served.contains(&"01".to_owned()), "{name}: iPlanetDirectoryPro was read: {served:?}");
    }
}

#[tokio::test]
async fn without_its_own_name_a_pool_reads_the_auth_sections_session_cookie() {
    let (proxy, _nodes) = two_nodes(|c| {
        // The smallest valid `[auth]`: its session cookie and the one chain it needs.
        let chains: toml::Table =
            toml::from_str(r#"chain = [{ name = "ldapService", modules = ["DataStore"] }]"#).unwrap();
        c.auth("session_cookie", "AuthSession").set("auth.chain", chains["chain"].clone())
    })
    .await;
    let http = client();
    let token = c66(&native(1, &in_site("02"), ""));
    for transport in [Transport::Cookie, Transport::Header] {
        for _ in 0..2 {
            assert_eq!(send(&http, &proxy, "AuthSession", transport, &token).await, "02", "{transport:?}");
        }
    }
}

#[test]
fn a_bad_session_cookie_name_is_refused_with_key_and_line() {
    let text = Cluster::fixture(support::TWO_POOLS).affinity("session_cookie", "bad name").toml();
    let err = tether::config::parse(&text).expect_err("a cookie name with a space is refused");
    let problem =
        err.problems.iter().find(|p| p.key == "pool[0].affinity.session_cookie").expect("named key");
    assert!(problem.message.contains("not a valid cookie name"), "{err}");
    let line = problem.line.expect("a line");
    assert!(text.lines().nth(line - 1).unwrap().contains("session_cookie"), "{err}");
}

#[test]
fn embedded_nodes_and_their_pool_must_agree_on_the_session_cookie() {
    let same = Cluster::new().active(["01"]).affinity("session_cookie", "iPlanetDirectoryPro");
    assert!(tether::config::parse(&same.toml()).is_ok());
    let other = Cluster::new().active(["01"]).affinity("session_cookie", "AMSession").toml();
    let err = tether::config::parse(&other).expect_err("the embedded nodes set iPlanetDirectoryPro");
    let problem =
        err.problems.iter().find(|p| p.key == "pool[0].affinity.session_cookie").expect("named key");
    assert!(problem.message.contains("[auth] session_cookie \"iPlanetDirectoryPro\""), "{err}");
    assert!(problem.line.is_some(), "{err}");
}

/// An HS256-shaped `authId` of about `size` bytes whose `sessionId` claim is `session_id` (signature
/// not checked by the proxy: it only reads the hint).
fn auth_id(session_id: &str, size: usize) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"HS256"}"#);
    let claims = |pad: usize| {
        let v = serde_json::json!({
            "otk": "ltp6fma0ao9hkp3f4hngfhvo6j",
            "authIndexValue": "ldapService",
            "sessionId": session_id,
            "authIndexType": "service",
            "realm": "dc=openam,dc=forgerock,dc=org",
            "state": "s".repeat(pad),
        });
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap())
    };
    let base = format!("{header}.{}.", claims(0)).len() + 43;
    let pad = (size.saturating_sub(base)) * 3 / 4;
    format!("{header}.{}.{}", claims(pad), URL_SAFE_NO_PAD.encode([7u8; 32]))
}

#[tokio::test]
async fn an_eight_kb_auth_id_routes_by_its_real_form_session_id() {
    let (proxy, _nodes) = two_nodes(|c| c).await;
    let http = client();
    for node in ["01", "02"] {
        let site = in_site(node);
        let session_ids = [
            c66(&native(1, &site, "")),
            native(2, &site, ""),
            c66(&native(3, &[("S1", ""), ("SI", node), ("SK", "1")], "")),
            // A client-side auth session's ID, its JWT tail beyond the old 4 KiB bound.
            c66(&native(4, &[("type", "JWT_AUTH"), ("SI", node)], &jwt(4000))),
        ];
        for session_id in session_ids {
            let id = auth_id(&session_id, 8600);
            assert!((8500..8700).contains(&id.len()), "{}", id.len());
            let body = serde_json::json!({
                "authId": id,
                "callbacks": [{"type": "NameCallback", "output": [{"name": "prompt", "value": "User Name"}],
                               "input": [{"name": "IDToken1", "value": "demo"}]}],
            });
            for _ in 0..2 {
                let resp = http
                    .post(proxy.url("/am/json/realms/root/authenticate"))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(served_by(resp).await, node, "{session_id:.80}");
            }
        }
    }
}
