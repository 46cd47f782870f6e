//! Request shapes of the API calls that matter, against a `tower-test` mock service: the
//! method, path, query (field manager, force) and body each call sends, and how answers
//! (404, 409) are treated.

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use spo_model::{ProfileState, SeccompProfile};
use spo_operator::kubeapi;
use spo_operator::nodestatus::{ProfileRef, desired_node_status};
use tower_test::mock::{self, Handle};

type MockHandle = Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (Client, MockHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// Receives one request and answers it with `status` and `reply`; returns what was asked.
async fn expect(handle: &mut MockHandle, status: StatusCode, reply: Value) -> (Method, String, Value) {
    let (request, send) = handle.next_request().await.expect("a request");
    let method = request.method().clone();
    let uri = request.uri().to_string();
    let bytes = request.into_body().collect_bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("json body")
    };
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
            .expect("response"),
    );
    (method, uri, body)
}

fn profile_json(finalizers: &[&str]) -> Value {
    json!({
        "apiVersion": "security-profiles-operator.x-k8s.io/v1",
        "kind": "SeccompProfile",
        "metadata": {"name": "app", "uid": "u-1", "resourceVersion": "7", "finalizers": finalizers},
        "spec": {"defaultAction": "SCMP_ACT_ERRNO"}
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": reason})
}

#[tokio::test]
async fn node_finalizer_is_a_server_side_apply_of_one_set_element() {
    let (client, mut handle) = mock_client();
    let call = tokio::spawn(async move {
        kubeapi::apply_finalizers::<SeccompProfile>(&client, "app", "spo-daemon-n1", &["n1-deleted".to_owned()]).await
    });
    let (method, uri, body) = expect(&mut handle, StatusCode::OK, profile_json(&["n1-deleted"])).await;
    assert_eq!(method, Method::PATCH);
    assert!(
        uri.starts_with("/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/app?"),
        "{uri}"
    );
    assert!(
        uri.contains("fieldManager=spo-daemon-n1") && uri.contains("force=true"),
        "{uri}"
    );
    assert_eq!(
        body,
        json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SeccompProfile",
            "metadata": {"name": "app", "finalizers": ["n1-deleted"]}
        }),
        "only the finalizer, so other writers' fields are untouched"
    );
    assert_eq!(call.await.expect("join").expect("ok"), ["n1-deleted"]);
}

#[tokio::test]
async fn releasing_a_finalizer_applies_an_empty_set() {
    let (client, mut handle) = mock_client();
    let call =
        tokio::spawn(
            async move { kubeapi::apply_finalizers::<SeccompProfile>(&client, "app", "spo-manager", &[]).await },
        );
    let (_, uri, body) = expect(&mut handle, StatusCode::OK, profile_json(&["n1-deleted"])).await;
    assert!(uri.contains("fieldManager=spo-manager"), "{uri}");
    assert!(body["metadata"].get("finalizers").is_none(), "{body}");
    assert_eq!(
        call.await.expect("join").expect("ok"),
        ["n1-deleted"],
        "what is left is returned"
    );
}

#[tokio::test]
async fn foreign_finalizers_are_replaced_under_a_resource_version_and_conflicts_surface() {
    let (client, mut handle) = mock_client();
    let call = tokio::spawn(async move {
        kubeapi::replace_finalizers::<SeccompProfile>(&client, "app", "7", &["n1-deleted".to_owned()]).await
    });
    let (method, uri, body) = expect(&mut handle, StatusCode::CONFLICT, status(409, "Conflict")).await;
    assert_eq!(method, Method::PATCH);
    assert_eq!(uri, "/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/app?");
    assert_eq!(
        body,
        json!({"metadata": {"resourceVersion": "7", "finalizers": ["n1-deleted"]}})
    );
    let err = call.await.expect("join").expect_err("409");
    assert!(err.is_conflict(), "{err}");
    // Gone is fine: there is nothing left to unblock.
    let (client, mut handle) = mock_client();
    let call =
        tokio::spawn(async move { kubeapi::replace_finalizers::<SeccompProfile>(&client, "app", "7", &[]).await });
    expect(&mut handle, StatusCode::NOT_FOUND, status(404, "NotFound")).await;
    call.await.expect("join").expect("404 is success");
}

