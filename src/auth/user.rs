//! Users of the embedded auth node and their password hashes.
//!
//! Passwords are stored only as PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so a leaked
//! `proxy.toml` does not leak passwords; plain text is refused when the file is loaded.

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

/// Checks that `value` is an argon2 PHC hash, with a message that says what to do otherwise.
pub fn check_phc(value: &str) -> Result<String, String> {
    let hint = "run `tether hash-password` and paste its output";
    if !value.starts_with('$') {
        return Err(format!("plain-text passwords are refused: {hint}"));
    }
    let hash = PasswordHash::new(value).map_err(|e| format!("not a PHC hash ({e}): {hint}"))?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!("algorithm {:?} is not supported, only argon2: {hint}", hash.algorithm.as_str()));
    }
    Ok(value.to_string())
}

/// Hashes a password with argon2id and the crate's default (OWASP-recommended) parameters.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt).map_err(|_| "the system random generator failed".to_string())?;
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

/// Verifies a password against a PHC hash (constant time inside argon2).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_refused_and_hashes_verify() {
        assert!(check_phc("secret").unwrap_err().contains("plain-text"));
        assert!(check_phc("$argon2id$garbage").is_err());
        let cheap = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        );
        let h = cheap.hash_password_with_salt(b"pw", b"saltsaltsalt").unwrap().to_string();
        assert!(check_phc(&h).is_ok());
        assert!(verify_password("pw", &h));
        assert!(!verify_password("px", &h));
    }
}
