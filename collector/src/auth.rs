//! Who may do what: agents with their own keys, API users with tokens that
//! carry a role. Secrets are stored only as SHA-256 hashes; what is shown to
//! a person is shown once.

use std::path::Path;

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::db::{Db, DbError};

/// What an API token may do. Ordered: each role can do what the ones below it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads alerts, agents and status.
    Viewer,
    /// Viewer, plus acknowledges, closes and assigns alerts.
    Responder,
    /// Responder, plus manages agents, tokens, rules and backups.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s.to_ascii_lowercase().as_str() {
            "viewer" => Ok(Role::Viewer),
            "responder" => Ok(Role::Responder),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("`{s}` is not a role (viewer, responder, admin)")),
        }
    }
}

/// A stored API token (the token itself is not stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub name: String,
    pub role: Role,
    pub created_ms: i64,
    #[serde(default)]
    pub revoked: bool,
}

/// A stored agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub name: String,
    /// SHA-256 of the agent's key, once enrolled.
    pub key_hash: Option<String>,
    /// SHA-256 of the pending one-time enrolment secret.
    pub enroll_hash: Option<String>,
    /// When the pending enrolment secret expires.
    pub enroll_expires_ms: Option<i64>,
    pub created_ms: i64,
    #[serde(default)]
    pub revoked: bool,
    /// Last batch or heartbeat.
    pub last_seen_ms: Option<i64>,
    /// Journal entries accepted from this agent.
    #[serde(default)]
    pub events_received: u64,
    /// The last heartbeat the agent sent.
    #[serde(default)]
    pub heartbeat: Option<soc_protocol::Heartbeat>,
}

