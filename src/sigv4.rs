//! SigV4 with the settings AWS services check by default (`aws-sigv4`'s defaults: the path
//! double-encoded and normalised, the payload hashed, a session token signed): the one place
//! the function signs a request (its `@connections` posts) and the local tool recomputes the
//! signature of a request it received (its Invoke API's check), so both always agree.

use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SigningInstructions, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::SystemTime;

/// Why a request could not be signed: a header value that is not text, a malformed target, an
/// identity without AWS credentials.
#[derive(Debug, thiserror::Error)]
#[error("sigv4: {0}")]
pub struct SignError(String);

/// Who signs, for which service (its signing name) and region, and when.
#[derive(Clone, Copy)]
pub struct Signer<'a> {
    pub identity: &'a Identity,
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
}

impl Signer<'_> {
    /// Signs `method` on `uri` (path and query, or an absolute URL) with `headers` and `body`:
    /// the headers to add (`authorization`, `x-amz-date`, `x-amz-security-token`) and the
    /// signature itself.
    pub fn sign<'r>(
        &self,
        method: &'r str,
        uri: &'r str,
        headers: impl Iterator<Item = (&'r str, &'r str)>,
        body: &'r [u8],
    ) -> Result<(SigningInstructions, String), SignError> {
        let failed = |e: &dyn std::fmt::Display| SignError(e.to_string());
        let request = SignableRequest::new(method, uri, headers, SignableBody::Bytes(body))
            .map_err(|e| failed(&e))?;
        let params = v4::SigningParams::builder()
            .identity(self.identity)
            .region(self.region)
            .name(self.service)
            .time(self.time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failed(&e))?
            .into();
        let (instructions, signature) =
            sign(request, &params).map_err(|e| failed(&e))?.into_parts();
        Ok((instructions, signature))
    }
}
