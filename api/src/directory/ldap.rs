//! LDAP / Active Directory login: search the person with a service account, bind as them.
//!
//! A login searches the entry under `--ldap-user-base` with `--ldap-user-filter` (the typed
//! name escaped as RFC 4515 wants), reads its groups (the `memberOf` attribute and/or a group
//! search) and whether the directory disabled it, then binds as the entry with the typed
//! password. Every login opens its own connection (LDAPS, or StartTLS over `ldap://`), so a
//! directory restart never leaves a broken pooled connection behind. TLS is rustls with the
//! ring provider named explicitly: nothing depends on a process-wide default provider.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, ldap_escape};
use proto::AccountLevel;

use super::{LevelGroups, Profile};
use crate::{Error, Result};

/// The LDAP result code of a bind with a wrong password (RFC 4511 `invalidCredentials`).
const INVALID_CREDENTIALS: u32 = 49;
/// `noSuchObject`: the base of a search (an entry's DN) is gone.
const NO_SUCH_OBJECT: u32 = 32;
/// `sizeLimitExceeded`: the user filter matched more entries than one login may.
const SIZE_LIMIT_EXCEEDED: u32 = 4;
/// Active Directory's `userAccountControl` flag of a disabled account (ACCOUNTDISABLE).
const AD_ACCOUNT_DISABLED: u64 = 0x2;

/// How Conclave reaches the LDAP directory (docs/ldap.md). Without `--ldap-url`, LDAP login
/// is off and only local accounts log in.
#[derive(Debug, Clone, clap::Args)]
pub struct LdapConfig {
    /// The directory's URL: `ldaps://dc1.example.org` (TLS from the start, port 636) or
    /// `ldap://…` with --ldap-starttls. Without it, LDAP login is off.
    #[arg(long, env = "CONCLAVE_LDAP_URL")]
    pub ldap_url: Option<String>,

    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    #[arg(long, env = "CONCLAVE_LDAP_STARTTLS", default_value_t = false)]
    pub ldap_starttls: bool,

    /// A PEM file with the CA certificate(s) that signed the directory's certificate (a
    /// company CA); default: the system's trusted CAs.
    #[arg(long, env = "CONCLAVE_LDAP_CA_FILE")]
    pub ldap_ca_file: Option<PathBuf>,

    /// The service account that searches people and groups, e.g.
    /// `cn=conclave,ou=services,dc=example,dc=org` (Active Directory: also
    /// `conclave@example.org`); without it, searches are anonymous.
    #[arg(long, env = "CONCLAVE_LDAP_BIND_DN")]
    pub ldap_bind_dn: Option<String>,

    /// A file holding the service account's password (a mounted Secret); never a flag value.
    #[arg(long, env = "CONCLAVE_LDAP_BIND_PASSWORD_FILE")]
    pub ldap_bind_password_file: Option<PathBuf>,

    /// Where people are searched (subtree), e.g. `ou=people,dc=example,dc=org`.
    #[arg(long, env = "CONCLAVE_LDAP_USER_BASE")]
    pub ldap_user_base: Option<String>,

    /// The filter that finds a person by the typed login name, `{login}` standing for it
    /// (escaped). Active Directory: `(&(objectClass=user)(sAMAccountName={login}))`.
    #[arg(long, env = "CONCLAVE_LDAP_USER_FILTER", default_value = DEFAULT_USER_FILTER)]
    pub ldap_user_filter: String,

