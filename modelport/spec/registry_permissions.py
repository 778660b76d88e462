"""Permission levels of registered models and experiments in the embedded MLflow registry. No I/O."""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["DEFAULT_EXPERIMENT_ID", "LEVEL_DESCRIPTIONS", "RegistryLevel", "RegistryObject"]

#: MLflow's Default experiment: every user may log runs and models to it (CAN_EDIT), so
#: ``mlflow.sklearn.log_model`` works without ``mlflow.set_experiment``.
DEFAULT_EXPERIMENT_ID = "0"


class RegistryLevel(IntEnum):
    """Ordered: a higher level includes every right of the lower ones."""

    CAN_READ = 1
    CAN_EDIT = 2
    CAN_MANAGE = 3

    @classmethod
    def parse(cls, value: str) -> RegistryLevel:
        return cls[value]


class RegistryObject(StrEnum):
    """The object types grants are stored under (``object_acl.object_type``)."""

    REGISTERED_MODEL = "registered-model"
    EXPERIMENT = "experiment"

    @property
    def noun(self) -> str:
        return "registered model" if self is RegistryObject.REGISTERED_MODEL else "experiment"

    @property
    def collection(self) -> str:
        """The path segment of the Databricks permissions API and of ``object_id``."""
        return "registered-models" if self is RegistryObject.REGISTERED_MODEL else "experiments"


LEVEL_DESCRIPTIONS = {
    RegistryObject.REGISTERED_MODEL: {
        RegistryLevel.CAN_MANAGE: "Can manage the model: delete it and its versions, rename it, "
        "change its permissions.",
        RegistryLevel.CAN_EDIT: "Can create versions, set tags, aliases and stages, and update descriptions.",
        RegistryLevel.CAN_READ: "Can view the model and its versions, download them and serve them.",
    },
    RegistryObject.EXPERIMENT: {
        RegistryLevel.CAN_MANAGE: "Can manage the experiment: delete it and its runs, set permissions.",
        RegistryLevel.CAN_EDIT: "Can create runs and logged models, log to them and upload artifacts.",
        RegistryLevel.CAN_READ: "Can view the experiment, its runs, logged models and artifacts.",
    },
}
