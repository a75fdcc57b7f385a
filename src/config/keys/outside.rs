//! The keys of the sections about the systems sagaflow talks to besides
//! the domain's adapters: `[radius]` and `[[webhooks]]`.

use super::{Config, Hide, Key, k};

/// The keys of `[radius]` and `[[webhooks]]`, in the order of the file.
pub(super) const KEYS: &[Key] = &[
    k("radius.secret")
        .env("SAGAFLOW_RADIUS_SECRET")
        .text(text!(radius.secret))
        .secret(Hide::Whole, |c| Some(&mut c.radius.secret)),
    k("radius.suspended_group"),
    k("radius.suspended_reply"),
    k("radius.timeout_ms"),
    k("radius.retries"),
    k("radius.database_url")
        .env("SAGAFLOW_RADIUS_DATABASE_URL")
        .text(|c, _, v| {
            c.radius.database_url = Some(v.into());
            Ok(())
        })
        .secret(Hide::Password, |c| c.radius.database_url.as_mut()),
    k("radius.username_format"),
    k("radius.tenant_username_formats"),
    k("webhooks.tenant"),
    k("webhooks.url").secret_each(Hide::Password, |c| {
        c.webhooks.iter_mut().map(|w| &mut w.url).collect()
    }),
    k("webhooks.secret").secret_each(Hide::Whole, |c| {
        c.webhooks.iter_mut().map(|w| &mut w.secret).collect()
    }),
    k("webhooks.events"),
    k("webhooks.workflows"),
];
