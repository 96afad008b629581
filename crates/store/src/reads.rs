//! Reads of projections' rows: one query ([`ProjectionQuery`]), a query together with the way
//! its rows become a value ([`Read`]), and several reads answered from one snapshot in one
//! round trip ([`Batch`]).

use std::ops::Range;

use registro_domain::SchoolId;

use crate::{Cell, CellType, EventStore, StoreError};

/// The rows one query answered, each decoded by the query's columns.
pub type Rows = Vec<Vec<Cell>>;

/// One SELECT of a projection's rows, as [`EventStore::query_projections`] takes it: `sql`
/// written once for both backends with `$1`, `$2`... placeholders, its `params`, and the type
/// of each column it returns.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionQuery {
    /// The SELECT.
    pub sql: String,
    /// Its parameters, `$1` first.
    pub params: Vec<Cell>,
    /// The type of each column it returns.
    pub columns: Vec<CellType>,
}

impl ProjectionQuery {
    /// A query.
    #[must_use]
    pub fn new(sql: impl Into<String>, params: Vec<Cell>, columns: &[CellType]) -> Self {
        Self {
            sql: sql.into(),
            params,
            columns: columns.to_vec(),
        }
    }
}

/// How the rows of a read's queries become its value.
type Decode<T> = Box<dyn FnOnce(&[Rows]) -> Result<T, StoreError> + Send>;

/// Queries and how their rows (one list per query, in order) become a `T`: read alone with
/// [`Read::run`] or with others from one snapshot with [`Batch`].
pub struct Read<T> {
    queries: Vec<ProjectionQuery>,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for Read<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Read")
            .field("queries", &self.queries)
            .finish_non_exhaustive()
    }
}

impl<T> Read<T> {
    /// One query and how its rows become a `T`.
    pub fn one(
        query: ProjectionQuery,
        decode: impl FnOnce(&Rows) -> Result<T, StoreError> + Send + 'static,
    ) -> Self {
        Self::many(vec![query], move |rows| match rows {
            [only] => decode(only),
            _ => Err(wrong_count(1, rows.len())),
        })
    }

    /// Several queries and how their rows, one list per query in order, become a `T`.
    pub fn many(
        queries: Vec<ProjectionQuery>,
        decode: impl FnOnce(&[Rows]) -> Result<T, StoreError> + Send + 'static,
    ) -> Self {
        Self {
            queries,
            decode: Box::new(decode),
        }
    }

    /// Reads it alone (its queries from one snapshot).
    ///
    /// # Errors
    /// The store's, and the decoding's.
    pub async fn run(self, store: &dyn EventStore, school: SchoolId) -> Result<T, StoreError> {
        let rows = store.query_projections(school, &self.queries).await?;
        if rows.len() != self.queries.len() {
            return Err(wrong_count(self.queries.len(), rows.len()));
        }
        (self.decode)(&rows)
    }
}

fn wrong_count(asked: usize, answered: usize) -> StoreError {
    StoreError::internal(format!(
        "{asked} projection queries were asked, {answered} answered"
    ))
}

/// Several [`Read`]s of one school answered together: one snapshot, one round trip.
///
/// ```ignore
/// let mut batch = Batch::default();
/// let grades = batch.add(grades_read);
/// let notes = batch.add(notes_read);
/// let mut answers = batch.run(store, school).await?;
/// let (grades, notes) = (answers.take(grades)?, answers.take(notes)?);
/// ```
#[derive(Debug, Default)]
pub struct Batch {
    queries: Vec<ProjectionQuery>,
}

/// Where a [`Read`] added to a [`Batch`] finds its rows in the [`Answers`].
#[must_use = "the ticket takes the read's value from the batch's answers"]
pub struct Ticket<T> {
    at: Range<usize>,
    decode: Decode<T>,
}

impl<T> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Adds a read; its value comes from the answers with the ticket.
    pub fn add<T>(&mut self, read: Read<T>) -> Ticket<T> {
        let start = self.queries.len();
        self.queries.extend(read.queries);
        Ticket {
            at: start..self.queries.len(),
            decode: read.decode,
        }
    }

    /// Runs every query added, from one snapshot.
    ///
    /// # Errors
    /// The store's.
    pub async fn run(
        self,
        store: &dyn EventStore,
        school: SchoolId,
    ) -> Result<Answers, StoreError> {
        let rows = store.query_projections(school, &self.queries).await?;
        if rows.len() != self.queries.len() {
            return Err(wrong_count(self.queries.len(), rows.len()));
        }
        Ok(Answers { rows })
    }
}

/// The rows a [`Batch`] read.
#[derive(Debug)]
pub struct Answers {
    rows: Vec<Rows>,
}

impl Answers {
    /// The value of the read `ticket` stands for.
    ///
    /// # Errors
    /// The read's decoding's; [`StoreError::Internal`] for a ticket of another batch.
    pub fn take<T>(&self, ticket: Ticket<T>) -> Result<T, StoreError> {
        let rows = self
            .rows
            .get(ticket.at.clone())
            .ok_or_else(|| StoreError::internal("a ticket of another batch"))?;
        (ticket.decode)(rows)
    }
}
