//! The status page (`GET /status`): placeholder until the page lands.

use crate::proxy::Snapshot;

/// Renders the status page.
pub fn render(_snap: &Snapshot, _token_required: bool) -> String {
    String::from("<!doctype html><title>tether status</title>")
}
