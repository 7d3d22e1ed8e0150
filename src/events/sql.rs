//! The SQL layer the state backends share: one [`Sql`] interface over a SQLite connection or
//! a PostgreSQL client (each also inside a transaction), so every module writes its SQL once.
//!
//! Statements use SQLite's numbered placeholders (`?1`, `?2`); on PostgreSQL they become `$1`,
//! `$2`. Both dialects take `INSERT ... ON CONFLICT DO NOTHING`, `ON CONFLICT(...) DO UPDATE
//! SET c = excluded.c`, `CASE`, `LIMIT`/`OFFSET` and double-quoted identifiers, so that is the
//! SQL written here; where the dialects differ (DDL types, text search, locks), callers ask
//! [`Sql::dialect`]. Values are only integers, text and NULL ([`Value`]), which both map
//! without loss.

use std::collections::HashMap;

/// Which database a statement runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// the embedded SQLite file
    Sqlite,
    /// a PostgreSQL server
    Postgres,
}

/// A failed statement or connection.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// SQLite failed
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (or could not be reached)
    #[error("PostgreSQL: {}", pg_message(.0))]
    Postgres(#[from] postgres::Error),
    /// a value of the wrong kind in a column
    #[error("column {index}: {message}")]
    Column {
        /// 0-based column
        index: usize,
        /// what was found and what was expected
        message: String,
    },
    /// anything else the caller wants to fail the transaction with
    #[error("{0}")]
    Other(String),
}

/// A PostgreSQL error with the server's own message and detail when it sent one.
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

impl SqlError {
    /// Whether the connection this came from is unusable (then it is not put back in a pool).
    pub fn is_connection_lost(&self) -> bool {
        match self {
            SqlError::Postgres(e) => e.is_closed() || e.as_db_error().is_none(),
            _ => false,
        }
    }
}

/// A parameter or column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// NULL
    Null,
    /// a 64-bit integer
    Int(i64),
    /// text
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v.min(i64::MAX as usize) as i64)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Int(v as i64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Value {
        Value::Text(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

impl<T: Clone + Into<Value>> From<&Option<T>> for Value {
    fn from(v: &Option<T>) -> Value {
        v.clone().map_or(Value::Null, Into::into)
    }
}

/// Parameters for a statement: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::events::sql::Value::from($v)),*][..] };
}

/// One result row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    fn at(&self, i: usize) -> Result<&Value, SqlError> {
        self.0.get(i).ok_or_else(|| SqlError::Column {
            index: i,
            message: format!("the row has only {} columns", self.0.len()),
        })
    }

    /// An integer column.
    pub fn int(&self, i: usize) -> Result<i64, SqlError> {
        match self.at(i)? {
            Value::Int(v) => Ok(*v),
            other => Err(SqlError::Column {
                index: i,
                message: format!("expected an integer, found {other:?}"),
            }),
        }
    }

    /// An integer column that may be NULL.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>, SqlError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.int(i).map(Some),
        }
    }

    /// A text column.
    pub fn text(&self, i: usize) -> Result<String, SqlError> {
        match self.at(i)? {
            Value::Text(v) => Ok(v.clone()),
            other => Err(SqlError::Column {
                index: i,
                message: format!("expected text, found {other:?}"),
            }),
        }
    }

    /// A text column that may be NULL.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>, SqlError> {
        match self.at(i)? {
            Value::Null => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

/// An open connection or transaction of either backend.
pub trait Sql {
    /// The database behind it.
    fn dialect(&self) -> Dialect;
    /// Runs a statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64, SqlError>;
    /// Runs a query; all its rows.
    fn rows(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, SqlError>;
    /// Runs several statements without parameters (DDL).
    fn batch(&mut self, sql: &str) -> Result<(), SqlError>;

    /// The first row of a query, if any.
    fn row(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>, SqlError> {
        Ok(self.rows(sql, args)?.into_iter().next())
    }

    /// The first column of the first row as an integer (e.g. `COUNT(*)`).
    fn int(&mut self, sql: &str, args: &[Value]) -> Result<i64, SqlError> {
        match self.row(sql, args)? {
            Some(r) => r.int(0),
            None => Err(SqlError::Other(format!("no row from {sql}"))),
        }
    }
}

/// DDL written once for both: on PostgreSQL, `INTEGER PRIMARY KEY` (SQLite's row id) becomes
/// an identity column and every other `INTEGER` a `BIGINT` (SQLite's integers are 64-bit).
pub fn ddl(dialect: Dialect, text: &str) -> String {
    match dialect {
        Dialect::Sqlite => text.to_string(),
        Dialect::Postgres => text
            .replace(
                "INTEGER PRIMARY KEY",
                "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
            )
            .replace("INTEGER", "BIGINT"),
    }
}

/// `?N` placeholders as PostgreSQL's `$N`, leaving quoted text alone.
pub fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                out.push(c);
            }
            None => match c {
                '\'' | '"' => {
                    quote = Some(c);
                    out.push(c);
                }
                '?' => out.push('$'),
                _ => out.push(c),
            },
        }
    }
    out
}

