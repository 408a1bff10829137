//! `/json/sessions` on client-side sessions (`session_location = "client"`): two nodes that share the
//! keys and a denylist but no session store, on paused time.

use super::*;
use crate::auth::MemoryDenylist;
use crate::config::SessionLocation;

/// Nodes `01` and `02` with one secret and one denylist, each with its own (unused) session store.
fn client_nodes() -> (AuthNode, AuthNode) {
    let mut auth = (*config("memory", "enabled = false")).clone();
    auth.session_location = SessionLocation::Client;
    let auth = Arc::new(auth);
    let denylist = Arc::new(MemoryDenylist::new());
    let node = |id: &str| {
        AuthNode::new(
            BackendId::new(id).unwrap(),
            Arc::clone(&auth),
            Keys::derive(SECRET),
            Arc::new(MemoryStore::new()),
            Arc::new(MemoryJourneys::new()),
        )
        .with_denylist(Arc::clone(&denylist) as Arc<dyn crate::auth::Denylist>)
    };
    (node("01"), node("02"))
}

async fn action(node: &AuthNode, action: &str, token: &str) -> Answer {
    send(node, post(&format!("{}&tokenId={token}", with_token(action)), "")).await
}

#[tokio::test(start_paused = true)]
async fn a_client_side_session_lives_in_its_token_resets_by_reissue_and_logs_out_by_handle() {
    let (a, b) = client_nodes();
    let token = login(&a).await;
    assert_eq!(token::node_hint(&token).as_deref(), Some("01"));
    assert_eq!(a.store().len() + b.store().len(), 0, "nothing is stored");
    assert_eq!(action(&b, "validate", &token).await.json["valid"], true);

    // Minute 29 of 30: an idle reset on 02 hands out a new token in the cookie.
    advance(Duration::from_secs(29 * 60)).await;
    let reset = action(&b, "getSessionInfoAndResetIdleTime", &token).await;
    assert_eq!(reset.status, 200, "{reset:?}");
    let cookie =
        reset.cookies().into_iter().find(|c| c.starts_with("iPlanetDirectoryPro=")).unwrap().to_owned();
    let reissued = cookie["iPlanetDirectoryPro=".len()..].split(';').next().unwrap().to_owned();
    assert_ne!(reissued, token);

    // Minute 31: the old token is past its idle time, the reissued one is not.
    advance(Duration::from_secs(2 * 60)).await;
    assert_eq!(action(&a, "validate", &token).await.json, json!({"valid": false}));
    assert_eq!(action(&a, "validate", &reissued).await.json["valid"], true);
    let expired = action(&a, "getSessionInfo", &token).await;
    assert_eq!(expired.status, 401, "{expired:?}");

    // Logout on 01 denies the session's handle: every token of it, on every node sharing the list.
    let newer = action(&a, "refresh", &reissued).await;
    let newer = newer.cookies()[0]["iPlanetDirectoryPro=".len()..].split(';').next().unwrap().to_owned();
    assert_eq!(action(&a, "logout", &reissued).await.json, json!({"result": "Successfully logged out"}));
    for t in [&reissued, &newer] {
        assert_eq!(action(&b, "validate", t).await.json, json!({"valid": false}));
    }
    assert_eq!(action(&b, "logout", &newer).await.json, json!({"result": "Token has expired"}));
}

#[tokio::test(start_paused = true)]
async fn a_client_side_session_ends_at_its_maximum_time_however_often_it_is_reset() {
    let (a, _) = client_nodes();
    let mut token = login(&a).await;
    for _ in 0..4 {
        advance(Duration::from_secs(25 * 60)).await;
        let refreshed = action(&a, "refresh", &token).await;
        assert_eq!(refreshed.status, 200, "{refreshed:?}");
        token = refreshed.cookies()[0]["iPlanetDirectoryPro=".len()..].split(';').next().unwrap().to_owned();
    }
    advance(Duration::from_secs(21 * 60)).await;
    assert_eq!(action(&a, "validate", &token).await.json, json!({"valid": false}), "past 120 minutes");
}

#[tokio::test(start_paused = true)]
async fn a_server_side_node_does_not_trust_client_side_tokens() {
    let (a, _) = client_nodes();
    let token = login(&a).await;
    let server = cluster("memory");
    assert_eq!(action(&server.a, "validate", &token).await.json, json!({"valid": false}));
}
