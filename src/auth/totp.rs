//! (placeholder until the TOTP module lands)
/// Placeholder.
pub fn decode_base32(_s: &str) -> Option<Vec<u8>> {
    None
}
