//! `[proxy.h2]`: the HTTP/2 limits of every listener (h2c by prior knowledge and TLS with ALPN `h2`).
//!
//! Each key is either a SETTINGS value tether announces (RFC 9113 §6.5.2) or a bound on what a client
//! may make the server do before it is sent a GOAWAY: the rapid-reset attack (CVE-2023-44487) opens
//! streams and cancels them at once, so they never count against `max_concurrent_streams` while the
//! server still starts work for each; a CONTINUATION flood (CVE-2024-27316 and kin) never ends a header
//! block. Both are bounded here, as nginx and HAProxy bound them.

use std::time::Duration;

use serde::Deserialize;

use super::problem::{Checker, KeyPath};

/// `[proxy.h2]` as written. Every key is optional; its default is written next to it.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawH2 {
    /// SETTINGS_MAX_CONCURRENT_STREAMS: requests one connection may have open at once; a stream past
    /// it is refused (RST_STREAM REFUSED_STREAM, safe to retry). Default 100 (HAProxy's, nginx's 128).
    pub max_concurrent_streams: u64,
    /// SETTINGS_MAX_HEADER_LIST_SIZE in bytes, counted as RFC 9113 §6.5.2 does (name + value + 32 per
    /// field). A larger request gets 431; one four times larger, or one spread over more CONTINUATION
    /// frames than that size needs, closes the connection. Default 65536.
    pub max_header_list_size: u64,
    /// Streams a client may reset before tether has taken them up; one more closes the connection
    /// with GOAWAY ENHANCE_YOUR_CALM (the rapid-reset defence). Default 20.
    pub max_pending_reset_streams: u64,
    /// Streams tether may reset for a client's protocol errors on one connection before it closes it
    /// with GOAWAY ENHANCE_YOUR_CALM. Default 1024.
    pub max_error_reset_streams: u64,
    /// SETTINGS_MAX_FRAME_SIZE: the largest frame payload a client may send. Default 16384.
    pub max_frame_size: u64,
    /// SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a client may send on one stream before tether
    /// reads them. Default 1048576.
    pub initial_stream_window: u64,
    /// Request body bytes a client may send on one connection (all its streams) before tether reads
    /// them. Default 1048576.
    pub initial_connection_window: u64,
    /// Response bytes buffered per stream for a client that reads slowly. Default 409600.
    pub max_send_buffer: u64,
    /// Seconds between PINGs on a connection; 0 sends none. Default 60.
    pub ping_interval_s: u64,
    /// Seconds a client has to answer a PING before its connection is closed. Default 20.
    pub ping_timeout_s: u64,
}

impl Default for RawH2 {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            max_pending_reset_streams: 20,
            max_error_reset_streams: 1024,
            max_frame_size: MIN_FRAME,
            initial_stream_window: 1024 * 1024,
            initial_connection_window: 1024 * 1024,
            max_send_buffer: 400 * 1024,
            ping_interval_s: 60,
            ping_timeout_s: 20,
        }
    }
}

/// The smallest SETTINGS_MAX_FRAME_SIZE, and the initial one (RFC 9113 §6.5.2).
const MIN_FRAME: u64 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2).
const MAX_FRAME: u64 = (1 << 24) - 1;
/// The initial flow-control window, the smallest a server may keep (RFC 9113 §6.9.2).
const MIN_WINDOW: u64 = 65_535;
/// The largest flow-control window (RFC 9113 §6.9.1).
const MAX_WINDOW: u64 = (1 << 31) - 1;

