//! Crypto-shredding: per-stream data keys, sealed event data, and `SHRED`.
//!
//! A stream made with `ENCRYPT` gets its own random 256-bit data key, kept in `data_keys`
//! wrapped (AES-256-GCM) under the server's master key (`--encryption-key-file`); every node of
//! a cluster must be given the same master key. The node that accepts an append seals each
//! event's `data` under the stream's key *before* proposing it, so neither the Raft log, nor a
//! follower, nor LMDB ever holds the plaintext; reads open it again (see [`open_record`]).
//! `SHRED` replaces the wrapped key with a marker: from then on the events read back with
//! `"data":null,"shredded":true`, and nothing the server holds can bring the data back.
//! Versions, positions, types, metadata and tags are never encrypted.
//!
//! A sealed record is the ordinary record ([`crate::store::record`]) with `"sealed":true` as
//! its first field and `data` the base64 of `nonce ++ ciphertext ++ tag`. Ordinary records all
//! start with `{"event_id"`, so the prefix alone tells them apart, and reads of streams that
//! are not encrypted pay one comparison. The ciphertext is bound to its stream and event id
//! (the AEAD's associated data), so it cannot be moved to another event.
//!
//! What this does not erase, and why: the `ENCRYPT` entry (holding the wrapped key) stays in
//! the Raft log until the log is purged behind a checkpoint (`--raft-log-kept-entries`), and
//! LMDB's freed pages keep old bytes until they are reused. Both hold the key only wrapped, so
//! they matter only to someone who also has the master key.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use heed::RoTxn;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::store::record::{build_record_from, mark_shredded};
use crate::store::schema::Databases;
use crate::store::StoreError;

/// Bytes of the master key and of each data key (AES-256).
pub const KEY_BYTES: usize = 32;
/// Bytes AES-GCM adds to what it seals: the authentication tag.
const TAG_BYTES: usize = 16;
/// A wrapped data key: nonce, the sealed key, its tag.
pub const WRAPPED_KEY_BYTES: usize = NONCE_LEN + KEY_BYTES + TAG_BYTES;
/// What every sealed event record starts with (ordinary ones start with `{"event_id"`).
pub const SEALED_PREFIX: &[u8] = b"{\"sealed\":true,";

/// `data_keys` value tags.
const STATE_KEY: u8 = 1;
const STATE_SHREDDED: u8 = 2;

/// The server's master key, which wraps every data key.
pub struct MasterKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> MasterKey {
        MasterKey {
            key: aes_key(bytes),
        }
    }

    /// Reads a key file: 64 hexadecimal digits (32 bytes), surrounding whitespace ignored.
    /// Make one with `openssl rand -hex 32`.
    pub fn read_hex_file(path: &std::path::Path) -> Result<MasterKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the encryption key {}: {e}", path.display()))?;
        let hex = text.trim();
        let bad = || {
            format!(
                "the encryption key {} must hold {} hexadecimal digits (openssl rand -hex {KEY_BYTES})",
                path.display(),
                2 * KEY_BYTES
            )
        };
        if hex.len() != 2 * KEY_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut bytes = [0u8; KEY_BYTES];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16).map_err(|_| bad())?;
        }
        Ok(MasterKey::from_bytes(&bytes))
    }

    /// A new random data key for `stream`, wrapped: what `ENCRYPT` carries in its command.
    pub fn new_wrapped_key(&self, stream: &str) -> Result<Vec<u8>, StoreError> {
        let mut data_key = [0u8; KEY_BYTES];
        random(&mut data_key)?;
        let wrapped = seal(&self.key, &wrap_aad(stream), &data_key);
        data_key.fill(0);
        wrapped
    }

    fn unwrap(&self, stream: &str, wrapped: &[u8]) -> Result<DataKey, StoreError> {
        let mut bytes = open(&self.key, &wrap_aad(stream), wrapped).map_err(|_| {
            StoreError::Unreadable(format!(
                "the data key of stream {stream} does not open under this server's encryption \
                 key (another key file, or damage)"
            ))
        })?;
        let key = <[u8; KEY_BYTES]>::try_from(bytes.as_slice())
            .map(|bytes| DataKey {
                key: aes_key(&bytes),
            })
            .map_err(|_| StoreError::Corrupt(format!("the data key of {stream} is not 32 bytes")));
        bytes.fill(0);
        key
    }
}

/// One stream's data key, unwrapped.
pub struct DataKey {
    key: LessSafeKey,
}

