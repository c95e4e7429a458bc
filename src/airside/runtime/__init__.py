"""Runtime interface and backends: oci (runc), process, kubernetes (issues 6, 7)."""
