-- See migrations/postgres/0010_maintenance_tenant.sql.
ALTER TABLE maintenance_progress ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
