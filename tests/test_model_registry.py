"""The model registry (TOML) and how model failures surface: a bad registry file stops the
server at start with a clear message; a bad model file answers 503 and never stops the server."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from tests.conftest import ADMIN_KEY, make_settings, wait_ready
from tests.oracles import assert_error
from vecstore.app import create_app
from vecstore.errors import UnknownModel
from vecstore.inference.host import InferenceConfig, ModelHost
from vecstore.inference.registry import ModelRegistry, RegistryError, ResolvedFiles, resolve_files
from vecstore.settings import Settings

Client = TestClient[Litestar]
MakeCollection = Callable[..., dict[str, Any]]
MODEL = "all-MiniLM-L6-v2"
SENTENCE = "Registries name models; collections remember which one embeds their text."


@contextmanager
def serve(settings: Settings) -> Iterator[Client]:
    app = create_app(settings)
    with TestClient(app=app, raise_server_exceptions=False) as client:
        wait_ready(client)
        client.headers["x-api-key"] = ADMIN_KEY
        yield client


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def create(client: Client, name: str, dim: int, **body: Any) -> Any:
    return client.post("/v1/collections", json={"name": name, "dim": dim, **body})


@pytest.fixture(scope="module")
def default_files() -> ResolvedFiles:
    return resolve_files(ModelRegistry.load().get(MODEL))


@pytest.fixture(scope="module")
def reference_vector() -> np.ndarray:
    host = ModelHost(ModelRegistry.load(), InferenceConfig(micro_batching=False))
    try:
        vector: np.ndarray = host.embed([SENTENCE], MODEL).vectors[0]
    finally:
        host.close()
    return vector


def model_entry(
    model_id: str,
    onnx: str,
    tokenizer: str,
    *,
    dimension: int | None = 384,
    extra: str = "",
    onnx_extra: str = "",
) -> str:
    lines = ["[[model]]", f'id = "{model_id}"', 'kind = "embedding"']
    if dimension is not None:
        lines.append(f"dimension = {dimension}")
    lines += [
        "max_tokens = 256",
        f'onnx = {{ path = "{onnx}"{onnx_extra} }}',
        f'tokenizer = {{ path = "{tokenizer}" }}',
    ]
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


# -- the built-in registry ---------------------------------------------------------------------
def test_builtin_registry_lists_the_default_model() -> None:
    registry = ModelRegistry.load()
    specs = {s.id: s for s in registry.specs()}
    assert MODEL in specs
    spec = specs[MODEL]
    assert spec.kind == "embedding"
    assert spec.dimension == 384
    assert spec.max_tokens == 256
    assert spec.pooling == "mean"
    assert spec.normalize is True
    info = spec.info()
    assert (info.id, info.kind, info.dimension, info.max_tokens) == (MODEL, "embedding", 384, 256)
    for alias in ("sentence-transformers/all-MiniLM-L6-v2", "all-minilm-l6-v2"):
        assert alias in spec.aliases
        assert registry.get(alias) is spec
        assert registry.get(alias, kind="embedding") is spec
    assert registry.find("ALL-MINILM-L6-V2") is None  # names are exact, not case-folded
    files = resolve_files(spec)
    assert files.onnx.is_file()
    assert files.tokenizer.is_file()


def test_unknown_model_names_the_known_ones() -> None:
    registry = ModelRegistry.load()
    with pytest.raises(UnknownModel) as info:
        registry.get("nope")
    assert info.value.status == 400
    assert "'nope'" in info.value.message
    assert MODEL in info.value.message
    with pytest.raises(UnknownModel) as by_kind:
        registry.get(MODEL, kind="cross-encoder")
    assert "cross-encoder" in by_kind.value.message


# -- a user registry file ----------------------------------------------------------------------
@pytest.fixture
def copied_model_toml(tmp_path: Path, default_files: ResolvedFiles) -> Path:
    """The default model's files copied under a new id, named relative to the TOML file."""
    conf = tmp_path / "conf"
    (conf / "models").mkdir(parents=True)
    shutil.copyfile(default_files.onnx, conf / "models" / "model.onnx")
    shutil.copyfile(default_files.tokenizer, conf / "models" / "tokenizer.json")
    toml = conf / "models.toml"
    toml.write_text(
        model_entry(
            "my-minilm",
            "models/model.onnx",
            "models/tokenizer.json",
            extra='aliases = ["mini-copy"]',
        )
    )
    return toml


