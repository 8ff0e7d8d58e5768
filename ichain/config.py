"""iChain settings: the ``ichain:`` section of ape-config.yaml, overridden by ``APE_ICHAIN_*`` variables and CLI options.

The section is a registered Ape plugin config (:class:`IChainSettings`, registered by the ``ape_ichain`` module), so
Ape validates it and every setting can also come from the environment: ``APE_ICHAIN_CONCURRENCY=3``,
``APE_ICHAIN_AUTOSIGN=true``, ``APE_ICHAIN_TRUSTED_VALIDATORS='["0x..."]'`` (lists and mappings as JSON).
Precedence: embedded defaults < ape-config.yaml < ``APE_ICHAIN_*`` < command-line options.

Example ``ape-config.yaml``::

    ichain:
      transport: direct        # direct | tor
      host: 127.0.0.1          # where the chunk host listens (direct transport)
      port: 0                  # 0 = pick a free port once, then keep it (locators on chain name it)
      state_dir: .ichain       # daemon/requester state (SQLite, keys, files), one sub-folder per account
      concurrency: 2           # tasks a provider daemon works on at once
      poll_interval: 0.1       # seconds between head checks when the node has no websocket
      reorg_depth: 12          # blocks rescanned after a reorg is seen
      trusted_validators: []   # validators a provider daemon puts in its on-chain trusted set on start
      min_validator_fee: 0     # wei: a validator daemon judges no task paying less (besides its asking price)
      deadline_margin: 30      # seconds a provider keeps between its runs' time limits and the task's deadline
      max_fetch_bytes: 1073741824  # cap on every file a daemon fetches (task, bundle)
      fetch_grace: 120         # seconds a provider retries a task its requester does not serve before reporting it
      autosign: false          # a daemon signs its transactions without asking (keystore accounts; see README)
      passphrase_file: null    # file holding the keystore passphrase (else APE_ACCOUNTS_<alias>_PASSPHRASE)
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ape.api.config import PluginConfig
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ichain.errors import IChainError

TRANSPORTS = ("direct", "tor")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


class ConfigError(IChainError):
    """A setting in ape-config.yaml or on the command line is invalid."""


@dataclass(frozen=True)
class IChainConfig:
    """Settings shared by the provider daemon, the requester and the CLI.

    Attributes:
        transport: ``direct`` (HTTP on host:port) or ``tor`` (onion services).
        host: Interface the chunk host binds (direct transport).
        port: Port of the chunk host; 0 picks a free one the first time and keeps it.
        state_dir: Folder for state (SQLite, X25519 keys, task and result files).
        concurrency: How many tasks a provider daemon works on at once.
        poll_interval: Seconds between head checks when polling.
        reorg_depth: Blocks rescanned when a reorg is detected.
        tor: Extra options handed to the Tor transport factory.
        trusted_validators: Validators a provider daemon trusts (put in its on-chain trusted set on start):
            only a task naming one of them can be posted to it, so every verdict on its work comes from a
            party it consented to.
        min_validator_fee: Least fee in wei a validator daemon judges for (its asking price applies too).
        deadline_margin: Seconds a provider keeps free before a task's deadline beyond its runs' time limits
            (a task whose limits do not fit is refused before any run).
        max_fetch_bytes: Largest file a daemon fetches (a task, a validator's bundle); larger ones are refused.
        fetch_grace: Seconds (at most a quarter of the task's timeout) a provider keeps retrying a task its
            requester does not serve; then it ends the task with a failure report.
        autosign: Let a daemon sign its transactions without a prompt (a keystore account run unattended).
        passphrase_file: File whose first line is the keystore passphrase (used with ``autosign``); without it
            the passphrase comes from Ape's ``APE_ACCOUNTS_<alias>_PASSPHRASE`` variable.
    """

    transport: str = "direct"
    host: str = "127.0.0.1"
    port: int = 0
    state_dir: Path = Path(".ichain")
    concurrency: int = 2
    poll_interval: float = 0.1
    reorg_depth: int = 12
    tor: dict = field(default_factory=dict)
    trusted_validators: tuple[str, ...] = ()
    min_validator_fee: int = 0
    deadline_margin: float = 30.0
    max_fetch_bytes: int = 1024**3
    fetch_grace: float = 120.0
    autosign: bool = False
    passphrase_file: Path | None = None

    def __post_init__(self) -> None:
        if self.transport not in TRANSPORTS:
            raise ConfigError(f"transport must be one of {', '.join(TRANSPORTS)}, not {self.transport!r}")
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError(f"port must be between 0 and 65535, not {self.port}")
        if int(self.concurrency) < 1:
            raise ConfigError(f"concurrency must be at least 1, not {self.concurrency}")
        if float(self.poll_interval) <= 0:
            raise ConfigError(f"poll_interval must be positive, not {self.poll_interval}")
        if int(self.reorg_depth) < 0:
            raise ConfigError(f"reorg_depth must be >= 0, not {self.reorg_depth}")
        trusted = (self.trusted_validators,) if isinstance(self.trusted_validators, str) else self.trusted_validators
        for address in trusted:
            if not isinstance(address, str) or not _ADDRESS.match(address):
                raise ConfigError(f"trusted_validators: not an address: {address!r}")
        # Deduplicated, order kept: the daemon sends one setTrust per validator.
        object.__setattr__(self, "trusted_validators", tuple(dict.fromkeys(a.lower() for a in trusted)))
        if int(self.min_validator_fee) < 0:
            raise ConfigError(f"min_validator_fee must be >= 0, not {self.min_validator_fee}")
        if float(self.deadline_margin) < 0:
            raise ConfigError(f"deadline_margin must be >= 0, not {self.deadline_margin}")
        if float(self.fetch_grace) < 0:
            raise ConfigError(f"fetch_grace must be >= 0, not {self.fetch_grace}")
        object.__setattr__(self, "fetch_grace", float(self.fetch_grace))
        if int(self.max_fetch_bytes) <= 0:
            raise ConfigError(f"max_fetch_bytes must be positive, not {self.max_fetch_bytes}")
        object.__setattr__(self, "min_validator_fee", int(self.min_validator_fee))
        object.__setattr__(self, "deadline_margin", float(self.deadline_margin))
        object.__setattr__(self, "max_fetch_bytes", int(self.max_fetch_bytes))
        object.__setattr__(self, "state_dir", Path(self.state_dir).expanduser())
        object.__setattr__(self, "autosign", bool(self.autosign))
        if self.passphrase_file is not None:
            object.__setattr__(self, "passphrase_file", Path(self.passphrase_file).expanduser())
        object.__setattr__(self, "port", int(self.port))
        object.__setattr__(self, "concurrency", int(self.concurrency))

    def account_dir(self, address: str) -> Path:
        """Return (and create) the state folder of one account."""
        path = self.state_dir / str(address).lower()
        path.mkdir(parents=True, exist_ok=True)
        return path

    def replace(self, **overrides: Any) -> "IChainConfig":
        """Return a copy with the given (non-None) settings overridden."""
        clean = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **clean)


class IChainSettings(PluginConfig):
    """The ``ichain:`` section of ape-config.yaml as Ape's plugin config (fields: see :class:`IChainConfig`).

    Ape parses the section into this class; :func:`load_config` turns it into the frozen :class:`IChainConfig`
    the rest of the package uses, which checks the values. Unknown keys are kept (``extra="allow"``) so that
    :func:`load_config` can name them in one line instead of Ape's multi-line validation report.
    """

    model_config = SettingsConfigDict(extra="allow", env_prefix="APE_ICHAIN_")

    transport: str = "direct"
    host: str = "127.0.0.1"
    port: int = 0
    state_dir: Path = Path(".ichain")
    concurrency: int = 2
    poll_interval: float = 0.1
    reorg_depth: int = 12
    tor: dict = {}
    trusted_validators: list[str] = []
    min_validator_fee: int = 0
    deadline_margin: float = 30.0
    max_fetch_bytes: int = 1024**3
    fetch_grace: float = 120.0
    autosign: bool = False
    passphrase_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment beats the values passed in (ape-config.yaml's, see load_config): an APE_ICHAIN_*
        # variable is how one run overrides the project's file.
        return env_settings, init_settings, dotenv_settings, file_secret_settings


def _first_line(err: BaseException) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def _validation_line(err: ValidationError, where: str) -> str:
    """One line naming the first invalid setting of a pydantic validation error."""
    problem = err.errors()[0] if err.errors() else {"loc": (), "msg": _first_line(err)}
    name = ".".join(str(part) for part in problem["loc"]) or "ichain"
    return f"invalid ichain setting {name}: {problem['msg']} ({where})"


def _from_ape() -> dict:
    """The ``ichain:`` section of the project's ape-config.yaml as Ape parsed it (empty when there is none).

    Raises:
        ConfigError: Ape rejected a value of the section (one line).
    """
    try:
        from ape import config as ape_config
        from ape.exceptions import ConfigError as ApeConfigError
    except Exception:  # ape not importable: embedded defaults
        return {}
    try:
        section = ape_config.get_config("ichain")
    except ApeConfigError as err:
        raise ConfigError(_validation_line(err.__cause__, "ape-config.yaml") if isinstance(
            err.__cause__, ValidationError) else f"invalid ichain setting in ape-config.yaml: {_first_line(err)}") from None
    except Exception:  # no project: embedded defaults
        return {}
    unknown = sorted(set(section.model_extra or {}) - set(IChainSettings.model_fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) in ape-config.yaml ichain: section: {', '.join(unknown)}")
    return {k: v for k, v in section.model_dump(by_alias=True).items() if k in IChainSettings.model_fields}


def _with_environment(data: dict) -> dict:
    """``data`` (ape-config.yaml's section) with every ``APE_ICHAIN_*`` variable applied on top."""
    try:
        settings = IChainSettings(**data)
    except ValidationError as err:
        raise ConfigError(_validation_line(err, "ape-config.yaml or APE_ICHAIN_*")) from None
    except ValueError as err:  # pydantic-settings: an APE_ICHAIN_* list or mapping that is not JSON
        raise ConfigError(f"invalid APE_ICHAIN_* setting: {' '.join(str(err).split())}") from None
    return {k: v for k, v in settings.model_dump().items() if k in IChainSettings.model_fields and v is not None}


def load_config(**overrides: Any) -> IChainConfig:
    """Build the settings: embedded defaults < ape-config.yaml ``ichain:`` < ``APE_ICHAIN_*`` < CLI overrides.

    Args:
        **overrides: Settings from the command line; ``None`` values are ignored.

    Returns:
        The merged, validated settings.

    Raises:
        ConfigError: A setting is unknown or invalid.
    """
    data = _with_environment(_from_ape())
    data.update({k: v for k, v in overrides.items() if v is not None})
    # A private Tor network file (tests, `make demo TRANSPORT=tor`) reaches subprocess daemons this way.
    if net := os.environ.get("ICHAIN_TOR_NETWORK"):
        data["tor"] = {"tor_network": net, **dict(data.get("tor") or {})}
    try:
        return IChainConfig(**data)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid ichain setting: {err}") from None
