"""The service catalogue: the services communities offer, as data coordinators edit.

Loaded from YAML and validated on load (unique ids, known neighbours, enough examples),
so a broken edit fails at start-up with a message naming the entry, not mid-stream.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.exceptions import CatalogueError

DEFAULT_CATALOGUE = Path(__file__).resolve().parent / "catalogue" / "catalogue.yaml"
OUT_OF_SCOPE_FILE = "out_of_scope.yaml"
SUPPORT_FILE = "support.yaml"
PROFILES_FILE = "profiles.yaml"


class SupportRule(BaseModel):
    """Which type may fill the extra headcount of an event, and the words that mark one."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    support_type: str
    markers_zh: list[str] = Field(default_factory=list)
    markers_en: list[str] = Field(default_factory=list)
    # Who comes, counted: "约80人", "about 30 seniors". A number of ten or more before one
    # of these words also marks an event.
    audience_zh: list[str] = Field(default_factory=list)
    audience_en: list[str] = Field(default_factory=list)

    @property
    def markers(self) -> list[str]:
        return [*self.markers_zh, *self.markers_en]

    @property
    def audience(self) -> list[str]:
        return [*self.audience_zh, *self.audience_en]


class CombinedProfile(BaseModel):
    """A volunteer profile taught to every type it names: several at once ("水电都干过" is
    plumbing and electrical), so one skill does not crowd out another, or what a job
    implies ("派出所社区民警" is anti-fraud, theft prevention and patrols)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    types: Annotated[list[str], Field(min_length=1)]
    text: Annotated[str, Field(min_length=2)]


Kind = Literal["party_member", "micro_org", "social_worker", "resident"]
Texts = Annotated[list[str], Field(min_length=1)]


class ServiceType(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(pattern=r"^[a-z]+\.[a-z_]+$")]
    name_zh: str
    name_en: str
    description_zh: str
    description_en: str
    keywords_zh: list[str] = Field(default_factory=list)
    keywords_en: list[str] = Field(default_factory=list)
    # Language services only: the words that name the language (日语, Japanese).
    language_names_zh: list[str] = Field(default_factory=list)
    language_names_en: list[str] = Field(default_factory=list)
    examples_need_zh: Texts
    examples_need_en: Texts
    examples_volunteer_zh: Texts
    examples_volunteer_en: Texts
    near: list[str] = Field(default_factory=list)
    offered_by: list[Kind] = Field(default_factory=list)

    @property
    def keywords(self) -> list[str]:
        return [*self.keywords_zh, *self.keywords_en]

    @property
    def language_names(self) -> list[str]:
        return [*self.language_names_zh, *self.language_names_en]

    @property
    def need_examples(self) -> list[str]:
        return [*self.examples_need_zh, *self.examples_need_en]

    @property
    def volunteer_examples(self) -> list[str]:
        return [*self.examples_volunteer_zh, *self.examples_volunteer_en]


class Catalogue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    types: list[ServiceType]
    out_of_scope: list[str] = Field(default_factory=list)
    support: SupportRule | None = None
    combined_profiles: list[CombinedProfile] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        ids = [t.id for t in self.types]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate service type ids: {', '.join(duplicates)}")
        known = set(ids)
        for service in self.types:
            unknown = [n for n in service.near if n not in known]
            if unknown:
                raise ValueError(f"{service.id}: near names unknown types {unknown}")
        if self.support is not None and self.support.support_type not in known:
            raise ValueError(f"support names unknown type {self.support.support_type}")
        for number, profile in enumerate(self.combined_profiles, 1):
            unknown = [t for t in profile.types if t not in known]
            if unknown:
                raise ValueError(f"combined profile {number} names unknown types {unknown}")
        return self

    @cached_property
    def by_id(self) -> dict[str, ServiceType]:
        return {t.id: t for t in self.types}

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.types]

    @cached_property
    def fingerprint(self) -> str:
        """Short content hash: placements are versioned by the catalogue they came from."""
        text = self.model_dump_json()
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The catalogue file, plus ``out_of_scope.yaml``, ``support.yaml`` and
    ``profiles.yaml`` beside it."""
    source = path or DEFAULT_CATALOGUE
    data = _read_yaml(source)
    beside = source.parent / OUT_OF_SCOPE_FILE
    if beside.exists() and isinstance(data, dict):
        extra = _read_yaml(beside)
        data["out_of_scope"] = [*extra.get("examples_zh", []), *extra.get("examples_en", [])]
    support = source.parent / SUPPORT_FILE
    if support.exists() and isinstance(data, dict):
        data["support"] = _read_yaml(support)
    profiles = source.parent / PROFILES_FILE
    if profiles.exists() and isinstance(data, dict):
        data["combined_profiles"] = (_read_yaml(profiles) or {}).get("profiles", [])
    try:
        return Catalogue.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CatalogueError(f"catalogue {source}: {where}: {first['msg']}") from exc


def _read_yaml(source: Path) -> Any:
    try:
        # libyaml's loader where present: the pure-Python one takes a second on this file.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        return yaml.load(source.read_text(encoding="utf-8"), Loader=loader)  # noqa: S506
    except OSError as exc:
        raise CatalogueError(f"cannot read catalogue {source}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise CatalogueError(f"catalogue {source} is not valid YAML: {exc}") from exc
