//! datamesh-agent: directory sync and versioned backup.
