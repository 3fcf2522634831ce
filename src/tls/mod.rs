//! The HTTPS client every SDK client uses: rustls with ring, trusting compiled-in roots.
//!
//! Every endpoint wsexec calls (DynamoDB, API Gateway's `@connections`) presents a chain to
//! Amazon Trust Services, so the five ATS roots are compiled in: loading the system store
//! instead reads and parses ~150 certificates on the first request (measured ~3 ms and
//! ~400 KiB RSS on the cold path). `TLS_NATIVE_ROOTS=1` switches back to the system store for
//! environments that intercept TLS (corporate proxies).

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2 (PEM, from the Mozilla store).
pub const AWS_ROOTS_PEM: &[u8] = include_bytes!("aws-roots.pem");

/// Whether `TLS_NATIVE_ROOTS` asks for the system store.
pub fn native_roots_requested() -> bool {
    matches!(
        std::env::var("TLS_NATIVE_ROOTS").as_deref(),
        Ok("1" | "true")
    )
}

/// An HTTPS client for one SDK client. Not shared process-wide: a connection pool belongs to
/// the tokio runtime that opened its connections, and the local tool and tests run several.
pub fn https_client(native_roots: bool) -> SharedHttpClient {
    let trust = if native_roots {
        TrustStore::default()
    } else {
        TrustStore::empty()
            .with_native_roots(false)
            .with_pem_certificate(AWS_ROOTS_PEM)
    };
    let builder = aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(
        tls::rustls_provider::CryptoMode::Ring,
    ));
    match TlsContext::builder().with_trust_store(trust).build() {
        Ok(ctx) => builder.tls_context(ctx).build_https(),
        // Unreachable with the compiled-in PEM (a unit test parses it); never panic for it.
        Err(_) => builder.build_https(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in bundle is exactly the five ATS roots, each a PEM certificate.
    #[test]
    fn compiled_in_roots_are_the_five_ats_roots() {
        let pem = std::str::from_utf8(AWS_ROOTS_PEM).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert_eq!(pem.matches("-----END CERTIFICATE-----").count(), 5);
        assert!(
            TlsContext::builder()
                .with_trust_store(
                    TrustStore::empty()
                        .with_native_roots(false)
                        .with_pem_certificate(AWS_ROOTS_PEM)
                )
                .build()
                .is_ok()
        );
    }
}
