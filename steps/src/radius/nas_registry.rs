//! The NASes a tenant's CoA-Request and Disconnect-Request may go to
//! (sagaflow's `radius_nas` table, next to FreeRADIUS's tables). The
//! `radius.coa` and `radius.disconnect` handlers look the run's NAS up here,
//! by name or address within the run's tenant, and send to the registered
//! address and port only: an address that only the run's input names is
//! never used.

use std::net::{IpAddr, SocketAddr};

use super::repo::on_db;
use super::{Error, RadiusRepo, Result};

/// One registered NAS.
#[derive(Clone, PartialEq, Eq)]
pub struct RegisteredNas {
    pub tenant_id: String,
    pub name: String,
    pub address: IpAddr,
    pub coa_port: u16,
    /// The NAS's own shared secret; `radius.secret` when `None`.
    pub secret: Option<String>,
}

impl std::fmt::Debug for RegisteredNas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredNas")
            .field("tenant_id", &self.tenant_id)
            .field("name", &self.name)
            .field("address", &self.address)
            .field("coa_port", &self.coa_port)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RegisteredNas {
    /// Where its Dynamic Authorization requests go.
    pub fn coa_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.coa_port)
    }
}

type NasRow = (String, String, String, i32, Option<String>);

const NAS_COLUMNS: &str = "tenant_id, name, address, coa_port, secret";

fn nas_of(row: NasRow) -> Result<RegisteredNas> {
    let (tenant_id, name, address, port, secret) = row;
    let corrupt = |what: &str| Error::InvalidInput(format!("radius_nas {name:?}: invalid {what}"));
    Ok(RegisteredNas {
        address: address.parse().map_err(|_| corrupt("address"))?,
        coa_port: u16::try_from(port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| corrupt("coa_port"))?,
        tenant_id,
        name,
        secret,
    })
}

impl RadiusRepo {
    /// Registers (or updates) `tenant`'s NAS `name` at `address:coa_port`,
    /// with its own shared secret or, with `None`, `radius.secret`.
    pub async fn register_nas(
        &self,
        tenant: &str,
        name: &str,
        address: IpAddr,
        coa_port: u16,
        secret: Option<&str>,
    ) -> Result<()> {
        if name.trim().is_empty() || coa_port == 0 {
            return Err(Error::InvalidInput(
                "a NAS needs a name and a CoA port".into(),
            ));
        }
        self.ready().await?;
        let sql = "INSERT INTO radius_nas (tenant_id, name, address, coa_port, secret) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, name) DO UPDATE SET \
                   address = excluded.address, coa_port = excluded.coa_port, secret = excluded.secret";
        on_db!(self, pool, _lock => {
            sqlx::query(sql)
                .bind(tenant)
                .bind(name)
                .bind(address.to_string())
                .bind(i32::from(coa_port))
                .bind(secret)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// `tenant`'s NAS named `name`, or else the one at `address`.
    pub async fn find_nas(
        &self,
        tenant: &str,
        name: Option<&str>,
        address: Option<IpAddr>,
    ) -> Result<Option<RegisteredNas>> {
        self.ready().await?;
        let (column, value) = match (name, address) {
            (Some(n), _) => ("name", n.to_owned()),
            (None, Some(a)) => ("address", a.to_string()),
            (None, None) => return Ok(None),
        };
        let sql =
            format!("SELECT {NAS_COLUMNS} FROM radius_nas WHERE tenant_id = $1 AND {column} = $2");
        let row: Option<NasRow> = on_db!(self, pool, _lock => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(&value)
                .fetch_optional(pool)
                .await?
        });
        row.map(nas_of).transpose()
    }
}