/// Why an authentication or a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown or revoked credentials")]
    Denied,
    #[error("agent `{0}` already has a key; revoke it first to enrol it again")]
    AlreadyEnrolled(String),
    #[error("token name `{0}` is taken")]
    NameTaken(String),
    #[error("`{0}` is not a valid name: use 1-64 letters, digits, `.`, `-` or `_`")]
    BadName(String),
    #[error("no {kind} named `{name}`")]
    Unknown { kind: &'static str, name: String },
    #[error("`{0}` holds the last admin token; create another admin token first")]
    LastAdmin(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sled::Error> for AuthError {
    fn from(e: sled::Error) -> Self {
        AuthError::Db(DbError::Sled(e))
    }
}

/// SHA-256 of a secret, hex.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random secret with a recognisable prefix.
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Names of agents and tokens: short, printable, safe in a metric label.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}

/// Token and agent registry over the database.
#[derive(Clone)]
pub struct Auth {
    db: Db,
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>, AuthError> {
    serde_json::to_vec(v).map_err(|e| {
        AuthError::Db(DbError::Corrupt {
            key: "record".into(),
            reason: e.to_string(),
        })
    })
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, v: &[u8]) -> Result<T, AuthError> {
    serde_json::from_slice(v).map_err(|e| {
        AuthError::Db(DbError::Corrupt {
            key: key.into(),
            reason: e.to_string(),
        })
    })
}

impl Auth {
    pub fn new(db: Db) -> Auth {
        Auth { db }
    }

    /// On a fresh database, creates the token `admin` with the admin role and
    /// writes it to `path` (mode 0600). Returns whether it did.
    pub fn ensure_first_admin(&self, path: &Path, now_ms: i64) -> Result<bool, anyhow::Error> {
        if !self.db.tokens.is_empty() {
            return Ok(false);
        }
        let token = self.create_token("admin", Role::Admin, now_ms)?;
        write_secret_file(path, &token)?;
        Ok(true)
    }

    /// Creates a token and returns it; only its hash is kept.
    pub fn create_token(&self, name: &str, role: Role, now_ms: i64) -> Result<String, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadName(name.into()));
        }
        for item in self.db.tokens.iter() {
            let (k, v) = item?;
            let rec: TokenRecord = parse(&String::from_utf8_lossy(&k), &v)?;
            if rec.name == name && !rec.revoked {
                return Err(AuthError::NameTaken(name.into()));
            }
        }
        let token = new_secret("soc_tk_");
        let rec = TokenRecord {
            name: name.into(),
            role,
            created_ms: now_ms,
            revoked: false,
        };
        self.db
            .tokens
            .insert(hash_secret(&token).as_bytes(), json(&rec)?)?;
        self.db.db.flush()?;
        Ok(token)
    }

    /// The token's record, if it is known and not revoked.
    pub fn verify_token(&self, token: &str) -> Result<TokenRecord, AuthError> {
        let h = hash_secret(token);
        match self.db.tokens.get(h.as_bytes())? {
            Some(v) => {
                let rec: TokenRecord = parse("token", &v)?;
                if rec.revoked {
                    Err(AuthError::Denied)
                } else {
                    Ok(rec)
                }
            }
            None => Err(AuthError::Denied),
        }
    }

    /// Registers an agent (or renews its pending enrolment) and returns the
    /// one-time enrolment secret the agent trades for its key.
    pub fn enroll_agent(&self, name: &str, ttl_ms: i64, now_ms: i64) -> Result<String, AuthError> {
        if !valid_name(name) {
            return Err(AuthError::BadName(name.into()));
        }
        let existing = match self.db.agents.get(name.as_bytes())? {
            Some(v) => Some(parse::<AgentRecord>(name, &v)?),
            None => None,
        };
        if let Some(rec) = &existing
            && rec.key_hash.is_some()
            && !rec.revoked
        {
            return Err(AuthError::AlreadyEnrolled(name.into()));
        }
        let secret = new_secret("soc_es_");
        let rec = AgentRecord {
            name: name.into(),
            key_hash: None,
            enroll_hash: Some(hash_secret(&secret)),
            enroll_expires_ms: Some(now_ms + ttl_ms),
            created_ms: existing.as_ref().map_or(now_ms, |r| r.created_ms),
            revoked: false,
            last_seen_ms: existing.as_ref().and_then(|r| r.last_seen_ms),
            events_received: existing.as_ref().map_or(0, |r| r.events_received),
            heartbeat: None,
        };
        self.db.agents.insert(name.as_bytes(), json(&rec)?)?;
        self.db.db.flush()?;
        Ok(secret)
    }

    /// Trades a valid, unexpired enrolment secret for the agent's key: the
    /// one the agent `proposed`, or a new one. The secret is spent whatever
    /// happens next; asking again with the key already in force (the agent
    /// lost the answer) gets the same answer.
    pub fn exchange_enrollment(
        &self,
        name: &str,
        secret: &str,
        proposed: Option<&str>,
        now_ms: i64,
    ) -> Result<String, AuthError> {
        let Some(v) = self.db.agents.get(name.as_bytes())? else {
            return Err(AuthError::Denied);
        };
        let mut rec: AgentRecord = parse(name, &v)?;
        if let Some(p) = proposed {
            let well_formed = soc_protocol::AGENT_KEY_LEN.contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_graphic());
            if !well_formed {
                return Err(AuthError::Denied);
            }
            if !rec.revoked && rec.key_hash.as_deref() == Some(hash_secret(p).as_str()) {
                return Ok(p.to_owned());
            }
        }
        let ok = !rec.revoked
            && rec.enroll_hash.as_deref() == Some(hash_secret(secret).as_str())
            && rec.enroll_expires_ms.is_some_and(|t| now_ms <= t);
        if !ok {
            return Err(AuthError::Denied);
        }
        let key = proposed.map_or_else(|| new_secret("soc_ak_"), str::to_owned);
        rec.key_hash = Some(hash_secret(&key));
        rec.enroll_hash = None;
        rec.enroll_expires_ms = None;
        // Compare-and-swap so a secret cannot be spent twice by two racing calls.
        match self
            .db
            .agents
            .compare_and_swap(name.as_bytes(), Some(v), Some(json(&rec)?))?
        {
            Ok(()) => {
                self.db.db.flush()?;
                Ok(key)
            }
            Err(_) => Err(AuthError::Denied),
        }
    }

    /// Checks an agent's key.
    pub fn verify_agent(&self, name: &str, key: &str) -> Result<(), AuthError> {
        let Some(v) = self.db.agents.get(name.as_bytes())? else {
            return Err(AuthError::Denied);
        };
        let rec: AgentRecord = parse(name, &v)?;
        if !rec.revoked && rec.key_hash.as_deref() == Some(hash_secret(key).as_str()) {
            Ok(())
        } else {
            Err(AuthError::Denied)
        }
    }

    /// Stores an agent's heartbeat and marks it seen.
    pub fn record_heartbeat(
        &self,
        name: &str,
        hb: soc_protocol::Heartbeat,
        now_ms: i64,
    ) -> Result<(), AuthError> {
        let mut hb = Some(hb);
        self.db.agents.fetch_and_update(name.as_bytes(), |old| {
            let old = old?;
            let mut rec: AgentRecord = serde_json::from_slice(old).ok()?;
            rec.last_seen_ms = Some(now_ms);
            rec.heartbeat = hb.take().or(rec.heartbeat);
            serde_json::to_vec(&rec).ok()
        })?;
        Ok(())
    }

    /// One agent's record.
    pub fn agent(&self, name: &str) -> Result<Option<AgentRecord>, AuthError> {
        match self.db.agents.get(name.as_bytes())? {
            Some(v) => Ok(Some(parse(name, &v)?)),
            None => Ok(None),
        }
    }

    /// Every agent, by name.
    pub fn agents(&self) -> Result<Vec<AgentRecord>, AuthError> {
        let mut out = Vec::new();
        for item in self.db.agents.iter() {
            let (k, v) = item?;
            out.push(parse(&String::from_utf8_lossy(&k), &v)?);
        }
        Ok(out)
    }
}

