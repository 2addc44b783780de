//! Failover between servers of the list, and calls retried on a new connection.

mod common;

use common::{options, within_timeout, Server};
use esdb_client::{Client, ClientOptions, Error, EventData, ExpectedVersion};
use serde_json::json;

fn event() -> EventData {
    EventData::json("T", &json!({})).unwrap()
}

#[tokio::test]
async fn a_stopped_server_in_the_list_is_passed_over() {
    within_timeout(async {
        let mut stopped = Server::start();
        stopped.kill9();
        let running = Server::start();
        let client = Client::connect(options(&[&stopped, &running]))
            .await
            .unwrap();
        assert_eq!(client.server_addr().await.unwrap(), running.address());
        client
            .append("s", ExpectedVersion::NoStream, [event()])
            .await
            .unwrap();
        let direct = common::client(&running).await;
        assert_eq!(direct.version("s").await.unwrap(), Some(0));
    })
    .await;
}

#[tokio::test]
async fn calls_move_to_the_next_server_when_the_current_one_dies() {
    within_timeout(async {
        let mut first = Server::start();
        let second = Server::start();
        let client = Client::connect(options(&[&first, &second])).await.unwrap();
        assert_eq!(client.server_addr().await.unwrap(), first.address());
        client
            .append("s", ExpectedVersion::Any, [event()])
            .await
            .unwrap();
        first.kill9();
        // The next call finds the connection gone and fails over.
        let appended = client
            .append("s", ExpectedVersion::Any, [event()])
            .await
            .unwrap();
        assert_eq!(
            appended.last_version, 0,
            "a fresh stream on the second server"
        );
        assert_eq!(client.server_addr().await.unwrap(), second.address());
    })
    .await;
}

#[tokio::test]
async fn no_reachable_server_is_an_error_after_the_retries() {
    within_timeout(async {
        let mut gone = Server::start();
        gone.kill9();
        let options = ClientOptions::new([gone.address()]).with_backoff(esdb_client::Backoff {
            base_ms: 1,
            max_ms: 5,
            max_retries: 3,
        });
        let error = Client::connect(options).await.unwrap_err();
        assert!(
            matches!(error, Error::Unavailable { attempts: 4, .. }),
            "{error}"
        );
        // A store the server does not serve is its answer: reported at once, not retried.
        let server = Server::start();
        let error = Client::connect(common::options(&[&server]).with_store("nope"))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(esdb_client::ErrorCode::StoreNotFound));
    })
    .await;
}
