"""Errors raised by lake_config.

LakeConfigError
├── SettingsError          settings are missing, malformed or unsafe for where they point
├── StorageError           object storage refused or could not be reached
│   └── ObjectExistsError  a conditional PUT found the key already written
├── RegistryError          PostgreSQL registry refused or could not be reached
└── EngineError            no Spark session could be built
"""

from __future__ import annotations


class LakeConfigError(Exception):
    """Root of every error lake_config raises."""


class SettingsError(LakeConfigError, ValueError):
    """Settings are missing, malformed or unsafe for the endpoints they name."""


class StorageError(LakeConfigError):
    """Object storage refused a request or could not be reached."""


class ObjectExistsError(StorageError):
    """A conditional PUT (If-None-Match: *) found the key already written."""


class RegistryError(LakeConfigError):
    """The PostgreSQL registry refused a request or could not be reached."""


class EngineError(LakeConfigError):
    """No Spark session could be built for the configured engine."""


class OrchestrationError(LakeConfigError):
    """Airflow could not be prepared, or a DAG run could not be carried out at all.

    A DAG run that ran and failed is not an error: `lake_config.airflow.run_dag` returns its state.
    """