impl Auth {
    /// Every token record (revoked ones too), by name.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, AuthError> {
        let mut out = Vec::new();
        for item in self.db.tokens.iter() {
            let (k, v) = item?;
            out.push(parse::<TokenRecord>(&String::from_utf8_lossy(&k), &v)?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name).then(a.created_ms.cmp(&b.created_ms)));
        Ok(out)
    }

    /// Revokes the active token called `name`; it is refused from its next
    /// request on. The last active admin token cannot be revoked, so the
    /// collector never locks its operators out.
    pub fn revoke_token(&self, name: &str) -> Result<TokenRecord, AuthError> {
        let mut target = None;
        let mut admins = 0;
        for item in self.db.tokens.iter() {
            let (k, v) = item?;
            let rec: TokenRecord = parse(&String::from_utf8_lossy(&k), &v)?;
            if rec.revoked {
                continue;
            }
            if rec.role == Role::Admin {
                admins += 1;
            }
            if rec.name == name {
                target = Some((k, v, rec));
            }
        }
        let Some((k, v, mut rec)) = target else {
            return Err(AuthError::Unknown {
                kind: "active token",
                name: name.into(),
            });
        };
        if rec.role == Role::Admin && admins <= 1 {
            return Err(AuthError::LastAdmin(name.into()));
        }
        rec.revoked = true;
        if self
            .db
            .tokens
            .compare_and_swap(k, Some(v), Some(json(&rec)?))?
            .is_err()
        {
            // Changed under us (revoked concurrently): say so rather than guess.
            return Err(AuthError::Unknown {
                kind: "active token",
                name: name.into(),
            });
        }
        self.db.db.flush()?;
        Ok(rec)
    }

    /// Cuts an agent off: its key stops working at once (its next batch or
    /// heartbeat gets 401) and any pending enrolment secret is void.
    /// `socctl agents enroll NAME` can enrol it again later.
    pub fn revoke_agent(&self, name: &str) -> Result<AgentRecord, AuthError> {
        let mut out = None;
        let mut fail = None;
        self.db.agents.fetch_and_update(name.as_bytes(), |old| {
            let old = old?;
            match serde_json::from_slice::<AgentRecord>(old) {
                Ok(mut rec) => {
                    rec.revoked = true;
                    rec.key_hash = None;
                    rec.enroll_hash = None;
                    rec.enroll_expires_ms = None;
                    let bytes = serde_json::to_vec(&rec).ok();
                    out = Some(rec);
                    bytes.or_else(|| Some(old.to_vec()))
                }
                Err(e) => {
                    fail = Some(e.to_string());
                    Some(old.to_vec())
                }
            }
        })?;
        if let Some(reason) = fail {
            return Err(AuthError::Db(DbError::Corrupt {
                key: format!("agents/{name}"),
                reason,
            }));
        }
        let Some(rec) = out else {
            return Err(AuthError::Unknown {
                kind: "agent",
                name: name.into(),
            });
        };
        self.db.db.flush()?;
        Ok(rec)
    }
}

