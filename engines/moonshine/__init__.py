"""The Moonshine family: Moonshine base (English) run by ONNX Runtime, greedy decoding with a KV cache.
Only this package knows Moonshine's files, tokenizer and decoder inputs."""
