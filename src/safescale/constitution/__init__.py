"""Constitutions and the data they generate (constitutional classifiers, Sharma et al. 2025).

A :class:`Constitution` says in plain language what is restricted and what is allowed; it is a
checked, versioned file (``safescale constitution validate|show|diff``). From it,
:func:`generate_lab_dataset` makes labelled input and output examples on the lab world (labels
true by construction), augmented with the red-teaming room's attack transformations and with
some attack families held out of training; :func:`generate_with_model` asks any Inspect model to
write them for a real deployment. Data sets are JSONL with a hashed manifest.
"""

from __future__ import annotations

from safescale.constitution._augment import DEFAULT_HELD_OUT, FAMILIES, TRANSFORMS
from safescale.constitution._data import (
    DATASET_SCHEMA,
    SPLITS,
    Dataset,
    DatasetManifest,
    Example,
    assign_split,
    load_dataset,
    write_dataset,
)
from safescale.constitution._lab import THINGS, generate_lab_dataset
from safescale.constitution._model import generate_with_model, parse_exchanges, parse_requests
from safescale.constitution._schema import (
    SCHEMA,
    Constitution,
    ConstitutionDiff,
    FieldChange,
    Principle,
    check_constitution_text,
    constitution_bytes,
    constitution_sha256,
    diff_constitutions,
    field_line,
    lab_constitution,
    load_constitution,
)

__all__ = [
    "DATASET_SCHEMA",
    "DEFAULT_HELD_OUT",
    "FAMILIES",
    "SCHEMA",
    "SPLITS",
    "THINGS",
    "TRANSFORMS",
    "Constitution",
    "ConstitutionDiff",
    "Dataset",
    "DatasetManifest",
    "Example",
    "FieldChange",
    "Principle",
    "assign_split",
    "check_constitution_text",
    "constitution_bytes",
    "constitution_sha256",
    "diff_constitutions",
    "field_line",
    "generate_lab_dataset",
    "generate_with_model",
    "lab_constitution",
    "load_constitution",
    "load_dataset",
    "parse_exchanges",
    "parse_requests",
    "write_dataset",
]
