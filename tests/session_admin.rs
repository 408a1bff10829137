//! Session administration: an operator lists a user's sessions on every node of the store (never a
//! token in the answer) and ends them with one POST on the admin listener; AM's own
//! `sessions?_action=logoutByHandle` lets an `admin = true` user end another user's session.

mod support;

use serde_json::{Value, json};
use support::{Cluster, Deployment, ProxyHandle, RedisCluster, RedisServer, StoreAt, TetherProcess};

const ADMIN_TOKEN: &str = "admin-token-0123456789";

/// A zero-page login of `user` (password `secret`, or `password`) at `base`: its token.
async fn login(base: &str, user: &str, password: &str) -> String {
    let resp = support::client()
        .post(format!("{base}/am/json/realms/root/authenticate"))
        .header("X-OpenAM-Username", user)
        .header("X-OpenAM-Password", password)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "login of {user} at {base}");
    let v: Value = resp.json().await.unwrap();
    v["tokenId"].as_str().unwrap().to_owned()
}

/// `validate` of `token` at `base`: the answer.
async fn validate(base: &str, token: &str) -> Value {
    let url = format!("{base}/am/json/realms/root/sessions?_action=validate&tokenId={token}");
    support::client()
        .post(url)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `GET` or `POST` on the admin listener at `admin` (`host:port` or `http://…`), with or without the
/// token: (status, raw answer).
async fn admin_call(admin: &str, method: &str, path: &str, token: bool) -> (u16, String) {
    let base = if admin.starts_with("http") { admin.to_owned() } else { format!("http://{admin}") };
    let client = support::client();
    let mut req = match method {
        "GET" => client.get(format!("{base}{path}")),
        _ => client.post(format!("{base}{path}")),
    };
    if token {
        req = req.bearer_auth(ADMIN_TOKEN);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// The nodes of the listed sessions, sorted.
fn listed_nodes(listing: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = listing["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["node"].as_str().unwrap().to_owned())
        .collect();
    nodes.sort();
    nodes
}

async fn cluster(sessions: &str) -> ProxyHandle {
    Cluster::new()
        .active(["01", "02", "03"])
        .auth("sessions", sessions)
        .proxy("admin_token", ADMIN_TOKEN)
        .user("op", &[("admin", true.into())])
        .user("other", &[])
        .start()
        .await
}

/// The whole operator scenario on one process's embedded nodes.
async fn three_sessions_on_three_nodes_are_listed_and_ended(sessions: &str) {
    let proxy = cluster(sessions).await;
    let nodes: Vec<String> = ["01", "02", "03"].iter().map(|id| proxy.node_url(id)).collect();
    let mut tokens = Vec::new();
    for base in &nodes {
        tokens.push(login(base, "demo", "secret").await);
    }
    let admin = proxy.admin.to_string();

    let (status, text) = admin_call(&admin, "GET", "/sessions?user=demo", false).await;
    assert_eq!(status, 401, "{sessions}: listing needs the admin token: {text}");
    let (status, text) = admin_call(&admin, "GET", "/sessions?user=demo", true).await;
    assert_eq!(status, 200, "{text}");
    let listing = json_of(&text);
    assert_eq!(listed_nodes(&listing), ["01", "02", "03"], "{sessions}: {listing}");
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token in the listing: {text}");
    }
    let first = &listing["sessions"][0];
    assert!(first["handle"].as_str().unwrap().starts_with("shandle:"), "{first}");
    for field in ["created", "idle_expiry", "max_expiry"] {
        assert!(first[field].as_str().unwrap().ends_with('Z'), "{field}: {first}");
    }

    let (status, _) = admin_call(&admin, "POST", "/sessions/logout?user=demo", false).await;
    assert_eq!(status, 401);
    assert_eq!(validate(&nodes[0], &tokens[0]).await["valid"], true, "a refused logout ends nothing");
    let (status, text) = admin_call(&admin, "POST", "/sessions/logout?user=demo", true).await;
    assert_eq!((status, json_of(&text)), (200, json!({"ended": 3})), "{sessions}");
    for base in &nodes {
        for token in &tokens {
            assert_eq!(validate(base, token).await, json!({"valid": false}), "{sessions}: {base}");
        }
    }
    let (_, text) = admin_call(&admin, "GET", "/sessions?user=demo", true).await;
    assert_eq!(json_of(&text)["sessions"], json!([]));

    // One session by its handle; the others stay.
    let keep = login(&nodes[0], "demo", "secret").await;
    let end = login(&nodes[1], "demo", "secret").await;
    let handle = validate(&nodes[1], &end).await["sessionUid"].as_str().unwrap().to_owned();
    let (status, text) = admin_call(&admin, "POST", &format!("/sessions/logout?handle={handle}"), true).await;
    assert_eq!((status, json_of(&text)), (200, json!({"ended": 1})));
    assert_eq!(validate(&nodes[1], &end).await["valid"], false);
    assert_eq!(validate(&nodes[0], &keep).await["valid"], true);

    for bad in ["/sessions/logout", "/sessions/logout?user=", "/sessions/logout?user=demo&handle=x"] {
        let (status, text) = admin_call(&admin, "POST", bad, true).await;
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(json_of(&text)["message"].as_str().unwrap().contains("?user=NAME"), "{text}");
    }
    let (status, _) = admin_call(&admin, "GET", "/sessions", true).await;
    assert_eq!(status, 400);
    proxy.shutdown().await;
}

#[tokio::test]
async fn shared_store_sessions_of_one_user_on_three_nodes_are_listed_and_ended_with_one_post() {
    three_sessions_on_three_nodes_are_listed_and_ended("shared").await;
}

#[tokio::test]
async fn local_stores_are_administered_on_every_embedded_node() {
    three_sessions_on_three_nodes_are_listed_and_ended("local").await;
}

/// `logoutByHandle` on `base` with the caller's `token` and `body`: (status, answer).
async fn logout_by_handle(base: &str, token: &str, body: &Value) -> (u16, Value) {
    let resp = support::client()
        .post(format!("{base}/am/json/realms/root/sessions?_action=logoutByHandle"))
        .header("iPlanetDirectoryPro", token)
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn an_admin_user_ends_another_users_session_by_handle_and_others_may_not() {
    let proxy = cluster("shared").await;
    let (a, b) = (proxy.node_url("01"), proxy.node_url("02"));
    let demo = login(&a, "demo", "secret").await;
    let handle = validate(&a, &demo).await["sessionUid"].as_str().unwrap().to_owned();
    let other = login(&b, "other", "secret").await;
    let op = login(&b, "op", "secret").await;

    let (status, answer) = logout_by_handle(&b, &other, &json!({"sessionHandles": [handle]})).await;
    assert_eq!(status, 401, "not an admin: {answer}");
    assert_eq!(answer["message"], "Access Denied");
    let (status, _) = logout_by_handle(&b, "no-such-session", &json!({"sessionHandles": [handle]})).await;
    assert_eq!(status, 401);
    assert_eq!(validate(&a, &demo).await["valid"], true);

    let (status, answer) = logout_by_handle(&b, &op, &json!({"handles": []})).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().starts_with("The \"sessionHandles\" field is not defined"));

    let body = json!({"sessionHandles": [handle, "shandle:none"]});
    let (status, answer) = logout_by_handle(&b, &op, &body).await;
    assert_eq!((status, &answer), (200, &json!({"result": {handle.as_str(): true, "shandle:none": false}})));
    assert_eq!(validate(&a, &demo).await, json!({"valid": false}));
    assert_eq!(validate(&b, &op).await["valid"], true, "the admin's own session stays");
    proxy.shutdown().await;
}

#[tokio::test]
async fn the_status_page_counts_live_sessions_per_node() {
    let proxy = cluster("shared").await;
    login(&proxy.node_url("01"), "demo", "secret").await;
    login(&proxy.node_url("01"), "other", "secret").await;
    login(&proxy.node_url("03"), "demo", "secret").await;
    let status: Value =
        support::client().get(proxy.admin_url("/status.json")).send().await.unwrap().json().await.unwrap();
    let per_node: Vec<(String, Value)> = status["auth_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap().to_owned(), n["live_sessions"].clone()))
        .collect();
    assert_eq!(per_node, [("01".into(), json!(2)), ("02".into(), json!(0)), ("03".into(), json!(1))]);
    let page = support::client().get(proxy.admin_url("/status")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("<tr data-sessions-node=\"01\"><td>01</td><td class=\"n\">2</td></tr>"), "{page}");
    proxy.shutdown().await;
}

/// Standalone `tether node` processes on one Redis, administered from the admin of a `tether run`
/// process whose config names the same store (it runs no node of its own).
#[tokio::test]
async fn sessions_of_standalone_nodes_on_redis_are_listed_and_ended_from_any_process_on_the_store() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let admin = standalone_nodes_are_administered(&redis).await;
    assert_eq!(redis.integer(&["EXISTS", "{tether:demo}:seq"]), 1, "the kept session's keys");
    assert_eq!(redis.integer(&["HLEN", "{tether:demo}:rec"]), 2, "the ended sessions' records are gone");

    redis.stop();
    for (method, path) in [("GET", "/sessions?user=demo"), ("POST", "/sessions/logout?user=demo")] {
        let (status, text) = admin_call(admin.admin.as_str(), method, path, true).await;
        assert_eq!(status, 503, "a store that fails is 503, never an empty answer: {text}");
    }
}

/// The same on a Redis Cluster: every script keeps to the user's slot, the pointers are single keys.
#[tokio::test]
async fn on_a_redis_cluster_too() {
    let Some(cluster) = RedisCluster::start().await else { return };
    standalone_nodes_are_administered(&cluster).await;
}

/// What [`standalone_nodes_are_administered`] leaves running: the nodes and the operator's process.
struct Standalone {
    admin: String,
    _operator: TetherProcess,
    _nodes: Deployment,
}

async fn standalone_nodes_are_administered(store: &impl StoreAt) -> Standalone {
    let d = Deployment::start_with(store, 1000, |t| {
        t.set("proxy.admin_token", ADMIN_TOKEN)
            .set("auth.quota.limit", 3)
            .set("auth.quota.exhaustion_action", "DENY_ACCESS")
    })
    .await;
    let mut tokens = Vec::new();
    for node in 0..3 {
        tokens.push(login(&d.base(node), "demo", support::DEMO_PASSWORD).await);
    }
    let (status, answer, ..) = d.login(1).await;
    assert_eq!(status, 401, "the quota of 3 is full: {answer}");
    let operator = TetherProcess::spawn(&["run", "-c", d.config.to_str().unwrap()]).await;
    let admin = operator.admin();

    let (status, _) = admin_call(&admin, "GET", "/sessions?user=demo", false).await;
    assert_eq!(status, 401);
    let (status, text) = admin_call(&admin, "GET", "/sessions?user=demo", true).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(listed_nodes(&json_of(&text)), ["01", "02", "03"], "{text}");
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token in the listing: {text}");
    }
    let (status, text) = admin_call(&admin, "POST", "/sessions/logout?user=demo", true).await;
    assert_eq!((status, json_of(&text)), (200, json!({"ended": 3})));
    for node in 0..3 {
        for token in &tokens {
            let (status, answer) = d.session(node, "validate", token).await;
            assert_eq!((status, answer), (200, json!({"valid": false})), "node {}", node + 1);
        }
    }
    let (_, text) = admin_call(&admin, "GET", "/sessions?user=demo", true).await;
    assert_eq!(json_of(&text)["sessions"], json!([]), "nothing left to count against the quota");

    // The ended sessions no longer count: three logins fit the quota again (`login` asserts 200).
    let keep = login(&d.base(0), "demo", support::DEMO_PASSWORD).await;
    let end = login(&d.base(2), "demo", support::DEMO_PASSWORD).await;
    login(&d.base(1), "demo", support::DEMO_PASSWORD).await;
    let (_, answer) = d.session(2, "validate", &end).await;
    let handle = answer["sessionUid"].as_str().unwrap().to_owned();
    let (status, text) = admin_call(&admin, "POST", &format!("/sessions/logout?handle={handle}"), true).await;
    assert_eq!((status, json_of(&text)), (200, json!({"ended": 1})));
    assert_eq!(d.session(1, "validate", &end).await.1, json!({"valid": false}));
    assert_eq!(d.session(1, "validate", &keep).await.1["valid"], true);
    let (_, text) = admin_call(&admin, "GET", "/sessions?user=demo", true).await;
    assert_eq!(listed_nodes(&json_of(&text)), ["01", "02"]);
    Standalone { admin, _operator: operator, _nodes: d }
}
