//! Writes test certificates (rcgen) into a directory, for the client libraries' TLS tests:
//! `cargo run --example gen_certs -- <dir>`. See tests/common/certs.rs for the file names.

#[path = "../tests/common/certs.rs"]
mod certs;

fn main() {
    let dir = std::env::args().nth(1).expect("usage: gen_certs <dir>");
    std::fs::create_dir_all(&dir).expect("create the directory");
    certs::write_all(std::path::Path::new(&dir));
}