/// Writes a secret to a file readable only by its owner.
pub fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("db")).expect("db");
        (dir, Auth::new(db))
    }

    #[test]
    fn enrolment_secret_is_single_use_and_expires() {
        let (_d, a) = auth();
        let secret = a.enroll_agent("web-01", 1000, 0).expect("enroll");
        assert!(matches!(
            a.exchange_enrollment("web-01", "wrong", None, 1),
            Err(AuthError::Denied)
        ));
        let key = a
            .exchange_enrollment("web-01", &secret, None, 10)
            .expect("exchange");
        a.verify_agent("web-01", &key).expect("key works");
        assert!(a.verify_agent("web-01", "soc_ak_other").is_err());
        assert!(
            matches!(
                a.exchange_enrollment("web-01", &secret, None, 11),
                Err(AuthError::Denied)
            ),
            "spent"
        );
        assert!(matches!(
            a.enroll_agent("web-01", 1000, 12),
            Err(AuthError::AlreadyEnrolled(_))
        ));

        let late = a.enroll_agent("web-02", 1000, 0).expect("enroll");
        assert!(
            matches!(
                a.exchange_enrollment("web-02", &late, None, 1001),
                Err(AuthError::Denied)
            ),
            "expired"
        );
    }

    #[test]
    fn an_agent_that_lost_the_answer_asks_again_with_its_own_key() {
        let (_d, a) = auth();
        let secret = a.enroll_agent("web-01", 1000, 0).expect("enroll");
        let mine = "soc_ak_chosen-by-the-agent-0123456789abcdef";
        assert!(
            matches!(
                a.exchange_enrollment("web-01", &secret, Some("short"), 1),
                Err(AuthError::Denied)
            ),
            "a weak key is refused"
        );
        let key = a
            .exchange_enrollment("web-01", &secret, Some(mine), 2)
            .expect("exchange");
        assert_eq!(key, mine);
        a.verify_agent("web-01", mine)
            .expect("the chosen key works");
        // The answer was lost: the same request again, the secret spent.
        assert_eq!(
            a.exchange_enrollment("web-01", &secret, Some(mine), 3)
                .expect("same answer"),
            mine
        );
        // Another key, or none, is still refused: the secret is spent.
        let other = "soc_ak_another-key-0123456789abcdef-xyz";
        assert!(
            a.exchange_enrollment("web-01", &secret, Some(other), 4)
                .is_err()
        );
        assert!(a.exchange_enrollment("web-01", &secret, None, 5).is_err());
        a.revoke_agent("web-01").expect("revoke");
        assert!(
            a.exchange_enrollment("web-01", &secret, Some(mine), 6)
                .is_err(),
            "a revoked key is not handed back"
        );
    }

    #[test]
    fn first_admin_token_is_created_once_and_works() {
        let (d, a) = auth();
        let path = d.path().join("admin.token");
        assert!(a.ensure_first_admin(&path, 0).expect("first"));
        assert!(!a.ensure_first_admin(&path, 0).expect("second"));
        let token = std::fs::read_to_string(&path).expect("read");
        let rec = a.verify_token(token.trim()).expect("valid");
        assert_eq!(rec.role, Role::Admin);
        assert!(a.verify_token("soc_tk_guess").is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn revoked_tokens_and_agents_are_refused_and_the_last_admin_stays() {
        let (_d, a) = auth();
        let admin = a.create_token("admin", Role::Admin, 0).expect("admin");
        let ops = a.create_token("ops", Role::Responder, 0).expect("ops");
        a.verify_token(&ops).expect("works");
        assert_eq!(a.revoke_token("ops").expect("revoke").name, "ops");
        assert!(a.verify_token(&ops).is_err());
        assert!(matches!(
            a.revoke_token("ops"),
            Err(AuthError::Unknown { .. })
        ));
        assert!(matches!(
            a.revoke_token("admin"),
            Err(AuthError::LastAdmin(_))
        ));
        a.verify_token(&admin).expect("still works");
        // The name is free again after revocation.
        a.create_token("ops", Role::Viewer, 1).expect("re-create");
        let list = a.tokens().expect("list");
        assert_eq!(list.iter().filter(|t| t.name == "ops").count(), 2);

        let secret = a.enroll_agent("web-01", 1000, 0).expect("enroll");
        let key = a
            .exchange_enrollment("web-01", &secret, None, 1)
            .expect("key");
        a.verify_agent("web-01", &key).expect("works");
        a.revoke_agent("web-01").expect("revoke");
        assert!(a.verify_agent("web-01", &key).is_err());
        assert!(matches!(
            a.revoke_agent("nobody"),
            Err(AuthError::Unknown { .. })
        ));
        // It can be enrolled again, with a new key.
        let secret = a.enroll_agent("web-01", 1000, 2).expect("re-enroll");
        let key2 = a
            .exchange_enrollment("web-01", &secret, None, 3)
            .expect("key");
        a.verify_agent("web-01", &key2).expect("new key works");
        assert!(a.verify_agent("web-01", &key).is_err());
    }

    #[test]
    fn names_are_checked() {
        let (_d, a) = auth();
        assert!(matches!(
            a.enroll_agent("bad name", 1, 0),
            Err(AuthError::BadName(_))
        ));
        assert!(matches!(
            a.create_token("", Role::Viewer, 0),
            Err(AuthError::BadName(_))
        ));
        a.create_token("ops", Role::Viewer, 0).expect("create");
        assert!(matches!(
            a.create_token("ops", Role::Viewer, 0),
            Err(AuthError::NameTaken(_))
        ));
    }
}
