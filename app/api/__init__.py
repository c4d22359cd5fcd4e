"""The OpenAI-compatible web layer: parsing, auth, rendering, SSE, errors, routes."""
