"""What every feature store shares: the base class, key/record/tensor checks, dtype names.

Torch-free at import (the functions that handle tensors import torch when called).
"""

from __future__ import annotations

from specforge.contracts import ITEMSIZE
from specforge.stores.base import StoreBase
from specforge.stores.dtypes import (
    STORE_DTYPES,
    dtype_name,
    from_store,
    record_bytes,
    spec_bytes,
    stored_dtype,
    to_store,
    torch_dtype,
)
from specforge.stores.options import StoreDtype
from specforge.stores.reopen import open_store
from specforge.stores.validation import (
    check_key,
    check_namespace,
    check_put_generation,
    check_record,
    missing,
    select_names,
    specs_of,
)

__all__ = [
    "ITEMSIZE",
    "STORE_DTYPES",
    "StoreBase",
    "StoreDtype",
    "check_key",
    "check_namespace",
    "check_put_generation",
    "check_record",
    "dtype_name",
    "from_store",
    "missing",
    "open_store",
    "record_bytes",
    "select_names",
    "spec_bytes",
    "specs_of",
    "stored_dtype",
    "to_store",
    "torch_dtype",
]