def test_user_file_adds_a_model_with_paths_relative_to_itself(
    copied_model_toml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative to the file, not to the working directory
    registry = ModelRegistry.load(copied_model_toml)
    ids = [s.id for s in registry.specs()]
    assert ids[0] == MODEL  # the built-ins stay
    assert "my-minilm" in ids
    spec = registry.get("mini-copy")
    assert spec.id == "my-minilm"
    files = resolve_files(spec)
    assert files.onnx == copied_model_toml.parent.resolve() / "models" / "model.onnx"
    assert files.tokenizer == copied_model_toml.parent.resolve() / "models" / "tokenizer.json"


def test_settings_read_the_models_file_from_the_environment(copied_model_toml: Path) -> None:
    settings = Settings.from_env({"VECSTORE_MODELS_FILE": str(copied_model_toml)})
    assert settings.models_file == copied_model_toml


def test_user_model_embeds_like_the_default_through_http(
    copied_model_toml: Path, data_dir: Path, reference_vector: np.ndarray
) -> None:
    settings = make_settings(data_dir, models_file=copied_model_toml)
    with serve(settings) as client:
        info = ok(create(client, "mine", 384, embedding_model="mini-copy"), 201)
        assert info["embedding_model"] == "my-minilm"  # the canonical id, never the alias
        assert ok(client.get("/v1/collections/mine"))["embedding_model"] == "my-minilm"
        r = client.post("/v1/collections/mine/upsert", json={"external_id": "s", "text": SENTENCE})
        assert ok(r)["status"] == "inserted"
        other = {"external_id": "o", "text": "Bananas are yellow and rich in potassium."}
        ok(client.post("/v1/collections/mine/upsert", json=other))
        record = ok(client.get("/v1/collections/mine/vectors/s", params={"include_vector": True}))
        np.testing.assert_allclose(np.asarray(record["vector"]), reference_vector, atol=1e-5)
        assert record["content"] == SENTENCE
        hits = ok(client.post("/v1/collections/mine/search", json={"text": SENTENCE, "k": 2}))
        assert [h["external_id"] for h in hits["results"]] == ["s", "o"]
        assert hits["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert hits["results"][1]["score"] < 0.5


# -- a malformed registry file stops the server at start ---------------------------------------
def _dup_alias(onnx: str, tok: str) -> str:
    return model_entry("a", onnx, tok, extra='aliases = ["shared"]') + model_entry(
        "b", onnx, tok, extra='aliases = ["shared"]'
    )


BAD_REGISTRIES: dict[str, tuple[Callable[[str, str], str], list[str]]] = {
    "malformed toml": (lambda o, t: '[[model]\nid = "x"\n', ["model registry"]),
    "unknown field": (
        lambda o, t: model_entry("x", o, t, extra='colour = "blue"'),
        ["model registry", "colour"],
    ),
    "unknown source field": (
        lambda o, t: model_entry("x", o, t, onnx_extra=', checksum = "abc"'),
        ["model registry", "checksum"],
    ),
    "no dimension": (
        lambda o, t: model_entry("x", o, t, dimension=None),
        ["'x'", "dimension"],
    ),
    "duplicate alias": (_dup_alias, ["'shared'", "'a'", "'b'"]),
    "alias of a built-in": (
        lambda o, t: model_entry("mine", o, t, extra='aliases = ["all-minilm-l6-v2"]'),
        ["'all-minilm-l6-v2'", MODEL, "'mine'"],
    ),
    "bad kind": (
        lambda o, t: model_entry("x", o, t).replace('"embedding"', '"classifier"'),
        ["model registry", "kind"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REGISTRIES))
def test_a_bad_registry_file_is_a_clear_start_up_error(
    case: str, tmp_path: Path, data_dir: Path, default_files: ResolvedFiles
) -> None:
    make_text, fragments = BAD_REGISTRIES[case]
    toml = tmp_path / "bad-models.toml"
    toml.write_text(make_text(str(default_files.onnx), str(default_files.tokenizer)))
    with pytest.raises(RegistryError) as info:
        ModelRegistry.load(toml)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    if "model registry" in fragments:
        assert str(toml) in message  # the file is named
    with pytest.raises(RegistryError) as at_start:
        create_app(make_settings(data_dir, models_file=toml))
    assert str(at_start.value) == message


def test_a_missing_registry_file_is_a_start_up_error(tmp_path: Path, data_dir: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(RegistryError, match=r"nowhere\.toml"):
        create_app(make_settings(data_dir, models_file=missing))


def test_a_default_model_that_is_not_registered_is_a_start_up_error(data_dir: Path) -> None:
    with pytest.raises(UnknownModel, match="no-such-model"):
        create_app(make_settings(data_dir, default_embedding_model="no-such-model"))


# -- broken model files answer 503 and never stop the server -----------------------------------
@pytest.fixture
def broken_toml(tmp_path: Path, default_files: ResolvedFiles) -> Path:
    (tmp_path / "garbage.onnx").write_bytes(b"\x08\x07 definitely not an ONNX graph " * 64)
    tok = str(default_files.tokenizer)
    real = str(default_files.onnx)
    toml = tmp_path / "broken.toml"
    toml.write_text(
        model_entry("missing-onnx", "no/such/model.onnx", tok)
        + model_entry("bad-sha", real, tok, onnx_extra=f', sha256 = "{"0" * 64}"')
        + model_entry("garbage", "garbage.onnx", tok)
        + model_entry("wrong-dim", real, tok, dimension=128)
    )
    return toml


BROKEN = [
    ("missing-onnx", 384, ["does not exist", "no/such/model.onnx"]),
    ("bad-sha", 384, ["sha256", "0" * 64]),
    ("garbage", 384, ["garbage.onnx", "protobuf"]),
    ("wrong-dim", 128, ["dimension 128", "384"]),
]


def assert_model_unavailable(response: Any, model_id: str, fragments: list[str]) -> None:
    error = assert_error(response, 503, "model_unavailable")
    message: str = error["message"]
    assert f"'{model_id}'" in message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)
    assert error["request_id"]
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize(("model_id", "dim", "fragments"), BROKEN)
def test_a_broken_model_answers_503_and_the_server_keeps_serving(
    model_id: str, dim: int, fragments: list[str], broken_toml: Path, data_dir: Path
) -> None:
    with serve(make_settings(data_dir, models_file=broken_toml)) as client:
        info = ok(create(client, "broken", dim, embedding_model=model_id), 201)
        assert info["embedding_model"] == model_id
        ok(create(client, "fine", 384), 201)
        ok(create(client, "plain", 4), 201)
        base = "/v1/collections/broken"
        text_requests = [
            ("upsert", {"external_id": "t", "text": "hello there"}),
            ("bulk_upsert", {"items": [{"external_id": "t", "text": "hello there"}]}),
            ("search", {"text": "hello there"}),
            ("bulk_search", {"queries": [{"text": "hello there"}]}),
            ("rerank", {"text": "hello there", "candidates": ["v"]}),
        ]
        for route, body in text_requests:
            assert_model_unavailable(client.post(f"{base}/{route}", json=body), model_id, fragments)
        # Asked again, the answer is the same (the failure is remembered, not retried per call).
        assert_model_unavailable(
            client.post(f"{base}/upsert", json=text_requests[0][1]), model_id, fragments
        )
        assert ok(client.post(f"{base}/count", json={}))["count"] == 0  # nothing was written

        # Vectors still work on the same collection ...
        vector = [0.0] * dim
        vector[0] = 1.0
        r = client.post(f"{base}/upsert", json={"external_id": "v", "vector": vector})
        assert ok(r)["status"] == "inserted"
        hits = ok(client.post(f"{base}/search", json={"vector": vector, "k": 1}))["results"]
        assert [h["external_id"] for h in hits] == ["v"]
        # ... and other collections, text included, are unaffected.
        r = client.post("/v1/collections/fine/upsert", json={"external_id": "f", "text": SENTENCE})
        assert ok(r)["status"] == "inserted"
        found = ok(client.post("/v1/collections/fine/search", json={"text": SENTENCE, "k": 1}))
        assert found["results"][0]["external_id"] == "f"
        r = client.post(
            "/v1/collections/plain/upsert", json={"external_id": "p", "vector": [1, 2, 3, 4]}
        )
        assert ok(r)["status"] == "inserted"
        assert client.get("/ready").status_code == 200
        assert client.get("/health").status_code == 200
        health = ok(client.get("/v1/health"))["models"]
        status = {m["id"]: m["status"] for m in health}
        assert status[MODEL] == "loaded"
        assert fragments[0].lower() in status[model_id].lower()


def test_preloading_a_broken_default_model_still_lets_the_server_become_ready(
    broken_toml: Path, data_dir: Path
) -> None:
    settings = make_settings(
        data_dir,
        models_file=broken_toml,
        default_embedding_model="missing-onnx",
        preload_models=True,
    )
    with serve(settings) as client:  # serve() waits for /ready
        assert client.get("/ready").status_code == 200
        info = ok(create(client, "docs", 384), 201)
        assert info["embedding_model"] == "missing-onnx"  # the (broken) default fits dim 384
        r = client.post("/v1/collections/docs/upsert", json={"external_id": "a", "text": "hi"})
        assert_model_unavailable(r, "missing-onnx", ["does not exist"])
        vector = [1.0] + [0.0] * 383
        r = client.post("/v1/collections/docs/upsert", json={"external_id": "a", "vector": vector})
        assert ok(r)["status"] == "inserted"
        # A collection that names a working model embeds text normally.
        ok(create(client, "good", 384, embedding_model=MODEL), 201)
        r = client.post("/v1/collections/good/upsert", json={"external_id": "g", "text": "hi"})
        assert ok(r)["status"] == "inserted"


# -- no default embedder -----------------------------------------------------------------------
def test_empty_default_model_turns_text_input_off(data_dir: Path) -> None:
    with serve(make_settings(data_dir, default_embedding_model="")) as client:
        info = ok(create(client, "docs", 384), 201)
        assert info["embedding_model"] is None
        for route, body in [
            ("upsert", {"external_id": "a", "text": "hello"}),
            ("bulk_upsert", {"items": [{"external_id": "a", "text": "hello"}]}),
            ("search", {"text": "hello"}),
            ("bulk_search", {"queries": [{"text": "hello"}]}),
        ]:
            r = client.post(f"/v1/collections/docs/{route}", json=body)
            error = assert_error(r, 400, "embedding_unavailable")
            assert "vector" in error["message"]
        # A collection that names a model explicitly still embeds text.
        info = ok(create(client, "named", 384, embedding_model=MODEL), 201)
        assert info["embedding_model"] == MODEL
        r = client.post("/v1/collections/named/upsert", json={"external_id": "a", "text": "hi"})
        assert ok(r)["status"] == "inserted"


# -- collections and their embedding model -----------------------------------------------------
def test_a_384_d_collection_records_the_default_model(
    client: Client, make_collection: MakeCollection
) -> None:
    assert make_collection("big", 384)["embedding_model"] == MODEL
    assert ok(client.get("/v1/collections/big"))["embedding_model"] == MODEL
    listed = ok(client.get("/v1/collections"))["collections"]
    assert [c["embedding_model"] for c in listed if c["name"] == "big"] == [MODEL]


def test_a_collection_of_another_dimension_records_no_model(
    client: Client, make_collection: MakeCollection
) -> None:
    assert make_collection("small", 4)["embedding_model"] is None
    assert ok(client.get("/v1/collections/small"))["embedding_model"] is None


def test_an_alias_is_recorded_as_the_canonical_id(make_collection: MakeCollection) -> None:
    info = make_collection("aliased", 384, embedding_model="sentence-transformers/all-MiniLM-L6-v2")
    assert info["embedding_model"] == MODEL


def test_an_embedding_model_of_the_wrong_dimension_is_refused(client: Client) -> None:
    error = assert_error(
        create(client, "wrong", 128, embedding_model=MODEL), 400, "dimension_mismatch"
    )
    assert "384" in error["message"]
    assert "128" in error["message"]
    assert client.get("/v1/collections/wrong").status_code == 404


def test_an_unknown_embedding_model_is_refused(client: Client) -> None:
    error = assert_error(create(client, "x", 384, embedding_model="nope"), 400, "unknown_model")
    assert "'nope'" in error["message"]
    assert MODEL in error["message"]
    assert client.get("/v1/collections/x").status_code == 404


def test_text_on_a_collection_no_model_fits_names_the_dimension(
    client: Client, make_collection: MakeCollection
) -> None:
    make_collection("small", 4)
    for route, body in [
        ("upsert", {"external_id": "a", "text": "hello"}),
        ("bulk_upsert", {"items": [{"external_id": "a", "text": "hello"}]}),
        ("search", {"text": "hello"}),
        ("rerank", {"text": "hello", "candidates": ["a"]}),
    ]:
        r = client.post(f"/v1/collections/small/{route}", json=body)
        message = assert_error(r, 400, "embedding_unavailable")["message"]
        assert "dim 4" in message, message
        assert "384" in message, message
    assert ok(client.post("/v1/collections/small/count", json={}))["count"] == 0