    /// The attribute with the display name.
    #[arg(
        long,
        env = "CONCLAVE_LDAP_NAME_ATTRIBUTE",
        default_value = "displayName"
    )]
    pub ldap_name_attribute: String,

    /// The attribute with the e-mail address.
    #[arg(long, env = "CONCLAVE_LDAP_MAIL_ATTRIBUTE", default_value = "mail")]
    pub ldap_mail_attribute: String,

    /// The attribute with an IANA time zone (e.g. `Europe/Berlin`), if the directory has one.
    #[arg(long, env = "CONCLAVE_LDAP_TIME_ZONE_ATTRIBUTE")]
    pub ldap_time_zone_attribute: Option<String>,

    /// The attribute of a person's entry that lists their groups' DNs (Active Directory and
    /// OpenLDAP's memberof overlay: `memberOf`); `none` to read groups only by search.
    #[arg(
        long,
        env = "CONCLAVE_LDAP_MEMBER_OF_ATTRIBUTE",
        default_value = "memberOf"
    )]
    pub ldap_member_of_attribute: String,

    /// Where groups are searched (subtree) with --ldap-group-filter, in addition to the
    /// member-of attribute; e.g. `ou=groups,dc=example,dc=org`. Unset: no group search.
    #[arg(long, env = "CONCLAVE_LDAP_GROUP_BASE")]
    pub ldap_group_base: Option<String>,

    /// The filter that finds a person's groups, `{dn}` standing for the person's DN (escaped)
    /// and `{login}` for the login name.
    #[arg(long, env = "CONCLAVE_LDAP_GROUP_FILTER", default_value = DEFAULT_GROUP_FILTER)]
    pub ldap_group_filter: String,

    /// Groups (DNs, separated by `;`) whose members are administrators.
    #[arg(long, env = "CONCLAVE_LDAP_ADMIN_GROUPS", value_delimiter = ';')]
    pub ldap_admin_groups: Vec<String>,

    /// Groups (DNs, separated by `;`) whose members are moderators plus (may record).
    #[arg(
        long,
        env = "CONCLAVE_LDAP_MODERATOR_PLUS_GROUPS",
        value_delimiter = ';'
    )]
    pub ldap_moderator_plus_groups: Vec<String>,

    /// Groups (DNs, separated by `;`) whose members are moderators.
    #[arg(long, env = "CONCLAVE_LDAP_MODERATOR_GROUPS", value_delimiter = ';')]
    pub ldap_moderator_groups: Vec<String>,

    /// Groups (DNs, separated by `;`) whose members are audience (useful with
    /// --ldap-default-level none: only members of a listed group may log in).
    #[arg(long, env = "CONCLAVE_LDAP_AUDIENCE_GROUPS", value_delimiter = ';')]
    pub ldap_audience_groups: Vec<String>,

    /// The level of someone in none of the listed groups: audience, moderator,
    /// moderatorPlus, admin, or `none` to refuse them.
    #[arg(long, env = "CONCLAVE_LDAP_DEFAULT_LEVEL", default_value = "audience",
          value_parser = parse_default_level)]
    pub ldap_default_level: DefaultLevel,

    /// A filter that matches disabled people, e.g. `(pwdAccountLockedTime=*)` (OpenLDAP's
    /// password policy). Active Directory's disabled flag (userAccountControl) is always
    /// honoured.
    #[arg(long, env = "CONCLAVE_LDAP_DISABLED_FILTER")]
    pub ldap_disabled_filter: Option<String>,

    /// How long connecting and each directory operation may take, in seconds.
    #[arg(long, env = "CONCLAVE_LDAP_TIMEOUT_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub ldap_timeout_seconds: u64,
}

/// The default `--ldap-user-filter` (OpenLDAP's `inetOrgPerson` and the like).
pub const DEFAULT_USER_FILTER: &str = "(&(objectClass=person)(uid={login}))";
/// The default `--ldap-group-filter` (`groupOfNames`).
pub const DEFAULT_GROUP_FILTER: &str = "(&(objectClass=groupOfNames)(member={dn}))";

/// `--ldap-default-level`: a level, or `None` to refuse people in no listed group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultLevel(pub Option<AccountLevel>);

fn parse_default_level(value: &str) -> std::result::Result<DefaultLevel, String> {
    super::parse_default_level(value).map(DefaultLevel)
}

impl LdapConfig {
    /// The configuration with LDAP off (tests and `Config::with_data_dir`).
    pub fn off() -> Self {
        LdapConfig {
            ldap_url: None,
            ldap_starttls: false,
            ldap_ca_file: None,
            ldap_bind_dn: None,
            ldap_bind_password_file: None,
            ldap_user_base: None,
            ldap_user_filter: DEFAULT_USER_FILTER.to_owned(),
            ldap_name_attribute: "displayName".to_owned(),
            ldap_mail_attribute: "mail".to_owned(),
            ldap_time_zone_attribute: None,
            ldap_member_of_attribute: "memberOf".to_owned(),
            ldap_group_base: None,
            ldap_group_filter: DEFAULT_GROUP_FILTER.to_owned(),
            ldap_admin_groups: Vec::new(),
            ldap_moderator_plus_groups: Vec::new(),
            ldap_moderator_groups: Vec::new(),
            ldap_audience_groups: Vec::new(),
            ldap_default_level: DefaultLevel(Some(AccountLevel::Audience)),
            ldap_disabled_filter: None,
            ldap_timeout_seconds: 10,
        }
    }
}

