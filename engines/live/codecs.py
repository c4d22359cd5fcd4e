"""Realtime input audio (PCM16 at 24 kHz, G.711 μ-law / A-law at 8 kHz) to 16 kHz mono float32, resampled once."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt
from av.filter import Graph

from engines.audio import SAMPLE_RATE, Samples

InputFormat = Literal["pcm16", "pcmu", "pcma"]

# The realtime API fixes each format's rate: PCM at 24 kHz, G.711 at 8 kHz (telephony).
INPUT_RATES: dict[InputFormat, int] = {"pcm16": 24_000, "pcmu": 8_000, "pcma": 8_000}
BYTES_PER_SAMPLE: dict[InputFormat, int] = {"pcm16": 2, "pcmu": 1, "pcma": 1}

Int16 = npt.NDArray[np.int16]


def _ulaw_table() -> Int16:
    """ITU-T G.711 μ-law expansion of every byte value to a 16-bit linear sample."""
    codes = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> Int16:
    """ITU-T G.711 A-law expansion of every byte value to a 16-bit linear sample."""
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW_TABLE = _ulaw_table()
ALAW_TABLE = _alaw_table()


def decode_g711(data: bytes, law: Literal["pcmu", "pcma"]) -> Int16:
    table = ULAW_TABLE if law == "pcmu" else ALAW_TABLE
    return table[np.frombuffer(data, dtype=np.uint8)]


@dataclass(frozen=True)
class Denoise:
    """FFmpeg's ``afftdn`` spectral denoiser: ``reduction_db`` of noise reduction above a ``floor_db`` noise floor."""

    reduction_db: float = 12.0
    floor_db: float = -50.0


class _DenoisingResampler:
    """One FFmpeg filter graph: resample to 16 kHz, then ``afftdn`` (about 12 ms of delay)."""

    def __init__(self, rate: int, denoise: Denoise) -> None:
        self._graph = Graph()
        source = self._graph.add_abuffer(format="s16", sample_rate=rate, layout="mono", time_base=Fraction(1, rate))
        chain = [
            source,
            self._graph.add("aresample", str(SAMPLE_RATE)),
            self._graph.add("afftdn", f"nr={denoise.reduction_db:g}:nf={denoise.floor_db:g}"),
            self._graph.add("aformat", f"sample_fmts=flt:channel_layouts=mono:sample_rates={SAMPLE_RATE}"),
            self._graph.add("abuffersink"),
        ]
        for upstream, downstream in pairwise(chain):
            upstream.link_to(downstream)
        self._graph.configure()
        self._pts = 0

    def resample(self, frame: av.AudioFrame) -> list[av.AudioFrame]:
        frame.pts = self._pts
        self._pts += frame.samples
        self._graph.push(frame)
        out: list[Any] = []
        while True:
            try:
                out.append(self._graph.pull())
            except (av.BlockingIOError, av.EOFError):
                return out


class StreamConverter:
    """One session's input stream: bytes of one format in, 16 kHz float32 out.

    The resampler keeps its filter state from one append to the next, so the audio is resampled
    once, as one continuous stream, whatever the append sizes. A PCM16 sample split across two
    appends is joined. The resampler holds back about 1 ms, which comes out with the next append.
    With ``denoise``, the same filter graph also removes stationary noise after resampling.
    """

    def __init__(self, fmt: InputFormat, denoise: Denoise | None = None) -> None:
        self.format: InputFormat = fmt
        self.rate = INPUT_RATES[fmt]
        self.denoise = denoise
        self._carry = b""
        self._resampler: av.AudioResampler | _DenoisingResampler = (
            av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            if denoise is None
            else _DenoisingResampler(self.rate, denoise)
        )
        self.input_samples = 0

    def samples_in(self, data: bytes) -> int:
        """How many input samples ``data`` holds (for limits, before converting anything)."""
        return (len(self._carry) + len(data)) // BYTES_PER_SAMPLE[self.format]

    def convert(self, data: bytes) -> Samples:
        if self.format == "pcm16":
            data = self._carry + data
            usable = len(data) - len(data) % 2
            self._carry = data[usable:]
            linear: Int16 = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
        else:
            linear = decode_g711(data, self.format)
        if linear.size == 0:
            return np.zeros(0, dtype=np.float32)
        self.input_samples += linear.size
        frame = av.AudioFrame.from_ndarray(linear.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = None
        out = [np.asarray(f.to_ndarray()).reshape(-1) for f in self._resampler.resample(frame)]
        if not out:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)
