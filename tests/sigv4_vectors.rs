//! The SigV4 signer against AWS's published test vectors (`tests/fixtures/sigv4/`, from the AWS
//! signing test suite): each request signed by `Auth::SigV4` with the case's credentials,
//! region, service and time carries exactly the `Authorization` (and session token) the suite
//! expects.

use std::path::Path;

use bytes::Bytes;
use dgidgi::crypto::Credential;
use dgidgi::formats::auth::{ACCESS_KEY_ID, Auth, SECRET_ACCESS_KEY, SESSION_TOKEN, Scope};
use serde_json::Value;
use zeroize::Zeroizing;

/// Cases left out, as `aws-sigv4`'s own run of the suite leaves them out: a request HTTP cannot
/// carry as written (a header value folded over lines, a raw non-ASCII path or query), and
/// `get-space-normalized`, whose expected signature encodes the path once where every AWS
/// service but S3 (Bedrock included) takes it encoded twice.
const NOT_EXPRESSIBLE: &[&str] = &[
    "get-header-value-multiline",
    "get-space-normalized",
    "get-utf8",
    "get-vanilla-utf8-query",
];

/// A request as the suite writes it: method, path and query, headers, body.
fn parse(text: &str) -> (String, String, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap();
    let mut words = first.split(' ');
    let method = words.next().unwrap().to_owned();
    let target = words.next().unwrap().to_owned();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    (method, target, headers, body.to_owned())
}

fn expected(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(str::to_owned)
}

#[test]
fn every_published_vector_signs_to_the_expected_authorization() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sigv4");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    let (mut checked, mut skipped) = (0, Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        if NOT_EXPRESSIBLE.contains(&name.as_str()) {
            skipped.push(name);
            continue;
        }
        let context: Value =
            serde_json::from_slice(&std::fs::read(case.join("context.json")).unwrap()).unwrap();
        let request = std::fs::read_to_string(case.join("request.txt")).unwrap();
        let signed = std::fs::read_to_string(case.join("header-signed-request.txt")).unwrap();
        let (method, target, headers, body) = parse(&request);
        let host = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.clone())
            .unwrap();
        let mut builder = hyper::Request::builder()
            .method(method.as_str())
            .uri(format!("https://{host}{target}"));
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let mut http = builder.body(Bytes::from(body)).unwrap();
        let credentials = &context["credentials"];
        let mut parts = vec![
            (
                ACCESS_KEY_ID,
                credentials["access_key_id"].as_str().unwrap(),
            ),
            (
                SECRET_ACCESS_KEY,
                credentials["secret_access_key"].as_str().unwrap(),
            ),
        ];
        if let Some(token) = credentials["token"].as_str() {
            parts.push((SESSION_TOKEN, token));
        }
        let credential = Credential::parts(
            parts
                .into_iter()
                .map(|(n, v)| (n, Zeroizing::new(v.as_bytes().to_vec()))),
        )
        .unwrap();
        let time: std::time::SystemTime = context["timestamp"]
            .as_str()
            .unwrap()
            .parse::<k8s_openapi::jiff::Timestamp>()
            .unwrap()
            .into();
        let service: &'static str = Box::leak(
            context["service"]
                .as_str()
                .unwrap()
                .to_owned()
                .into_boxed_str(),
        );
        let scope = Scope {
            region: context["region"].as_str(),
            time,
        };
        Auth::SigV4 { service }
            .sign(&mut http, &credential, &scope)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            http.headers()["authorization"].to_str().unwrap(),
            expected(&signed, "Authorization").unwrap(),
            "{name}"
        );
        assert_eq!(
            http.headers()["x-amz-date"].to_str().unwrap(),
            expected(&signed, "X-Amz-Date").unwrap(),
            "{name}"
        );
        if let Some(token) = expected(&signed, "X-Amz-Security-Token") {
            assert_eq!(
                http.headers()["x-amz-security-token"],
                token.as_str(),
                "{name}"
            );
        }
        checked += 1;
    }
    assert_eq!(skipped.len(), NOT_EXPRESSIBLE.len(), "{skipped:?}");
    assert_eq!(checked + skipped.len(), cases.len());
    assert!(checked >= 23, "only {checked} vectors checked");
}
