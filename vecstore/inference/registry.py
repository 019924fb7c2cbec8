"""The model registry: which models the server can run, read from TOML (configuration, not code).

The built-in ``models.toml`` registers the default embedder; ``VECSTORE_MODELS_FILE`` adds more.
A model's files are named by a path or by an installed distribution and a path inside it, and are
verified (size and sha256, where given) before they are loaded.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from vecstore.domain import ModelInfo
from vecstore.errors import UnknownModel

KINDS = ("embedding", "cross-encoder")


class RegistryError(ValueError):
    """The registry file itself is wrong: the server refuses to start, naming the problem."""


class ModelFileError(RuntimeError):
    """A model's file is missing or does not match its recorded size or checksum."""


class FileSource(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    # Either a path (absolute, or relative to the registry file), or a distribution installed in
    # this environment and a path inside it: the file is read, the package is never imported.
    path: str
    package: str | None = None
    sha256: str | None = None
    size: int | None = None


class ModelSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    kind: Literal["embedding", "cross-encoder"]
    onnx: FileSource
    tokenizer: FileSource
    max_tokens: int = 512
    dimension: int | None = None
    pooling: Literal["mean", "cls"] = "mean"
    normalize: bool = True
    aliases: list[str] = msgspec.field(default_factory=list)
    # Prepended to every text before tokenisation (e5/bge-style models want "query: " etc.).
    query_prefix: str = ""
    document_prefix: str = ""
    # The ONNX output to read; empty means the graph's first output.
    output: str = ""

    def info(self) -> ModelInfo:
        return ModelInfo(self.id, self.kind, self.dimension, self.max_tokens, tuple(self.aliases))


class _RegistryFile(msgspec.Struct, forbid_unknown_fields=True):
    model: list[ModelSpec] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ResolvedFiles:
    onnx: Path
    tokenizer: Path


def builtin_registry_text() -> str:
    return importlib.resources.files("vecstore.inference").joinpath("models.toml").read_text()


def parse_registry(text: str, *, origin: str, base_dir: Path | None) -> list[ModelSpec]:
    try:
        raw = tomllib.loads(text)
        parsed = msgspec.convert(raw, _RegistryFile)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise RegistryError(f"model registry {origin}: {exc}") from exc
    specs: list[ModelSpec] = []
    for spec in parsed.model:
        if spec.kind == "embedding" and (spec.dimension is None or spec.dimension < 1):
            raise RegistryError(
                f"model registry {origin}: embedding model '{spec.id}' needs 'dimension' (>= 1)"
            )
        if not 1 <= spec.max_tokens <= 1_000_000:
            raise RegistryError(f"model registry {origin}: '{spec.id}'.max_tokens must be >= 1")
        if base_dir is not None:
            spec = msgspec.structs.replace(
                spec,
                onnx=_anchor(spec.onnx, base_dir),
                tokenizer=_anchor(spec.tokenizer, base_dir),
            )
        specs.append(spec)
    return specs


def _anchor(source: FileSource, base_dir: Path) -> FileSource:
    if source.package is not None or Path(source.path).is_absolute():
        return source
    return msgspec.structs.replace(source, path=str(base_dir / source.path))


class ModelRegistry:
    """Model specs by id and alias. Built-ins first; a user file adds or replaces entries."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        for spec in specs:
            self._specs[spec.id] = spec
        self._names: dict[str, str] = {}
        for spec in self._specs.values():
            for name in (spec.id, *spec.aliases):
                owner = self._names.get(name)
                if owner is not None and owner != spec.id:
                    raise RegistryError(
                        f"model name '{name}' is used by both '{owner}' and '{spec.id}'"
                    )
                self._names[name] = spec.id

    @classmethod
    def load(cls, extra_file: Path | None = None) -> ModelRegistry:
        specs = parse_registry(builtin_registry_text(), origin="(built-in)", base_dir=None)
        if extra_file is not None:
            try:
                text = extra_file.read_text()
            except OSError as exc:
                raise RegistryError(f"model registry {extra_file}: {exc.strerror}") from exc
            specs += parse_registry(
                text, origin=str(extra_file), base_dir=extra_file.resolve().parent
            )
        return cls(specs)

    def specs(self) -> list[ModelSpec]:
        return list(self._specs.values())

    def find(self, name: str) -> ModelSpec | None:
        canonical = self._names.get(name)
        return self._specs[canonical] if canonical is not None else None

    def get(self, name: str, *, kind: str | None = None) -> ModelSpec:
        """The model a client named (an id or an alias); 400 naming the known ones otherwise."""
        spec = self.find(name)
        if spec is None or (kind is not None and spec.kind != kind):
            known = ", ".join(s.id for s in self._specs.values() if kind in (None, s.kind))
            what = f"{kind} model" if kind else "model"
            raise UnknownModel(
                f"'model' '{name}' is not a known {what}; known: {known or '(none)'}"
                " (see GET /v1/models)"
            )
        return spec


def resolve_files(spec: ModelSpec) -> ResolvedFiles:
    return ResolvedFiles(_locate(spec.onnx, spec.id), _locate(spec.tokenizer, spec.id))


def _locate(source: FileSource, model_id: str) -> Path:
    if source.package is None:
        path = Path(source.path)
    else:
        try:
            dist = importlib.metadata.distribution(source.package)
        except importlib.metadata.PackageNotFoundError as exc:
            raise ModelFileError(
                f"model '{model_id}': the package '{source.package}' that holds"
                f" {source.path} is not installed (pip install {source.package})"
            ) from exc
        path = Path(str(dist.locate_file(source.path)))
    if not path.is_file():
        raise ModelFileError(f"model '{model_id}': file {path} does not exist")
    return path


def verify_file(path: Path, source: FileSource, model_id: str) -> None:
    """Size first (cheap), then sha256: a truncated download or a swapped file never loads."""
    if source.size is not None and path.stat().st_size != source.size:
        raise ModelFileError(
            f"model '{model_id}': {path} is {path.stat().st_size} bytes, expected {source.size}"
        )
    if source.sha256 is not None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != source.sha256.lower():
            raise ModelFileError(
                f"model '{model_id}': {path} has sha256 {digest.hexdigest()},"
                f" expected {source.sha256}"
            )
