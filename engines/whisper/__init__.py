"""The Whisper family: faster-whisper / CTranslate2 models, with this project's fallback, loop
checks, log-probs and batching engine. Only this package imports faster-whisper or CTranslate2."""
