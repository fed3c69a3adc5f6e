//! Conversions between the catalog's Rust types and SQLite values.
//!
//! SQLite integers are signed 64-bit. Values going in are checked to fit ([`int`]);
//! values coming out are checked to be in range ([`get_u64`]), so a damaged or foreign
//! row becomes an error of kind Corrupt rather than a wrong number.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Row, types::Value};

use super::{CatalogError, Ino};
use crate::ids::{ChunkId, ShardId};
use crate::store::Holder;

impl ToSql for Ino {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        // Every stored inode number fits an i64 (they are SQLite rowids). A larger one
        // names no node, so it becomes -1, which matches no row: the caller reports
        // "no such inode" instead of failing with a conversion error.
        Ok(ToSqlOutput::Owned(Value::Integer(
            i64::try_from(self.0).unwrap_or(-1),
        )))
    }
}

impl FromSql for Ino {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let v = value.as_i64()?;
        u64::try_from(v)
            .map(Ino)
            .map_err(|_| FromSqlError::OutOfRange(v))
    }
}

macro_rules! blob_id {
    ($t:ty) => {
        impl ToSql for $t {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::Borrowed(ValueRef::Blob(&self.0)))
            }
        }

        impl FromSql for $t {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let bytes = value.as_blob()?;
                <$t>::from_slice(bytes).ok_or(FromSqlError::InvalidBlobSize {
                    expected_size: 32,
                    blob_size: bytes.len(),
                })
            }
        }
    };
}

blob_id!(ChunkId);
blob_id!(ShardId);

/// A holder as stored: its name as text.
pub(crate) fn holder_sql(holder: &Holder) -> &str {
    holder.as_str()
}

/// Reads a holder column.
pub(crate) fn get_holder(row: &Row<'_>, idx: usize) -> rusqlite::Result<Holder> {
    row.get::<_, String>(idx).map(Holder)
}

/// Reads a non-negative integer column as `u64`.
pub(crate) fn get_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v))
}

/// Converts a `u64` going into the catalog, refusing values over `i64::MAX`.
pub(crate) fn int(value: u64, what: &'static str) -> Result<i64, CatalogError> {
    i64::try_from(value).map_err(|_| CatalogError::TooLarge {
        what,
        len: usize::try_from(value).unwrap_or(usize::MAX),
        max: usize::try_from(i64::MAX).unwrap_or(usize::MAX),
    })
}

/// The current time in nanoseconds since the Unix epoch (0 before 1970, saturating far
/// in the future).
pub(crate) fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Reads a nullable non-negative integer column as `Option<u64>`.
pub(crate) fn get_opt_u64(row: &Row<'_>, idx: usize) -> rusqlite::Result<Option<u64>> {
    match row.get::<_, Option<i64>>(idx)? {
        None => Ok(None),
        Some(v) => u64::try_from(v)
            .map(Some)
            .map_err(|_| rusqlite::Error::IntegralValueOutOfRange(idx, v)),
    }
}

/// Converts a count or cursor from the caller into an SQL integer, saturating (a limit
/// or cursor beyond `i64::MAX` means "all" or "past the end").
pub(crate) fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
