//! Users of the embedded auth node and their password hashes.
//!
//! Passwords are stored only as PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so a leaked
//! `proxy.toml` does not leak passwords; plain text is refused when the file is loaded.

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use ring::rand::{SecureRandom, SystemRandom};

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
    fn hashes_verify_the_right_password_only() {
        let cheap = Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(8, 1, 1, None).unwrap(),
        );
        let h = cheap.hash_password_with_salt(b"pw", b"saltsaltsalt").unwrap().to_string();
        assert!(verify_password("pw", &h));
        assert!(!verify_password("px", &h));
    }
}
