//! The route table of the JSON/HTTP API: each route names its gRPC method
//! and calls that method's implementation, the one the gRPC server serves.
//! The router ([`super::dispatch`]) and the OpenAPI document
//! ([`super::openapi`]) are both read from this table.

use axum::http::Method;
use futures::future::BoxFuture;
use sagaflow_proto::v1::lifecycle_service_server::LifecycleService;
use sagaflow_proto::v1::schedule_service_server::ScheduleService;
use sagaflow_proto::v1::workflow_service_server::WorkflowService;
use serde_json::Value;
use tonic::Status;

use super::call::Invocation;
use crate::server::apis::Apis;

/// A unary method: the request's JSON in, the answer's JSON out.
pub type UnaryFn = fn(&Apis, Invocation) -> BoxFuture<'static, Result<Value, Status>>;

/// How a route answers.
#[derive(Clone, Copy)]
pub enum Call {
    Unary(UnaryFn),
    /// WatchWorkflow, as Server-Sent Events.
    Watch,
}

/// One route.
pub struct Route {
    pub method: Method,
    /// `{name}` is a field of the request taken from the path; a segment
    /// `{name}:verb` ends with the custom verb.
    pub path: &'static str,
    /// `Service/Method` of `sagaflow.v1`.
    pub rpc: &'static str,
    /// Query parameters named otherwise than their field (the singular
    /// `state` for the repeated `states`).
    pub query_names: &'static [(&'static str, &'static str)],
    pub call: Call,
    /// The method that answers instead when the query asks for a page.
    pub pages: Option<Pages>,
}

/// A route whose answer may come in pages: `rpc` answers when the query
/// names a field of its request that the route's own method lacks
/// (`page_size`, `page_token`); without one the route's method answers
/// the whole, as it always did.
#[derive(Clone, Copy)]
pub struct Pages {
    /// `Service/Method` of `sagaflow.v1`.
    pub rpc: &'static str,
    pub call: Call,
}

impl Route {
    /// Whether the request comes in the query string (GET, DELETE) rather
    /// than in a JSON body.
    pub fn takes_query(&self) -> bool {
        self.method == Method::GET || self.method == Method::DELETE
    }

    /// The method that answers the query `query`: its `Service/Method` and
    /// call (the paging method when the query asks for a page).
    pub fn answered_by(&self, query: Option<&str>) -> (&'static str, Call) {
        let paged = self.pages.filter(|p| {
            let (Some(own), Some(paging)) = (
                sagaflow_proto::mapping::method(self.rpc),
                sagaflow_proto::mapping::method(p.rpc),
            ) else {
                return false;
            };
            let (own, paging) = (own.input(), paging.input());
            form_urlencoded::parse(query.unwrap_or("").as_bytes()).any(|(param, _)| {
                own.get_field_by_name(&param).is_none()
                    && paging.get_field_by_name(&param).is_some()
            })
        });
        match paged {
            Some(p) => (p.rpc, p.call),
            None => (self.rpc, self.call),
        }
    }

    /// The request field a query parameter sets.
    pub fn field_of<'a>(&self, param: &'a str) -> &'a str {
        self.query_names
            .iter()
            .find(|(p, _)| *p == param)
            .map_or(param, |(_, f)| f)
    }
}

fn lifecycle(apis: &Apis) -> Result<crate::lifecycle_api::LifecycleApi, Status> {
    apis.lifecycle.clone().ok_or_else(|| {
        Status::unimplemented(
            "LifecycleService is not served here: the store has no domain database",
        )
    })
}

macro_rules! unary {
    ($api:expr, $method:ident) => {{
        fn call(apis: &Apis, inv: Invocation) -> BoxFuture<'static, Result<Value, Status>> {
            let api: Result<_, Status> = $api(apis);
            Box::pin(async move {
                let api = api?;
                inv.run(|r| async move { api.$method(r).await }).await
            })
        }
        Call::Unary(call)
    }};
}

