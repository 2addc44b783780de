//! `append_multi` (several streams, conditions) and `read_tags_page` through the client,
//! against a real server.

mod common;

use common::{client, within_timeout, Server};
use esdb_client::{AppendCondition, AppendPart, EventData, QueryItem};
use esdb_client::{ErrorCode, ExpectedVersion};
use serde_json::json;

fn tagged(event_type: &str, data: serde_json::Value, tags: &[&str]) -> EventData {
    EventData::json(event_type, &data)
        .unwrap()
        .with_tags(tags.iter().copied())
}

#[tokio::test]
async fn append_multi_with_tags_and_a_condition() {
    within_timeout(async {
        let server = Server::start();
        let client = client(&server).await;
        let parts = [
            AppendPart::new(
                "course-c1",
                ExpectedVersion::NoStream,
                [tagged(
                    "CourseDefined",
                    json!({"capacity": 1}),
                    &["course:c1"],
                )],
            ),
            AppendPart::new(
                "student-s1",
                ExpectedVersion::NoStream,
                [tagged("StudentRegistered", json!({}), &["student:s1"])],
            ),
        ];
        let results = client.append_multi(&parts, None).await.unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].stream, "student-s1");
        assert_eq!(
            (results[1].first_position, results[1].last_position),
            (1, 1)
        );
        // The same request again is a retry: the original results, nothing written.
        assert_eq!(client.append_multi(&parts, None).await.unwrap(), results);

        let boundary = client
            .read_tags_page(&["course:c1".to_owned()], 0, 100)
            .await
            .unwrap();
        assert_eq!(boundary.len(), 1);
        assert_eq!(boundary[0].tags, ["course:c1"]);
        let condition = AppendCondition {
            query: vec![QueryItem {
                types: vec!["StudentSubscribed".into()],
                tags: vec!["course:c1".into()],
                payload: None,
            }],
            after: Some(boundary[0].position),
        };
        let subscribe = |student: &str| {
            [AppendPart::new(
                "course-c1",
                ExpectedVersion::Any,
                [tagged(
                    "StudentSubscribed",
                    json!({"student": student}),
                    &["course:c1"],
                )],
            )]
        };
        let won = client
            .append_multi(&subscribe("s1"), Some(&condition))
            .await
            .unwrap();
        assert_eq!(won[0].first_position, 2);
        let error = client
            .append_multi(&subscribe("s2"), Some(&condition))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::ConditionFailed));
        assert!(error.to_string().contains("position 2 "), "{error}");

        // Checked by the client before anything is sent.
        let bad = [AppendPart::new("a", ExpectedVersion::Any, [])];
        let error = client.append_multi(&bad, None).await.unwrap_err();
        assert_eq!(error.code(), Some(ErrorCode::InvalidArgument));
    })
    .await;
}
