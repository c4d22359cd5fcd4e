"""Async jobs for long recordings: submit, queue, run, webhooks (CONTRACT §7)."""
