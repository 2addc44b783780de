//! Password hashes (argon2id, PHC strings) and constant-time secret comparison.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2};
use subtle::ConstantTimeEq;

/// Longest password accepted: argon2 takes any length, but a megabyte of password is an
/// attack on the CPU, not a password.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A hash verified when the user does not exist, so an unknown name costs as long as a
/// wrong password (the time taken must not tell which names exist). Made by `esdb passwd`.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$1kCEdcLEvjqyJr0d3qT+nVpF1bbbg0D1ULi9xE1hFO8";

/// An argon2id hash of `password` with a fresh random salt (argon2's recommended default
/// cost: 19 MiB, 2 passes).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("hashing: {e}"))
}

/// Checks that `phc` is an argon2id hash (refused at config load, not at the first login).
pub fn check_hash(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("password_hash: {e}"))?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(format!(
            "password_hash: {} is not argon2id (make one with `esdb passwd`)",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Whether `password` matches `phc`; with `None` (no such user) a dummy hash is checked
/// instead and the answer is no. CPU-heavy (tens of milliseconds): call off the runtime.
pub fn verify(password: &str, phc: Option<&str>) -> bool {
    let hash = phc.unwrap_or(DUMMY_HASH);
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let matched = password.len() <= MAX_PASSWORD_BYTES
        && Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
    matched && phc.is_some()
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(candidate: &str, secret: &str) -> bool {
    bool::from(candidate.as_bytes().ct_eq(secret.as_bytes()))
}

/// `esdb passwd`: reads one line (the password) from stdin and prints its hash. A prompt
/// goes to stderr when stdin is a terminal (the typed password shows: pipe it in to hide it).
pub fn passwd_command() -> std::process::ExitCode {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    if let Err(error) = std::io::stdin().lock().read_line(&mut line) {
        eprintln!("esdb: reading the password: {error}");
        return std::process::ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        eprintln!("esdb: the password must be 1 to {MAX_PASSWORD_BYTES} bytes");
        return std::process::ExitCode::from(2);
    }
    match hash(password) {
        Ok(phc) => {
            println!("{phc}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("esdb: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_the_dummy_never_matches() {
        let phc = hash("correct horse").unwrap();
        check_hash(&phc).unwrap();
        assert!(verify("correct horse", Some(&phc)));
        assert!(!verify("wrong horse", Some(&phc)));
        check_hash(DUMMY_HASH).unwrap();
        assert!(!verify("anything", None));
        assert!(check_hash("$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$aGFzaA").is_err());
        assert!(check_hash("plain").is_err());
        assert!(
            same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("ab", "abc")
        );
    }
}
