"""Build the skill model the settings ask for: once per process."""

from __future__ import annotations

import logging
from functools import lru_cache

from matcher.settings import EmbedderBackend, ModelSettings
from models.catalogue import load_catalogue
from models.embedders import Embedder
from models.exceptions import ModelUnavailableError
from models.placement import CataloguePlacer, load_or_fit

log = logging.getLogger(__name__)


def build_skill_model(settings: ModelSettings) -> CataloguePlacer:
    return _build(settings)


@lru_cache(maxsize=4)
def _build(settings: ModelSettings) -> CataloguePlacer:
    catalogue = load_catalogue(settings.catalogue_path)
    model_path = str(settings.model_path) if settings.model_path else None
    placer = CataloguePlacer(
        catalogue,
        embedder=_embedder(settings.embedder, settings, model_path=model_path),
        language_embedders=language_embedders(settings),
    )
    if settings.fit_cache_dir is None:
        return placer.fit()
    return load_or_fit(placer, settings.fit_cache_dir)


def language_embedders(settings: ModelSettings) -> dict[str, Embedder]:
    """The embedders that compare texts of one language with that language's examples."""
    english = _optional_embedder(settings.embedder_en, settings)
    return {"en": english} if english is not None else {}


def _embedder(
    backend: EmbedderBackend, settings: ModelSettings, *, model_path: str | None = None
) -> Embedder | None:
    if backend == "none" or backend == "tfidf":
        return None
    from models.embedders import load_embedder  # torch and model weights load only if asked

    return load_embedder(backend, model_path=model_path, cache_size=settings.cache_size)


def _optional_embedder(backend: EmbedderBackend, settings: ModelSettings) -> Embedder | None:
    """A language's embedder improves placement but is not needed for it: a machine
    without its package (``VOLMATCH_SKIP_ST=1``) places by classifier and keywords."""
    try:
        return _embedder(backend, settings)
    except ModelUnavailableError as exc:
        log.warning("%s embedder unavailable, placing without it: %s", backend, exc)
        return None
