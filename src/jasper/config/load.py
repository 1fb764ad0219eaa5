"""Loading a config: defaults -> YAML -> `key=value` overrides, validated, with errors that name the key."""

from __future__ import annotations

import difflib
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from jasper.config.schema import ConfigError, ModelEvalConfig, RunConfig, paper_stages
from jasper.run_folder import RunFolder


def _parse_override(item: str) -> tuple[list[str], Any]:
    """`key=value`: the value is taken verbatim for a text field, else read as YAML (`[1, 2]`, `1e-4`, `null`)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    if not key:
        raise ConfigError(f"override '{item}' has an empty key")
    path = key.split(".")
    if _is_text(_annotation(path)) and raw not in ("null", "~"):
        return path, raw  # `teachers.0.prompt=query: ` stays the string 'query: '
    try:
        return path, yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"override '{item}': the value is not valid YAML ({problem})") from None


def _annotation(path: list[str]) -> Any:
    """The type annotation of the config field at `path` (list indices skipped), or None if there is none."""
    model: Any = RunConfig
    annotation: Any = None
    for part in path:
        if part.isdigit():
            continue
        if get_origin(annotation) is dict:  # `student.prompts.query`: a key of a mapping, its value's type
            annotation = get_args(annotation)[1]
            model = _model_in(annotation)
            continue
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = _model_in(annotation)
    return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model an annotation holds: itself, an element of a list, or a member of a union."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_text(annotation: Any) -> bool:
    """str, str | None, or a Literal of strings: fields whose override values are never YAML."""
    if annotation is str:
        return True
    if get_origin(annotation) is Literal:
        return all(isinstance(a, str) for a in get_args(annotation))
    args = [a for a in get_args(annotation) if a is not type(None)]
    return get_origin(annotation) in (Union, types.UnionType) and len(args) == 1 and _is_text(args[0])


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node: Any = tree
    for i, part in enumerate(path[:-1]):
        node = node[_list_index(node, part, path[: i + 1])] if isinstance(node, list) else node.setdefault(part, {})
        if node is None:  # a section the config sets to null, e.g. `vision:`: the override fills it
            node = _parent(tree, path[: i + 1])[_key(path[i])] = {}
        if not isinstance(node, (dict, list)):
            where = ".".join(path[: i + 1])
            raise ConfigError(f"override '{'.'.join(path)}': '{where}' is a value ({node!r}), not a section")
    last = path[-1]
    if isinstance(node, list):
        node[_list_index(node, last, path)] = value
    else:
        node[last] = value


def _parent(tree: dict[str, Any], path: list[str]) -> Any:
    node: Any = tree
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _key(part: str) -> Any:
    return int(part) if part.isdigit() else part


def _list_index(node: list[Any], part: str, path: list[str]) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"override key '{'.'.join(path)}': '{part}' is not an index below {len(node)}")
    return int(part)


def _explain(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "<root>"
        if item["type"] == "extra_forbidden":
            known = _known_keys(item["loc"][:-1])
            hint = difflib.get_close_matches(str(item["loc"][-1]), known, n=1)
            extra = f" (did you mean '{hint[0]}'?)" if hint else ""
            lines.append(f"unknown key '{where}'{extra}")
        else:
            lines.append(f"{where}: {item['msg']}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = RunConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        model = _model_in(field.annotation) if field is not None else None
        if model is None:
            return []
    return list(model.model_fields)


def build_config(data: dict[str, Any], overrides: list[str] | None = None) -> RunConfig:
    """Validate a config dict after applying `key=value` overrides."""
    data = dict(data)
    if "stages" not in data and any(o.startswith("stages.") for o in overrides or []):
        data["stages"] = [s.model_dump() for s in paper_stages()]
    for item in overrides or []:
        path, value = _parse_override(item)
        _set_path(data, path, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


def model_eval_config(model: str, overrides: list[str] | None = None) -> ModelEvalConfig:
    """The settings of a plain-model evaluation: `name`, `output_dir` and `eval.*` overrides, nothing else."""
    data: dict[str, Any] = {"name": "eval-" + (Path(model.rstrip("/")).name or "model")}
    for item in overrides or []:
        path, value = _parse_override(item)
        if path[0] not in ModelEvalConfig.model_fields:
            raise ConfigError(
                f"override '{item}' does not apply to a plain model: only name=, output_dir= and eval.<key>= do"
            )
        _set_path(data, path, value)
    try:
        return ModelEvalConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or a run folder's `config.yaml`), apply overrides, validate. A run folder's config is
    anchored to that folder: the run is the folder named, and its relative paths still find their files when the
    command runs from elsewhere."""
    path = Path(path)
    if path.is_dir():
        return anchored(load_config(RunFolder(path).config, overrides), path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"config file '{path}' is not UTF-8 text (byte {error.start}): save it as UTF-8, or check it is the config"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file '{path}' is nested too deeply to be a config") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(f"config file '{path}' is not valid YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping, got {type(data).__name__}")
    return build_config(data, overrides)


# the config's paths to local files and folders, as (section, key): a list value holds several
PATH_FIELDS = (
    ("corpus", "path"), ("store", "dir"), ("student", "model"), ("eval", "stsb_dir"), ("eval", "flickr8k_dir"),
    ("eval", "imagenette_dir"), ("eval", "sts_files"), ("vision", "data"),
)  # fmt: skip


def anchored(config: RunConfig, folder: Path) -> RunConfig:
    """`config` as the run in `folder`: its run directory is `folder`, and a relative path that does not exist from
    here but does from where the run was made (the folder less `output_dir/name`) is made to point there."""
    base = _origin(config, Path(folder))
    if base is not None:
        data = config.model_dump()
        for node, key in _path_nodes(data):
            node[key] = _rebase(node[key], base)
        config = RunConfig.model_validate(data)
    config._folder = Path(folder)
    return config


def _origin(config: RunConfig, folder: Path) -> Path | None:
    """Where the run was made from: `folder` less its trailing `output_dir/name`, when it ends so."""
    made = Path(config.output_dir) / config.name
    if made.is_absolute():
        return None
    parts = folder.resolve().parts
    tail = made.parts
    return Path(*parts[: -len(tail)]) if parts[-len(tail) :] == tail else None


def _path_nodes(data: dict[str, Any]) -> list[tuple[Any, Any]]:
    """(container, key) of every path value in a config dict (lists: one pair per item)."""
    nodes: list[tuple[Any, Any]] = []
    for section, key in PATH_FIELDS:
        holder = data.get(section)
        if isinstance(holder, dict) and holder.get(key) is not None:
            value = holder[key]
            nodes += [(value, i) for i in range(len(value))] if isinstance(value, list) else [(holder, key)]
    nodes += [(source, "path") for source in data["corpus"].get("sources") or [] if source.get("path")]
    nodes += [(bench, "dir") for bench in (data.get("eval") or {}).get("retrieval") or [] if bench.get("dir")]
    return nodes


def _rebase(value: str, base: Path) -> str:
    """`value` itself where it exists (or is absolute, or names no local file), else `base / value` where that does."""
    path = Path(value)
    if path.is_absolute() or path.exists() or not (base / path).exists():
        return value
    return str(base / path)


def save_config(config: RunConfig, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from jasper.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(), sort_keys=False))
