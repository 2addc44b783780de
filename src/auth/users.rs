//! Who may connect and what each may do: the `[auth]` section of the config file, parsed into
//! a [`Registry`] of principals (users and tokens) and their grants.
//!
//! ```toml
//! [[auth.users]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"   # esdb passwd
//! permissions = { default = ["read", "write:orders-*", "subscribe"], "*" = ["read"] }
//!
//! [[auth.tokens]]
//! name = "ci"
//! token = "a long random string"
//! permissions = { "*" = ["all"] }
//! ```
//! A permission is `read`, `write`, `subscribe`, `snapshot`, `admin` or `all` (the five),
//! optionally scoped to streams with `:<pattern>`: an exact stream id, or a prefix ending in
//! `*` (`write:orders-*`). The store key is a store name or `*` (every store).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Deserialize;

/// Most users plus tokens one config may list: bounds the work of a token lookup, which
/// compares against every token.
pub const MAX_PRINCIPALS: usize = 10_000;
/// Longest token accepted in the config (and compared from a client).
pub const MAX_TOKEN_BYTES: usize = 1024;
/// Shortest token accepted in the config: shorter ones are guessable.
pub const MIN_TOKEN_BYTES: usize = 16;

/// The `[auth]` section as written.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    #[serde(default)]
    pub users: Vec<UserEntry>,
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

impl std::fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let users: Vec<&str> = self.users.iter().map(|u| u.name.as_str()).collect();
        let tokens: Vec<&str> = self.tokens.iter().map(|t| t.name.as_str()).collect();
        f.debug_struct("AuthSection")
            .field("users", &users)
            .field("tokens", &tokens)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// An argon2id PHC string, as `esdb passwd` prints it; `None`: no password login.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Whether a client certificate (on a port with `--tls-client-ca`) whose subject common
    /// name is this user's name authenticates the connection as this user.
    #[serde(default)]
    pub certificate: bool,
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Names the token in logs and metrics (never the token itself).
    pub name: String,
    pub token: String,
    #[serde(default)]
    pub permissions: BTreeMap<String, Vec<String>>,
}

/// One of the five permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    Read,
    Write,
    Subscribe,
    Snapshot,
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 5] = [
        Permission::Read,
        Permission::Write,
        Permission::Subscribe,
        Permission::Snapshot,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Subscribe => "subscribe",
            Permission::Snapshot => "snapshot",
            Permission::Admin => "admin",
        }
    }
}

/// The streams a grant covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every stream of the store (and store-wide operations).
    All,
    Exact(String),
    Prefix(String),
}

impl Scope {
    fn covers(&self, stream: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Exact(id) => id == stream,
            Scope::Prefix(prefix) => stream.starts_with(prefix.as_str()),
        }
    }
}

/// The streams one subscription may deliver from: those every listed permission covers.
#[derive(Debug, Clone, Default)]
pub struct StreamScope {
    /// For each required permission, the scopes granting it; a stream must be covered by one
    /// scope of each.
    required: Vec<Vec<Scope>>,
}

