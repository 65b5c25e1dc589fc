//! Keyset pagination SQL shared by both backends: `id` is a time-ordered UUID,
//! so "newest first" is `ORDER BY id DESC` and a cursor is a comparison on `id`.

use patchbay_core::id::IdKind;
use patchbay_core::page::Cursor;
use patchbay_core::{Id, PageRequest};
use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

/// Appends the cursor condition (after a `WHERE …`), the order and the limit
/// (one extra row, which only tells whether there is more).
pub(crate) fn push_page<DB, K>(qb: &mut QueryBuilder<DB>, column: &str, page: &PageRequest<Id<K>>)
where
    DB: Database,
    K: IdKind,
    for<'a> Uuid: Encode<'a, DB> + Type<DB>,
{
    let order = match page.cursor {
        Cursor::First => "DESC",
        Cursor::After(id) => {
            qb.push(format_args!(" AND {column} < "));
            qb.push_bind(id.uuid());
            "DESC"
        }
        Cursor::Before(id) => {
            qb.push(format_args!(" AND {column} > "));
            qb.push_bind(id.uuid());
            "ASC"
        }
    };
    // The limit is written as a literal, not bound: SQLite treats a bound LIMIT as
    // a planner input and re-prepares the statement on every execution. It is a
    // validated integer (1 to 101), so there is nothing to inject.
    qb.push(format_args!(
        " ORDER BY {column} {order} LIMIT {}",
        u64::from(page.limit) + 1
    ));
}
