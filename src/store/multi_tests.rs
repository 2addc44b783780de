//! Engine tests of `APPENDMULTI` and append conditions (`multi`, `condition`), and of format
//! 5's tag index and upgrade, against a real LMDB environment in a temporary directory, with
//! writes through the Raft log and the apply thread as the server runs them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use esdb_protocol::ExpectedVersion;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::condition::{AppendCondition, ConditionItem};
use super::multi::{AppendMultiCommand, AppendPart, PartResult};
use super::schema::META_FORMAT_VERSION;
use super::writer::WriteResult;
use super::*;

use ExpectedVersion::{Any, Exact, NoStream};

struct TestStore {
    store: Arc<Store>,
    node: Option<crate::raft::Node>,
}

impl std::ops::Deref for TestStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestStore {
    async fn close(mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
        let store = self.store.clone();
        drop(self);
        tokio::task::spawn_blocking(move || store.close(Duration::from_secs(5)))
            .await
            .expect("close");
    }
}

async fn open(dir: &Path) -> TestStore {
    let options = StoreOptions {
        map_size_bytes: 64 << 20,
        master_key: None,
    };
    let store = Arc::new(Store::open("test", dir, &options).expect("open store"));
    let node = crate::raft::Node::start(&store).await.expect("start raft");
    TestStore {
        store,
        node: Some(node),
    }
}