#[tokio::test]
async fn node_status_is_applied_then_its_status_subresource() {
    let (client, mut handle) = mock_client();
    let desired = desired_node_status(
        &ProfileRef {
            kind: spo_model::contract::ProfileKind::Seccomp,
            name: "app".into(),
            uid: "u-1".into(),
        },
        "n1",
        ProfileState::Error,
        Some("spec.syscalls[0].names[0]: unknown syscall"),
    );
    let d = desired.clone();
    let call = tokio::spawn(async move { kubeapi::apply_node_status(&client, "spo-daemon-n1", &d).await });
    let reply = serde_json::to_value(&desired).expect("json");
    let (m1, uri1, body1) = expect(&mut handle, StatusCode::OK, reply.clone()).await;
    let (m2, uri2, body2) = expect(&mut handle, StatusCode::OK, reply).await;
    call.await.expect("join").expect("ok");
    assert_eq!((m1, m2), (Method::PATCH, Method::PATCH));
    assert!(
        uri1.starts_with("/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses/app-n1?"),
        "{uri1}"
    );
    assert!(uri1.contains("fieldManager=spo-daemon-n1") && uri1.contains("force=true"));
    assert!(
        body1.get("status").is_none(),
        "status goes through the subresource: {body1}"
    );
    assert_eq!(body1["spec"]["nodeName"], "n1");
    assert!(
        body1.get("nodeName").is_none(),
        "SPO v1.0 keeps nodeName in spec: {body1}"
    );
    assert_eq!(body1["metadata"]["labels"]["spo.x-k8s.io/profile-state"], "Error");
    assert_eq!(
        body1["metadata"]["annotations"]["spo.x-k8s.io/status-message"],
        "spec.syscalls[0].names[0]: unknown syscall"
    );
    assert_eq!(body1["metadata"]["ownerReferences"][0]["uid"], "u-1");
    assert!(
        uri2.starts_with("/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses/app-n1/status?"),
        "{uri2}"
    );
    assert_eq!(
        body2,
        json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1",
            "kind": "SecurityProfileNodeStatus",
            "metadata": {"name": "app-n1"},
            "status": {"status": "Error"}
        })
    );
}

#[tokio::test]
async fn profile_status_is_a_server_side_apply_on_the_status_subresource() {
    let (client, mut handle) = mock_client();
    let st = spo_model::seccomp::SeccompProfileStatus {
        status: Some(ProfileState::Installed),
        conditions: vec![spo_model::Condition::ready(
            ProfileState::Installed,
            Some(4),
            "2026-01-01T00:00:00Z",
            None,
        )],
        path: None,
        localhost_profile: Some("operator/app.json".into()),
        active_workloads: Some(vec!["ns/pod".into()]),
    };
    let call =
        tokio::spawn(async move { kubeapi::apply_profile_status::<SeccompProfile, _>(&client, "app", &st).await });
    let (method, uri, body) = expect(&mut handle, StatusCode::OK, profile_json(&[])).await;
    call.await.expect("join").expect("ok");
    assert_eq!(method, Method::PATCH);
    assert!(
        uri.starts_with("/apis/security-profiles-operator.x-k8s.io/v1/seccompprofiles/app/status?")
            && uri.contains("fieldManager=spo-manager")
            && uri.contains("force=true"),
        "{uri}"
    );
    assert_eq!(body["status"]["status"], "Installed");
    assert_eq!(body["status"]["localhostProfile"], "operator/app.json");
    assert_eq!(body["status"]["activeWorkloads"], json!(["ns/pod"]));
    assert_eq!(body["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(body["status"]["conditions"][0]["observedGeneration"], 4);
    assert_eq!(body["status"]["conditions"][0]["message"], "");
    assert!(body.get("spec").is_none(), "{body}");
}

#[tokio::test]
async fn node_status_deletion_tolerates_not_found_but_not_other_errors() {
    let (client, mut handle) = mock_client();
    let c = client.clone();
    let call = tokio::spawn(async move { kubeapi::delete_node_status(&c, "app-n1").await });
    let (method, uri, _) = expect(&mut handle, StatusCode::NOT_FOUND, status(404, "NotFound")).await;
    assert_eq!(method, Method::DELETE);
    assert!(uri.starts_with("/apis/security-profiles-operator.x-k8s.io/v1/securityprofilenodestatuses/app-n1"));
    call.await.expect("join").expect("404 is success");
    let call = tokio::spawn(async move { kubeapi::delete_node_status(&client, "app-n1").await });
    expect(&mut handle, StatusCode::FORBIDDEN, status(403, "Forbidden")).await;
    let err = call.await.expect("join").expect_err("403");
    assert!(
        err.to_string().contains("deleting SecurityProfileNodeStatus app-n1"),
        "{err}"
    );
}

#[tokio::test]
async fn the_default_spod_is_created_once() {
    let (client, mut handle) = mock_client();
    let c = client.clone();
    let call = tokio::spawn(async move { kubeapi::ensure_spod(&c, "spo", "spod").await });
    let (method, uri, body) = expect(
        &mut handle,
        StatusCode::CREATED,
        json!({
            "apiVersion": "security-profiles-operator.x-k8s.io/v1", "kind": "SecurityProfilesOperatorDaemon",
            "metadata": {"name": "spod", "namespace": "spo"}, "spec": {}
        }),
    )
    .await;
    assert_eq!(method, Method::POST);
    assert!(
        uri.starts_with("/apis/security-profiles-operator.x-k8s.io/v1/namespaces/spo/securityprofilesoperatordaemons?"),
        "{uri}"
    );
    assert_eq!(body["metadata"]["name"], "spod");
    assert!(call.await.expect("join").expect("ok"));
    let call = tokio::spawn(async move { kubeapi::ensure_spod(&client, "spo", "spod").await });
    expect(&mut handle, StatusCode::CONFLICT, status(409, "AlreadyExists")).await;
    assert!(
        !call.await.expect("join").expect("exists is fine"),
        "an existing SPOD is left alone"
    );
}

fn lease_json(holder: &str, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "spo-manager", "namespace": "spo", "resourceVersion": rv},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}
    })
}

