//! The SDK clients' own HTTPS client (`wsexec::tls`) over real TLS: a loopback TLS proxy with
//! a test CA (made by the `openssl` CLI) in front of DynamoDB Local. Proves the handshake, SNI,
//! certificate checking and connection reuse that no plain-HTTP test reaches.

#[path = "support/dynamodb.rs"]
mod dynamodb;
#[path = "support/http.rs"]
mod http;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::SdkError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::{TcpListener, TcpStream};

/// A CA and a `localhost` leaf it signed, in a fresh directory.
fn test_pki() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wsexec-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    run(&[
        &[
            "req",
            "-x509",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=wsexec test CA",
        ][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem"],
        &["-addext", "basicConstraints=critical,CA:TRUE"],
        &["-addext", "keyUsage=critical,keyCertSign"],
    ]
    .concat());
    run(&[
        &["req", "-nodes", "-subj", "/CN=localhost"][..],
        &ec,
        &["-keyout", "leaf.key", "-out", "leaf.csr"],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-days",
        "1",
        "-set_serial",
        "2",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ]);
    dir
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// Terminates TLS on a loopback port and forwards the bytes to DynamoDB Local; counts the TLS
/// connections it accepted.
async fn tls_proxy(pki: &Path) -> (u16, Arc<AtomicUsize>) {
    let key = PrivateKeyDer::from_pem_file(pki.join("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs(&pki.join("leaf.pem")), key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = dynamodb::endpoint()
        .trim_start_matches("http://")
        .to_owned();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, count) = (acceptor.clone(), upstream.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut ddb = TcpStream::connect(&upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut ddb).await;
            });
        }
    });
    (port, accepted)
}

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
    let (port, accepted) = tls_proxy(&pki).await;

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
