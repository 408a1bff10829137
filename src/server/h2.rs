//! The HTTP/2 server settings of a listener: `[proxy.h2]` handed to hyper's HTTP/2 builder, the same
//! for h2c by prior knowledge and for TLS with ALPN `h2` (both are served by the one builder).
//!
//! What each bound stops, with hyper 1 on h2 0.4:
//! - a rapid-reset flood (CVE-2023-44487): a stream the client resets before the server has taken it
//!   up never counts as concurrent, so `max_pending_reset_streams` of them close the connection with
//!   GOAWAY ENHANCE_YOUR_CALM;
//! - streams the server has to reset for the client's errors (a header list too large, a stream past
//!   SETTINGS_MAX_CONCURRENT_STREAMS) are bounded by `max_error_reset_streams` (RUSTSEC-2024-0003);
//! - a CONTINUATION flood: h2 counts a header block's frames against what `max_header_list_size`
//!   needs at `max_frame_size` (plus a quarter, at least 5) and stops decoding past four times the
//!   size, both with GOAWAY ENHANCE_YOUR_CALM, so the block in memory never outgrows the limit.

use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto::Http2Builder;

use crate::config::H2Settings;

/// Applies `settings` to the HTTP/2 half of a listener's builder.
pub(super) fn apply<E>(mut builder: Http2Builder<'_, E>, settings: &H2Settings) {
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        // hyper's h2 default (16 KiB for all fields, RFC 9113 §6.5.2 counting) refuses a 16 KiB
        // client-side AM session cookie that h1 (~400 KiB of head) takes; 64 KiB by default admits it.
        .max_header_list_size(settings.max_header_list_size)
        .max_pending_accept_reset_streams(settings.max_pending_reset_streams)
        .max_local_error_reset_streams(settings.max_error_reset_streams)
        .max_frame_size(settings.max_frame_size)
        .initial_stream_window_size(settings.initial_stream_window)
        .initial_connection_window_size(settings.initial_connection_window)
        .max_send_buf_size(settings.max_send_buffer)
        .keep_alive_interval(settings.ping_interval)
        .keep_alive_timeout(settings.ping_timeout);
}
