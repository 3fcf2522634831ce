//! TLS for every outbound client: rustls with ring; the SDK clients trust compiled-in roots.
//!
//! Every endpoint wsexec calls (DynamoDB, API Gateway's `@connections`) presents a chain to
//! Amazon Trust Services, so the five ATS roots are compiled in: loading the system store
//! instead reads and parses ~150 certificates on the first request (measured ~3 ms and
//! ~400 KiB RSS on the cold path). `TLS_NATIVE_ROOTS=1` switches back to the system store for
//! environments that intercept TLS (corporate proxies).

mod sdk;

use aws_smithy_runtime_api::client::http::SharedHttpClient;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

pub use sdk::{
    Bounded, Held, Http1Client, MAX_CONNECTIONS, TransportFault, UNBOUNDED, pooled_client,
    transport_fault,
};

/// Amazon Root CA 1–4 and Starfield Services Root CA G2 (PEM, from the Mozilla store).
pub const AWS_ROOTS_PEM: &[u8] = include_bytes!("aws-roots.pem");

/// Whether `TLS_NATIVE_ROOTS` asks for the system store.
pub fn native_roots_requested() -> bool {
    matches!(
        std::env::var("TLS_NATIVE_ROOTS").as_deref(),
        Ok("1" | "true")
    )
}

/// The certificates a client trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The five compiled-in Amazon Trust Services roots (every AWS endpoint chains to them).
    Aws,
    /// The system store (`rustls-native-certs`): any public host, or a TLS-intercepting proxy.
    Native,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The system store had no certificate rustls could use.
    #[error("no usable system root certificates")]
    NoRoots,
    /// rustls refused the protocol versions (cannot happen with ring's defaults).
    #[error("tls configuration failed")]
    Config,
}

/// A rustls (ring) client configuration trusting `roots`, TLS 1.2 and 1.3.
pub fn client_config(roots: Roots) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let added = match roots {
        Roots::Aws => {
            store
                .add_parsable_certificates(
                    CertificateDer::pem_slice_iter(AWS_ROOTS_PEM).filter_map(Result::ok),
                )
                .0
        }
        Roots::Native => {
            store
                .add_parsable_certificates(rustls_native_certs::load_native_certs().certs)
                .0
        }
    };
    if added == 0 {
        return Err(TlsError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| TlsError::Config)?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// An HTTPS client for one SDK client. Not shared process-wide: a connection pool belongs to
/// the tokio runtime that opened its connections, and the local tool and tests run several.
/// An empty system store falls back to the compiled-in roots.
pub fn https_client(native_roots: bool) -> SharedHttpClient {
    SharedHttpClient::new(Http1Client::new(sdk_tls(native_roots)))
}

/// [`https_client`] for a client whose responses are streams held open for a whole answer
/// (Bedrock's `ConverseStream`): one connection per stream, not bounded.
pub fn https_streaming_client(native_roots: bool) -> SharedHttpClient {
    SharedHttpClient::new(Http1Client::streaming(sdk_tls(native_roots)))
}

/// The TLS configuration of a client of AWS endpoints: the compiled-in roots, or the system
/// store when `native_roots` (falling back to the compiled-in roots when it is empty).
pub fn sdk_tls(native_roots: bool) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = if native_roots {
        Roots::Native
    } else {
        Roots::Aws
    };
    client_config(roots).or_else(|_| client_config(Roots::Aws))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in bundle is exactly the five ATS roots, each a PEM certificate rustls
    /// accepts.
    #[test]
    fn compiled_in_roots_are_the_five_ats_roots() {
        let pem = std::str::from_utf8(AWS_ROOTS_PEM).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        assert_eq!(pem.matches("-----END CERTIFICATE-----").count(), 5);
        let mut store = rustls::RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(
            CertificateDer::pem_slice_iter(AWS_ROOTS_PEM).filter_map(Result::ok),
        );
        assert_eq!((added, ignored), (5, 0));
        assert!(client_config(Roots::Aws).is_ok());
    }
}
