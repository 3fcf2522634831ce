//! The SDK clients' own HTTPS client (`wsexec::tls`) over real TLS: a loopback TLS proxy with
//! a test CA (made by the `openssl` CLI) in front of DynamoDB Local. Proves the handshake, SNI,
//! certificate checking and connection reuse that no plain-HTTP test reaches.

#[path = "support/dynamodb.rs"]
mod dynamodb;
#[path = "support/http.rs"]
mod http;
#[path = "support/tls.rs"]
mod tls;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::SdkError;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tls::{certs, test_pki, tls_proxy};

fn client(tls: Arc<rustls::ClientConfig>, port: u16) -> aws_sdk_dynamodb::Client {
    let http = aws_smithy_runtime_api::client::http::SharedHttpClient::new(
        wsexec::tls::Http1Client::new(Ok(tls)),
    );
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(format!("https://localhost:{port}"))
        .http_client(http)
        .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(conf)
}

/// Trusting the test CA, three requests succeed over one TLS connection (the pool reuses it);
/// trusting only the compiled-in Amazon roots, the handshake is refused and the SDK reports a
/// dispatch failure that is neither a timeout nor the caller's fault.
#[tokio::test]
async fn sdk_requests_go_over_verified_tls_and_reuse_the_connection() {
    let pki = test_pki();
    let upstream = dynamodb::endpoint();
    let (port, accepted) = tls_proxy(&pki, upstream.trim_start_matches("http://")).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(certs(&pki.join("ca.pem")));
    let trusting = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let ddb = client(Arc::new(trusting), port);
    for _ in 0..3 {
        ddb.list_tables()
            .send()
            .await
            .expect("list_tables over TLS");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled connection");

    let aws_only = wsexec::tls::client_config(wsexec::tls::Roots::Aws).unwrap();
    let refused = client(aws_only, port).list_tables().send().await;
    match refused {
        Err(SdkError::DispatchFailure(d)) => {
            assert!(!d.is_timeout() && !d.is_user(), "{d:?}");
        }
        other => panic!("expected a dispatch failure, got {other:?}"),
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "no handshake completed");
    let _ = std::fs::remove_dir_all(pki);
}