impl StreamScope {
    pub fn allows(&self, stream: &str) -> bool {
        self.required
            .iter()
            .all(|scopes| scopes.iter().any(|scope| scope.covers(stream)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User,
    Token,
}

/// An authenticated identity and its grants.
#[derive(Debug)]
pub struct Principal {
    pub name: String,
    pub kind: PrincipalKind,
    /// Grants by store name (`*`: every store).
    grants: HashMap<String, Vec<(Permission, Scope)>>,
    /// The credential as configured (password hash or token, and whether a certificate
    /// admits the user), to tell on reload whether it changed (a changed credential revokes
    /// open connections like a removed user).
    pub(crate) credential: String,
    /// A user's password hash (`None`: the user has no password login).
    pub(crate) password_hash: Option<String>,
    /// Whether a client certificate naming the user authenticates as it.
    pub(crate) certificate: bool,
}

impl Principal {
    fn grants_in<'a>(&'a self, store: &str) -> impl Iterator<Item = &'a (Permission, Scope)> {
        let named = self.grants.get(store).into_iter().flatten();
        let every = self.grants.get("*").into_iter().flatten();
        named.chain(every)
    }

    /// Whether `permission` is granted in `store` for `stream` (`None`: the whole store).
    pub fn allows(&self, store: &str, permission: Permission, stream: Option<&str>) -> bool {
        self.grants_in(store)
            .filter(|(granted, _)| *granted == permission)
            .any(|(_, scope)| match stream {
                Some(stream) => scope.covers(stream),
                None => *scope == Scope::All,
            })
    }

    /// Whether `permission` is granted in `store` for at least one stream.
    pub fn allows_some(&self, store: &str, permission: Permission) -> bool {
        self.grants_in(store)
            .any(|(granted, _)| *granted == permission)
    }

    /// Whether the principal may know `store` exists (it holds any grant there).
    pub fn sees_store(&self, store: &str) -> bool {
        self.grants_in(store).next().is_some()
    }

    /// Whether `permission` is granted on every store, unscoped (for `STATS`).
    pub fn allows_everywhere(&self, permission: Permission) -> bool {
        self.grants
            .get("*")
            .into_iter()
            .flatten()
            .any(|(granted, scope)| *granted == permission && *scope == Scope::All)
    }

    /// The streams of `store` that every one of `permissions` covers.
    pub fn stream_scope(&self, store: &str, permissions: &[Permission]) -> StreamScope {
        let required = permissions
            .iter()
            .map(|permission| {
                self.grants_in(store)
                    .filter(|(granted, _)| granted == permission)
                    .map(|(_, scope)| scope.clone())
                    .collect()
            })
            .collect();
        StreamScope { required }
    }
}

/// Every principal the server knows, built from an [`AuthSection`].
#[derive(Debug, Default)]
pub struct Registry {
    users: HashMap<String, Arc<Principal>>,
    tokens: Vec<Arc<Principal>>,
}

impl Registry {
    pub fn build(section: &AuthSection) -> Result<Registry, String> {
        if section.users.len() + section.tokens.len() > MAX_PRINCIPALS {
            return Err(format!("auth: at most {MAX_PRINCIPALS} users and tokens"));
        }
        let mut registry = Registry::default();
        for user in &section.users {
            if user.name.is_empty() {
                return Err("auth: a user needs a name".into());
            }
            match &user.password_hash {
                Some(hash) => crate::auth::password::check_hash(hash)
                    .map_err(|e| format!("auth: user {}: {e}", user.name))?,
                None if user.certificate => {}
                None => {
                    return Err(format!(
                        "auth: user {} needs a password_hash or certificate = true",
                        user.name
                    ))
                }
            }
            let principal = Principal {
                name: user.name.clone(),
                kind: PrincipalKind::User,
                grants: parse_grants(&user.permissions)
                    .map_err(|e| format!("auth: user {}: {e}", user.name))?,
                credential: format!(
                    "{}|certificate={}",
                    user.password_hash.as_deref().unwrap_or(""),
                    user.certificate
                ),
                password_hash: user.password_hash.clone(),
                certificate: user.certificate,
            };
            if registry
                .users
                .insert(user.name.clone(), Arc::new(principal))
                .is_some()
            {
                return Err(format!("auth: user {} listed twice", user.name));
            }
        }
        for token in &section.tokens {
            let length = token.token.len();
            if !(MIN_TOKEN_BYTES..=MAX_TOKEN_BYTES).contains(&length) {
                return Err(format!(
                    "auth: token {}: must be {MIN_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes",
                    token.name
                ));
            }
            let duplicate = registry
                .tokens
                .iter()
                .any(|t| t.name == token.name || t.credential == token.token);
            if duplicate {
                return Err(format!("auth: token {} listed twice", token.name));
            }
            registry.tokens.push(Arc::new(Principal {
                name: token.name.clone(),
                kind: PrincipalKind::Token,
                grants: parse_grants(&token.permissions)
                    .map_err(|e| format!("auth: token {}: {e}", token.name))?,
                credential: token.token.clone(),
                password_hash: None,
                certificate: false,
            }));
        }
        Ok(registry)
    }

    /// Whether any credential is configured: then every connection must authenticate.
    pub fn enabled(&self) -> bool {
        !self.users.is_empty() || !self.tokens.is_empty()
    }

    pub fn user(&self, name: &str) -> Option<&Arc<Principal>> {
        self.users.get(name)
    }

    /// The user a verified client certificate with subject common name `name` authenticates
    /// as: one listed with `certificate = true`.
    pub fn certificate_user(&self, name: &str) -> Option<Arc<Principal>> {
        self.users
            .get(name)
            .filter(|user| user.certificate)
            .cloned()
    }