/// The service account's password: read from its file once, never printed.
#[derive(Clone, Default)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What a login attempt against the directory came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The password is right: who the person is and their groups.
    Authenticated(Profile),
    /// No entry (or more than one) matches the login name.
    Unknown,
    /// The entry exists, the password is wrong (or the directory refused the bind).
    WrongPassword,
    /// The directory disabled the entry; no bind was tried.
    Disabled,
}

/// What the directory says about an account it once confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// Still there and enabled, with these groups.
    Active(Vec<String>),
    /// The entry is gone, or no longer matches the user filter.
    Gone,
    /// The directory disabled it.
    Disabled,
}

/// A configured LDAP directory, built once at start-up from [`LdapConfig`].
#[derive(Debug)]
pub struct Directory {
    url: String,
    starttls: bool,
    tls: Arc<rustls::ClientConfig>,
    bind_dn: Option<String>,
    bind_password: Secret,
    user_base: String,
    user_filter: String,
    name_attribute: String,
    mail_attribute: String,
    time_zone_attribute: Option<String>,
    member_of_attribute: Option<String>,
    group_base: Option<String>,
    group_filter: String,
    disabled_filter: Option<String>,
    timeout: Duration,
    /// Which groups give which level.
    pub levels: LevelGroups,
}

fn config_error(field: &str, message: impl Into<String>) -> Error {
    Error::invalid(field, message)
}

fn groups(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|group| group.trim().to_owned())
        .filter(|group| !group.is_empty())
        .collect()
}

/// Checks that a filter is one LDAP can parse, after its placeholders are filled in.
fn check_filter(field: &str, filter: &str) -> Result<()> {
    let sample = filter
        .replace("{login}", "sample")
        .replace("{dn}", "cn=sample");
    ldap3::parse_filter(&sample).map(|_| ()).map_err(|_| {
        config_error(
            field,
            format!("{filter:?} is not an LDAP filter (RFC 4515), e.g. {DEFAULT_USER_FILTER}"),
        )
    })
}

/// The user filter for `login`: `{login}` replaced by the name escaped (RFC 4515), so
/// `*)(uid=*` searches for exactly that odd name and matches no one.
pub fn user_filter(template: &str, login: &str) -> String {
    template.replace("{login}", &ldap_escape(login))
}

/// The group filter for a person: `{dn}` and `{login}` replaced, escaped.
pub fn group_filter(template: &str, dn: &str, login: &str) -> String {
    template
        .replace("{dn}", &ldap_escape(dn))
        .replace("{login}", &ldap_escape(login))
}