impl DataKey {
    /// Seals one event's data: the JSON string (quoted base64) that replaces it in the
    /// command and the record.
    pub fn seal_data(
        &self,
        stream: &str,
        event_id: &Uuid,
        data: &[u8],
    ) -> Result<Box<RawValue>, StoreError> {
        let sealed = seal(&self.key, &data_aad(stream, event_id), data)?;
        let quoted = format!("\"{}\"", BASE64.encode(sealed));
        RawValue::from_string(quoted)
            .map_err(|e| StoreError::Storage(format!("sealing event data: {e}")))
    }

    fn open_data(&self, stream: &str, event_id: &Uuid, sealed: &str) -> Result<Vec<u8>, String> {
        let bytes = BASE64
            .decode(sealed)
            .map_err(|e| format!("sealed data is not base64: {e}"))?;
        open(&self.key, &data_aad(stream, event_id), &bytes)
            .map_err(|_| "sealed data does not open under its stream's key".to_owned())
    }
}

/// A stream's entry in `data_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// The wrapped data key ([`WRAPPED_KEY_BYTES`]).
    Wrapped(Vec<u8>),
    /// `SHRED` destroyed it.
    Shredded,
}

impl KeyState {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            KeyState::Wrapped(wrapped) => {
                let mut value = Vec::with_capacity(1 + wrapped.len());
                value.push(STATE_KEY);
                value.extend_from_slice(wrapped);
                value
            }
            KeyState::Shredded => vec![STATE_SHREDDED],
        }
    }

    fn decode(stream: &str, value: &[u8]) -> Result<KeyState, StoreError> {
        match value.split_first() {
            Some((&STATE_KEY, wrapped)) if wrapped.len() == WRAPPED_KEY_BYTES => {
                Ok(KeyState::Wrapped(wrapped.to_vec()))
            }
            Some((&STATE_SHREDDED, [])) => Ok(KeyState::Shredded),
            _ => Err(StoreError::Corrupt(format!(
                "the data_keys entry of {stream} is malformed ({} bytes)",
                value.len()
            ))),
        }
    }
}

/// The stream's data key state, `None` for a stream never encrypted.
pub fn key_state(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
) -> Result<Option<KeyState>, StoreError> {
    dbs.data_keys
        .get(txn, stream)?
        .map(|value| KeyState::decode(stream, value))
        .transpose()
}

/// The stream's data key, unwrapped, for sealing an append; `Ok(None)` for a stream never
/// encrypted. A shredded stream, or a node without the master key, refuses.
pub fn data_key_for_append(
    txn: &RoTxn,
    dbs: &Databases,
    stream: &str,
) -> Result<Option<DataKey>, StoreError> {
    match key_state(txn, dbs, stream)? {
        None => Ok(None),
        Some(KeyState::Shredded) => Err(crate::store::Rejection::StreamShredded {
            stream: stream.to_owned(),
        }
        .into()),
        Some(KeyState::Wrapped(wrapped)) => {
            Ok(Some(master_key(dbs, stream)?.unwrap(stream, &wrapped)?))
        }
    }
}

fn master_key<'a>(dbs: &'a Databases, stream: &str) -> Result<&'a MasterKey, StoreError> {
    dbs.master_key.ok_or_else(|| {
        StoreError::Unavailable(format!(
            "stream {stream} is encrypted and this node was started without an encryption key \
             (--encryption-key-file)"
        ))
    })
}

/// The fields of a sealed record, to rebuild it opened.
#[derive(Deserialize)]
struct SealedRecord<'a> {
    event_id: Uuid,
    event_type: Cow<'a, str>,
    stream_id: Cow<'a, str>,
    version: u64,
    position: u64,
    epoch_us: u64,
    data: Cow<'a, str>,
    #[serde(borrow)]
    metadata: &'a RawValue,
    #[serde(default)]
    tags: Vec<String>,
}

/// The record as readers get it: an ordinary record as stored (borrowed), a sealed one
/// opened with its stream's key, or, once shredded, with `"data":null,"shredded":true`. Every
/// read of an event record goes through here after its checksum is checked.
pub fn open_record<'r>(
    txn: &RoTxn,
    dbs: &Databases,
    record: &'r [u8],
) -> Result<Cow<'r, [u8]>, StoreError> {
    if !record.starts_with(SEALED_PREFIX) {
        return Ok(Cow::Borrowed(record));
    }
    let sealed: SealedRecord = serde_json::from_slice(record)
        .map_err(|e| StoreError::Unreadable(format!("a sealed record does not parse: {e}")))?;
    let unreadable = |reason: String| {
        StoreError::Unreadable(format!(
            "event at position {} (stream {}, version {}): {reason}",
            sealed.position, sealed.stream_id, sealed.version
        ))
    };
    let data = match key_state(txn, dbs, &sealed.stream_id)? {
        Some(KeyState::Wrapped(wrapped)) => {
            let key = master_key(dbs, &sealed.stream_id)?.unwrap(&sealed.stream_id, &wrapped)?;
            Some(
                key.open_data(&sealed.stream_id, &sealed.event_id, &sealed.data)
                    .map_err(unreadable)?,
            )
        }
        Some(KeyState::Shredded) => None,
        None => return Err(unreadable("sealed, but its stream has no data key".into())),
    };
    let rebuilt = build_record_from(
        &sealed.event_id,
        &sealed.event_type,
        &sealed.stream_id,
        sealed.version,
        sealed.position,
        sealed.epoch_us,
        data.as_deref().unwrap_or(b"null"),
        Some(sealed.metadata),
        &sealed.tags,
    );
    Ok(Cow::Owned(match data {
        Some(_) => rebuilt,
        None => mark_shredded(rebuilt),
    }))
}

