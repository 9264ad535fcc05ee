"""The catalogue placer: real catalogue, real scikit-learn, no fakes."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from matcher.settings import ModelSettings
from models.catalogue import load_catalogue
from models.embedders import Role
from models.exceptions import CatalogueError, ModelsError
from models.placement import (
    _ENGLISH_WORD,
    CataloguePlacer,
    PlacementConfig,
    _compile_keywords,
    _stem_english,
    _stem_word,
    load_or_fit,
    normalise,
    split_clauses,
    text_language,
    text_languages,
)


@pytest.fixture(scope="module")
def placer() -> CataloguePlacer:
    return CataloguePlacer(load_catalogue()).fit()


def test_catalogue_has_the_agreed_types() -> None:
    catalogue = load_catalogue()
    assert len(catalogue.types) >= 60
    assert {"health.ent", "repair.electrical", "tutor.math", "lang.english"} <= set(catalogue.ids)
    assert catalogue.out_of_scope
    assert catalogue.support is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("孩子吃鱼被鱼刺卡住了，咽不下去", "health.ent"),
        ("厨房的灯一开就跳闸，整个屋都黑了", "repair.electrical"),
        ("My son keeps failing his algebra homework", "tutor.math"),
        ("The pipe under the sink is leaking everywhere", "repair.plumbing"),
    ],
)
def test_needs_land_in_their_type(placer: CataloguePlacer, text: str, expected: str) -> None:
    assert placer.place_need(text).top == expected


def test_out_of_scope_need_is_not_placed(placer: CataloguePlacer) -> None:
    assert placer.place_need("公交车站挪远了，要求公交公司改回原来的线路").top is None


def test_talk_with_helpers_gets_organisers_as_support(placer: CataloguePlacer) -> None:
    placement = placer.place_need("想请消防员来社区讲座，讲讲冬天用电防火，再要两个人布置会场")
    assert placement.top == "safety.fire"
    assert [t for t, _ in placement.support] == ["events.organising"]


@pytest.mark.parametrize(
    "text",
    [
        "Monthly free haircut day for the seniors in the courtyard? About 30 old folks would come.",
        "入秋了大伙儿想听听怎么进补、艾灸这些，报名的有30来位",
    ],
)
def test_an_audience_of_ten_or_more_marks_an_event(placer: CataloguePlacer, text: str) -> None:
    assert [t for t, _ in placer.place_need(text).support] == ["events.organising"]


def test_two_people_to_carry_a_sofa_are_not_an_audience(placer: CataloguePlacer) -> None:
    assert placer.place_need("Need 2 people to carry a sofa up to the 5th floor").support == ()


@pytest.mark.parametrize(
    ("profile", "offered", "not_offered"),
    [
        (
            "Korean native speaker living in Wangjing, my Chinese is good, happy to interpret",
            {"lang.korean"},
            {"lang.english"},
        ),
        ("在日企工作十五年，日语一级，能做陪同口译和文件翻译", {"lang.japanese"}, {"lang.english"}),
        (
            "Fluent in Japanese and English, can interpret at hospitals",
            {"lang.japanese", "lang.english"},
            set(),
        ),
        # Names no language: left to the model, which reads interpreting as English here.
        ("Can interpret for foreign neighbours at the hospital", {"lang.english"}, set()),
    ],
)
def test_a_profile_that_names_languages_interprets_only_those(
    placer: CataloguePlacer, profile: str, offered: set[str], not_offered: set[str]
) -> None:
    types = set(placer.place_volunteer(profile))
    assert offered <= types
    assert not types & not_offered


def test_volunteer_with_two_skills_gets_both(placer: CataloguePlacer) -> None:
    types = placer.place_volunteer("持证电工，也会修水管和马桶")
    assert {"repair.electrical", "repair.plumbing"} <= set(types)


def test_placement_is_cached_and_batched(placer: CataloguePlacer) -> None:
    texts = ["牙疼了三天", "Need help filling in my pension form online"]
    placer.prepare(texts, ["退休中学数学老师"])
    assert placer.place_need(texts[0]) is placer.place_need(texts[0])


def test_version_names_catalogue_and_config(placer: CataloguePlacer) -> None:
    assert placer.version.startswith("placer6-cat")


def test_split_clauses() -> None:
    assert split_clauses("电工，会修水管; also plumbing and tiling") == [
        "电工",
        "会修水管",
        "also plumbing",
        "tiling",
    ]
    assert split_clauses("PT私教+康复师") == ["pt私教", "康复师"]


def test_a_named_profession_is_covered_beside_a_stronger_one(placer: CataloguePlacer) -> None:
    """One clause, two services: the softmax gives most of the unit to one, the keyword
    keeps the other."""
    types = placer.place_volunteer(
        "Pharmacist who also gives talks on healthy eating for people with diabetes"
    )
    assert {"health.pharmacy", "health.nutrition"} <= set(types)


def test_broken_catalogue_says_where(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text("version: '1'\ntypes:\n  - id: Bad Id\n", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"types\.0"):
        load_catalogue(path)


def test_text_language() -> None:
    assert text_language("楼道的灯不亮了") == "zh"
    assert text_language("The hallway light is out") == "en"
    assert text_language("楼道的 light switch 按了没反应") == "mixed"


@given(st.lists(st.text(alphabet="aZ9 楼道灯ＡＢ-'\x00é", max_size=12), max_size=6))
def test_a_batch_of_texts_gets_the_languages_each_text_has(texts: list[str]) -> None:
    def counted_one_by_one(text: str) -> str:
        han = len(re.findall(r"[\u4e00-\u9fff]", text))
        latin = len(re.findall(r"[A-Za-z]", text))
        if latin <= 0.1 * (han + latin):
            return "zh"
        return "en" if han <= 0.1 * (han + latin) else "mixed"

    assert text_languages(texts) == [counted_one_by_one(t) for t in texts]
    assert [text_language(t) for t in texts] == text_languages(texts)


@given(st.text(alphabet="abcdeginrsly'- 9楼,", max_size=40))
def test_stems_are_the_tokens_of_the_text_stemmed_in_place(text: str) -> None:
    """The word vectorizer sees only the stems; it must tokenise them as it would the
    whole text with each word stemmed where it stands."""
    in_place = _ENGLISH_WORD.sub(lambda m: _stem_word(m.group(0)), text.lower())
    assert _ENGLISH_WORD.findall(_stem_english(text)) == _ENGLISH_WORD.findall(in_place)


def test_keywords_found_in_a_batch_are_those_each_text_contains() -> None:
    """Against the plain reading: a Chinese keyword anywhere, a Latin one as a whole word."""
    catalogue = load_catalogue()
    lexicon = _compile_keywords(catalogue.types)
    texts = [normalise(x) for t in catalogue.types[::3] for x in t.need_examples[::4]]
    texts += ["", "a", "跳闸", "又跳闸了", "parents", "an ent doctor", "换药", "ｐｉｃｃ管"]
    texts = [normalise(t) for t in texts]

    def reference(text: str) -> set[str]:
        return {
            service_type
            for word, service_type in lexicon.type_of.items()
            if (lexicon.latin[word].search(text) if word in lexicon.latin else word in text)
        }

    found = lexicon.types_in_each(texts)
    assert found == [reference(t) for t in texts]
    assert found[texts.index("又跳闸了")] == {"repair.electrical"}
    assert "health.ent" not in found[texts.index("parents")]


def test_thresholds_are_per_language() -> None:
    config = PlacementConfig(need_threshold_en=0.9)
    assert config.need_threshold("en") == 0.9
    assert config.need_threshold("zh") == PlacementConfig().need_threshold_zh
    strict = CataloguePlacer(load_catalogue(), config=config).fit()
    assert strict.place_need("The pipe under the sink is leaking everywhere").top is None
    assert strict.place_need("厨房水管漏水，地上全是水").top == "repair.plumbing"


def test_profile_of_two_trades_in_english_gets_both(placer: CataloguePlacer) -> None:
    types = placer.place_volunteer("Licensed electrician; I also fix leaking taps and toilets")
    assert {"repair.electrical", "repair.plumbing"} <= set(types)


def _catalogue_with_profiles(tmp_path: Path, profiles: str) -> Path:
    source = load_catalogue().model_dump(exclude={"out_of_scope", "support", "combined_profiles"})
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(source, allow_unicode=True), encoding="utf-8")
    (tmp_path / "profiles.yaml").write_text(profiles, encoding="utf-8")
    return path


def test_combined_profiles_teach_every_type_they_name(tmp_path: Path) -> None:
    made_up = "拾掇葫芦瓢"  # words no catalogue example uses
    lines = [
        f"  - types: [repair.plumbing, repair.electrical]\n    text: {made_up}{n}号\n"
        for n in range(6)
    ]
    path = _catalogue_with_profiles(tmp_path, "profiles:\n" + "".join(lines))
    catalogue = load_catalogue(path)
    assert len(catalogue.combined_profiles) == 6
    types = CataloguePlacer(catalogue).fit().place_volunteer(f"{made_up}的师傅")
    assert {"repair.plumbing", "repair.electrical"} <= set(types)


def test_combined_profile_with_an_unknown_type_is_refused(tmp_path: Path) -> None:
    path = _catalogue_with_profiles(
        tmp_path, "profiles:\n  - types: [repair.plumbing, repair.teleport]\n    text: 水电\n"
    )
    with pytest.raises(CatalogueError, match=r"combined profile 1 names unknown types"):
        load_catalogue(path)


def test_fit_cache_stores_then_loads_the_same_placer(
    tmp_path: Path, placer: CataloguePlacer, caplog: pytest.LogCaptureFixture
) -> None:
    catalogue = load_catalogue()
    first = load_or_fit(CataloguePlacer(catalogue), tmp_path)
    [stored] = tmp_path.glob("placer-*.joblib")
    second = CataloguePlacer(catalogue)
    second.fit = None  # type: ignore[method-assign]  # loading must not fit
    second = load_or_fit(second, tmp_path)
    texts = ["厨房水管漏水，地上全是水", "my son can't follow his maths homework"]
    assert second.predict_needs(texts) == first.predict_needs(texts) == placer.predict_needs(texts)
    assert second.place_volunteer("退休电工") == placer.place_volunteer("退休电工")

    stored.write_bytes(b"not a pickle")
    third = load_or_fit(CataloguePlacer(catalogue), tmp_path)
    assert "unreadable" in caplog.text
    assert third.predict_needs(texts) == first.predict_needs(texts)


def test_fit_cache_that_cannot_be_written_still_gives_a_placer(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("", encoding="utf-8")
    placer = load_or_fit(CataloguePlacer(load_catalogue()), blocked / "placer")
    assert placer.place_need("厨房水管漏水，地上全是水").top == "repair.plumbing"


def test_a_cached_fit_of_another_catalogue_is_refused(tmp_path: Path) -> None:
    placer = CataloguePlacer(load_catalogue()).fit()
    state = {**placer.fitted_state(), "key": "placer-something-else"}
    with pytest.raises(ModelsError, match="fitted from something else"):
        CataloguePlacer(load_catalogue()).restore(state)


def test_fit_cache_keeps_only_the_most_recent_fits(tmp_path: Path) -> None:
    for n in range(5):
        (tmp_path / f"placer-old{n}.joblib").write_bytes(b"x")
    load_or_fit(CataloguePlacer(load_catalogue()), tmp_path)
    assert len(list(tmp_path.glob("placer-*.joblib"))) == 3


def test_an_empty_fit_cache_setting_turns_the_cache_off() -> None:
    assert ModelSettings(fit_cache_dir="").fit_cache_dir is None
    assert ModelSettings(fit_cache_dir="/srv/cache").fit_cache_dir == Path("/srv/cache")
    assert ModelSettings().fit_cache_dir is not None


class RecordingEmbedder:
    """Deterministic vectors from a hash of the text; remembers every text it encoded."""

    name = "recording@1"
    dim = 8

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> npt.NDArray[np.float32]:
        self.seen += texts
        rows = [np.frombuffer(hashlib.sha256(t.encode()).digest()[:8], np.uint8) for t in texts]
        matrix = np.array(rows, dtype=np.float32).reshape(len(texts), self.dim) + 1.0
        unit: npt.NDArray[np.float32] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        return unit


@pytest.fixture(scope="module")
def english_embedder() -> RecordingEmbedder:
    return RecordingEmbedder()


@pytest.fixture(scope="module")
def placer_with_english(english_embedder: RecordingEmbedder) -> CataloguePlacer:
    return CataloguePlacer(load_catalogue(), language_embedders={"en": english_embedder}).fit()


def test_a_language_embedder_reads_only_texts_in_its_language(
    placer: CataloguePlacer,
    placer_with_english: CataloguePlacer,
    english_embedder: RecordingEmbedder,
) -> None:
    chinese = ["厨房水管漏水，地上全是水", "孩子吃鱼被鱼刺卡住了"]
    english = placer_with_english.predict_needs(["my son can't follow his maths homework"])
    assert english[0].top is not None
    assert placer_with_english.predict_needs(chinese) == placer.predict_needs(chinese)
    assert english_embedder.seen
    assert {text_language(t) for t in english_embedder.seen} == {"en"}
    before = len(english_embedder.seen)
    placer_with_english.predict_volunteers(["retired plumber, weekends free"])
    assert len(english_embedder.seen) == before  # needs only
    assert placer_with_english.version.endswith("-en:recording@1")


@pytest.mark.parametrize(("gate", "consulted"), [(0.0, False), (1.01, True)])
def test_the_embedder_is_asked_only_about_unsure_texts(gate: float, consulted: bool) -> None:
    embedder = RecordingEmbedder()
    config = PlacementConfig(embedding_gate=gate)
    placer = CataloguePlacer(load_catalogue(), language_embedders={"en": embedder}, config=config)
    placer.fit()
    embedder.seen.clear()
    placer.place_need("The pipe under the sink is leaking everywhere")
    assert bool(embedder.seen) is consulted


def test_an_unknown_language_is_refused() -> None:
    with pytest.raises(ModelsError, match="unknown language"):
        CataloguePlacer(load_catalogue(), language_embedders={"fr": RecordingEmbedder()})


def test_fit_cache_keeps_the_example_vectors_of_an_embedder(
    tmp_path: Path, placer: CataloguePlacer, placer_with_english: CataloguePlacer
) -> None:
    catalogue = load_catalogue()
    with_english = CataloguePlacer(catalogue, language_embedders={"en": RecordingEmbedder()})
    assert with_english.fit_key not in (placer.fit_key, "")
    load_or_fit(with_english, tmp_path)
    again = CataloguePlacer(catalogue, language_embedders={"en": RecordingEmbedder()})
    again.fit = None  # type: ignore[method-assign]  # loading must not fit
    again = load_or_fit(again, tmp_path)
    texts = ["The pipe under the sink is leaking everywhere", "牙疼了三天"]
    assert again.predict_needs(texts) == placer_with_english.predict_needs(texts)


class FailingEmbedder(RecordingEmbedder):
    """Encodes the catalogue at fit time, then breaks (torch out of memory, say)."""

    broken = False

    def encode(self, texts: Sequence[str], *, role: Role = "passage") -> npt.NDArray[np.float32]:
        if self.broken:
            raise RuntimeError("out of memory")
        return super().encode(texts, role=role)


def test_a_failing_embedder_costs_its_signal_not_the_placement(
    placer: CataloguePlacer, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = FailingEmbedder()
    config = PlacementConfig(embedding_gate=1.01)  # ask it about every English text
    with_embedder = CataloguePlacer(
        load_catalogue(), language_embedders={"en": embedder}, config=config
    ).fit()
    embedder.broken = True
    text = "The pipe under the sink is leaking everywhere"
    assert with_embedder.place_need(text) == placer.place_need(text)
    assert "RuntimeError" in caplog.text
    assert "sink" not in caplog.text  # residents' words stay out of the log