#[tokio::test]
async fn lease_reads_tolerate_absence_and_writes_are_guarded() {
    use k8s_openapi::api::coordination::v1::Lease;
    use spo_operator::leader::{LeaseConfig, Step, lease_for};

    let (client, mut handle) = mock_client();
    let c = client.clone();
    let call = tokio::spawn(async move { kubeapi::get_lease(&c, "spo", "spo-manager").await });
    let (method, uri, _) = expect(&mut handle, StatusCode::NOT_FOUND, status(404, "NotFound")).await;
    assert_eq!(method, Method::GET);
    assert_eq!(uri, "/apis/coordination.k8s.io/v1/namespaces/spo/leases/spo-manager");
    assert!(call.await.expect("join").expect("404 is no error").is_none());

    let config = LeaseConfig {
        namespace: "spo".into(),
        name: "spo-manager".into(),
        identity: "me".into(),
        lease_duration: std::time::Duration::from_secs(15),
        renew_deadline: std::time::Duration::from_secs(10),
        retry_period: std::time::Duration::from_secs(2),
    };
    let now = k8s_openapi::jiff::Timestamp::from_second(1_000).expect("time");
    let created = lease_for(&Step::Create, None, &config, now);
    let c = client.clone();
    let body = created.clone();
    let call = tokio::spawn(async move { kubeapi::create_lease(&c, "spo", &body).await });
    let (method, uri, body) = expect(&mut handle, StatusCode::CONFLICT, status(409, "AlreadyExists")).await;
    assert_eq!(method, Method::POST);
    assert!(
        uri.starts_with("/apis/coordination.k8s.io/v1/namespaces/spo/leases?"),
        "{uri}"
    );
    assert_eq!(body["spec"]["holderIdentity"], "me");
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    assert!(
        call.await.expect("join").expect("409 is no error").is_none(),
        "another replica created it first"
    );

    let theirs: Lease = serde_json::from_value(lease_json("other", "41")).expect("lease");
    let taken = lease_for(&Step::Acquire, Some(&theirs), &config, now);
    let c = client.clone();
    let call = tokio::spawn(async move { kubeapi::replace_lease(&c, "spo", &taken).await });
    let (method, uri, body) = expect(&mut handle, StatusCode::OK, lease_json("me", "42")).await;
    assert_eq!(method, Method::PUT);
    assert!(
        uri.starts_with("/apis/coordination.k8s.io/v1/namespaces/spo/leases/spo-manager?"),
        "{uri}"
    );
    assert_eq!(body["metadata"]["resourceVersion"], "41", "the write is guarded");
    assert_eq!(body["spec"]["holderIdentity"], "me");
    assert!(call.await.expect("join").expect("ok").is_some());

    let stale = lease_for(&Step::Renew, Some(&theirs), &config, now);
    let call = tokio::spawn(async move { kubeapi::replace_lease(&client, "spo", &stale).await });
    expect(&mut handle, StatusCode::CONFLICT, status(409, "Conflict")).await;
    assert!(
        call.await.expect("join").expect("409 is no error").is_none(),
        "someone changed it first: read again"
    );
}
