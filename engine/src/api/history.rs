//! ListWorkflowHistory: a run's history a page at a time. The page size
//! (0 means [`DEFAULT_PAGE_SIZE`], at most [`MAX_PAGE_SIZE`]) and the page
//! tokens, keyset by event sequence: a token names the run and the last
//! sequence the previous page gave, so the next page is a range of the
//! `(run_id, seq)` key however long the history. (GetWorkflowHistory keeps
//! answering the whole history in one response.)

use sagaflow_proto::v1 as pb;
use tonic::Status;

use super::listing::{decode_token_text, encode_token_text};
use super::{convert, run_id};
use crate::Engine;
use crate::ids::{RunId, TenantId};

/// Events per page when the request asks for none.
pub const DEFAULT_PAGE_SIZE: u32 = 1000;
/// The most events one page holds.
pub const MAX_PAGE_SIZE: u32 = 10_000;

/// The page `r` asks for, of a run of `tenant` (NOT_FOUND for any other
/// tenant's run, as GetWorkflowHistory).
pub(super) async fn page(
    engine: &Engine,
    tenant: &TenantId,
    r: &pb::ListWorkflowHistoryRequest,
) -> Result<pb::ListWorkflowHistoryResponse, Status> {
    let id = run_id("id", &r.id)?;
    let limit = page_size(r.page_size)?;
    let after = decode_token(&r.page_token, id)?;
    // One more than the page holds: whether another page follows.
    let mut events = engine
        .events_page(tenant, id, after, limit + 1)
        .await
        .map_err(convert::status)?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next_page_token = match events.last() {
        Some(last) if more => encode_token(id, last.seq),
        _ => String::new(),
    };
    Ok(pb::ListWorkflowHistoryResponse {
        events: events.iter().map(convert::event).collect(),
        next_page_token,
    })
}

/// The page size a request's `page_size` asks for.
pub(super) fn page_size(asked: u32) -> Result<u32, Status> {
    match asked {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(Status::invalid_argument(format!(
            "page_size must be at most {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE}), not {n}"
        ))),
    }
}

/// The token of the page after the event `seq` of run `id`.
pub(super) fn encode_token(id: RunId, seq: u64) -> String {
    encode_token_text(&format!("h:{id}:{seq}"))
}

/// The sequence after which the page `token` starts (0: the first page);
/// a token of another run, or one this server did not give out, is
/// refused.
pub(super) fn decode_token(token: &str, id: RunId) -> Result<u64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    let bad = || {
        Status::invalid_argument(
            "page_token is not a token this server gave out for this run's history: \
             pass next_page_token of the previous page, or none for the first page",
        )
    };
    let raw = decode_token_text(token).ok_or_else(bad)?;
    let rest = raw.strip_prefix("h:").ok_or_else(bad)?;
    let (run, seq) = rest.rsplit_once(':').ok_or_else(bad)?;
    if run.parse::<RunId>().ok() != Some(id) {
        return Err(bad());
    }
    seq.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_for_their_run_only() {
        let id = RunId::new();
        assert_eq!(decode_token(&encode_token(id, 1234), id).unwrap(), 1234);
        assert_eq!(decode_token("", id).unwrap(), 0);
        let other = encode_token(RunId::new(), 3);
        for bad in ["x", "zz", "abc", "3a3a", &"a".repeat(300), other.as_str()] {
            let e = decode_token(bad, id).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad}");
            assert!(e.message().contains("page_token"), "{}", e.message());
        }
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(7).unwrap(), 7);
        assert_eq!(page_size(MAX_PAGE_SIZE).unwrap(), MAX_PAGE_SIZE);
        let e = page_size(MAX_PAGE_SIZE + 1).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("at most 10000"), "{}", e.message());
    }
}
