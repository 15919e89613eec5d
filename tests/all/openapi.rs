//! The API's OpenAPI document: valid OpenAPI 3.1, describing every route the router has,
//! and the real host held to it by schemathesis.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::inprocess::InProcess;
use crate::server::{Server, Services};
use crate::support::TWO_STEPS;

/// The schemathesis release the test installs, into `target/schemathesis`.
const SCHEMATHESIS: &str = "4.32.5";

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::String(target) if key == "$ref" => found.push(target),
                    other => refs(other, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_openapi_3_1_and_describes_every_route() {
    let host = InProcess::start(TWO_STEPS).await;
    let (status, document) = host.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document["openapi"], "3.1.0");
    // It reads as an OpenAPI 3.1 document.
    let spec: oas3::Spec = serde_json::from_value(document.clone()).expect("OpenAPI 3.1");
    assert_eq!(spec.info.title, "flowhost");

    // Every reference resolves, and every operation has a unique id.
    let mut targets = Vec::new();
    refs(&document, &mut targets);
    for target in &targets {
        let pointer = target.strip_prefix('#').expect("a local reference");
        assert!(
            document.pointer(pointer).is_some(),
            "{target} does not resolve"
        );
    }
    let mut ids = BTreeSet::new();
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"].as_str().expect("an operation id");
            assert!(ids.insert(id.to_owned()), "operation id {id} twice");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty())
            );
            operations.push((method.to_uppercase(), path.clone()));
        }
    }
    assert!(operations.len() >= 25, "{operations:?}");

    // The router serves each of them: none falls through to "no such route" or 405.
    for (method, path) in &operations {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "x"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let response = host
            .client
            .request(method.parse().unwrap(), format!("{}{concrete}", host.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert!(
            status != 405 && !body.contains("no such route"),
            "{method} {path} is in the document but not served: {status} {body}"
        );
    }

    // And the router has no route the document does not: every route is registered with
    // its description (`routes!`), none with axum's bare `route`.
    let api = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/mod.rs"))
        .unwrap();
    assert!(
        !api.contains(".route("),
        "a route registered without its OpenAPI description"
    );
    assert!(
        !api.contains(".nest("),
        "a nested router bypasses the document"
    );
    let registered = api.matches("routes!(").count();
    assert!(registered >= 20, "{registered}");

    // Problems are described as problem+json, with their schema.
    let problem = &document["paths"]["/v1/runs/{id}"]["get"]["responses"]["404"]["content"];
    assert_eq!(
        problem["application/problem+json"]["schema"]["$ref"],
        "#/components/schemas/ProblemDetails"
    );
    // The definition a push takes is the definition's own schema, its parts beside it.
    let push = &document["paths"]["/v1/workflows/{name}"]["put"]["requestBody"]["content"];
    assert_eq!(
        push["application/json"]["schema"]["$ref"],
        "#/components/schemas/WorkflowDefinition"
    );
    assert!(document["components"]["schemas"]["StepDefinition"].is_object());
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["admin"]["scheme"], "bearer");
    assert_eq!(schemes["trigger"]["scheme"], "bearer");
}

/// `target/schemathesis/bin/schemathesis`, installed at the pinned release on first use.
fn schemathesis() -> std::path::PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis");
    let bin = venv.join("bin/schemathesis");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(SCHEMATHESIS));
    if !installed {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3");
        assert!(status.success(), "python3 -m venv failed");
        let out = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                &format!("schemathesis=={SCHEMATHESIS}"),
            ])
            .output()
            .expect("pip");
        assert!(
            out.status.success(),
            "installing schemathesis failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let schemathesis = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let services = Services::start().await;
    let token = "schemathesis-admin-token";
    let server = Server::start(&services.example_config(token)).await;
    let config = tempfile::NamedTempFile::new().unwrap();
    // The example's workflow, so that starts make runs whose ids the stateful phase follows
    // to their reads, cancels, retries and signals.
    std::fs::write(
        config.path(),
        "[parameters]\n\"path.workflow\" = \"order_processing\"\n",
    )
    .unwrap();
    let url = server.url.clone();
    // It keeps a cache of what it found in its working directory: a temporary one.
    let workdir = tempfile::tempdir().unwrap();
    let cwd = workdir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .current_dir(cwd)
            .arg("--config-file")
            .arg(config.path())
            .args([
                "run",
                &format!("{url}/openapi.json"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection",
                "--header",
                &format!("Authorization: Bearer {token}"),
                "--max-examples",
                "50",
                "--no-color",
            ])
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\nthe host's log:\n{}",
        server.log()
    );
    assert!(report.contains("passed"), "{report}");
    // The host is still well after it.
    let (status, _) = server.get("/readyz").await;
    assert_eq!(status, 200);
}