/// A SQLite connection (or transaction: it derefs to one).
pub struct Lite<'a>(pub &'a rusqlite::Connection);

fn lite_params(args: &[Value]) -> Vec<rusqlite::types::Value> {
    args.iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(*i),
            Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
        })
        .collect()
}

impl Sql for Lite<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64, SqlError> {
        let mut st = self.0.prepare_cached(sql)?;
        Ok(st.execute(rusqlite::params_from_iter(lite_params(args)))? as u64)
    }

    fn rows(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, SqlError> {
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(lite_params(args)))?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(match r.get_ref(i)? {
                    rusqlite::types::ValueRef::Null => Value::Null,
                    rusqlite::types::ValueRef::Integer(v) => Value::Int(v),
                    rusqlite::types::ValueRef::Real(v) => Value::Int(v as i64),
                    rusqlite::types::ValueRef::Text(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                    rusqlite::types::ValueRef::Blob(b) => {
                        Value::Text(String::from_utf8_lossy(b).into_owned())
                    }
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        Ok(self.0.execute_batch(sql)?)
    }
}

impl postgres::types::ToSql for Value {
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres::types::Type;
        match self {
            Value::Null => Ok(postgres::types::IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => i.to_string().to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                _ => s.to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

/// A pooled PostgreSQL connection: the client and the statements prepared on it.
pub struct PgConn {
    /// the client
    pub client: postgres::Client,
    /// prepared statements by their (translated) text
    pub statements: HashMap<String, postgres::Statement>,
}

/// A PostgreSQL client or transaction, with its connection's statement cache.
pub struct Pg<'a, C: postgres::GenericClient> {
    /// the client or transaction
    pub client: &'a mut C,
    /// the connection's prepared statements
    pub statements: &'a mut HashMap<String, postgres::Statement>,
}

impl<C: postgres::GenericClient> Pg<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, SqlError> {
        let text = pg_placeholders(sql);
        if let Some(s) = self.statements.get(&text) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(&text)?;
        // Statements built from user input (event filters) vary; keep the cache bounded.
        if self.statements.len() > 512 {
            self.statements.clear();
        }
        self.statements.insert(text, s.clone());
        Ok(s)
    }
}

fn pg_refs(args: &[Value]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
    args.iter()
        .map(|v| v as &(dyn postgres::types::ToSql + Sync))
        .collect()
}

fn pg_value(row: &postgres::Row, i: usize) -> Result<Value, SqlError> {
    use postgres::types::Type;
    let ty = row.columns()[i].type_().clone();
    let v = match ty {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Value::Int),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| Value::Int(v.into())),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(i)?
            .map(|v| Value::Int(v as i64)),
        _ => row.try_get::<_, Option<String>>(i)?.map(Value::Text),
    };
    Ok(v.unwrap_or(Value::Null))
}

impl<C: postgres::GenericClient> Sql for Pg<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64, SqlError> {
        let st = self.statement(sql)?;
        Ok(self.client.execute(&st, &pg_refs(args))?)
    }

    fn rows(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>, SqlError> {
        let st = self.statement(sql)?;
        let rows = self.client.query(&st, &pg_refs(args))?;
        rows.iter()
            .map(|r| (0..r.len()).map(|i| pg_value(r, i)).collect())
            .map(|vals: Result<Vec<Value>, SqlError>| vals.map(Row))
            .collect()
    }

    fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        Ok(self.client.batch_execute(sql)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_outside_quotes() {
        assert_eq!(
            pg_placeholders("SELECT '?' , \"a?\" FROM t WHERE a = ?1 AND b LIKE ?2 ESCAPE '\\'"),
            "SELECT '?' , \"a?\" FROM t WHERE a = $1 AND b LIKE $2 ESCAPE '\\'"
        );
    }

    #[test]
    fn ddl_widens_integers_on_postgres() {
        let t = "CREATE TABLE o(id INTEGER PRIMARY KEY, n INTEGER NOT NULL)";
        assert_eq!(ddl(Dialect::Sqlite, t), t);
        assert_eq!(
            ddl(Dialect::Postgres, t),
            "CREATE TABLE o(id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT NOT NULL)"
        );
    }

    #[test]
    fn rows_read_back_as_written_on_sqlite() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let mut s = Lite(&c);
        s.batch("CREATE TABLE t(a INTEGER, b TEXT)").unwrap();
        assert_eq!(
            s.exec(
                "INSERT INTO t(a, b) VALUES (?1, ?2), (?3, ?4)",
                args![5i64, "x", None::<i64>, None::<String>]
            )
            .unwrap(),
            2
        );
        let rows = s.rows("SELECT a, b FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(rows[0].opt_int(0).unwrap(), None);
        assert_eq!(rows[0].opt_text(1).unwrap(), None);
        assert_eq!(
            (rows[1].int(0).unwrap(), rows[1].text(1).unwrap()),
            (5, "x".into())
        );
        assert!(rows[1].text(0).is_err(), "an integer is not text");
        assert_eq!(s.int("SELECT COUNT(*) FROM t", &[]).unwrap(), 2);
    }
}