    /// The token's principal. Compares against every token in constant time each, so the
    /// time taken does not tell which token, or how much of one, matched.
    pub fn token(&self, candidate: &str) -> Option<Arc<Principal>> {
        let mut found = None;
        for principal in &self.tokens {
            if crate::auth::password::same_secret(candidate, &principal.credential) {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// The principal of this kind and name now, if its credential is unchanged.
    pub fn still_valid(&self, principal: &Principal) -> Option<Arc<Principal>> {
        let current = match principal.kind {
            PrincipalKind::User => self.users.get(&principal.name),
            PrincipalKind::Token => self.tokens.iter().find(|t| t.name == principal.name),
        }?;
        (current.credential == principal.credential).then(|| current.clone())
    }
}

fn parse_grants(
    permissions: &BTreeMap<String, Vec<String>>,
) -> Result<HashMap<String, Vec<(Permission, Scope)>>, String> {
    let mut grants = HashMap::new();
    for (store, list) in permissions {
        if store != "*" {
            esdb_protocol::ops::session::validate_store_name(store).map_err(|e| e.message)?;
        }
        let mut parsed = Vec::new();
        for text in list {
            parsed.extend(parse_grant(text)?);
        }
        grants.insert(store.clone(), parsed);
    }
    Ok(grants)
}

/// `read`, `write:orders-*`, `all`, … into (permission, scope) pairs.
fn parse_grant(text: &str) -> Result<Vec<(Permission, Scope)>, String> {
    let (name, pattern) = match text.split_once(':') {
        Some((name, pattern)) => (name, Some(pattern)),
        None => (text, None),
    };
    let scope = match pattern {
        None | Some("*") => Scope::All,
        Some("") => return Err(format!("permission {text:?}: empty stream pattern")),
        Some(pattern) => match pattern.strip_suffix('*') {
            Some(prefix) if prefix.contains('*') => {
                return Err(format!("permission {text:?}: `*` only at the end"))
            }
            Some(prefix) => Scope::Prefix(prefix.to_owned()),
            None if pattern.contains('*') => {
                return Err(format!("permission {text:?}: `*` only at the end"))
            }
            None => Scope::Exact(pattern.to_owned()),
        },
    };
    let permissions: Vec<Permission> = match name {
        "all" => Permission::ALL.to_vec(),
        name => match Permission::ALL.iter().find(|p| p.as_str() == name) {
            Some(permission) => vec![*permission],
            None => {
                return Err(format!(
                    "unknown permission {name:?} (read, write, subscribe, snapshot, admin, all)"
                ))
            }
        },
    };
    Ok(permissions
        .into_iter()
        .map(|p| (p, scope.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(grants: &[(&str, &[&str])]) -> Principal {
        let permissions = grants
            .iter()
            .map(|(store, list)| {
                let list = list.iter().map(|s| s.to_string()).collect();
                (store.to_string(), list)
            })
            .collect();
        Principal {
            name: "p".into(),
            kind: PrincipalKind::User,
            grants: parse_grants(&permissions).unwrap(),
            credential: String::new(),
            password_hash: None,
            certificate: false,
        }
    }

    #[test]
    fn scoped_grants_cover_only_their_streams() {
        let p = principal(&[
            ("default", &["read", "write:orders-*"]),
            ("*", &["subscribe"]),
        ]);
        assert!(p.allows("default", Permission::Write, Some("orders-1")));
        assert!(!p.allows("default", Permission::Write, Some("users-1")));
        assert!(!p.allows("default", Permission::Write, None));
        assert!(p.allows_some("default", Permission::Write));
        assert!(p.allows("default", Permission::Read, None));
        assert!(p.allows("other", Permission::Subscribe, None));
        assert!(!p.allows("other", Permission::Read, Some("x")));
        assert!(p.sees_store("other"));
        assert!(!p.allows_everywhere(Permission::Admin));
        let scope = p.stream_scope("default", &[Permission::Read, Permission::Write]);
        assert!(scope.allows("orders-9") && !scope.allows("users-1"));
    }

    #[test]
    fn bad_grants_are_refused() {
        for bad in ["reed", "write:", "write:a*b", "write:*a"] {
            assert!(parse_grant(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_grant("all").unwrap().len(), 5);
        assert_eq!(
            parse_grant("write:x").unwrap(),
            vec![(Permission::Write, Scope::Exact("x".into()))]
        );
    }
}