/// Turns an ordinary record (as [`crate::store::record::build_record`] makes it) into its
/// sealed form: `"sealed":true` first.
pub fn mark_sealed(record: &[u8]) -> Vec<u8> {
    debug_assert!(record.first() == Some(&b'{'));
    let mut sealed = Vec::with_capacity(record.len() + SEALED_PREFIX.len());
    sealed.extend_from_slice(SEALED_PREFIX);
    sealed.extend_from_slice(&record[1..]);
    sealed
}

fn aes_key(bytes: &[u8; KEY_BYTES]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key"))
}

fn wrap_aad(stream: &str) -> Vec<u8> {
    let mut aad = b"esdb data key\0".to_vec();
    aad.extend_from_slice(stream.as_bytes());
    aad
}

fn data_aad(stream: &str, event_id: &Uuid) -> Vec<u8> {
    let mut aad = Vec::with_capacity(16 + stream.len());
    aad.extend_from_slice(event_id.as_bytes());
    aad.extend_from_slice(stream.as_bytes());
    aad
}

fn random(out: &mut [u8]) -> Result<(), StoreError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| StoreError::Storage("the system random generator failed".into()))
}

/// `nonce ++ ciphertext ++ tag`, under a fresh random nonce.
fn seal(key: &LessSafeKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_BYTES);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let mut body = out.split_off(NONCE_LEN);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut body,
    )
    .map_err(|_| StoreError::Storage("sealing failed".into()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn open(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, ()> {
    if sealed.len() < NONCE_LEN + TAG_BYTES {
        return Err(());
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| ())?;
    let mut body = body.to_vec();
    let plaintext_len = key
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .map_err(|_| ())?
        .len();
    body.truncate(plaintext_len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_opens_only_under_its_key_stream_and_event() {
        let master = MasterKey::from_bytes(&[7; KEY_BYTES]);
        let wrapped = master.new_wrapped_key("s").unwrap();
        assert_eq!(wrapped.len(), WRAPPED_KEY_BYTES);
        let key = master.unwrap("s", &wrapped).unwrap();
        assert!(master.unwrap("t", &wrapped).is_err(), "bound to its stream");
        let other = MasterKey::from_bytes(&[8; KEY_BYTES]);
        assert!(
            other.unwrap("s", &wrapped).is_err(),
            "bound to its master key"
        );

        let id = Uuid::from_u128(1);
        let sealed = key.seal_data("s", &id, br#"{"name":"Ada"}"#).unwrap();
        let text: String = serde_json::from_str(sealed.get()).unwrap();
        assert!(!text.contains("Ada"));
        assert_eq!(
            key.open_data("s", &id, &text).unwrap(),
            br#"{"name":"Ada"}"#
        );
        assert!(key.open_data("s", &Uuid::from_u128(2), &text).is_err());
        assert!(key.open_data("t", &id, &text).is_err());
        let again = key.seal_data("s", &id, br#"{"name":"Ada"}"#).unwrap();
        assert_ne!(again.get(), sealed.get(), "a fresh nonce each time");
    }

    #[test]
    fn key_states_round_trip_and_malformed_ones_are_refused() {
        for state in [
            KeyState::Wrapped(vec![3; WRAPPED_KEY_BYTES]),
            KeyState::Shredded,
        ] {
            assert_eq!(KeyState::decode("s", &state.encode()).unwrap(), state);
        }
        assert!(KeyState::decode("s", &[STATE_KEY, 1, 2]).is_err());
        assert!(KeyState::decode("s", &[9]).is_err());
        assert!(KeyState::decode("s", &[]).is_err());
    }

    #[test]
    fn the_key_file_takes_64_hex_digits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert!(MasterKey::read_hex_file(&path).is_ok());
        for bad in ["ab".repeat(31), "zz".repeat(32), String::new()] {
            std::fs::write(&path, bad).unwrap();
            assert!(MasterKey::read_hex_file(&path).is_err());
        }
    }
}
