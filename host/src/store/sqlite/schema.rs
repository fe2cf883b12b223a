//! The schema (`schema.sql`) and the migrations of older spools.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// Creates the schema, migrating an older spool in the same transaction: a `dlq` table
/// made before ids were `AUTOINCREMENT` (so a purged id could be handed to the next
/// dead letter, of any tenant) is rebuilt with every row and id kept.
pub(super) fn create(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let dlq_sql: Option<String> = tx
        .query_row("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'dlq'", [], |r| r.get(0))
        .optional()?;
    let migrate = dlq_sql.is_some_and(|sql| !sql.to_ascii_uppercase().contains("AUTOINCREMENT"));
    if migrate {
        tx.execute_batch("ALTER TABLE dlq RENAME TO dlq_reusing_ids; DROP INDEX IF EXISTS dlq_by_tenant;")?;
    }
    tx.execute_batch(include_str!("schema.sql"))?;
    if migrate {
        let columns = super::dlq::COLUMNS;
        let n =
            tx.execute(&format!("INSERT INTO dlq ({columns}) SELECT {columns} FROM dlq_reusing_ids ORDER BY id"), [])?;
        tx.execute_batch("DROP TABLE dlq_reusing_ids")?;
        tracing::info!("spool: migrated the DLQ to ids that are never reused ({n} entries kept)");
    }
    tx.commit()
}
