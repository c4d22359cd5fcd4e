"""Local inference engines: audio decoding, Whisper, model loading. Never imports the web layer."""
