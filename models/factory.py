"""Build the skill model the settings ask for: once per process."""

from __future__ import annotations

from functools import lru_cache

from matcher.settings import ModelSettings
from models.catalogue import load_catalogue
from models.placement import CataloguePlacer, load_or_fit


def build_skill_model(settings: ModelSettings) -> CataloguePlacer:
    return _build(settings)


@lru_cache(maxsize=4)
def _build(settings: ModelSettings) -> CataloguePlacer:
    catalogue = load_catalogue(settings.catalogue_path)
    embedder = None
    if settings.embedder != "none" and settings.embedder != "tfidf":
        from models.embedders import load_embedder

        model_path = str(settings.model_path) if settings.model_path else None
        embedder = load_embedder(
            settings.embedder, model_path=model_path, cache_size=settings.cache_size
        )
    placer = CataloguePlacer(catalogue, embedder=embedder)
    if embedder is not None or settings.fit_cache_dir is None:
        return placer.fit()
    return load_or_fit(placer, settings.fit_cache_dir)
