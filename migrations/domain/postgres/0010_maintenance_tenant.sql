-- maintenance_progress gets the tenant of the step that stored it: progress
-- is read and written within the step's tenant only. Rows stored before
-- carry '' (no tenant reads them; their steps have finished). The SQLite
-- twin is migrations/sqlite/0010_maintenance_tenant.sql.
ALTER TABLE maintenance_progress ADD COLUMN tenant_id TEXT NOT NULL DEFAULT '';
