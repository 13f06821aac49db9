//! W3C trace context (`traceparent`, `tracestate`) in NATS headers, so one trace runs from the
//! webhook POST through NATS to the Graph API call.

use async_nats::HeaderMap;
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // from_str rejects CR/LF instead of panicking like the &str conversion would.
        if let Ok(v) = value.parse::<async_nats::HeaderValue>() {
            self.0.insert(key, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the trace context of `cx` into `headers` (nothing when `cx` carries no span).
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
    }
}

/// Reads a trace context from `headers`; `None` when there is none, so callers only set a
/// parent when one exists (an empty parent would orphan the span tree).
pub fn extract(headers: &HeaderMap) -> Option<Context> {
    headers.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace context of the current `tracing` span.
pub fn current() -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    tracing::Span::current().context()
}
