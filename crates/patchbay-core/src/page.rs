//! Keyset pagination as Stripe does it: `limit`, then either `starting_after` or
//! `ending_before` an id, newest first. Never OFFSET.

use crate::ValidationError;

/// Default number of items per page.
pub const DEFAULT_LIMIT: u32 = 10;
/// Largest page.
pub const MAX_LIMIT: u32 = 100;

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor<I> {
    /// The newest items.
    First,
    /// Items older than this id (the next page).
    After(I),
    /// Items newer than this id (the previous page).
    Before(I),
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest<I> {
    /// Items wanted, 1 to [`MAX_LIMIT`].
    pub limit: u32,
    /// Where to start.
    pub cursor: Cursor<I>,
}

impl<I> PageRequest<I> {
    /// Checks the limit and that at most one cursor is given.
    pub fn new(
        limit: Option<u32>,
        starting_after: Option<I>,
        ending_before: Option<I>,
    ) -> Result<Self, ValidationError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ValidationError::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}; got {limit}."),
            ));
        }
        let cursor = match (starting_after, ending_before) {
            (Some(_), Some(_)) => {
                return Err(ValidationError::invalid(
                    "ending_before",
                    "starting_after and ending_before cannot be used together.",
                ));
            }
            (Some(id), None) => Cursor::After(id),
            (None, Some(id)) => Cursor::Before(id),
            (None, None) => Cursor::First,
        };
        Ok(Self { limit, cursor })
    }

    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            limit: limit.clamp(1, MAX_LIMIT),
            cursor: Cursor::First,
        }
    }
}

/// One page of results, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Whether more items lie beyond this page in the direction of travel.
    pub has_more: bool,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows fetched in the cursor's direction:
    /// the extra row only signals `has_more`. Rows fetched for `Before` come oldest
    /// first and are reversed so every page reads newest first.
    pub fn from_rows<I>(mut rows: Vec<T>, request: &PageRequest<I>) -> Self {
        let limit = request.limit as usize;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        if matches!(request.cursor, Cursor::Before(_)) {
            rows.reverse();
        }
        Self {
            data: rows,
            has_more,
        }
    }

    /// Transforms every item.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            has_more: self.has_more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_limit_and_cursors() {
        assert_eq!(PageRequest::<u8>::new(None, None, None).unwrap().limit, 10);
        assert_eq!(
            PageRequest::<u8>::new(Some(0), None, None)
                .unwrap_err()
                .param,
            "limit"
        );
        assert!(PageRequest::<u8>::new(Some(101), None, None).is_err());
        assert!(PageRequest::new(Some(100), Some(1u8), None).is_ok());
        assert_eq!(
            PageRequest::new(None, Some(1u8), Some(2u8))
                .unwrap_err()
                .param,
            "ending_before"
        );
    }

    #[test]
    fn from_rows_trims_and_orders() {
        let req = PageRequest::new(Some(2), None::<u8>, Some(9)).unwrap();
        let page = Page::from_rows(vec![1, 2, 3], &req);
        assert_eq!(page.data, vec![2, 1]);
        assert!(page.has_more);
        let req = PageRequest::<u8>::first(5);
        let page = Page::from_rows(vec![3, 2], &req);
        assert_eq!(page.data, vec![3, 2]);
        assert!(!page.has_more);
    }
}
