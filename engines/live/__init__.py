"""Live transcription building blocks: input codecs, incremental VAD and turns, local agreement, decoding."""
