//! Logs and traces.
//!
//! Logs are JSON lines on stderr (or readable text with `log.format = "text"`), filtered by
//! `RUST_LOG` (default `info`). Spans always get W3C trace ids, so the trace context of a webhook
//! travels in NATS headers even when no collector is configured (then unsampled, as nothing
//! records them); when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP/gRPC.

use anyhow::Context as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

/// Flushes spans on drop.
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs logging and tracing for the process. Calling it again (as tests do) keeps the first
/// installation and returns a guard that flushes nothing.
pub fn init(service: &'static str, format: LogFormat) -> anyhow::Result<TelemetryGuard> {
    static INSTALLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if INSTALLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Ok(TelemetryGuard { provider: None });
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let otlp = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    if otlp {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()
            .context("cannot build the OTLP exporter from OTEL_EXPORTER_OTLP_* settings")?;
        builder = builder.with_batch_exporter(exporter);
    } else if std::env::var_os("OTEL_TRACES_SAMPLER").is_none() {
        // Nothing records spans, so none is marked sampled. Trace ids still travel (logs and
        // downstream services correlate on them), and nats-server skips the message-trace
        // header parsing it does for every sampled `traceparent`.
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)));
    }
    let provider = builder.build();
    let tracer = provider.tracer("igrelay");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,opentelemetry=warn,async_nats=warn"))
    };
    let fmt_layer = match format {
        LogFormat::Json => {
            tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter()).boxed()
        }
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter()).boxed(),
    };
    // The trace layer sees info-level spans whatever RUST_LOG says (trace context must travel
    // even when logs are quiet) and no log events (they would become span events, costly on
    // every request and already in the logs).
    // Busy/idle timing, thread and source-location attributes cost work on every poll of every
    // request's span and say little here: off.
    let otel_layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|m| m.is_span() && *m.level() <= tracing::Level::INFO));
    if tracing_subscriber::registry().with(fmt_layer).with(otel_layer).try_init().is_ok() {
        tracing::info!(service, otlp, "telemetry ready");
    }
    Ok(TelemetryGuard { provider: Some(provider) })
}

/// Reads a W3C trace context from HTTP headers; `None` when the request carries none.
pub fn extract_http(headers: &http::HeaderMap) -> Option<opentelemetry::Context> {
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    struct H<'a>(&'a http::HeaderMap);
    impl Extractor for H<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    headers.get("traceparent")?;
    let cx = TraceContextPropagator::new().extract(&H(headers));
    cx.span().span_context().is_valid().then_some(cx)
}
