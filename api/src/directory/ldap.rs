//! LDAP / Active Directory login: search the person with a service account, bind as them.

/// How Conclave reaches the LDAP directory (docs/ldap.md).
#[derive(Debug, Clone, clap::Args)]
pub struct LdapConfig {}
