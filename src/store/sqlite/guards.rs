//! One-time tokens in the local SQLite file (table `seen_tokens`). Local
//! mode is one process, so its rate limits stay in memory
//! (`api::ratelimit`); only the replay guard needs the file, because a
//! replay must be refused after a restart too.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::guards::{ReplayGuard, TokenUse, token_key};

#[async_trait]
impl ReplayGuard for SqliteStore {
    async fn use_token(
        &self,
        scope: &str,
        token: &str,
        digest: [u8; 32],
        until: DateTime<Utc>,
    ) -> Result<TokenUse, StoreError> {
        let key = token_key(scope, token);
        let digest = hex::encode(digest);
        let until = until.timestamp_millis();
        // A spent token must stay spent after a crash.
        Ok(self
            .db
            .write_durable(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = Utc::now().timestamp_millis();
                // Expired tokens can no longer be replayed (their signatures
                // are outside the replay window): forget them.
                tx.execute("DELETE FROM seen_tokens WHERE expires_at < ?1", [now])?;
                let seen: Option<String> = tx
                    .query_row(
                        "SELECT digest FROM seen_tokens WHERE key = ?1",
                        [&key],
                        |r| r.get(0),
                    )
                    .optional()?;
                let used = match seen {
                    None => {
                        tx.execute(
                            "INSERT INTO seen_tokens (key, digest, expires_at) VALUES (?1, ?2, ?3)",
                            params![key, digest, until],
                        )?;
                        TokenUse::First
                    }
                    Some(d) if d == digest => TokenUse::Retry,
                    Some(_) => TokenUse::Reused,
                };
                tx.commit()?;
                Ok(used)
            })
            .await?)
    }
}
