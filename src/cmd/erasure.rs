//! `ENCRYPT` and `SHRED` (syntax in `esdb_protocol::ops::erasure`), and the sealing of appends
//! to encrypted streams, on the server side (the keys and the sealing itself are in
//! [`crate::store::crypto`]).

use futures::FutureExt;

use esdb_protocol::{ProtocolError, Reply};

use crate::server::session::{error, write, Dispatched, Session};
use crate::store::{Command, NewEvent};

/// `ENCRYPT <stream>`: a new data key, made and wrapped here, so the log only ever holds it
/// wrapped. Answered once this node has applied it: an append sent after the `+OK`, on any
/// connection to this node, is sealed.
pub async fn encrypt(session: &mut Session, stream: String) -> Dispatched {
    let Some(master_key) = session.store.master_key() else {
        return error(ProtocolError::invalid_argument(
            "this server has no encryption key: start it with --encryption-key-file",
        ));
    };
    let wrapped_key = match master_key.new_wrapped_key(&stream) {
        Ok(wrapped_key) => wrapped_key,
        Err(e) => return error(e.to_protocol_error()),
    };
    let store = session.store.clone();
    let dispatched = write(
        session,
        Command::Encrypt {
            stream,
            wrapped_key,
        },
        |_| Reply::Ok,
    )
    .await;
    let Dispatched::Reply(reply) = dispatched else {
        return dispatched;
    };
    let applied = async move {
        let reply = reply.await;
        if !matches!(reply, Reply::Ok) {
            return reply;
        }
        match store.progress().settled().await {
            Ok(()) => reply,
            Err(e) => Reply::Err(e.to_protocol_error()),
        }
    }
    .boxed()
    .shared();
    session.last_encrypt = Some(applied.clone());
    Dispatched::Reply(applied.boxed())
}

/// `SHRED <stream>`.
pub async fn shred(session: &mut Session, stream: String) -> Dispatched {
    write(session, Command::Shred { stream }, |_| Reply::Ok).await
}

/// Seals `events` for `stream` if it is encrypted, after this connection's latest `ENCRYPT`
/// is applied (so `ENCRYPT` and `APPEND` pipelined on one connection work). Returns whether
/// it sealed them. What this node does not know yet (a key another node made a moment ago)
/// `apply` catches: the append is refused as retryable, never stored unsealed.
pub(crate) async fn seal(
    session: &mut Session,
    stream: &str,
    events: &mut [NewEvent],
) -> Result<bool, ProtocolError> {
    if let Some(encrypt) = session.last_encrypt.take() {
        encrypt.await;
    }
    session
        .store
        .seal_events(stream, events)
        .map_err(|e| e.to_protocol_error())
}
