//! Listings that find runs by what operators know of them: the values of a workflow's
//! search fields, and when the runs started.

use serde_json::Value;

use crate::server::{Server, Services, order};

fn ids(page: &Value) -> Vec<String> {
    page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["context"]["order_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_are_found_by_search_fields_and_time() {
    let services = Services::start().await;
    let config = services.config().replace(
        "[workflows.order_processing]\n",
        "[workflows.order_processing]\nsearch = [\"order_id\", \"user_id\"]\n",
    );
    let server = Server::start(&config).await;
    for (order_id, user) in [("v-1", 7), ("v-2", 7), ("v-3", 8)] {
        let (status, _) = server
            .post(
                "/v1/workflows/order_processing/runs?wait=30s",
                &order(order_id, user, 20.0),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (_, all) = server.get("/v1/runs").await;
    let middle = all["runs"][1]["created_at"].as_str().unwrap().to_owned();

    let (status, page) = server.get("/v1/runs?context[order_id]=v-2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), ["v-2"]);
    // Numbers as JSON prints them; the dotted form works too; filters combine.
    let (_, page) = server.get("/v1/runs?context.user_id=7&limit=1").await;
    assert_eq!(ids(&page), ["v-2"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page) = server
        .get(&format!(
            "/v1/runs?context.user_id=7&limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(ids(&page), ["v-1"]);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = server
        .get("/v1/runs?workflow=order_processing&status=completed&context[user_id]=8&context[order_id]=v-3")
        .await;
    assert_eq!(ids(&page), ["v-3"]);
    let (_, page) = server.get("/v1/runs?context[order_id]=v-9").await;
    assert_eq!(ids(&page), Vec::<String>::new());

    // Creation times: at or after, and before.
    let after = url_encode(&middle);
    let (_, page) = server.get(&format!("/v1/runs?created_after={after}")).await;
    assert_eq!(ids(&page), ["v-3", "v-2"]);
    let (_, page) = server
        .get(&format!("/v1/runs?created_before={after}"))
        .await;
    assert_eq!(ids(&page), ["v-1"]);

    // A field no workflow indexes, and malformed filters, are refused with the reason.
    for (query, says) in [
        (
            "context[payment_id]=p-1",
            "not a search field of any workflow",
        ),
        (
            "workflow=nope&context[order_id]=v-1",
            "not a search field of workflow `nope`",
        ),
        ("context[]=x", "names a field"),
        ("contexts=x", "not a search filter"),
        ("created_after=yesterday", "RFC 3339"),
        ("status=asleep", "status"),
    ] {
        let (status, problem) = server.get(&format!("/v1/runs?{query}")).await;
        assert_eq!(status, 400, "{query}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{query}: {problem}"
        );
    }
}

/// `text` percent-encoded for a query string.
fn url_encode(text: &str) -> String {
    text.replace(':', "%3A").replace('+', "%2B")
}
