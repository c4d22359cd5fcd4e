"""The OpenAI-compatible web layer: parsing, auth, rendering, errors, routes."""
