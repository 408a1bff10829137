//! `[[route]]` matching: the first route whose every matcher fits wins; none is 404.

use http::{HeaderMap, Method, Uri};

use crate::config::{HostMatch, RouteAction, RouteConfig};

/// The action of the first matching route, if any.
pub fn find<'a>(
    routes: &'a [RouteConfig],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Option<&'a RouteAction> {
    find_by(routes, method, uri.path(), request_host(headers, uri))
}

/// The same from the parts themselves (the HTTP/1.1 fast path has no `Uri` or `HeaderMap`): `host` is
/// without its port ([`strip_port`]).
pub fn find_by<'a>(
    routes: &'a [RouteConfig],
    method: &Method,
    path: &str,
    host: Option<&str>,
) -> Option<&'a RouteAction> {
    routes.iter().find(|r| matches(r, host, path, method)).map(|r| &r.action)
}

fn matches(route: &RouteConfig, host: Option<&str>, path: &str, method: &Method) -> bool {
    let host_ok = match (&route.host, host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostMatch::Exact(want)), Some(h)) => h.eq_ignore_ascii_case(want),
        (Some(HostMatch::Suffix(suffix)), Some(h)) => {
            h.len() > suffix.len()
                && h.get(h.len() - suffix.len()..).is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
    };
    host_ok
        && route.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        && route.methods.as_deref().is_none_or(|ms| ms.contains(method))
}

/// The host the client asked for, without port: `Host` (HTTP/1.1) or the `:authority` (HTTP/2).
pub fn request_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    let raw = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))?;
    Some(strip_port(raw))
}

/// `host[:port]` without the port; `[v6]:port` without brackets and port.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(h, _)| h.get(1..).unwrap_or(h));
    }
    // Bytes, not chars: `:` is ASCII, so the cut is a char boundary.
    let bytes = host.as_bytes();
    match bytes.iter().rposition(|&b| b == b':') {
        Some(i) if bytes[i + 1..].iter().all(u8::is_ascii_digit) => host.get(..i).unwrap_or(host),
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn host_of(uri: &str, host: Option<&str>) -> Option<String> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        let req = b.body(()).unwrap();
        request_host(req.headers(), req.uri()).map(str::to_owned)
    }

    #[test]
    fn host_port_is_ignored_and_case_folded() {
        assert_eq!(host_of("/", Some("Login.Example.com:8080")).as_deref(), Some("Login.Example.com"));
        assert_eq!(host_of("http://h2.example/x", None).as_deref(), Some("h2.example"));
        assert_eq!(host_of("/", Some("[::1]:80")).as_deref(), Some("::1"));
    }
}
