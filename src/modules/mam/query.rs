//! A query (XEP-0313 §4): the form, the RSM `<set/>` and `<flip-page/>` read into a [`Query`], and
//! one page of it answered from the store ([`run`]).

use super::form::{self, FormError};
use super::rsm::{self, Before, RsmError};
use super::{id, ns, MamOptions};
use crate::store::{ArchivedMessage, MamFilter, Store};
use crate::xml::Element;
use crate::xmpp::StanzaErrorCondition;

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Malformed form or `<set/>`.
    BadRequest,
    /// A form field or RSM feature the archive does not offer.
    NotImplemented,
    /// A page larger than the configured `max_page` (or more `ids` than that).
    TooLarge,
    /// An id in the form or the `<set/>` that is not in the archive.
    UnknownId,
    /// The store failed.
    Internal,
}

impl QueryError {
    /// The stanza error condition the requester gets.
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            QueryError::BadRequest => StanzaErrorCondition::BadRequest,
            QueryError::NotImplemented => StanzaErrorCondition::FeatureNotImplemented,
            QueryError::TooLarge => StanzaErrorCondition::PolicyViolation,
            QueryError::UnknownId => StanzaErrorCondition::ItemNotFound,
            QueryError::Internal => StanzaErrorCondition::InternalServerError,
        }
    }
}

impl From<FormError> for QueryError {
    fn from(e: FormError) -> Self {
        match e {
            FormError::Malformed => QueryError::BadRequest,
            FormError::UnknownField(_) => QueryError::NotImplemented,
            FormError::UnknownId => QueryError::UnknownId,
        }
    }
}

impl From<RsmError> for QueryError {
    fn from(e: RsmError) -> Self {
        match e {
            RsmError::Malformed => QueryError::BadRequest,
            RsmError::IndexUnsupported => QueryError::NotImplemented,
        }
    }
}

/// A query, read and checked against the options (sans-IO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The client's `queryid`, echoed in each result.
    pub queryid: Option<String>,
    /// What the form selects (the whole result set).
    pub filter: MamFilter,
    /// The page: at most this many items ...
    pub max: usize,
    /// ... just after this item (its id as the client wrote it) ...
    pub after: Option<String>,
    /// ... or just before this one, or the last page.
    pub before: Option<Before>,
    /// `<flip-page/>`: send the page newest first.
    pub flip: bool,
}

impl Query {
    /// Reads the `<query/>` payload of an IQ set.
    pub fn parse(query: &Element, opts: &MamOptions) -> Result<Query, QueryError> {
        let filter = form::parse(query)?;
        let set = rsm::parse(query)?;
        // A page past the limit is cut down to it (XEP-0313 §4.3.1: the server MAY return its
        // limited results), as Prosody and ejabberd do: clients ask for more than any server
        // gives (poezio asks for 2000 and, refused, loads no history at all), and the `<fin/>`
        // of a cut page is not `complete`, so they page on.
        let max = set
            .max
            .unwrap_or(u64::from(opts.default_page))
            .min(u64::from(opts.max_page));
        // A list of ids cannot be cut without dropping some the client named.
        if filter
            .ids
            .as_ref()
            .is_some_and(|ids| ids.len() > opts.max_page as usize)
        {
            return Err(QueryError::TooLarge);
        }
        let flip = query
            .child_elements()
            .any(|e| e.name == "flip-page" && e.ns == ns::MAM);
        Ok(Query {
            queryid: query.attr("queryid").map(str::to_owned),
            filter,
            // At most `max_page`, a u32: fits any usize this runs on.
            max: usize::try_from(max).unwrap_or(usize::MAX),
            after: set.after,
            before: set.before,
            flip,
        })
    }
}

