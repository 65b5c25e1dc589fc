//! A timestamp column type that is native on both databases: `timestamptz` on
//! PostgreSQL, INTEGER microseconds on SQLite (which has no date type, and whose
//! text dates would not compare correctly with varying fractional digits).

use chrono::{DateTime, Utc};
use patchbay_core::Timestamp;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

/// A timestamp as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DbTime(pub Timestamp);

impl From<Timestamp> for DbTime {
    fn from(t: Timestamp) -> Self {
        Self(t)
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for DbTime {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode_by_ref(&self.0.timestamp_micros(), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let micros = <i64 as Decode<Sqlite>>::decode(value)?;
        DateTime::<Utc>::from_timestamp_micros(micros)
            .map(DbTime)
            .ok_or_else(|| format!("timestamp out of range: {micros}").into())
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <Timestamp as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &PgTypeInfo) -> bool {
        <Timestamp as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <Timestamp as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <Timestamp as Decode<Postgres>>::decode(value).map(DbTime)
    }
}

/// Converts an optional timestamp for binding.
pub(crate) fn db_time(t: Option<Timestamp>) -> Option<DbTime> {
    t.map(DbTime)
}
