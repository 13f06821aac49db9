//! Cursor paging: `{"data":[…],"paging":{"cursors":{"before","after"},"previous","next"}}`.
//! Stop when `next` is absent (an empty page can still have one); cursors are never stored.

use crate::client::{AccountAuth, GraphClient, Response};
use crate::error::GraphError;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Cursors {
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Paging {
    #[serde(default)]
    pub cursors: Option<Cursors>,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub previous: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

impl<T> Page<T> {
    /// The cursor for the following page, or `None` when this is the last page.
    pub fn next_cursor(&self) -> Option<String> {
        let paging = self.paging.as_ref()?;
        let next = paging.next.as_ref()?;
        paging.cursors.as_ref().and_then(|c| c.after.clone()).or_else(|| after_from_url(next))
    }
}

fn after_from_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    parsed.query_pairs().find(|(k, _)| k == "after").map(|(_, v)| v.into_owned())
}

/// A listing request that can be repeated with `after=<cursor>`.
#[derive(Debug, Clone)]
pub(crate) struct Listing {
    pub endpoint: &'static str,
    pub path: String,
    pub query: Vec<(&'static str, String)>,
}

impl GraphClient {
    /// One page of a listing.
    pub(crate) async fn list_page<T: DeserializeOwned>(
        &self,
        auth: &AccountAuth,
        listing: &Listing,
        after: Option<&str>,
    ) -> Result<Response<Page<T>>, GraphError> {
        let mut query = listing.query.clone();
        if let Some(a) = after {
            query.push(("after", a.to_owned()));
        }
        self.get(listing.endpoint, auth, &listing.path, &query).await
    }

    /// Every page of a listing as a stream (with each page's usage headers). The first error
    /// ends the stream after being yielded. The token is re-sent through the header on every
    /// page rather than following Meta's `next` URL, which carries it in the query string.
    pub(crate) fn list_pages<T: DeserializeOwned + Send + 'static>(
        &self,
        auth: &AccountAuth,
        listing: Listing,
    ) -> impl Stream<Item = Result<Response<Page<T>>, GraphError>> + Send + use<T> {
        let client = self.clone();
        let auth = auth.clone();
        futures::stream::unfold(Some(None::<String>), move |state| {
            let client = client.clone();
            let auth = auth.clone();
            let listing = listing.clone();
            async move {
                let after = state?;
                match client.list_page::<T>(&auth, &listing, after.as_deref()).await {
                    Ok(page) => {
                        let next = page.value.next_cursor().map(Some);
                        Some((Ok(page), next))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
    }

    /// Every item of a listing as a stream.
    pub(crate) fn list_items<T: DeserializeOwned + Send + 'static>(
        &self,
        auth: &AccountAuth,
        listing: Listing,
    ) -> impl Stream<Item = Result<T, GraphError>> + Send + use<T> {
        self.list_pages::<T>(auth, listing).flat_map(|page| {
            let items: Vec<Result<T, GraphError>> = match page {
                Ok(p) => p.value.data.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        })
    }
}

impl GraphClient {
    /// [`GraphClient::list_items`] for a listing whose ids may have failed validation.
    pub(crate) fn list_or_err<T: DeserializeOwned + Send + 'static>(
        &self,
        auth: &AccountAuth,
        listing: Result<Listing, GraphError>,
    ) -> BoxStream<'static, Result<T, GraphError>> {
        match listing {
            Ok(l) => self.list_items(auth, l).boxed(),
            Err(e) => futures::stream::iter([Err(e)]).boxed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cursor_needs_next() {
        let p: Page<u8> = serde_json::from_str(r#"{"data":[],"paging":{"cursors":{"after":"A"}}}"#).unwrap();
        assert_eq!(p.next_cursor(), None);
        let p: Page<u8> =
            serde_json::from_str(r#"{"data":[],"paging":{"cursors":{"after":"A"},"next":"https://x/y?after=B"}}"#)
                .unwrap();
        assert_eq!(p.next_cursor().as_deref(), Some("A"));
        let p: Page<u8> =
            serde_json::from_str(r#"{"data":[1],"paging":{"next":"https://x/y?limit=2&after=B"}}"#).unwrap();
        assert_eq!(p.next_cursor().as_deref(), Some("B"));
    }
}
