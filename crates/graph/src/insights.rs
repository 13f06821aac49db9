//! Account and media insights.

use crate::Page;
use crate::client::{AccountAuth, GraphClient, Response, seg};
use crate::error::GraphError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InsightValue {
    pub value: serde_json::Value,
    #[serde(default)]
    pub end_time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TotalValue {
    pub value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Insight {
    pub name: String,
    pub period: String,
    #[serde(default)]
    pub values: Vec<InsightValue>,
    #[serde(default)]
    pub total_value: Option<TotalValue>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub id: String,
}

/// The query of `GET /<IG_ID>/insights`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsightsQuery {
    pub metrics: Vec<String>,
    pub period: String,
    /// `time_series` or `total_value`.
    pub metric_type: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub breakdown: Option<String>,
}

impl GraphClient {
    /// `GET /<IG_ID>/insights?metric=…&period=…`. Missing data is an empty list, not zeros.
    pub async fn account_insights(
        &self,
        auth: &AccountAuth,
        ig_id: &str,
        q: &InsightsQuery,
    ) -> Result<Response<Vec<Insight>>, GraphError> {
        let mut query = vec![("metric", q.metrics.join(",")), ("period", q.period.clone())];
        if let Some(t) = &q.metric_type {
            query.push(("metric_type", t.clone()));
        }
        if let Some(s) = q.since {
            query.push(("since", s.to_string()));
        }
        if let Some(u) = q.until {
            query.push(("until", u.to_string()));
        }
        if let Some(b) = &q.breakdown {
            query.push(("breakdown", b.clone()));
        }
        let page: Response<Page<Insight>> =
            self.get("insights", auth, &format!("{}/insights", seg(ig_id)?), &query).await?;
        Ok(page.map(|p| p.data))
    }

    /// `GET /<MEDIA_ID>/insights?metric=…` (lifetime values).
    pub async fn media_insights(
        &self,
        auth: &AccountAuth,
        media_id: &str,
        metrics: &[&str],
    ) -> Result<Response<Vec<Insight>>, GraphError> {
        let page: Response<Page<Insight>> = self
            .get("media_insights", auth, &format!("{}/insights", seg(media_id)?), &[("metric", metrics.join(","))])
            .await?;
        Ok(page.map(|p| p.data))
    }
}