fn event(event_type: &str, data: &str, tags: &[&str]) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event_type.to_owned(),
        data: RawValue::from_string(data.to_owned()).expect("valid JSON"),
        metadata: None,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn part(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendPart {
    AppendPart {
        sealed: false,
        stream: stream.to_owned(),
        expected,
        events,
    }
}

fn item(types: &[&str], tags: &[&str], payload: Option<serde_json::Value>) -> ConditionItem {
    ConditionItem {
        types: types.iter().map(|t| (*t).to_owned()).collect(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        payload,
    }
}

async fn multi(
    store: &Store,
    parts: Vec<AppendPart>,
    condition: Option<AppendCondition>,
) -> WriteResult {
    store
        .execute(Command::AppendMulti(AppendMultiCommand {
            epoch_us: 1_800_000_000_000_000,
            parts,
            condition,
        }))
        .await
}

fn positions(store: &Store, tags: &[&str]) -> Vec<u64> {
    let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
    let page = store
        .with_read(|txn, dbs| read::read_tags(txn, dbs, &tags, 0, 100))
        .unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_slice(&page.body).unwrap();
    records
        .iter()
        .map(|r| r["position"].as_u64().unwrap())
        .collect()
}

/// Whether a condition over the store as it is now would pass, checked with a probe append
/// that is then the store's next event when it passes.
async fn passes(store: &Store, query: Vec<ConditionItem>, after: Option<u64>) -> Result<(), u64> {
    let probe = part("probe", Any, vec![event("Probe", "0", &[])]);
    match multi(store, vec![probe], Some(AppendCondition { query, after })).await {
        Ok(Outcome::AppendedMulti { .. }) => Ok(()),
        Err(StoreError::Rejected(Rejection::ConditionFailed { position, .. })) => Err(position),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn parts_are_all_or_nothing_and_report_where_they_went() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let written = multi(
        &store,
        vec![
            part(
                "a",
                NoStream,
                vec![event("A", "1", &[]), event("A", "2", &[])],
            ),
            part("b", NoStream, vec![event("B", "3", &["x"])]),
        ],
        None,
    )
    .await
    .unwrap();
    let Outcome::AppendedMulti { parts, replayed } = written else {
        panic!("{written:?}")
    };
    assert!(!replayed);
    assert_eq!(
        parts,
        [
            PartResult {
                first_version: 0,
                last_version: 1,
                first_position: 0,
                last_position: 1
            },
            PartResult {
                first_version: 0,
                last_version: 0,
                first_position: 2,
                last_position: 2
            }
        ]
    );
    // The second part fails: the first (a new stream) is not written either.
    let failed = multi(
        &store,
        vec![
            part("c", NoStream, vec![event("C", "4", &["x"])]),
            part("a", Exact(0), vec![event("A", "5", &[])]),
        ],
        None,
    )
    .await;
    match failed {
        Err(StoreError::Rejected(Rejection::InPart { part: 1, rejection })) => {
            assert!(matches!(*rejection, Rejection::WrongExpectedVersion { .. }))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        positions(&store, &["x"]),
        [2],
        "nothing of the failed command"
    );
    assert_eq!(
        store
            .with_read(|txn, dbs| read::stream_version(txn, dbs, "c"))
            .unwrap(),
        -1
    );
    store.close().await;
}

#[tokio::test]
async fn conditions_match_by_tags_types_and_payload_after_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    multi(
        &store,
        vec![part(
            "s",
            Any,
            vec![
                event(
                    "Subscribed",
                    r#"{"student":"s1"}"#,
                    &["course:c1", "student:s1"],
                ),
                event("Defined", r#"{"capacity":2}"#, &["course:c2"]),
                event(
                    "Subscribed",
                    r#"{"student":"s2"}"#,
                    &["course:c1", "student:s2"],
                ),
            ],
        )],
        None,
    )
    .await
    .unwrap();
    // Tags are ANDed within an item; the first match is named.
    assert_eq!(
        passes(&store, vec![item(&[], &["course:c1"], None)], None).await,
        Err(0)
    );
    assert_eq!(
        passes(
            &store,
            vec![item(&[], &["course:c1", "student:s2"], None)],
            None
        )
        .await,
        Err(2)
    );
    assert_eq!(
        passes(
            &store,
            vec![item(&[], &["course:c2", "student:s2"], None)],
            None
        )
        .await,
        Ok(())
    );
    // Types narrow a tagged item; a types-only item goes through the type index.
    assert_eq!(
        passes(&store, vec![item(&["Defined"], &["course:c1"], None)], None).await,
        Ok(())
    );
    assert_eq!(
        passes(&store, vec![item(&["Defined", "X"], &[], None)], None).await,
        Err(1)
    );
    // Items are ORed: the smallest matching position across them.
    assert_eq!(
        passes(
            &store,
            vec![
                item(&[], &["student:s2"], None),
                item(&["Defined"], &[], None)
            ],
            None
        )
        .await,
        Err(1)
    );
    // `after` is exclusive.
    assert_eq!(
        passes(&store, vec![item(&[], &["course:c1"], None)], Some(0)).await,
        Err(2)
    );
    assert_eq!(
        passes(&store, vec![item(&[], &["course:c1"], None)], Some(2)).await,
        Ok(())
    );
    // The payload narrows an item, with the subscriptions' partial matcher.
    let s2 = serde_json::json!({"data": {"student": "s2"}});
    assert_eq!(
        passes(&store, vec![item(&[], &["course:c1"], Some(s2))], None).await,
        Err(2)
    );
    let s9 = serde_json::json!({"data": {"student": "s9"}});
    assert_eq!(
        passes(&store, vec![item(&["Subscribed"], &[], Some(s9))], None).await,
        Ok(())
    );
    store.close().await;
}

#[tokio::test]
async fn a_retry_answers_the_original_even_when_its_condition_now_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let events = vec![event("T", "1", &["k"])];
    let condition = AppendCondition {
        query: vec![item(&[], &["k"], None)],
        after: None,
    };
    let build = || vec![part("a", NoStream, events.clone())];
    let first = multi(&store, build(), Some(condition.clone()))
        .await
        .unwrap();
    let again = multi(&store, build(), Some(condition)).await.unwrap();
    let (
        Outcome::AppendedMulti { parts: p1, .. },
        Outcome::AppendedMulti {
            parts: p2,
            replayed,
        },
    ) = (first, again)
    else {
        panic!()
    };
    assert_eq!(p1, p2);
    assert!(replayed);
    assert_eq!(positions(&store, &["k"]), [0]);
    store.close().await;
}

/// A format 4 store (no tag index, no tagged records) opens at the current format (5 added
/// tags, 6 scavenging), and its events are untouched; new tagged events are indexed.
#[tokio::test]
async fn a_format_4_store_upgrades_past_5() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    multi(
        &store,
        vec![part("a", Any, vec![event("A", "1", &[])])],
        None,
    )
    .await
    .unwrap();
    {
        let mut txn = store.env.write_txn().unwrap();
        store
            .dbs
            .meta
            .put(&mut txn, META_FORMAT_VERSION, &4)
            .unwrap();
        txn.commit().unwrap();
    }
    store.close().await;
    let store = open(dir.path()).await;
    let format = store
        .with_read(|txn, dbs| Ok(dbs.meta.get(txn, META_FORMAT_VERSION)?))
        .unwrap();
    assert_eq!(format, Some(schema::FORMAT_VERSION));
    assert_eq!(schema::FORMAT_VERSION, 7);
    multi(
        &store,
        vec![part("b", Any, vec![event("B", "2", &["t"])])],
        None,
    )
    .await
    .unwrap();
    assert_eq!(positions(&store, &["t"]), [1]);
    store.close().await;
}

/// `esdb verify` checks the tag index both ways: every tag of every event has its entry, and
/// every entry points at an event.
#[tokio::test]
async fn verify_checks_the_tag_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let events = vec![event("A", "1", &["x", "y"]), event("B", "2", &["y"])];
    multi(&store, vec![part("a", Any, events)], None)
        .await
        .unwrap();
    store.close().await;
    let report = verify::verify_store(dir.path()).unwrap();
    assert_eq!(report.problem_count, 0, "{:?}", report.problems);
    assert_eq!(
        report.index_entries,
        3 * 2 + 3,
        "three indexes per event, three tags"
    );
    let store = open(dir.path()).await;
    {
        let mut txn = store.env.write_txn().unwrap();
        let key = schema::tag_index_key("y", 1);
        assert!(store.dbs.tag_index.delete(&mut txn, &key).unwrap());
        let stray = schema::tag_index_key("z", 9);
        store.dbs.tag_index.put(&mut txn, &stray, &()).unwrap();
        txn.commit().unwrap();
    }
    store.close().await;
    let report = verify::verify_store(dir.path()).unwrap();
    let problems = report.problems.join("\n");
    assert!(problems.contains("lacks its tag y"), "{problems}");
    assert!(
        problems.contains("tag_index entry z points at position 9"),
        "{problems}"
    );
}
