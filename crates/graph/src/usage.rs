use http::HeaderMap;
use std::collections::BTreeMap;
use std::time::Duration;

/// `X-App-Usage`: percentages of the app's budget.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct AppUsage {
    #[serde(default)]
    pub call_count: u32,
    #[serde(default)]
    pub total_time: u32,
    #[serde(default)]
    pub total_cputime: u32,
}

/// One item of `X-Business-Use-Case-Usage` for one business object (the Instagram account).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct BusinessUsage {
    /// The business object the figures are for (filled from the header's key).
    #[serde(default)]
    pub id: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub call_count: u32,
    #[serde(default)]
    pub total_time: u32,
    #[serde(default)]
    pub total_cputime: u32,
    /// Minutes until calls are accepted again; 0 when not throttled.
    #[serde(default)]
    pub estimated_time_to_regain_access: u32,
}

/// The usage headers of one response. Percentages: throttling may begin at 100.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub app: Option<AppUsage>,
    pub business: Vec<BusinessUsage>,
}

pub const APP_USAGE_HEADER: &str = "x-app-usage";
pub const BUC_USAGE_HEADER: &str = "x-business-use-case-usage";

impl Usage {
    /// Parses both headers; a malformed header is ignored (logged at debug), never an error,
    /// because the call itself succeeded or failed on its own terms.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let app = headers.get(APP_USAGE_HEADER).and_then(|v| {
            serde_json::from_slice::<AppUsage>(v.as_bytes())
                .inspect_err(|e| tracing::debug!(error = %e, "unparseable X-App-Usage"))
                .ok()
        });
        let business = headers
            .get(BUC_USAGE_HEADER)
            .and_then(|v| {
                serde_json::from_slice::<BTreeMap<String, Vec<BusinessUsage>>>(v.as_bytes())
                    .inspect_err(|e| tracing::debug!(error = %e, "unparseable X-Business-Use-Case-Usage"))
                    .ok()
            })
            .map(|m| {
                m.into_iter()
                    .flat_map(|(id, items)| items.into_iter().map(move |u| BusinessUsage { id: id.clone(), ..u }))
                    .collect()
            })
            .unwrap_or_default();
        Self { app, business }
    }

    /// The highest percentage in either header (0 when none was sent).
    pub fn max_percent(&self) -> u32 {
        let app = self.app.iter().flat_map(|a| [a.call_count, a.total_time, a.total_cputime]);
        let buc = self.business.iter().flat_map(|b| [b.call_count, b.total_time, b.total_cputime]);
        app.chain(buc).max().unwrap_or(0)
    }

    /// The longest `estimated_time_to_regain_access`, if any is above zero.
    pub fn regain_access_in(&self) -> Option<Duration> {
        self.business
            .iter()
            .map(|b| b.estimated_time_to_regain_access)
            .max()
            .filter(|m| *m > 0)
            .map(|m| Duration::from_secs(u64::from(m) * 60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn parses_both_headers_like_meta_sends_them() {
        let mut h = HeaderMap::new();
        h.insert(APP_USAGE_HEADER, HeaderValue::from_static(r#"{"call_count":28,"total_time":25,"total_cputime":25}"#));
        h.insert(
            BUC_USAGE_HEADER,
            HeaderValue::from_static(
                r#"{"1784":[{"type":"instagram","call_count":101,"total_cputime":3,"total_time":4,"estimated_time_to_regain_access":7}]}"#,
            ),
        );
        let u = Usage::from_headers(&h);
        assert_eq!(u.app, Some(AppUsage { call_count: 28, total_time: 25, total_cputime: 25 }));
        assert_eq!(u.business[0].id, "1784");
        assert_eq!(u.business[0].kind, "instagram");
        assert_eq!(u.max_percent(), 101);
        assert_eq!(u.regain_access_in(), Some(Duration::from_secs(420)));
        h.insert(APP_USAGE_HEADER, HeaderValue::from_static("garbage"));
        assert_eq!(Usage::from_headers(&h).app, None);
    }
}
