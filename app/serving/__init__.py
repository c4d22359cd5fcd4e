"""Serving: one pipeline per request (admission, audio, model lease, job), raising domain errors only."""
