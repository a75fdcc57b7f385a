//! `sagaflow reservations reserve|list|release` (operator role): addresses
//! and prefixes held for a subscriber until they expire, LifecycleService's
//! reservations.

use clap::Subcommand;
use sagaflow_proto::v1 as pb;
use sagaflow_proto::v1::lifecycle_service_client::LifecycleServiceClient;
use serde_json::{Value, json};

use super::client::{Client, ClientError, Output};
use super::render::*;

/// The address family of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FamilyArg {
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 prefix.
    Ipv6,
}

impl FamilyArg {
    fn pb(self) -> pb::AddressFamily {
        match self {
            FamilyArg::Ipv4 => pb::AddressFamily::Ipv4,
            FamilyArg::Ipv6 => pb::AddressFamily::Ipv6,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ReservationsCommand {
    /// Hold an address or prefix for a subscriber until it expires.
    Reserve {
        /// The subscriber it is held for.
        subscriber: String,
        /// What to reserve: an IPv4 address or an IPv6 prefix.
        #[arg(long, value_enum, default_value = "ipv4")]
        family: FamilyArg,
        /// The pool by name (default: the first pool of the family with room).
        #[arg(long, default_value = "")]
        pool: String,
        /// A specific address or prefix, e.g. 100.64.0.10 (default: the lowest free one).
        #[arg(long, default_value = "")]
        address: String,
        /// Days until the hourly expiry job releases it (0: 30).
        #[arg(long, default_value_t = 0)]
        expires_in_days: u32,
        /// Why it is held (audited, and in the notification).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The tenant's live reservations (the default).
    List {
        /// Only this subscriber's.
        #[arg(long, default_value = "")]
        subscriber: String,
    },
    /// End a reservation by hand: the address is free again.
    Release {
        /// The reservation's id (from `reserve` or `list`).
        id: String,
    },
}

/// `sagaflow reservations [reserve|list|release]`.
pub async fn reservations(
    c: &mut Client,
    cmd: Option<ReservationsCommand>,
    out: Output,
) -> Result<(), ClientError> {
    let mut l = LifecycleServiceClient::new(c.channel.clone());
    let cmd = cmd.unwrap_or(ReservationsCommand::List {
        subscriber: String::new(),
    });
    let all = match cmd {
        ReservationsCommand::Reserve {
            subscriber,
            family,
            pool,
            address,
            expires_in_days,
            reason,
        } => vec![
            l.reserve_address(c.req(pb::ReserveAddressRequest {
                subscriber_id: subscriber,
                pool,
                family: family.pb() as i32,
                address,
                expires_in_days,
                reason,
            }))
            .await?
            .into_inner(),
        ],
        ReservationsCommand::List { subscriber } => {
            l.list_reservations(c.req(pb::ListReservationsRequest {
                subscriber_id: subscriber,
            }))
            .await?
            .into_inner()
            .reservations
        }
        ReservationsCommand::Release { id } => vec![
            l.release_reservation(c.req(pb::ReleaseReservationRequest { id }))
                .await?
                .into_inner(),
        ],
    };
    print_reservations(&all, out);
    Ok(())
}

fn family_name(n: i32) -> String {
    pb::AddressFamily::try_from(n)
        .map(|f| enum_name(f.as_str_name(), "ADDRESS_FAMILY_"))
        .unwrap_or_default()
}

fn reservation_json(r: &pb::Reservation) -> Value {
    json!({
        "id": r.id, "pool_id": r.pool_id, "family": family_name(r.family),
        "address": r.address, "subscriber_id": r.subscriber_id, "reason": r.reason,
        "created_at": ts(&r.created_at), "expires_at": ts(&r.expires_at),
        "released": r.released,
    })
}

fn print_reservations(all: &[pb::Reservation], out: Output) {
    if out == Output::Json {
        return print_json(&Value::Array(all.iter().map(reservation_json).collect()));
    }
    println!(
        "{:<8} {:<16} {:<6} {:<28} {:<26} {:<9} REASON",
        "ID", "SUBSCRIBER", "FAMILY", "ADDRESS", "EXPIRES", "STATE"
    );
    for r in all {
        let state = if r.released { "released" } else { "held" };
        println!(
            "{:<8} {:<16} {:<6} {:<28} {:<26} {:<9} {}",
            r.id,
            r.subscriber_id,
            family_name(r.family),
            r.address,
            ts_str(&r.expires_at),
            state,
            r.reason
        );
    }
}
