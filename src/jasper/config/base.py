"""What every config section shares: strict models (an unknown key is an error), the error type, the names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from jasper.errors import JasperError

LossName = Literal["cosine", "similarity", "resim"]
# what a corpus row is: a query (short, searched with), a document (searched in), or plain text (both, or neither)
Role = Literal["text", "query", "document"]
ROLES: tuple[Role, ...] = ("text", "query", "document")


class ConfigError(JasperError):
    """A config file or override that cannot be used as given."""


class Strict(BaseModel):
    """A config section: unknown keys are errors, and values are checked when set."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)
