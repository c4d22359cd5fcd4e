"""bench.gpu_batching's pure parts: the table, the vocabulary layout, the cu12 library search, failure handling."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import ct2_cuda, random_whisper
from bench.gpu_batching import Row, markdown_table, measure_all

# Whisper's real ids for these tokens, in the multilingual vocabularies of base and large-v3.
REAL_IDS = {
    51865: {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259, "<|notimestamps|>": 50363},
    51866: {"<|endoftext|>": 50257, "<|startoftranscript|>": 50258, "<|en|>": 50259, "<|notimestamps|>": 50364},
}


def test_table_speedup_and_throughput() -> None:
    rows = [Row(1, (1.0, 2.0, 3.0), (1.0,), (100, 100)), Row(4, (2.0,), (4.0,), (100, 100))]
    assert rows[0].encode_s == 2.0
    assert rows[0].audio_per_second == 10.0  # 30 s in 3 s
    assert rows[1].audio_per_second == 20.0
    assert markdown_table(rows).splitlines() == [
        "| batch | encode s | decode s | audio-s per s | speed-up over batch 1 |",
        "|---:|---:|---:|---:|---:|",
        "| 1 | 2.000 | 1.000 | 10.0 | 1.00x |",
        "| 4 | 2.000 | 4.000 | 20.0 | 2.00x |",
    ]
    assert rows[1].as_dict(rows[0].audio_per_second)["speedup"] == 2.0
    assert markdown_table([]) == "(no batch size measured)"


@pytest.mark.parametrize("size", [51865, 51866])
def test_vocabulary_is_laid_out_like_whisper(size: int) -> None:
    tokens = random_whisper.vocabulary(size)
    assert len(tokens) + random_whisper.TIMESTAMP_TOKENS == size
    assert len(set(tokens)) == len(tokens)
    assert {token: tokens.index(token) for token in REAL_IDS[size]} == REAL_IDS[size]
    assert len(random_whisper.language_tokens(tokens)) == size - 51766


def test_english_only_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="multilingual"):
        random_whisper.vocabulary(51766)  # no room for a language token


def test_presets_match_the_real_shapes() -> None:
    large = random_whisper.PRESETS["large-v3"]
    assert (large.d_model, large.encoder_layers, large.heads, large.mel_bins) == (1280, 32, 20, 128)


def test_measure_all_stops_at_the_first_failure() -> None:
    class Runner:
        def measure(self, batch: int) -> Row:
            if batch >= 4:
                raise RuntimeError("CUDA failed with error out of memory")
            return Row(batch, (1.0,), (1.0,), (5, 5))

    rows: list[Row] = []
    failures = measure_all(Runner(), [1, 2, 4, 8], rows.append)  # type: ignore[arg-type]
    assert [row.batch for row in rows] == [1, 2]
    assert failures == [{"batch": 4, "error": "CUDA failed with error out of memory"}]


def test_cuda12_lib_dirs_finds_the_cu12_wheels(tmp_path: Path) -> None:
    cublas = tmp_path / "nvidia" / "cublas" / "lib"
    cudnn = tmp_path / "nvidia" / "cudnn" / "lib"
    cublas.mkdir(parents=True)
    cudnn.mkdir(parents=True)
    assert ct2_cuda.cuda12_lib_dirs([str(tmp_path)]) == []  # the folder alone is not enough
    (cublas / "libcublas.so.12").touch()
    assert ct2_cuda.cuda12_lib_dirs([str(tmp_path), str(tmp_path / "elsewhere")]) == [cublas, cudnn]
