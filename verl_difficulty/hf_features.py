"""Keep the Hugging Face ``datasets`` feature spec of a parquet table in step with a struct column we changed.

``Dataset.to_parquet`` stores the features as JSON in the schema metadata (key ``huggingface``); a reader that
trusts it (``datasets.load_dataset``) would cast a changed column back to the old spec, or fail on a new field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pyarrow as pa

__all__ = ["HF_METADATA", "with_hf_features"]

HF_METADATA = b"huggingface"


def with_hf_features(table: pa.Table, changed: Iterable[str], column: str = "extra_info") -> pa.Table:
    """``table`` with the spec of struct ``column`` rebuilt from its arrow type.

    Fields named in ``changed``, and fields the spec does not declare, get the spec ``datasets`` infers from
    their arrow type; the other fields keep their declared spec (a ``ClassLabel`` stays one); fields the column
    no longer has are dropped. A table without the metadata, or whose spec does not list ``column``'s parent
    features, is returned as is.
    """
    metadata = dict(table.schema.metadata or {})
    try:
        spec = json.loads(metadata[HF_METADATA])
        features = spec["info"]["features"]
    except (KeyError, TypeError, ValueError):
        return table  # no (usable) spec: nothing to keep in step
    if not isinstance(features, dict):
        return table
    import datasets  # only files written by the datasets library carry its metadata

    arrow_type = table.schema.field(column).type
    inferred = datasets.Features.from_arrow_schema(pa.schema([pa.field(column, arrow_type)])).to_dict()[column]
    declared = features.get(column)
    if not isinstance(declared, dict) or "_type" in declared:  # not a plain dict of fields: the arrow type rules
        declared = {}
    changed = set(changed)
    features[column] = {name: declared[name] if name in declared and name not in changed else value
                        for name, value in inferred.items()}
    metadata[HF_METADATA] = json.dumps(spec).encode()
    return table.replace_schema_metadata(metadata)