/// `[proxy.h2]`, checked: what the listeners hand to hyper's HTTP/2 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Settings {
    /// SETTINGS_MAX_CONCURRENT_STREAMS.
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE; also bounds the CONTINUATION frames of one header block.
    pub max_header_list_size: u32,
    /// Client resets of streams not yet taken up, before GOAWAY ENHANCE_YOUR_CALM.
    pub max_pending_reset_streams: usize,
    /// Resets tether sends for protocol errors, before GOAWAY ENHANCE_YOUR_CALM.
    pub max_error_reset_streams: usize,
    /// SETTINGS_MAX_FRAME_SIZE.
    pub max_frame_size: u32,
    /// SETTINGS_INITIAL_WINDOW_SIZE.
    pub initial_stream_window: u32,
    /// The connection's receive window.
    pub initial_connection_window: u32,
    /// Response bytes buffered per stream.
    pub max_send_buffer: usize,
    /// PING interval (`None`: no PINGs).
    pub ping_interval: Option<Duration>,
    /// Time a PING has to be answered.
    pub ping_timeout: Duration,
}

impl Default for H2Settings {
    fn default() -> Self {
        // The defaults are all in range, so no problem is recorded.
        convert(&mut Checker::default(), &KeyPath::root(), RawH2::default())
    }
}

