"""Accounting: the per-request record, metrics, the usage ledger and per-key quotas (observers of serving)."""
