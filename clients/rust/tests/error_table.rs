//! The client has no error table of its own: it takes the codes, and whether each closes the
//! connection or may be retried, from the protocol crate. This checks that every row of
//! PROTOCOL.md's error table parses to a code whose flags are the row's, and that the client's
//! own retry rule (`Error::is_retryable`) follows the table.

use esdb_client::{Error, ErrorCode};

/// `(code, closes, retryable)` for each row of the table under `## Errors`.
fn protocol_error_table() -> Vec<(String, bool, bool)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../protocol/PROTOCOL.md");
    let doc = std::fs::read_to_string(path).expect("PROTOCOL.md");
    let section = doc.split("\n## Errors").nth(1).expect("an Errors section");
    let section = section.split("\n## ").next().expect("the section");
    let flag = |cell: &str| match cell {
        "yes" => true,
        "no" => false,
        other => panic!("yes or no, got {other}"),
    };
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let code = cells[1].trim_matches('`').to_owned();
            (code, flag(cells[2]), flag(cells[3]))
        })
        .collect()
}

#[test]
fn every_documented_code_is_known_with_its_flags() {
    let table = protocol_error_table();
    assert!(table.len() >= 23, "the table was parsed: {table:?}");
    for (name, closes, retryable) in table {
        let code = ErrorCode::parse(&name).unwrap_or_else(|| panic!("unknown code {name}"));
        assert_eq!(code.as_str(), name);
        assert_eq!(code.closes_connection(), closes, "closes flag of {name}");
        assert_eq!(code.is_retryable(), retryable, "retryable flag of {name}");
        let answer = Error::Server {
            code,
            message: "m".into(),
        };
        assert_eq!(answer.code(), Some(code));
        assert_eq!(
            answer.is_retryable(),
            retryable,
            "client retry rule for {name}"
        );
    }
    for name in [
        "read_only",
        "unreadable_event",
        "auth_required",
        "auth_failed",
        "permission_denied",
        "tls_required",
    ] {
        assert!(ErrorCode::parse(name).is_some(), "{name}");
    }
}
