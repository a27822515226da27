//! OpenID Connect login: authorization code flow with PKCE against the company's provider.

/// The OpenID Connect provider (docs/oidc.md).
#[derive(Debug, Clone, clap::Args)]
pub struct OidcConfig {}