macro_rules! route {
    ($method:ident $path:literal => $rpc:literal, $call:expr) => {
        route!($method $path => $rpc, $call, &[])
    };
    ($method:ident $path:literal => $rpc:literal, $call:expr, $names:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            rpc: $rpc,
            query_names: $names,
            call: $call,
            pages: None,
        }
    };
    ($method:ident $path:literal => $rpc:literal, $call:expr, pages $prpc:literal => $pcall:expr) => {
        Route {
            pages: Some(Pages { rpc: $prpc, call: $pcall }),
            ..route!($method $path => $rpc, $call)
        }
    };
}

fn workflows(apis: &Apis) -> Result<sagaflow_engine::api::WorkflowApi, Status> {
    Ok(apis.workflows.clone())
}

fn schedules(apis: &Apis) -> Result<sagaflow_engine::api::ScheduleApi, Status> {
    Ok(apis.schedules.clone())
}

/// Every route of the API.
pub fn routes() -> &'static [Route] {
    static ROUTES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        vec![
            route!(POST "/v1/workflows" => "WorkflowService/StartWorkflow", unary!(workflows, start_workflow)),
            route!(GET "/v1/workflows" => "WorkflowService/ListWorkflows", unary!(workflows, list_workflows), &[("state", "states")]),
            route!(GET "/v1/workflows/{id}" => "WorkflowService/GetWorkflow", unary!(workflows, get_workflow)),
            route!(GET "/v1/workflows/{id}/history" => "WorkflowService/GetWorkflowHistory", unary!(workflows, get_workflow_history), pages "WorkflowService/ListWorkflowHistory" => unary!(workflows, list_workflow_history)),
            route!(GET "/v1/workflows/{id}/events" => "WorkflowService/WatchWorkflow", Call::Watch),
            route!(POST "/v1/workflows/{id}:retry" => "WorkflowService/RetryWorkflow", unary!(workflows, retry_workflow)),
            route!(POST "/v1/workflows/{id}:compensate" => "WorkflowService/CompensateWorkflow", unary!(workflows, compensate_workflow)),
            route!(POST "/v1/workflows/{id}:cancel" => "WorkflowService/CancelWorkflow", unary!(workflows, cancel_workflow)),
            route!(POST "/v1/workflows/{id}:skip" => "WorkflowService/SkipStep", unary!(workflows, skip_step)),
            route!(POST "/v1/workflows/{id}:rewind" => "WorkflowService/RewindWorkflow", unary!(workflows, rewind_workflow)),
            route!(POST "/v1/workflows/{id}:signal" => "WorkflowService/SignalWorkflow", unary!(workflows, signal_workflow)),
            route!(POST "/v1/workflows:bulk" => "WorkflowService/BulkOperate", unary!(workflows, bulk_operate)),
            route!(GET "/v1/definitions" => "WorkflowService/ListWorkflowDefinitions", unary!(workflows, list_workflow_definitions)),
            route!(GET "/v1/schedules" => "ScheduleService/ListSchedules", unary!(schedules, list_schedules)),
            route!(POST "/v1/schedules" => "ScheduleService/CreateSchedule", unary!(schedules, create_schedule)),
            route!(GET "/v1/schedules/{id}" => "ScheduleService/GetSchedule", unary!(schedules, get_schedule)),
            route!(DELETE "/v1/schedules/{id}" => "ScheduleService/DeleteSchedule", unary!(schedules, delete_schedule)),
            route!(POST "/v1/schedules/{id}:pause" => "ScheduleService/PauseSchedule", unary!(schedules, pause_schedule)),
            route!(POST "/v1/schedules/{id}:resume" => "ScheduleService/ResumeSchedule", unary!(schedules, resume_schedule)),
            route!(POST "/v1/schedules/{id}:trigger" => "ScheduleService/TriggerSchedule", unary!(schedules, trigger_schedule)),
            route!(GET "/v1/subscribers/{subscriber_id}/addresses" => "LifecycleService/GetSubscriberAddresses", unary!(lifecycle, get_subscriber_addresses)),
            route!(GET "/v1/pools" => "LifecycleService/ListPools", unary!(lifecycle, list_pools)),
            route!(POST "/v1/pools" => "LifecycleService/CreatePool", unary!(lifecycle, create_pool)),
            route!(PATCH "/v1/pools/{name}" => "LifecycleService/UpdatePool", unary!(lifecycle, update_pool)),
            route!(POST "/v1/pools/{name}:retire" => "LifecycleService/RetirePool", unary!(lifecycle, retire_pool)),
            route!(GET "/v1/reservations" => "LifecycleService/ListReservations", unary!(lifecycle, list_reservations)),
            route!(POST "/v1/reservations" => "LifecycleService/ReserveAddress", unary!(lifecycle, reserve_address)),
            route!(POST "/v1/reservations/{id}:release" => "LifecycleService/ReleaseReservation", unary!(lifecycle, release_reservation)),
        ]
    })
}

