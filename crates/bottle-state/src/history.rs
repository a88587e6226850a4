//! The host's history of supervise decisions across bottles, in `$BOT_BOTTLE_HOME/bot-bottle.db`.
//!
//! Written only by host-side commands (never shared across a VM boundary). A record names the
//! proposal and the decision; proposals carry no secret values, so neither does the history.

use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::StateError;

/// One decision the operator made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRecord {
    /// Seconds since the Unix epoch.
    pub decided_at: u64,
    pub slug: String,
    pub proposal_id: String,
    pub kind: String,
    pub summary: String,
    /// `approve`, `modify` or `reject`.
    pub action: String,
    /// `once` or `session`, for approvals.
    pub scope: Option<String>,
    pub reason: Option<String>,
}

/// The open history database.
#[derive(Debug)]
pub struct History {
    conn: Connection,
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> StateError + '_ {
    move |source| StateError::Db { path: path.to_path_buf(), message: source.to_string() }
}

impl History {
    /// Opens (creating when needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io { path: dir.to_path_buf(), source })?;
        }
        let conn = Connection::open(path).map_err(db_err(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db_err(path))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS decisions (
                id INTEGER PRIMARY KEY,
                decided_at INTEGER NOT NULL,
                slug TEXT NOT NULL,
                proposal_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                summary TEXT NOT NULL,
                action TEXT NOT NULL,
                scope TEXT,
                reason TEXT
            );",
        )
        .map_err(db_err(path))?;
        Ok(Self { conn })
    }

    /// Appends one decision.
    pub fn record(&self, r: &DecisionRecord) -> Result<(), StateError> {
        let path = Path::new("bot-bottle.db");
        self.conn
            .execute(
                "INSERT INTO decisions (decided_at, slug, proposal_id, kind, summary, action, scope, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    i64::try_from(r.decided_at).unwrap_or(i64::MAX),
                    r.slug,
                    r.proposal_id,
                    r.kind,
                    r.summary,
                    r.action,
                    r.scope,
                    r.reason
                ],
            )
            .map_err(db_err(path))?;
        Ok(())
    }

    /// Every decision, oldest first.
    pub fn list(&self) -> Result<Vec<DecisionRecord>, StateError> {
        let path = Path::new("bot-bottle.db");
        let mut stmt = self
            .conn
            .prepare(
                "SELECT decided_at, slug, proposal_id, kind, summary, action, scope, reason
                 FROM decisions ORDER BY id",
            )
            .map_err(db_err(path))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(DecisionRecord {
                    decided_at: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    slug: row.get(1)?,
                    proposal_id: row.get(2)?,
                    kind: row.get(3)?,
                    summary: row.get(4)?,
                    action: row.get(5)?,
                    scope: row.get(6)?,
                    reason: row.get(7)?,
                })
            })
            .map_err(db_err(path))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db_err(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_round_trip_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("bot-bottle.db");
        let history = History::open(&db).unwrap();
        let record = DecisionRecord {
            decided_at: 1,
            slug: "a-1".into(),
            proposal_id: "0a1b2c3d".into(),
            kind: "egress-route".into(),
            summary: "api.example.com".into(),
            action: "approve".into(),
            scope: Some("once".into()),
            reason: None,
        };
        history.record(&record).unwrap();
        history
            .record(&DecisionRecord { action: "reject".into(), reason: Some("no".into()), ..record.clone() })
            .unwrap();
        let again = History::open(&db).unwrap().list().unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(again[0], record);
        assert_eq!(again[1].reason.as_deref(), Some("no"));
    }
}
