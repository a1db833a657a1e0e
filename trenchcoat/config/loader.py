"""Reading the config: the TOML file, then ``TRENCHCOAT_<SECTION>__<KEY>`` environment
overrides, each value coerced to its key's type (unknown sections and keys, and values of
the wrong type, refused naming the key and where the value came from); then the pod's
identity (identity.py) and the checks (``Config.validate``)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trenchcoat.config.identity import from_ordinal
from trenchcoat.config.whole import Config, section_types
from trenchcoat.errors import ConfigError

ENV_PREFIX = "TRENCHCOAT_"
ENV_SEPARATOR = "__"
#: Environment variable naming the config file when --config is not given.
CONFIG_PATH_ENV = "TRENCHCOAT_CONFIG"

#: Overrides by section, then key: (the text, the variable it came from).
_Overrides = dict[str, dict[str, tuple[str, str]]]

#: Keys that moved, (section, key) -> (section, key): still read, with a warning, so a
#: config written for an earlier release keeps working while it is renamed.
MOVED = {
    ("router", "directory_endpoints"): ("directory", "endpoints"),
    ("feed", "router_endpoints"): ("router", "endpoints"),
}

log = logging.getLogger(__name__)


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Reads the config file (defaults when ``path`` is None), applies environment
    overrides from ``env`` and validates the result."""
    env = {} if env is None else env
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    origin = str(path) if path else "defaults"
    overrides = _env_overrides(env)
    _move_keys(raw, overrides, origin)
    config = _build(raw, overrides, origin)
    config = from_ordinal(config, env.get("HOSTNAME") or socket.gethostname())
    config.validate()
    return config


def default_path(env: Mapping[str, str]) -> str | None:
    """The config file to use when none is named: $TRENCHCOAT_CONFIG, else
    ./trenchcoat.toml if present, else None (built-in defaults)."""
    if env.get(CONFIG_PATH_ENV):
        return env[CONFIG_PATH_ENV]
    return "trenchcoat.toml" if Path("trenchcoat.toml").is_file() else None


def env_key(section: str, key: str) -> str:
    """The environment variable overriding ``section.key``."""
    return f"{ENV_PREFIX}{section.upper()}{ENV_SEPARATOR}{key.upper()}"


def _env_overrides(env: Mapping[str, str]) -> _Overrides:
    out: _Overrides = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or ENV_SEPARATOR not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition(ENV_SEPARATOR)
        out.setdefault(section.lower(), {})[key.lower()] = (value, name)
    return out


def _move_keys(raw: dict[str, Any], overrides: _Overrides, origin: str) -> None:
    """Carries each moved key (``MOVED``) of the file and the environment to its new place,
    warning; a key set in both places, to different values, is refused."""
    for (old_section, old_key), (section, key) in MOVED.items():
        old_name, name = f"{old_section}.{old_key}", f"{section}.{key}"
        table = raw.get(old_section)
        if isinstance(table, dict) and old_key in table:
            value = table.pop(old_key)
            new_table = raw.setdefault(section, {})
            if isinstance(new_table, dict):
                if key in new_table and new_table[key] != value:
                    raise ConfigError(f"{old_name} (in {origin}) is the old name of {name}, which is set too, "
                                      f"to another value: keep only {name}")
                new_table.setdefault(key, value)
            log.warning("%s (in %s) is now %s: rename it (the old name will stop being read)", old_name, origin,
                        name)
        old = overrides.get(old_section, {}).pop(old_key, None)
        if old is not None:
            text, var = old
            new = overrides.setdefault(section, {})
            if key in new and new[key][0] != text:
                raise ConfigError(f"{var} is the old name of {new[key][1]}, which is set too, to another value: "
                                  f"keep only {new[key][1]}")
            new.setdefault(key, (text, var))
            log.warning("%s is now %s: rename it (the old name will stop being read)", var, env_key(section, key))


def _build(raw: dict[str, Any], overrides: _Overrides, origin: str) -> Config:
    sections = section_types()
    for name in list(raw) + list(overrides):
        if name not in sections:
            where = _env_names(overrides.get(name, {})) or origin
            raise ConfigError(
                f"unknown section [{name}] (in {where}); known sections: {', '.join(sections)}"
            )
    built = {}
    for name, cls in sections.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table, got {type(table).__name__}")
        built[name] = _build_section(cls, name, table, overrides.get(name, {}), origin)
    return Config(**built)


def _build_section(
    cls: type,
    section: str,
    table: dict[str, Any],
    overrides: dict[str, tuple[str, str]],
    origin: str,
) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(_unknown_key(section, key, fields, origin))
        values[key] = _coerce(hints[key], value, f"{section}.{key}", origin)
    for key, (text, var) in overrides.items():
        if key not in fields:
            raise ConfigError(_unknown_key(section, key, fields, var))
        values[key] = _parse_env(hints[key], text, f"{section}.{key}", var)
    return cls(**values)


def _unknown_key(section: str, key: str, fields: Mapping[str, Any], where: str) -> str:
    return f"{section}.{key}: unknown key (in {where}); known keys: {', '.join(fields)}"


def _coerce(hint: Any, value: Any, key: str, origin: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{key}: expected {expected}, got {value!r} (in {origin})")

    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise wrong("an integer")
        return value
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise wrong("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if item is int:
            if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
                raise wrong("a list of integers")
            return tuple(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise wrong("a list of strings")
        return tuple(value)
    raise TypeError(f"config field {key} has unsupported type {hint}")


def _parse_env(hint: Any, text: str, key: str, var: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{key}: expected {expected}, got {text!r} (from {var})")

    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise wrong("true or false")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise wrong("an integer") from None
    if hint is float:
        try:
            return float(text.strip())
        except ValueError:
            raise wrong("a number") from None
    if hint is str:
        return text
    if typing.get_origin(hint) is tuple:
        parts = tuple(part.strip() for part in text.split(",") if part.strip())
        if typing.get_args(hint)[0] is int:
            try:
                return tuple(int(part) for part in parts)
            except ValueError:
                raise wrong("integers separated by commas") from None
        return parts
    raise TypeError(f"config field {key} has unsupported type {hint}")


def _env_names(overrides: Mapping[str, tuple[str, str]]) -> str:
    return ", ".join(var for _, var in overrides.values())
