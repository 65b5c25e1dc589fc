//! The one macro that lets each store method be written once.
//!
//! `for_each_engine! { … }` expands the items it is given twice, each time in
//! its own anonymous scope: once with `Db` = [`sqlx::Sqlite`] and `Engine` =
//! [`SqliteStore`](crate::SqliteStore), once with `Db` = [`sqlx::Postgres`] and
//! `Engine` = [`PostgresStore`](crate::PostgresStore). A body written against
//! those two names (and the engines' common helpers `reader()`, `writer()`,
//! `begin()`) is then compiled, type-checked and bound for each database.
//!
//! What an engine must provide, as inherent methods:
//! - `async fn reader(&self) -> StoreResult<impl DerefMut<Target = Db::Connection>>`
//!   for single-statement reads;
//! - `fn writer(&self) -> &sqlx::Pool<Db>` for single-statement writes;
//! - `async fn begin(&self) -> StoreResult<sqlx::Transaction<'static, Db>>`;
//! - the dialect-specific operations, each in the engine's own module and
//!   marked there as a dialect difference.
macro_rules! for_each_engine {
    ($($item:item)*) => {
        const _: () = {
            #[allow(unused_imports)]
            use ::sqlx::Sqlite as Db;
            #[allow(unused_imports)]
            use $crate::sqlite::SqliteStore as Engine;
            $($item)*
        };
        const _: () = {
            #[allow(unused_imports)]
            use ::sqlx::Postgres as Db;
            #[allow(unused_imports)]
            use $crate::postgres::PostgresStore as Engine;
            $($item)*
        };
    };
}

pub(crate) use for_each_engine;