/// The TLS client configuration: ring, and the CA file's certificates or the system's.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|err| {
                    config_error(
                        "ldapCaFile",
                        format!("cannot read CA certificates from {}: {err}", path.display()),
                    )
                })?;
            if certs.is_empty() {
                return Err(config_error(
                    "ldapCaFile",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|err| {
                    config_error(
                        "ldapCaFile",
                        format!("a certificate in {} is unusable: {err}", path.display()),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::warn!(cause = %err, "a system CA certificate could not be read");
            }
            let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| Error::Internal(format!("TLS configuration for LDAP: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Directory {
    /// The directory `config` describes, or `None` when LDAP login is off.
    ///
    /// # Errors
    /// A 422-style error naming the flag when the configuration is incomplete or wrong: an
    /// unknown URL scheme, StartTLS on `ldaps://`, a missing user base, a bind DN without a
    /// password file, an unreadable password or CA file, a filter LDAP cannot parse.
    pub fn from_config(config: &LdapConfig) -> Result<Option<Self>> {
        let Some(url) = config.ldap_url.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if url.starts_with("ldaps://") {
            if config.ldap_starttls {
                return Err(config_error(
                    "ldapStarttls",
                    "--ldap-starttls is for ldap:// URLs; ldaps:// is TLS from the start",
                ));
            }
        } else if url.starts_with("ldap://") {
            if !config.ldap_starttls {
                return Err(config_error(
                    "ldapUrl",
                    format!(
                        "{url} is not encrypted: use ldaps:// or add --ldap-starttls (passwords must not cross the network in clear)"
                    ),
                ));
            }
        } else {
            return Err(config_error(
                "ldapUrl",
                format!(
                    "{url:?} is not an LDAP URL: ldaps://host[:port] or ldap://host[:port] with --ldap-starttls"
                ),
            ));
        }
        let user_base = config
            .ldap_user_base
            .clone()
            .filter(|base| !base.trim().is_empty())
            .ok_or_else(|| {
                config_error(
                    "ldapUserBase",
                    "--ldap-user-base is required with --ldap-url (e.g. ou=people,dc=example,dc=org)",
                )
            })?;
        if !config.ldap_user_filter.contains("{login}") {
            return Err(config_error(
                "ldapUserFilter",
                format!(
                    "{:?} has no {{login}} placeholder, e.g. {DEFAULT_USER_FILTER}",
                    config.ldap_user_filter
                ),
            ));
        }
        check_filter("ldapUserFilter", &config.ldap_user_filter)?;
        if config.ldap_group_base.is_some() {
            check_filter("ldapGroupFilter", &config.ldap_group_filter)?;
        }
        if let Some(filter) = &config.ldap_disabled_filter {
            check_filter("ldapDisabledFilter", filter)?;
        }
        let bind_password = match (&config.ldap_bind_dn, &config.ldap_bind_password_file) {
            (Some(_), Some(path)) => {
                let password = std::fs::read_to_string(path).map_err(|err| {
                    config_error(
                        "ldapBindPasswordFile",
                        format!("cannot read {}: {err}", path.display()),
                    )
                })?;
                let password = password.trim_end_matches(['\r', '\n']).to_owned();
                if password.is_empty() {
                    return Err(config_error(
                        "ldapBindPasswordFile",
                        format!("{} is empty", path.display()),
                    ));
                }
                Secret(password)
            }
            (Some(_), None) => {
                return Err(config_error(
                    "ldapBindPasswordFile",
                    "--ldap-bind-dn needs --ldap-bind-password-file (the password is never a flag value)",
                ));
            }
            (None, Some(_)) => {
                return Err(config_error(
                    "ldapBindDn",
                    "--ldap-bind-password-file needs --ldap-bind-dn",
                ));
            }
            (None, None) => Secret::default(),
        };
        let member_of = config.ldap_member_of_attribute.trim();
        Ok(Some(Directory {
            url: url.to_owned(),
            starttls: config.ldap_starttls,
            tls: tls_config(config.ldap_ca_file.as_deref())?,
            bind_dn: config.ldap_bind_dn.clone(),
            bind_password,
            user_base,
            user_filter: config.ldap_user_filter.clone(),
            name_attribute: config.ldap_name_attribute.clone(),
            mail_attribute: config.ldap_mail_attribute.clone(),
            time_zone_attribute: config.ldap_time_zone_attribute.clone(),
            member_of_attribute: (!member_of.is_empty() && !member_of.eq_ignore_ascii_case("none"))
                .then(|| member_of.to_owned()),
            group_base: config.ldap_group_base.clone(),
            group_filter: config.ldap_group_filter.clone(),
            disabled_filter: config.ldap_disabled_filter.clone(),
            timeout: Duration::from_secs(config.ldap_timeout_seconds),
            levels: LevelGroups {
                admin: groups(&config.ldap_admin_groups),
                moderator_plus: groups(&config.ldap_moderator_plus_groups),
                moderator: groups(&config.ldap_moderator_groups),
                audience: groups(&config.ldap_audience_groups),
                default: config.ldap_default_level.0,
                dn_names: true,
            },
        }))
    }

    /// The directory's URL, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn unreachable(&self, err: impl std::fmt::Display) -> Error {
        let cause = err.to_string();
        let hint = if cause.contains("UnknownIssuer") || cause.contains("certificate") {
            " (is --ldap-ca-file the CA that signed the directory's certificate, and does the URL name a host in it?)"
        } else {
            ""
        };
        let cause = format!("LDAP directory {}: {cause}{hint}", self.url);
        tracing::error!(cause = %cause, "the directory cannot be reached");
        Error::DirectoryUnreachable(cause)
    }

    /// A connection bound as the service account (or anonymous without one).
    async fn connect(&self) -> Result<Ldap> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls)
            .set_config(self.tls.clone());
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|err| self.unreachable(err))?;
        ldap3::drive!(conn);
        if let Some(dn) = &self.bind_dn {
            let result = ldap
                .with_timeout(self.timeout)
                .simple_bind(dn, &self.bind_password.0)
                .await
                .map_err(|err| self.unreachable(err))?;
            if result.rc != 0 {
                // Said without the password, which is in a file the log's reader may lack.
                return Err(self.unreachable(format!(
                    "the service account {dn} cannot bind (result {}: {}); check --ldap-bind-dn and the password file",
                    result.rc, result.text
                )));
            }
        }
        Ok(ldap)
    }

    /// Connects and binds as the service account: what start-up runs to report a wrong URL,
    /// CA or service password at once.
    ///
    /// # Errors
    /// [`Error::DirectoryUnreachable`] with the cause.
    pub async fn check(&self) -> Result<()> {
        let mut ldap = self.connect().await?;
        let _ = ldap.unbind().await;
        Ok(())
    }

    fn attributes(&self) -> Vec<&str> {
        let mut attributes = vec![
            self.name_attribute.as_str(),
            self.mail_attribute.as_str(),
            "userAccountControl",
        ];
        attributes.extend(self.time_zone_attribute.as_deref());
        attributes.extend(self.member_of_attribute.as_deref());
        attributes
    }

    /// The one entry `filter` finds under `base` (`scope`), `None` when none or several do.
    async fn find(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
    ) -> Result<Option<SearchEntry>> {
        let attributes = self.attributes();
        let result = ldap
            .with_search_options(ldap3::SearchOptions::new().sizelimit(2))
            .with_timeout(self.timeout)
            .search(base, scope, filter, attributes)
            .await
            .map_err(|err| self.unreachable(err))?;
        let (entries, outcome) = (result.0, result.1);
        match outcome.rc {
            0 => {}
            NO_SUCH_OBJECT => return Ok(None),
            SIZE_LIMIT_EXCEEDED => {
                tracing::warn!(
                    "the LDAP user filter matches several entries for one login name; refused (make --ldap-user-filter unique)"
                );
                return Ok(None);
            }
            rc => {
                return Err(self.unreachable(format!(
                    "search under {base} failed (result {rc}: {})",
                    outcome.text
                )));
            }
        }
        if entries.len() > 1 {
            tracing::warn!(
                "the LDAP user filter matches several entries for one login name; refused (make --ldap-user-filter unique)"
            );
            return Ok(None);
        }
        Ok(entries.into_iter().next().map(SearchEntry::construct))
    }

    /// Whether the directory disabled `entry`: Active Directory's flag, or the disabled filter.
    async fn disabled(&self, ldap: &mut Ldap, entry: &SearchEntry) -> Result<bool> {
        if first(entry, "userAccountControl")
            .and_then(|flags| flags.trim().parse::<u64>().ok())
            .is_some_and(|flags| flags & AD_ACCOUNT_DISABLED != 0)
        {
            return Ok(true);
        }
        let Some(filter) = &self.disabled_filter else {
            return Ok(false);
        };
        let result = ldap
            .with_timeout(self.timeout)
            .search(&entry.dn, Scope::Base, filter, vec!["1.1"])
            .await
            .map_err(|err| self.unreachable(err))?;
        match result.1.rc {
            0 => Ok(!result.0.is_empty()),
            NO_SUCH_OBJECT => Ok(true),
            rc => Err(self.unreachable(format!(
                "the disabled check of {} failed (result {rc}: {})",
                entry.dn, result.1.text
            ))),
        }
    }

    /// The person's groups: the member-of attribute's values and the group search's DNs.
    async fn groups_of(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
        login: &str,
    ) -> Result<Vec<String>> {
        let mut found: Vec<String> = self
            .member_of_attribute
            .as_deref()
            .map(|name| values(entry, name).to_vec())
            .unwrap_or_default();
        if let Some(base) = &self.group_base {
            let filter = group_filter(&self.group_filter, &entry.dn, login);
            let result = ldap
                .with_timeout(self.timeout)
                .search(base, Scope::Subtree, &filter, vec!["1.1"])
                .await
                .map_err(|err| self.unreachable(err))?;
            match result.1.rc {
                0 | NO_SUCH_OBJECT => {}
                rc => {
                    return Err(self.unreachable(format!(
                        "the group search under {base} failed (result {rc}: {})",
                        result.1.text
                    )));
                }
            }
            found.extend(
                result
                    .0
                    .into_iter()
                    .map(|group| SearchEntry::construct(group).dn),
            );
        }
        Ok(found)
    }

    fn profile(&self, entry: &SearchEntry, login: &str, groups: Vec<String>) -> Profile {
        Profile {
            external_id: entry.dn.clone(),
            login: login.to_lowercase(),
            display_name: first(entry, &self.name_attribute)
                .or_else(|| first(entry, "cn"))
                .map(str::to_owned),
            email: first(entry, &self.mail_attribute).map(str::to_owned),
            time_zone: self
                .time_zone_attribute
                .as_deref()
                .and_then(|name| first(entry, name))
                .map(str::to_owned),
            groups,
        }
    }

    /// Checks `login` and `password` against the directory.
    ///
    /// # Errors
    /// [`Error::DirectoryUnreachable`] when the directory cannot be reached or fails (no
    /// verdict about the password).
    pub async fn authenticate(&self, login: &str, password: &str) -> Result<Outcome> {
        // An empty password makes a simple bind "unauthenticated", which directories answer
        // with success: refuse it before anything is sent.
        if password.is_empty() || login.is_empty() {
            return Ok(Outcome::WrongPassword);
        }
        let mut ldap = self.connect().await?;
        let filter = user_filter(&self.user_filter, login);
        let outcome = match self
            .find(&mut ldap, &self.user_base, Scope::Subtree, &filter)
            .await?
        {
            None => {
                // About the time a bind would take, so answers do not tell names apart.
                let _ = ldap
                    .with_timeout(self.timeout)
                    .simple_bind(&format!("cn=conclave-unknown,{}", self.user_base), password)
                    .await;
                Outcome::Unknown
            }
            Some(entry) => {
                let groups = self.groups_of(&mut ldap, &entry, login).await?;
                if self.disabled(&mut ldap, &entry).await? {
                    Outcome::Disabled
                } else {
                    let bound = ldap
                        .with_timeout(self.timeout)
                        .simple_bind(&entry.dn, password)
                        .await
                        .map_err(|err| self.unreachable(err))?;
                    match bound.rc {
                        0 => Outcome::Authenticated(self.profile(&entry, login, groups)),
                        INVALID_CREDENTIALS => Outcome::WrongPassword,
                        rc => {
                            tracing::info!(rc, text = %bound.text, "the directory refused a bind");
                            Outcome::WrongPassword
                        }
                    }
                }
            }
        };
        let _ = ldap.unbind().await;
        Ok(outcome)
    }

    /// Asks the directory again about a person it confirmed before: `dn` must still exist,
    /// match the user filter for `login`, and not be disabled.
    ///
    /// # Errors
    /// [`Error::DirectoryUnreachable`]: no verdict.
    pub async fn confirm(&self, login: &str, dn: &str) -> Result<Presence> {
        let mut ldap = self.connect().await?;
        let filter = user_filter(&self.user_filter, login);
        let presence = match self.find(&mut ldap, dn, Scope::Base, &filter).await? {
            None => Presence::Gone,
            Some(entry) if self.disabled(&mut ldap, &entry).await? => Presence::Disabled,
            Some(entry) => Presence::Active(self.groups_of(&mut ldap, &entry, login).await?),
        };
        let _ = ldap.unbind().await;
        Ok(presence)
    }
}

/// The values of attribute `name` (compared ignoring case, as LDAP does).
fn values<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, values)| values.as_slice())
        .unwrap_or(&[])
}

