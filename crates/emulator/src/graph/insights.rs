//! Account and media insights.

use super::*;

impl State {
    // ---------- Insights ----------

    pub(crate) fn series_value(account: &str, metric: &str, day: i64) -> u64 {
        // FNV-1a: the same account, metric and day always give the same number.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in account.bytes().chain(metric.bytes()).chain(day.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h % 1000
    }

    pub(crate) fn title(metric: &str) -> String {
        let mut t = metric.replace('_', " ");
        if let Some(f) = t.get_mut(0..1) {
            f.make_ascii_uppercase();
        }
        t
    }

    pub(crate) fn account_insights(&self, account: &str, p: &Params) -> Result<Value, MetaError> {
        let metrics: Vec<String> = p
            .str("metric")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        if metrics.is_empty() {
            return Err(MetaError::param("The parameter metric is required"));
        }
        for m in &metrics {
            if RETIRED_METRICS.contains(&m.as_str()) {
                return Err(MetaError::param(format!(
                    "metric[{m}] is no longer supported in this API version; use views"
                )));
            }
            if !SUPPORTED_ACCOUNT_METRICS.contains(&m.as_str()) {
                return Err(MetaError::param(format!(
                    "metric[0] must be one of the following values: {}",
                    SUPPORTED_ACCOUNT_METRICS.join(", ")
                )));
            }
        }
        let period = p.str("period").ok_or_else(|| MetaError::param("The parameter period is required"))?;
        if !matches!(period.as_str(), "day" | "week" | "days_28" | "month" | "lifetime" | "total_over_range") {
            return Err(MetaError::param(
                "period must be one of day, week, days_28, month, lifetime, total_over_range",
            ));
        }
        let metric_type = p.str("metric_type").unwrap_or_else(|| "time_series".into());
        if metric_type == "total_value" && metrics.iter().any(|m| m == "follower_count") {
            return Err(MetaError::param("follower_count does not support the total_value metric_type"));
        }
        let now_s = self.now() / 1000;
        let until = p.str("until").and_then(|s| s.parse::<i64>().ok()).unwrap_or(now_s);
        let since = p.str("since").and_then(|s| s.parse::<i64>().ok()).unwrap_or(until - 2 * 86_400);
        if until < since || until - since > 30 * 86_400 {
            return Err(MetaError::param("There cannot be more than 30 days (2592000 s) between since and until"));
        }
        let followers = self.accounts.get(account).map(|a| a.followers).unwrap_or(0);
        let mut data = Vec::new();
        for m in &metrics {
            if followers < 100 && matches!(m.as_str(), "follower_count" | "online_followers") {
                continue;
            }
            let first_day = since.div_euclid(86_400) + 1;
            let last_day = until.div_euclid(86_400);
            let days: Vec<i64> = (first_day..=last_day.max(first_day)).collect();
            let id = format!("{account}/insights/{m}/{period}");
            if metric_type == "total_value" {
                let total: u64 = days.iter().map(|d| Self::series_value(account, m, *d)).sum();
                data.push(json!({"name": m, "period": period, "title": Self::title(m), "description": format!("{} of the account", Self::title(m)), "total_value": {"value": total}, "id": id}));
            } else {
                let values: Vec<Value> = days
                    .iter()
                    .map(|d| json!({"value": Self::series_value(account, m, *d), "end_time": self.time((d * 86_400 + 8 * 3600) * 1000)}))
                    .collect();
                data.push(json!({"name": m, "period": period, "values": values, "title": Self::title(m), "description": format!("{} of the account", Self::title(m)), "id": id}));
            }
        }
        Ok(json!({"data": data}))
    }

    pub(crate) fn media_insights(&self, media: &str, p: &Params) -> Result<Value, MetaError> {
        let metrics: Vec<String> = p
            .str("metric")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        if metrics.is_empty() {
            return Err(MetaError::param("The parameter metric is required"));
        }
        let m = self.media.get(media).ok_or_else(|| MetaError::no_object(media, "get"))?;
        if m.carousel_child {
            return Err(MetaError::param("Insights are not available for carousel children"));
        }
        if m.media_product_type == "STORY" && self.now() - m.created_ms > DAY_MS {
            return Err(MetaError::new(10, None, "(#10) Not enough viewers for the media to show insights"));
        }
        let mut data = Vec::new();
        for metric in &metrics {
            if RETIRED_METRICS.contains(&metric.as_str()) || !SUPPORTED_MEDIA_METRICS.contains(&metric.as_str()) {
                return Err(MetaError::param(format!(
                    "The Media Insights API does not support the {metric} metric for this media product type"
                )));
            }
            data.push(json!({
                "name": metric, "period": "lifetime",
                "values": [{"value": Self::series_value(media, metric, 0)}],
                "title": Self::title(metric),
                "description": format!("The number of {} on your media.", metric.replace('_', " ")),
                "id": format!("{media}/insights/{metric}/lifetime"),
            }));
        }
        Ok(json!({"data": data}))
    }
}
