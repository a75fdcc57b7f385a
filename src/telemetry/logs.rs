//! JSON log lines that name their trace: each line written inside a span
//! carries `trace_id` and `span_id`, the OpenTelemetry ids the span is
//! exported with (the caller's trace id when the RPC or run joined a
//! `traceparent`). The ids come from the OpenTelemetry layer, which is
//! installed whether or not spans are exported; a line outside every span
//! (start-up, the background loops between runs) has neither field.

use std::fmt;

use opentelemetry::trace::TraceContextExt as _;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent};
use tracing_subscriber::registry::LookupSpan;

/// The JSON event format of `tracing_subscriber` with the trace ids of
/// the event's span in front.
pub struct JsonWithTraceIds {
    inner: Format<Json>,
}

impl Default for JsonWithTraceIds {
    fn default() -> Self {
        Self {
            inner: Format::default().json(),
        }
    }
}

/// The (trace id, span id) of the span the event is written in, as
/// lower-case hex, when that span has valid OpenTelemetry ids.
fn trace_ids<S, N>(ctx: &FmtContext<'_, S, N>, event: &Event<'_>) -> Option<(String, String)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    let span = event
        .parent()
        .and_then(|id| ctx.span(id))
        .or_else(|| ctx.lookup_current())?;
    let id = span.id();
    // The OpenTelemetry layer started the span when it was entered; this
    // reads its context (no extension lock is held here).
    let cx = tracing::dispatcher::get_default(|d| tracing_opentelemetry::get_otel_context(&id, d))?;
    let otel = cx.span();
    let sc = otel.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match (trace_ids(ctx, event), line.strip_prefix('{')) {
            (Some((trace, span)), Some(rest)) => write!(
                writer,
                "{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",{rest}"
            ),
            _ => writer.write_str(&line),
        }
    }
}

/// The fields formatter the JSON lines need.
pub fn fields() -> JsonFields {
    JsonFields::new()
}