/// `[proxy.h2]` from its raw form, every value out of range reported under `path` (`proxy.h2`). After
/// a problem the default stands in, so the rest of the file is still checked.
pub(super) fn convert(c: &mut Checker, path: &KeyPath, raw: RawH2) -> H2Settings {
    let d = RawH2::default();
    let mut range = |key: &'static str, value: u64, min: u64, max: u64, fallback: u64, why: &str| {
        if (min..=max).contains(&value) {
            value
        } else {
            c.report(&path.key(key), format!("{value} is out of range: {why}; the default is {fallback}"));
            fallback
        }
    };
    let streams = range(
        "max_concurrent_streams",
        raw.max_concurrent_streams,
        1,
        10_000,
        d.max_concurrent_streams,
        "it must be 1 to 10000 (each stream can hold a request to a node)",
    );
    let headers = range(
        "max_header_list_size",
        raw.max_header_list_size,
        4096,
        1 << 20,
        d.max_header_list_size,
        "it must be 4096 to 1048576 bytes (an AM session cookie alone can take 16 KiB)",
    );
    let pending = range(
        "max_pending_reset_streams",
        raw.max_pending_reset_streams,
        1,
        10_000,
        d.max_pending_reset_streams,
        "it must be 1 to 10000 (browsers reset streams they no longer need; a larger value lets a \
         rapid-reset flood start more work)",
    );
    let errors = range(
        "max_error_reset_streams",
        raw.max_error_reset_streams,
        1,
        100_000,
        d.max_error_reset_streams,
        "it must be 1 to 100000",
    );
    let frame = range(
        "max_frame_size",
        raw.max_frame_size,
        MIN_FRAME,
        MAX_FRAME,
        d.max_frame_size,
        "RFC 9113 §6.5.2 allows 16384 to 16777215",
    );
    let window_why = "RFC 9113 §6.9 allows 65535 to 2147483647 bytes";
    let stream_window = range(
        "initial_stream_window",
        raw.initial_stream_window,
        MIN_WINDOW,
        MAX_WINDOW,
        d.initial_stream_window,
        window_why,
    );
    let conn_window = range(
        "initial_connection_window",
        raw.initial_connection_window,
        MIN_WINDOW,
        MAX_WINDOW,
        d.initial_connection_window,
        window_why,
    );
    let send_buffer = range(
        "max_send_buffer",
        raw.max_send_buffer,
        MIN_FRAME,
        16 << 20,
        d.max_send_buffer,
        "it must be 16384 to 16777216 bytes",
    );
    let ping_interval = range(
        "ping_interval_s",
        raw.ping_interval_s,
        0,
        3600,
        d.ping_interval_s,
        "it must be 0 (off) to 3600",
    );
    let ping_timeout =
        range("ping_timeout_s", raw.ping_timeout_s, 1, 600, d.ping_timeout_s, "it must be 1 to 600");
    // Every value is range-checked above, so none of these conversions can fail.
    let to_u32 = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    H2Settings {
        max_concurrent_streams: to_u32(streams),
        max_header_list_size: to_u32(headers),
        max_pending_reset_streams: to_usize(pending),
        max_error_reset_streams: to_usize(errors),
        max_frame_size: to_u32(frame),
        initial_stream_window: to_u32(stream_window),
        initial_connection_window: to_u32(conn_window),
        max_send_buffer: to_usize(send_buffer),
        ping_interval: (ping_interval > 0).then(|| Duration::from_secs(ping_interval)),
        ping_timeout: Duration::from_secs(ping_timeout),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::minimal::{BASE, TAIL};

    #[test]
    fn defaults_are_those_of_nginx_and_haproxy_and_keep_a_large_am_cookie() {
        let config = crate::config::parse(&format!("{BASE}{TAIL}")).unwrap();
        let h2 = &config.proxy.h2;
        assert_eq!(*h2, super::H2Settings::default());
        assert_eq!(h2.max_concurrent_streams, 100);
        assert_eq!(h2.max_header_list_size, 65_536);
        assert_eq!(h2.max_pending_reset_streams, 20);
        assert_eq!(h2.max_error_reset_streams, 1024);
        assert_eq!(h2.max_frame_size, 16_384);
        assert_eq!(h2.ping_interval, Some(std::time::Duration::from_secs(60)));
    }

    #[test]
    fn values_are_read_and_zero_turns_pings_off() {
        let text = format!(
            "{BASE}[proxy.h2]\nmax_concurrent_streams = 8\nmax_header_list_size = 8192\n\
             max_frame_size = 16777215\ninitial_stream_window = 65535\nping_interval_s = 0\n{TAIL}"
        );
        let h2 = crate::config::parse(&text).unwrap().proxy.h2;
        assert_eq!((h2.max_concurrent_streams, h2.max_header_list_size), (8, 8192));
        assert_eq!((h2.max_frame_size, h2.initial_stream_window), (16_777_215, 65_535));
        assert_eq!(h2.ping_interval, None);
    }

    #[test]
    fn every_value_out_of_range_names_its_key_line_and_range_in_one_run() {
        let text = format!(
            "{BASE}[proxy.h2]\nmax_concurrent_streams = 0\nmax_header_list_size = 100\n\
             max_pending_reset_streams = 0\nmax_error_reset_streams = 0\nmax_frame_size = 16777216\n\
             initial_stream_window = 2147483648\ninitial_connection_window = 1000\n\
             max_send_buffer = 5000000000\nping_interval_s = 3601\nping_timeout_s = 0\n{TAIL}"
        );
        let err = crate::config::parse(&text).unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        for key in [
            "max_concurrent_streams",
            "max_header_list_size",
            "max_pending_reset_streams",
            "max_error_reset_streams",
            "max_frame_size",
            "initial_stream_window",
            "initial_connection_window",
            "max_send_buffer",
            "ping_interval_s",
            "ping_timeout_s",
        ] {
            let full = format!("proxy.h2.{key}");
            let problem =
                err.problems.iter().find(|p| p.key == full).unwrap_or_else(|| panic!("{full}: {keys:?}"));
            let line = text.lines().nth(problem.line.expect("a line") - 1).unwrap();
            assert!(line.starts_with(key), "{full} points at {line:?}");
            assert!(
                problem.message.contains("out of range") && problem.message.contains("default is"),
                "{err}"
            );
        }
        assert!(err.to_string().contains("RFC 9113 §6.5.2 allows 16384 to 16777215"), "{err}");
    }

    #[test]
    fn an_unknown_key_names_the_keys_the_table_takes() {
        let text = format!("{BASE}[proxy.h2]\nmax_streams = 5\n{TAIL}");
        let err = crate::config::parse(&text).unwrap_err().to_string();
        assert!(err.contains("proxy.h2.max_streams") && err.contains("`max_concurrent_streams`"), "{err}");
    }
}