/// Counts (RSM `<count/>`, the `index` of `<first/>`) stop here: past it they cost a scan of the
/// archive per page (XEP-0313 §4.3.2 and XEP-0059 let a server leave them out when costly).
pub const COUNT_CAP: u64 = 20_000;

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The items, in the order they are sent (chronological, or newest first when flipped).
    pub rows: Vec<ArchivedMessage>,
    /// First and last item of the page in chronological order (RSM `<first/>` and `<last/>`,
    /// which a flipped page does not change).
    pub first: Option<i64>,
    /// See `first`.
    pub last: Option<i64>,
    /// How many items of the result set come before `first` (none past [`COUNT_CAP`]).
    pub index: Option<u64>,
    /// Size of the whole result set (none past [`COUNT_CAP`]).
    pub count: Option<u64>,
    /// The page reaches the end of the result set in the direction asked.
    pub complete: bool,
}

/// Answers one page of `q` from `owner`'s archive.
pub fn run(store: &Store, owner: &str, q: &Query) -> Result<Page, QueryError> {
    let internal = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "mam: query failed");
        QueryError::Internal
    };
    let f = &q.filter;
    // XEP-0313 §4.1.3: ids named in the form must all be in the archive.
    for known in [f.after_id, f.before_id].into_iter().flatten() {
        if !store.mam_has(owner, known).map_err(internal)? {
            return Err(QueryError::UnknownId);
        }
    }
    if let Some(ids) = &f.ids {
        // Deduplicated by the form: all present when the archive holds as many of them.
        let only = MamFilter {
            ids: Some(ids.clone()),
            ..MamFilter::default()
        };
        if store.mam_count(owner, &only).map_err(internal)? != ids.len() as u64 {
            return Err(QueryError::UnknownId);
        }
    }
    let rsm_id = |s: &str| -> Result<i64, QueryError> {
        let id = id::decode(s).ok_or(QueryError::UnknownId)?;
        if store.mam_has(owner, id).map_err(internal)? {
            Ok(id)
        } else {
            Err(QueryError::UnknownId)
        }
    };
    let mut page = f.clone();
    if let Some(after) = &q.after {
        let a = rsm_id(after)?;
        page.after_id = Some(page.after_id.map_or(a, |x| x.max(a)));
    }
    let backward = q.before.is_some();
    if let Some(Before::Id(before)) = &q.before {
        let b = rsm_id(before)?;
        page.before_id = Some(page.before_id.map_or(b, |x| x.min(b)));
    }
    // One more than the page: whether it exists tells whether the page is complete.
    let mut rows = store
        .mam_query(owner, &page, q.max.saturating_add(1), backward)
        .map_err(internal)?;
    let complete = rows.len() <= q.max;
    if !complete {
        if backward {
            rows.remove(0);
        } else {
            rows.truncate(q.max);
        }
    }
    let first = rows.first().map(|r| r.id);
    let last = rows.last().map(|r| r.id);
    let capped = |filter: &MamFilter| -> Result<Option<u64>, QueryError> {
        let n = store
            .mam_count_upto(owner, filter, COUNT_CAP)
            .map_err(internal)?;
        Ok((n < COUNT_CAP).then_some(n))
    };
    let count = capped(f)?;
    let index = match first {
        Some(first) => capped(&MamFilter {
            before_id: Some(f.before_id.map_or(first, |b| b.min(first))),
            ..f.clone()
        })?,
        None => None,
    };
    if q.flip {
        rows.reverse();
    }
    Ok(Page {
        rows,
        first,
        last,
        index,
        count,
        complete,
    })
}

/// A row for tests: the one place they build [`ArchivedMessage`]s. `with` is the other party,
/// bare or full.
#[cfg(test)]
pub(super) fn test_row(owner: &str, id: i64, with: &str, ts: i64, stanza: &str) -> ArchivedMessage {
    let (bare, res) = with.split_once('/').unwrap_or((with, ""));
    ArchivedMessage {
        owner: owner.into(),
        id,
        with_bare: bare.into(),
        with_res: res.into(),
        outgoing: id % 2 == 0,
        ts,
        stanza: stanza.as_bytes().to_vec(),
        keep: crate::store::Keep::Always,
    }
}

#[cfg(test)]
#[path = "query_tests.rs"]
mod tests;
