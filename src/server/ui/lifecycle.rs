//! Pools (utilization against the warning and critical thresholds, the
//! capacity forecast, the retired flag, and the address records by state) and one subscriber's addresses with their
//! lifecycle history, from the LifecycleService.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use maud::html;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_server::LifecycleService;
use tonic::Status;

use super::UiState;
use super::layout::{self, seg, time};
use super::session::Session;

fn api(state: &UiState) -> Result<crate::lifecycle_api::LifecycleApi, Status> {
    state.apis.lifecycle.clone().ok_or_else(|| {
        Status::unimplemented(
            "address lifecycles are not served here: the store has no domain database",
        )
    })
}

fn family(f: i32) -> &'static str {
    match pb::AddressFamily::try_from(f) {
        Ok(pb::AddressFamily::Ipv4) => "IPv4",
        Ok(pb::AddressFamily::Ipv6) => "IPv6",
        _ => "?",
    }
}

fn lifecycle_state(s: i32) -> &'static str {
    pb::LifecycleState::try_from(s)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN")
        .trim_start_matches("LIFECYCLE_STATE_")
}

/// `GET /ui/pools`.
pub async fn pools(State(state): State<UiState>, session: Session) -> Response {
    let api = match api(&state) {
        Ok(a) => a,
        Err(status) => return layout::status_page(&session, &status),
    };
    let pools = match api
        .list_pools(session.request(pb::ListPoolsRequest {}))
        .await
    {
        Ok(p) => p.into_inner().pools,
        Err(status) => return layout::status_page(&session, &status),
    };
    let summary = api
        .get_lifecycle_summary(session.request(pb::GetLifecycleSummaryRequest {}))
        .await
        .map(|r| r.into_inner().counts)
        .unwrap_or_default();
    let body = html! {
        h1 { "Pools" }
        @if pools.is_empty() { p.muted { "No pools." } }
        div.pools {
            @for p in &pools {
                @let level = if p.utilization_percent >= f64::from(p.critical_threshold_percent) { "critical" }
                    else if p.utilization_percent >= f64::from(p.warning_threshold_percent) { "warning" } else { "ok" };
                div class={ "pool " (level) } data-pool=(p.name) {
                    div.pool-head {
                        strong { (p.name) } " " span.muted { (family(p.family)) " " (p.cidr) " /" (p.prefix_length) }
                        @if p.retired { " " (layout::badge("RETIRED")) }
                    }
                    meter min="0" max="100" value=(format!("{:.1}", p.utilization_percent))
                        low=(p.warning_threshold_percent) high=(p.critical_threshold_percent) optimum="0"
                        title={ (format!("{:.1}", p.utilization_percent)) "%" } {}
                    div.small {
                        strong { (format!("{:.1}", p.utilization_percent)) "%" } " · " (p.in_use) " of " (p.capacity) " in use"
                        " · warning at " (p.warning_threshold_percent) "%, critical at " (p.critical_threshold_percent) "%"
                        " · " span class={ "level " (level) } { (level) }
                    }
                    div.small.forecast {
                        @if p.growth_per_day > 0.0 {
                            "growing " (format!("{:.1}", p.growth_per_day)) " per day"
                            @let full = time(p.exhaustion_forecast.as_ref());
                            @if !full.is_empty() { " · full by " (full) }
                        } @else { "not growing" }
                        " (last 30 days)"
                    }
                }
            }
        }
        @if !summary.is_empty() {
            h2 { "Address records by state" }
            table.summary {
                thead { tr { th { "Family" } th { "State" } th { "Records" } } }
                tbody { @for c in &summary {
                    tr { td { (family(c.family)) } td { (lifecycle_state(c.state)) } td { (c.count) } }
                } }
            }
        }
    };
    layout::page(Some(&session), "Pools", "pools", body)
}

/// `GET /ui/subscribers?id=…`: the subscriber's address records, every
/// one kept (revoked ones too), with the times of each lifecycle change
/// and the run that made the last one.
pub async fn subscriber(
    State(state): State<UiState>,
    session: Session,
    RawQuery(q): RawQuery,
) -> Response {
    let id = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let form = html! {
        form.filters method="get" action="/ui/subscribers" {
            label { "Subscriber id" input name="id" value=(id) placeholder="sub-1001" required; }
            button.primary type="submit" { "Show" }
        }
    };
    if id.is_empty() {
        let body = html! { h1 { "Subscribers" } (form) };
        return layout::page(Some(&session), "Subscribers", "subscribers", body);
    }
    let api = match api(&state) {
        Ok(a) => a,
        Err(status) => return layout::status_page(&session, &status),
    };
    let records = match api
        .get_subscriber_addresses(session.request(pb::GetSubscriberAddressesRequest {
            subscriber_id: id.clone(),
        }))
        .await
    {
        Ok(r) => r.into_inner().addresses,
        Err(status) => return layout::status_page(&session, &status),
    };
    let body = html! {
        h1 { "Subscriber " (id) }
        (form)
        p { a href={ "/ui/runs?search=" (seg(&format!("subscriber_id={id}"))) } { "Runs of this subscriber" } }
        @if records.is_empty() { p.muted { "No address records." } }
        @for r in &records {
            div.address data-address=(r.address) {
                div.step-head {
                    strong.mono { (r.address) } " " span.muted { (family(r.family)) } " " (layout::badge(lifecycle_state(r.state)))
                }
                ol.lifecycle {
                    @for (what, at) in [("allocated", &r.allocated_at), ("activated", &r.activated_at), ("suspended", &r.suspended_at), ("revoked", &r.revoked_at)] {
                        @if at.is_some() { li { (what) " " (time(at.as_ref())) " UTC" } }
                    }
                }
                @if !r.workflow_id.is_empty() {
                    div.small { "Last changed by run " a.mono href={ "/ui/runs/" (r.workflow_id) } { (r.workflow_id) } }
                }
            }
        }
    };
    layout::page(
        Some(&session),
        &format!("Subscriber {id}"),
        "subscribers",
        body,
    )
}
