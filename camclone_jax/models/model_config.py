"""`NamedConfig`: what the VAE, umT5 and CLIP configs share. They are saved as config.json with a "model" name
so that a converted directory says what it holds (the DiT's config predates this and carries no name)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, ClassVar


class NamedConfig:
    """Mixin for frozen dataclass configs: `replace`, and JSON with a "model" field checked on load."""

    MODEL: ClassVar[str]  # the "model" value in config.json
    DESCRIPTION: ClassVar[str]  # for error messages

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps({"model": self.MODEL, **dataclasses.asdict(self)}, indent=2)

    @classmethod
    def from_json(cls, text: str):
        fields = json.loads(text)
        model = fields.pop("model", None)
        if model != cls.MODEL:
            raise ValueError(f"config.json does not describe a {cls.DESCRIPTION} (\"model\" is {model!r}, "
                             f"expected {cls.MODEL!r})")
        if unknown := set(fields) - {f.name for f in dataclasses.fields(cls)}:
            raise ValueError(f"unknown {cls.__name__} fields in config.json: {sorted(unknown)}")
        # JSON turns the configs' tuples into lists.
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
