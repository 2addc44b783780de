//! `SCAVENGE` and `SCAVENGE STATUS` (syntax in `esdb_protocol::ops::scavenge`): start a
//! scavenge of the session's store, or show how far it got (`crate::store::scavenge`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;

use esdb_protocol::Reply;

use crate::server::session::{read, write, Dispatched, Session};
use crate::server::ServerContext;
use crate::store::scavenge::{self, ScavengeStatus};
use crate::store::{Command, Outcome};

fn status_reply(status: &ScavengeStatus) -> Reply {
    Reply::Scavenge {
        body: Bytes::from(serde_json::to_vec(status).expect("integers and names serialise")),
    }
}

/// `SCAVENGE STATUS`: a read, like any other (it sees the connection's earlier writes).
pub fn status(context: &Arc<ServerContext>, session: &mut Session) -> Dispatched {
    read(context, session, |txn, dbs| {
        Ok(status_reply(&scavenge::status(txn, dbs)?))
    })
}

/// `SCAVENGE`: commits the start (a no-op while one runs), wakes this node's job, and answers
/// the state the start left, read as any read after the connection's write is (so a follower
/// answers once it has applied the start too).
pub async fn start(context: &Arc<ServerContext>, session: &mut Session) -> Dispatched {
    let store = session.store.clone();
    let command = Command::ScavengeStart {
        epoch_us: store.stamp_epoch_us(),
    };
    let started = Arc::new(AtomicBool::new(false));
    let started_here = started.clone();
    let written = write(session, command, move |outcome| {
        if outcome == (Outcome::ScavengeStarted { started: true }) {
            started_here.store(true, Ordering::Release);
        }
        Reply::Ok
    })
    .await;
    let Dispatched::Reply(written) = written else {
        return written;
    };
    let name = store.name().to_owned();
    let state = read(context, session, move |txn, dbs| {
        let state = scavenge::status(txn, dbs)?;
        if started.load(Ordering::Acquire) {
            crate::telemetry::scavenge_started(&name, state.up_to_position);
        }
        Ok(status_reply(&state))
    });
    let Dispatched::Reply(state) = state else {
        return state;
    };
    Dispatched::Reply(
        async move {
            match written.await {
                Reply::Ok => {}
                other => return other,
            }
            store.scavenge_kick().notify_one();
            state.await
        }
        .boxed(),
    )
}