fn first<'a>(entry: &'a SearchEntry, name: &str) -> Option<&'a str> {
    values(entry, name)
        .first()
        .map(String::as_str)
        .filter(|value| !value.trim().is_empty())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        ldap: LdapConfig,
    }

    fn parse(args: &[&str]) -> LdapConfig {
        let mut all = vec!["conclave"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all)
            .map(|flags| flags.ldap)
            .unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn the_login_is_escaped_so_filter_syntax_in_it_matches_nothing() {
        assert_eq!(
            user_filter(DEFAULT_USER_FILTER, "*)(uid=*"),
            r"(&(objectClass=person)(uid=\2a\29\28uid=\2a))"
        );
        assert_eq!(
            user_filter("(&(objectClass=user)(sAMAccountName={login}))", "jdoe"),
            "(&(objectClass=user)(sAMAccountName=jdoe))"
        );
        assert_eq!(
            user_filter(DEFAULT_USER_FILTER, "a\\b\0"),
            r"(&(objectClass=person)(uid=a\5cb\00))"
        );
        assert!(ldap3::parse_filter(user_filter(DEFAULT_USER_FILTER, "*)(|(uid=*")).is_ok());
    }

    #[test]
    fn the_group_filter_takes_the_dn_escaped() {
        assert_eq!(
            group_filter(DEFAULT_GROUP_FILTER, "cn=O(dd),dc=example", "odd"),
            r"(&(objectClass=groupOfNames)(member=cn=O\28dd\29,dc=example))"
        );
        assert_eq!(
            group_filter("(memberUid={login})", "cn=x", "alice"),
            "(memberUid=alice)"
        );
    }

    #[test]
    fn group_lists_split_on_semicolons_and_levels_map() {
        let config = parse(&[
            "--ldap-moderator-groups",
            "cn=video-moderators,ou=groups,dc=example,dc=org;cn=leads,ou=groups,dc=example,dc=org",
            "--ldap-admin-groups",
            "cn=video-admins,ou=groups,dc=example,dc=org",
            "--ldap-default-level",
            "none",
        ]);
        assert_eq!(config.ldap_moderator_groups.len(), 2);
        assert_eq!(config.ldap_default_level, DefaultLevel(None));
        assert_eq!(config.ldap_user_filter, DEFAULT_USER_FILTER);
        assert!(parse(&[]).ldap_url.is_none());
    }

    #[test]
    fn a_bad_default_level_is_a_clear_error() {
        let err = Flags::try_parse_from(["conclave", "--ldap-default-level", "boss"])
            .expect_err("boss is no level");
        assert!(err.to_string().contains("is not a level"), "{err}");
    }

    fn configured(extra: &[&str]) -> Result<Option<Directory>> {
        let mut args = vec![
            "--ldap-url",
            "ldaps://ldap.example.org",
            "--ldap-user-base",
            "ou=people,dc=example,dc=org",
        ];
        args.extend_from_slice(extra);
        Directory::from_config(&parse(&args))
    }

    fn message(result: Result<Option<Directory>>) -> String {
        match result {
            Err(err) => err.to_string(),
            Ok(_) => panic!("the configuration was accepted"),
        }
    }

    #[test]
    fn incomplete_or_unsafe_configurations_are_refused_clearly() {
        assert!(
            Directory::from_config(&LdapConfig::off())
                .unwrap()
                .is_none()
        );
        assert!(configured(&[]).unwrap().is_some());
        assert!(
            message(Directory::from_config(&parse(&["--ldap-url", "ldaps://x"])))
                .contains("--ldap-user-base")
        );
        assert!(
            message(Directory::from_config(&parse(&[
                "--ldap-url",
                "ldap://x",
                "--ldap-user-base",
                "dc=x"
            ])))
            .contains("not encrypted")
        );
        assert!(
            message(Directory::from_config(&parse(&[
                "--ldap-url",
                "http://x",
                "--ldap-user-base",
                "dc=x"
            ])))
            .contains("not an LDAP URL")
        );
        assert!(message(configured(&["--ldap-starttls"])).contains("ldap:// URLs"));
        assert!(
            message(configured(&["--ldap-bind-dn", "cn=svc"]))
                .contains("--ldap-bind-password-file")
        );
        assert!(message(configured(&["--ldap-user-filter", "(uid=fixed)"])).contains("{login}"));
        assert!(
            message(configured(&["--ldap-user-filter", "(uid={login}"]))
                .contains("not an LDAP filter")
        );
        assert!(
            message(configured(&["--ldap-ca-file", "/nonexistent/ca.pem"]))
                .contains("/nonexistent/ca.pem")
        );
    }

    #[test]
    fn the_bind_password_is_read_from_its_file_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bind-password");
        std::fs::write(&file, "s3cret-value\n").unwrap();
        let directory = configured(&[
            "--ldap-bind-dn",
            "cn=svc,dc=example,dc=org",
            "--ldap-bind-password-file",
            file.to_str().unwrap(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(directory.bind_password.0, "s3cret-value");
        assert!(!format!("{directory:?}").contains("s3cret"));
    }

    #[tokio::test]
    async fn an_empty_password_is_refused_before_anything_is_sent() {
        // Port 9 (discard) on loopback: nothing answers; a connection attempt would fail.
        let directory = Directory::from_config(&parse(&[
            "--ldap-url",
            "ldaps://127.0.0.1:9",
            "--ldap-user-base",
            "dc=x",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            directory.authenticate("alice", "").await.unwrap(),
            Outcome::WrongPassword
        );
        assert!(directory.authenticate("alice", "password").await.is_err());
    }
}
