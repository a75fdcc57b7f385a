//! The keys of the `[domain]` section: address pools, the adapters'
//! endpoints, IPAM, the simulators, maintenance and notifications.

use super::{Config, Hide, Key, endpoint_token, endpoint_url, flag, invalid, k};
use sagaflow_steps::ipam::NetBoxConfig;

/// The keys of `[domain]`, in the order of the file.
pub(super) const KEYS: &[Key] = &[
    k("domain.pools.tenant"),
    k("domain.pools.name"),
    k("domain.pools.cidr"),
    k("domain.pools.prefix_length"),
    k("domain.pools.warning_percent"),
    k("domain.pools.critical_percent"),
    k("domain.onu.base_url")
        .env("SAGAFLOW_ONU_URL")
        .text(|c, _, v| {
            endpoint_url(&mut c.domain.onu, v);
            Ok(())
        })
        .secret(Hide::Password, |c| {
            c.domain.onu.as_mut().map(|e| &mut e.base_url)
        }),
    k("domain.onu.token")
        .env("SAGAFLOW_ONU_TOKEN")
        .text(|c, key, v| endpoint_token(&mut c.domain.onu, key, v))
        .secret(Hide::Whole, |c| {
            c.domain.onu.as_mut().and_then(|e| e.token.as_mut())
        }),
    k("domain.onu.timeout_ms"),
    k("domain.cpe.base_url")
        .env("SAGAFLOW_CPE_URL")
        .text(|c, _, v| {
            endpoint_url(&mut c.domain.cpe, v);
            Ok(())
        })
        .secret(Hide::Password, |c| {
            c.domain.cpe.as_mut().map(|e| &mut e.base_url)
        }),
    k("domain.cpe.token")
        .env("SAGAFLOW_CPE_TOKEN")
        .text(|c, key, v| endpoint_token(&mut c.domain.cpe, key, v))
        .secret(Hide::Whole, |c| {
            c.domain.cpe.as_mut().and_then(|e| e.token.as_mut())
        }),
    k("domain.cpe.timeout_ms"),
    k("domain.billing.base_url")
        .env("SAGAFLOW_BILLING_URL")
        .text(|c, _, v| {
            endpoint_url(&mut c.domain.billing, v);
            Ok(())
        })
        .secret(Hide::Password, |c| {
            c.domain.billing.as_mut().map(|e| &mut e.base_url)
        }),
    k("domain.billing.token")
        .env("SAGAFLOW_BILLING_TOKEN")
        .text(|c, key, v| endpoint_token(&mut c.domain.billing, key, v))
        .secret(Hide::Whole, |c| {
            c.domain.billing.as_mut().and_then(|e| e.token.as_mut())
        }),
    k("domain.billing.timeout_ms"),
    k("domain.ipam.backend"),
    k("domain.ipam.tenants"),
    k("domain.ipam.netbox.base_url")
        .env("SAGAFLOW_NETBOX_URL")
        .text(|c, _, v| {
            match &mut c.domain.ipam.netbox {
                Some(n) => n.base_url = v.into(),
                None => c.domain.ipam.netbox = Some(NetBoxConfig::new(v, "")),
            }
            Ok(())
        }),
    k("domain.ipam.netbox.token")
        .env("SAGAFLOW_NETBOX_TOKEN")
        .text(|c, key, v| match &mut c.domain.ipam.netbox {
            Some(n) => {
                n.token = v.into();
                Ok(())
            }
            None => Err(invalid(
                key,
                "a token without a URL: set domain.ipam.netbox.base_url too",
            )),
        })
        .secret(Hide::Whole, |c| {
            c.domain.ipam.netbox.as_mut().map(|n| &mut n.token)
        }),
    k("domain.ipam.netbox.timeout_ms"),
    k("domain.ipam.netbox.ca_file"),
    k("domain.ipam.netbox.status"),
    k("domain.simulators.enabled")
        .env("SAGAFLOW_SIMULATORS")
        .text(|c, key, v| {
            c.domain.simulators.enabled = flag(key, v)?;
            Ok(())
        }),
    k("domain.simulators.bind"),
    k("domain.simulators.token")
        .env("SAGAFLOW_SIMULATORS_TOKEN")
        .text(|c, _, v| {
            c.domain.simulators.token = Some(v.into());
            Ok(())
        })
        .secret(Hide::Whole, |c| c.domain.simulators.token.as_mut()),
    k("domain.simulators.default_fault"),
    k("domain.simulators.faults"),
    k("domain.simulators.devices"),
    k("domain.simulators.inform_url"),
    k("domain.simulators.inform_tokens").secret_each(Hide::Whole, |c| {
        c.domain.simulators.inform_tokens.values_mut().collect()
    }),
    k("domain.onu_online_poll_ms"),
    k("domain.maintenance.revoked_retention_days"),
    k("domain.maintenance.allocated_stale_hours"),
    k("domain.maintenance.revoking_stuck_hours"),
    k("domain.maintenance.batch_size"),
    k("domain.maintenance.leak_report_limit"),
    k("domain.maintenance.warning_percent"),
    k("domain.maintenance.critical_percent"),
    k("domain.maintenance.exhaustion_horizon_days"),
    k("domain.maintenance.retention.runs_days"),
    k("domain.maintenance.retention.fires_days"),
    k("domain.maintenance.retention.snapshots_days"),
    k("domain.maintenance.retention.address_audit_days"),
    k("domain.maintenance.retention.progress_days"),
    k("domain.maintenance.retention.runs"),
    k("domain.maintenance.retention.busy_percent"),
    k("domain.notify.webhook_url")
        .env("SAGAFLOW_NOTIFY_WEBHOOK_URL")
        .text(|c, _, v| {
            c.domain.notify.webhook_url = Some(v.into());
            Ok(())
        })
        .secret(Hide::Password, |c| c.domain.notify.webhook_url.as_mut()),
    k("domain.notify.secret")
        .env("SAGAFLOW_NOTIFY_SECRET")
        .text(text!(domain.notify.secret))
        .secret(Hide::Whole, |c| {
            Some(&mut c.domain.notify.secret).filter(|s| !s.is_empty())
        }),
    k("domain.notify.timeout_ms"),
    k("domain.notify.retries"),
];
