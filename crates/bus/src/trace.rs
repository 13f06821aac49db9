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

/// Writes the trace context of `cx` into `headers` (nothing when `cx` carries no span): what
/// `TraceContextPropagator` writes, formatted without its intermediate strings, and without the
/// empty `tracestate` header it adds to every message.
pub fn inject(cx: &Context, headers: &mut HeaderMap) {
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return;
    }
    let mut parent = String::with_capacity(55);
    parent.push_str("00-");
    igrelay_core::ids::push_hex(&mut parent, &sc.trace_id().to_bytes());
    parent.push('-');
    igrelay_core::ids::push_hex(&mut parent, &sc.span_id().to_bytes());
    parent.push_str(if sc.is_sampled() { "-01" } else { "-00" });
    headers.insert(async_nats::HeaderName::from_static(TRACEPARENT), parent);
    let state = sc.trace_state().header();
    if !state.is_empty() {
        HeaderInjector(headers).set(TRACESTATE, state);
    }
}

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// Reads a trace context from `headers`; `None` when there is none, so callers only set a
/// parent when one exists (an empty parent would orphan the span tree).
pub fn extract(headers: &HeaderMap) -> Option<Context> {
    headers.get(TRACEPARENT)?;
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace context of the current `tracing` span.
pub fn current() -> Context {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    tracing::Span::current().context()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    fn context(flags: TraceFlags, state: TraceState) -> Context {
        let sc = SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
            SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
            flags,
            true,
            state,
        );
        Context::new().with_remote_span_context(sc)
    }

    #[test]
    fn writes_what_the_w3c_propagator_writes_and_reads_back() {
        for flags in [TraceFlags::SAMPLED, TraceFlags::default()] {
            let state = TraceState::from_key_value([("congo", "t61rcWkgMzE")]).unwrap();
            let cx = context(flags, state);
            let mut ours = HeaderMap::new();
            inject(&cx, &mut ours);
            let mut reference = HeaderMap::new();
            TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut reference));
            assert_eq!(ours.get(TRACEPARENT), reference.get(TRACEPARENT));
            assert_eq!(ours.get(TRACESTATE).unwrap().as_str(), "congo=t61rcWkgMzE");
            let back = extract(&ours).unwrap();
            assert_eq!(back.span().span_context().trace_id(), cx.span().span_context().trace_id());
            assert_eq!(back.span().span_context().is_sampled(), flags.is_sampled());
        }
        assert_eq!(
            {
                let mut h = HeaderMap::new();
                inject(&context(TraceFlags::SAMPLED, TraceState::default()), &mut h);
                (h.get(TRACEPARENT).unwrap().as_str().to_owned(), h.get(TRACESTATE).is_none())
            },
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(), true),
            "no empty tracestate header"
        );
    }

    #[test]
    fn no_span_no_header() {
        let mut h = HeaderMap::new();
        inject(&Context::new(), &mut h);
        assert!(h.is_empty());
    }
}
