//! Agents' and customers' additions in the local SQLite file (tables
//! `people_drafts`, `people_notes`, `people_assignments`, `feedback`, `csat`,
//! `agent_sessions`,
//! created with the rest of the schema by [`crate::sqlite::Db::open`]).
//! Agents' and customers' writes are accepted work, so they commit durably.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, json_col, parse_col, time_col};
use crate::domain::ConversationId;
use crate::store::StoreError;
use crate::store::people::{Csat, Draft, Feedback, Note, PeopleStore};

/// The tables, `CREATE … IF NOT EXISTS` (run at every open).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS people_drafts (
    conversation_id TEXT PRIMARY KEY,
    draft           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS people_notes (
    conversation_id TEXT NOT NULL,
    id              TEXT NOT NULL,
    agent           TEXT NOT NULL,
    text            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, id)
);
CREATE TABLE IF NOT EXISTS people_assignments (
    conversation_id TEXT PRIMARY KEY,
    agent           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    conversation_id TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    rating          TEXT NOT NULL,
    reason          TEXT,
    at              TEXT NOT NULL,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX IF NOT EXISTS feedback_at ON feedback (at);
CREATE TABLE IF NOT EXISTS agent_sessions (
    agent      TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS csat (
    conversation_id TEXT PRIMARY KEY,
    score           INTEGER NOT NULL,
    at              TEXT NOT NULL
);
"#;

#[async_trait]
impl PeopleStore for SqliteStore {
    async fn keep_draft(&self, id: ConversationId, draft: Draft) -> Result<(), StoreError> {
        let body = serde_json::to_string(&draft).map_err(|e| StoreError::Permanent(e.into()))?;
        self.db
            .write_durable(move |c| {
                c.execute(
                    "INSERT INTO people_drafts (conversation_id, draft) VALUES (?1, ?2)
                     ON CONFLICT (conversation_id) DO UPDATE SET draft = excluded.draft",
                    params![id.to_string(), body],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn draft(&self, id: ConversationId) -> Result<Option<Draft>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT draft FROM people_drafts WHERE conversation_id = ?1",
                    [id.to_string()],
                    |r| json_col(r, 0),
                )
                .optional()?)
            })
            .await?)
    }

    async fn add_note(&self, id: ConversationId, note: Note) -> Result<Note, StoreError> {
        Ok(self
            .db
            .write_durable(move |c| {
                c.execute(
                    "INSERT INTO people_notes (conversation_id, id, agent, text, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                    params![
                        id.to_string(),
                        note.id,
                        note.agent,
                        note.text,
                        stamp(note.created_at)
                    ],
                )?;
                Ok(c.query_row(
                    "SELECT id, agent, text, created_at FROM people_notes
                      WHERE conversation_id = ?1 AND id = ?2",
                    params![id.to_string(), note.id],
                    note_row,
                )?)
            })
            .await?)
    }

    async fn notes(&self, id: ConversationId) -> Result<Vec<Note>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                let mut stmt = c.prepare(
                    "SELECT id, agent, text, created_at FROM people_notes
                      WHERE conversation_id = ?1 ORDER BY created_at, id",
                )?;
                let rows = stmt.query_map([id.to_string()], note_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    async fn assign(&self, id: ConversationId, agent: Option<&str>) -> Result<(), StoreError> {
        let agent = agent.map(str::to_owned);
        self.db
            .write_durable(move |c| {
                match agent {
                    Some(a) => c.execute(
                        "INSERT INTO people_assignments (conversation_id, agent) VALUES (?1, ?2)
                         ON CONFLICT (conversation_id) DO UPDATE SET agent = excluded.agent",
                        params![id.to_string(), a],
                    )?,
                    None => c.execute(
                        "DELETE FROM people_assignments WHERE conversation_id = ?1",
                        [id.to_string()],
                    )?,
                };
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn assignee(&self, id: ConversationId) -> Result<Option<String>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT agent FROM people_assignments WHERE conversation_id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await?)
    }

    async fn rate(&self, f: Feedback) -> Result<(), StoreError> {
        self.db
            .write_durable(move |c| {
                c.execute(
                    "INSERT INTO feedback (conversation_id, message_id, rating, reason, at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (conversation_id, message_id) DO UPDATE
                        SET rating = excluded.rating, reason = excluded.reason, at = excluded.at",
                    params![
                        f.conversation_id.to_string(),
                        f.message_id,
                        f.rating.as_str(),
                        f.reason.map(|r| r.as_str()),
                        stamp(f.at)
                    ],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn ratings(&self, id: ConversationId) -> Result<Vec<Feedback>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                let mut stmt = c.prepare(
                    "SELECT conversation_id, message_id, rating, reason, at FROM feedback
                      WHERE conversation_id = ?1 ORDER BY at, message_id",
                )?;
                let rows = stmt.query_map([id.to_string()], |r| {
                    Ok(Feedback {
                        conversation_id: parse_col(r, 0)?,
                        message_id: r.get(1)?,
                        rating: parse_col(r, 2)?,
                        reason: match r.get::<_, Option<String>>(3)? {
                            Some(_) => Some(parse_col(r, 3)?),
                            None => None,
                        },
                        at: time_col(r, 4)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    async fn set_csat(&self, c: Csat) -> Result<(), StoreError> {
        self.db
            .write_durable(move |conn| {
                conn.execute(
                    "INSERT INTO csat (conversation_id, score, at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (conversation_id) DO UPDATE SET score = excluded.score, at = excluded.at",
                    params![c.conversation_id.to_string(), c.score, stamp(c.at)],
                )?;
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn session_generation(&self, agent: &str) -> Result<u64, StoreError> {
        self.generation_of(agent.to_owned()).await
    }

    async fn end_sessions(&self, agent: &str) -> Result<u64, StoreError> {
        let agent = agent.to_owned();
        let g: i64 = self
            .db
            .write_durable(move |c| {
                Ok(c.query_row(
                    "INSERT INTO agent_sessions (agent, generation) VALUES (?1, 1)
                     ON CONFLICT (agent) DO UPDATE SET generation = generation + 1
                     RETURNING generation",
                    [agent],
                    |r| r.get(0),
                )?)
            })
            .await?;
        Ok(g.max(0) as u64)
    }

    async fn csat(&self, id: ConversationId) -> Result<Option<Csat>, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT score, at FROM csat WHERE conversation_id = ?1",
                    [id.to_string()],
                    |r| {
                        Ok(Csat {
                            conversation_id: id,
                            score: r.get(0)?,
                            at: time_col(r, 1)?,
                        })
                    },
                )
                .optional()?)
            })
            .await?)
    }
}

impl SqliteStore {
    async fn generation_of(&self, agent: String) -> Result<u64, StoreError> {
        Ok(self
            .db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT generation FROM agent_sessions WHERE agent = ?1",
                    [agent],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .unwrap_or(0))
            })
            .await?
            .max(0) as u64)
    }
}

fn note_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Note> {
    Ok(Note {
        id: r.get(0)?,
        agent: r.get(1)?,
        text: r.get(2)?,
        created_at: time_col(r, 3)?,
    })
}

/// One fixed-width text form, so `ORDER BY` on it is time order.
fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}
