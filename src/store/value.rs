//! Statement parameters ([`Arg`]) and column values ([`Row`]) shared by both backends: integers,
//! text, bytes and NULL are all the store keeps (booleans are integers 0/1 on both).

use std::error::Error;

use bytes::BytesMut;
use postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use rusqlite::types::{ToSqlOutput, ValueRef};

use super::{Corruption, StoreError};

/// One statement parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'a> {
    /// SQL NULL.
    Null,
    /// An integer (also booleans, as 0/1).
    Int(i64),
    /// Text.
    Text(&'a str),
    /// Bytes (BLOB on SQLite, BYTEA on PostgreSQL).
    Bytes(&'a [u8]),
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}

impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Int(v.into())
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(v: &'a String) -> Self {
        Arg::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Arg::Bytes(v)
    }
}

impl<'a> From<&'a Vec<u8>> for Arg<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Arg::Bytes(v)
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        v.map_or(Arg::Null, Arg::Text)
    }
}

/// `args![a, b]`: a parameter slice, each converted with `Arg::from`.
macro_rules! args {
    ($($e:expr),* $(,)?) => {
        &[$($crate::store::value::Arg::from($e)),*]
    };
}
pub(crate) use args;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Arg::Null => ValueRef::Null,
            Arg::Int(i) => ValueRef::Integer(i),
            Arg::Text(s) => ValueRef::Text(s.as_bytes()),
            Arg::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Arg<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        // Each arm delegates to the checked conversion, which refuses a column of another type.
        match *self {
            Arg::Null => Ok(IsNull::Yes),
            Arg::Int(i) => match *ty {
                Type::INT4 => i32::try_from(i)?.to_sql_checked(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql_checked(ty, out),
                Type::BOOL => (i != 0).to_sql_checked(ty, out),
                _ => i.to_sql_checked(ty, out),
            },
            Arg::Text(s) => s.to_sql_checked(ty, out),
            Arg::Bytes(b) => b.to_sql_checked(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// One column value as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Val {
    /// SQL NULL.
    #[default]
    Null,
    /// Any integer (and PostgreSQL booleans).
    Int(i64),
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
}

impl Val {
    pub(super) fn from_sqlite(v: ValueRef<'_>) -> Result<Val, StoreError> {
        Ok(match v {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Bytes(b.to_vec()),
            ValueRef::Real(_) => return Err(Corruption::Column("a floating point value").into()),
        })
    }
}

impl<'a> FromSql<'a> for Val {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT8 => Val::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Val::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Val::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Val::Int(bool::from_sql(ty, raw)?.into()),
            Type::BYTEA => Val::Bytes(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Val::Text(String::from_sql(ty, raw)?),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Val::Null)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8 | Type::INT4 | Type::INT2 | Type::BOOL | Type::BYTEA
        ) || <String as FromSql>::accepts(ty)
    }
}

/// One result row; the typed getters take the value out (each column is read once).
#[derive(Debug)]
pub(crate) struct Row(pub(super) Vec<Val>);

impl Row {
    fn take(&mut self, i: usize) -> Val {
        self.0.get_mut(i).map_or(Val::Null, std::mem::take)
    }

    /// Column `i` as an integer.
    pub(crate) fn int(&mut self, i: usize) -> Result<i64, StoreError> {
        match self.take(i) {
            Val::Int(v) => Ok(v),
            _ => Err(Corruption::Column("an integer").into()),
        }
    }

    /// Column `i` as an integer or NULL.
    pub(crate) fn opt_int(&mut self, i: usize) -> Result<Option<i64>, StoreError> {
        match self.take(i) {
            Val::Null => Ok(None),
            Val::Int(v) => Ok(Some(v)),
            _ => Err(Corruption::Column("an integer or NULL").into()),
        }
    }

    /// Column `i` as a boolean (an integer, nonzero is true).
    pub(crate) fn bool(&mut self, i: usize) -> Result<bool, StoreError> {
        self.int(i).map(|v| v != 0)
    }

    /// Column `i` as text.
    pub(crate) fn text(&mut self, i: usize) -> Result<String, StoreError> {
        match self.take(i) {
            Val::Text(v) => Ok(v),
            _ => Err(Corruption::Column("text").into()),
        }
    }

    /// Column `i` as text or NULL.
    pub(crate) fn opt_text(&mut self, i: usize) -> Result<Option<String>, StoreError> {
        match self.take(i) {
            Val::Null => Ok(None),
            Val::Text(v) => Ok(Some(v)),
            _ => Err(Corruption::Column("text or NULL").into()),
        }
    }

    /// Column `i` as bytes (SQLite may hand back text for a BLOB column written as text).
    pub(crate) fn bytes(&mut self, i: usize) -> Result<Vec<u8>, StoreError> {
        match self.take(i) {
            Val::Bytes(v) => Ok(v),
            Val::Text(v) => Ok(v.into_bytes()),
            _ => Err(Corruption::Column("bytes").into()),
        }
    }
}