/// The path parameters of `path` when it has the shape of `template`.
pub fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut t = template.split('/');
    let mut p = path.split('/');
    let mut params = Vec::new();
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => {
                if let Some(inner) = ts.strip_prefix('{') {
                    let (name, verb) = inner.split_once('}')?;
                    let value = match verb {
                        "" if !ps.contains(':') => ps,
                        "" => return None,
                        verb => ps.strip_suffix(verb)?,
                    };
                    if value.is_empty() || value.contains(':') {
                        return None;
                    }
                    let value = percent_encoding::percent_decode_str(value)
                        .decode_utf8()
                        .ok()?
                        .into_owned();
                    params.push((name.to_owned(), value));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_templates_and_custom_verbs() {
        let id = |v: &str| Some(vec![("id".to_owned(), v.to_owned())]);
        assert_eq!(
            match_path("/v1/workflows/{id}", "/v1/workflows/abc"),
            id("abc")
        );
        assert_eq!(
            match_path("/v1/workflows/{id}", "/v1/workflows/a:retry"),
            None
        );
        assert_eq!(
            match_path("/v1/workflows/{id}:retry", "/v1/workflows/a:retry"),
            id("a")
        );
        assert_eq!(
            match_path("/v1/workflows/{id}:retry", "/v1/workflows/:retry"),
            None
        );
        assert_eq!(
            match_path("/v1/workflows/{id}:retry", "/v1/workflows/a:cancel"),
            None
        );
        assert_eq!(match_path("/v1/pools/{id}", "/v1/pools/a%20b"), id("a b"));
        assert_eq!(
            match_path("/v1/workflows:bulk", "/v1/workflows:bulk"),
            Some(vec![])
        );
        assert_eq!(match_path("/v1/workflows", "/v1/workflows/"), None);
    }

    #[test]
    fn every_route_names_a_method_of_the_api() {
        for r in routes() {
            for rpc in std::iter::once(r.rpc).chain(r.pages.map(|p| p.rpc)) {
                assert!(sagaflow_proto::mapping::method(rpc).is_some(), "{rpc}");
            }
        }
    }

    #[test]
    fn the_history_route_pages_only_when_asked() {
        let r = routes()
            .iter()
            .find(|r| r.path == "/v1/workflows/{id}/history")
            .unwrap();
        let rpc = |q: Option<&str>| r.answered_by(q).0;
        assert_eq!(rpc(None), "WorkflowService/GetWorkflowHistory");
        assert_eq!(rpc(Some("")), "WorkflowService/GetWorkflowHistory");
        assert_eq!(
            rpc(Some("page_size=0")),
            "WorkflowService/ListWorkflowHistory"
        );
        assert_eq!(
            rpc(Some("page_token=ab")),
            "WorkflowService/ListWorkflowHistory"
        );
        assert_eq!(rpc(Some("nope=1")), "WorkflowService/GetWorkflowHistory");
    }
}
