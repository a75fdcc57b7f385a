-- The run_retention maintenance workflow deletes a tenant's oldest address
-- audit rows and maintenance progress in batches, by these indexes
-- (lifecycle snapshots have theirs since 0006). Twin of
-- migrations/domain/sqlite/0020_retention.sql.
CREATE INDEX address_audit_tenant_at ON address_audit (tenant_id, at);
CREATE INDEX maintenance_progress_tenant_updated ON maintenance_progress (tenant_id, updated_at);
