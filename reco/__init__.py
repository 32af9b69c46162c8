"""The serving runtime: what a model bundle is and how it scores (docs/architecture.md).

Server, compiler and training import this API and nothing behind it: the typed manifest and
bundle checks (signature, hashes, ELF), the catalog and product tables, the feature builder's
pandas-free core, the scoring backends with their parity probe, and the request kernel. Names
load lazily, so `import reco.v1` (the stubs, all a load tester needs) pulls in none of it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reco._backends import BACKEND_KINDS
    from reco._backends import Backend
    from reco._backends import BackendError
    from reco._backends import BackendUnavailableError
    from reco._backends import load_backend
    from reco._backends import open_booster
    from reco._bundle import BundleError
    from reco._bundle import FORMAT_VERSION
    from reco._bundle import LIBRARY_FILE
    from reco._bundle import MANIFEST_FILE
    from reco._bundle import MODEL_FILE
    from reco._bundle import ONNX_FILE
    from reco._bundle import REQUIRED_KEYS
    from reco._bundle import TRAIN_SAMPLE_FILE
    from reco._bundle import check_keys
    from reco._bundle import hash_files
    from reco._bundle import probe_to_manifest
    from reco._bundle import read_manifest
    from reco._bundle import sha256_file
    from reco._bundle import verify_files
    from reco._bundle import write_manifest
    from reco._catalog import AFFINITY_COLUMNS
    from reco._catalog import AFFINITY_CSV_FILE
    from reco._catalog import AFFINITY_FILES
    from reco._catalog import CATALOG_COLUMNS
    from reco._catalog import CATALOG_FILE
    from reco._catalog import Catalog
    from reco._catalog import NO_PRODUCT
    from reco._catalog import ProductTables
    from reco._catalog import SparseAffinity
    from reco._catalog import load_tables
    from reco._context import SessionContext
    from reco._cpu import cpu_flags
    from reco._cpu import cpu_model
    from reco._cpu import missing_cpu_flags
    from reco._experiment import Difference
    from reco._experiment import Estimate
    from reco._experiment import LOG_FILE_PATTERN
    from reco._experiment import LOG_KINDS
    from reco._experiment import Z95
    from reco._experiment import binomial_se
    from reco._experiment import chi_square_survival
    from reco._experiment import difference
    from reco._experiment import log_file_name
    from reco._experiment import log_kind
    from reco._experiment import normal_two_sided_p
    from reco._experiment import sample_ratio_p_value
    from reco._experiment import wilson
    from reco._explain import Contribution
    from reco._explain import EXPLAIN_TOP
    from reco._explain import Explainer
    from reco._features import CANDIDATE_FEATURES
    from reco._features import CANDIDATE_SETS
    from reco._features import CandidateInputs
    from reco._features import Encodings
    from reco._features import FEATURE_NAMES
    from reco._features import FEATURE_SETS
    from reco._features import NONE_PRODUCT
    from reco._features import N_PREVIOUS
    from reco._features import SESSION_FEATURES
    from reco._features import SessionInputs
    from reco._features import SessionValues
    from reco._features import UNKNOWN_CODE
    from reco._features import Vocabulary
    from reco._features import build_features
    from reco._features import catalog_columns
    from reco._features import context_history
    from reco._features import input_column
    from reco._features import SequenceInputs
    from reco._features import sequence_inputs
    from reco._features import session_feature_columns
    from reco._features import session_inputs
    from reco._features import session_values
    from reco._loader import Bundle
    from reco._loader import SERVED_FILES
    from reco._loader import load_bundle
    from reco._manifest import Manifest
    from reco._manifest import ParityProbe
    from reco._manifest import probe_from_manifest
    from reco._native import LibraryCheckError
    from reco._native import NativeLibrary
    from reco._native import check_library
    from reco._onnx_model import ONNX_INPUT_NAME
    from reco._onnx_model import ONNX_PROBABILITIES_OUTPUT
    from reco._onnx_model import OnnxModel
    from reco._parity import GroupedCheck
    from reco._parity import ParityError
    from reco._parity import TOLERANCES
    from reco._parity import compare
    from reco._request_kernel import KERNELS
    from reco._request_kernel import MODES
    from reco._request_kernel import REQUEST_KERNEL_HEADER
    from reco._request_kernel import RequestKernel
    from reco._request_kernel import RequestKernelError
    from reco._request_kernel import SESSION_INPUTS
    from reco._request_kernel import bundle_request_kernel
    from reco._request_kernel import choose_kernel
    from reco._request_kernel import pack_history
    from reco._request_kernel import shared_session_rows
    from reco._sequence import DECAY
    from reco._sequence import MAX_HISTORY
    from reco._sequence import Histories
    from reco._sequence import SEQUENCE_FEATURES
    from reco._sequence import SERVING_SLOT
    from reco._sequence import SequenceTables
    from reco._sequence import history_columns
    from reco._sequence import ViewHistory
    from reco._signing import KEY_ENV
    from reco._signing import KEY_FILE_ENV
    from reco._signing import MIN_KEY_CHARS
    from reco._signing import SIGNATURE_FILE
    from reco._signing import SignatureError
    from reco._signing import SigningKey
    from reco._signing import SigningKeyError
    from reco._signing import generate_key_file
    from reco._signing import key_file_is_private
    from reco._signing import load_key
    from reco._signing import signing_key_for
    from reco._verified_copy import OutsideRootError
    from reco._verified_copy import copy_verified
    from reco._verified_copy import name_under_root
    from reco._verified_copy import resolve_under_root

# name -> the private module that defines it
_MODULES = {
    "Difference": "reco._experiment",
    "Estimate": "reco._experiment",
    "LOG_FILE_PATTERN": "reco._experiment",
    "LOG_KINDS": "reco._experiment",
    "Z95": "reco._experiment",
    "binomial_se": "reco._experiment",
    "chi_square_survival": "reco._experiment",
    "difference": "reco._experiment",
    "log_file_name": "reco._experiment",
    "log_kind": "reco._experiment",
    "normal_two_sided_p": "reco._experiment",
    "sample_ratio_p_value": "reco._experiment",
    "wilson": "reco._experiment",
    "AFFINITY_COLUMNS": "reco._catalog",
    "AFFINITY_CSV_FILE": "reco._catalog",
    "AFFINITY_FILES": "reco._catalog",
    "SparseAffinity": "reco._catalog",
    "BACKEND_KINDS": "reco._backends",
    "Backend": "reco._backends",
    "BackendError": "reco._backends",
    "BackendUnavailableError": "reco._backends",
    "Bundle": "reco._loader",
    "BundleError": "reco._bundle",
    "CANDIDATE_FEATURES": "reco._features",
    "CANDIDATE_SETS": "reco._features",
    "CATALOG_COLUMNS": "reco._catalog",
    "CATALOG_FILE": "reco._catalog",
    "CandidateInputs": "reco._features",
    "Catalog": "reco._catalog",
    "Contribution": "reco._explain",
    "DECAY": "reco._sequence",
    "EXPLAIN_TOP": "reco._explain",
    "Encodings": "reco._features",
    "Explainer": "reco._explain",
    "FEATURE_NAMES": "reco._features",
    "FEATURE_SETS": "reco._features",
    "FORMAT_VERSION": "reco._bundle",
    "GroupedCheck": "reco._parity",
    "Histories": "reco._sequence",
    "KERNELS": "reco._request_kernel",
    "KEY_ENV": "reco._signing",
    "KEY_FILE_ENV": "reco._signing",
    "LIBRARY_FILE": "reco._bundle",
    "LibraryCheckError": "reco._native",
    "MANIFEST_FILE": "reco._bundle",
    "MAX_HISTORY": "reco._sequence",
    "MIN_KEY_CHARS": "reco._signing",
    "MODEL_FILE": "reco._bundle",
    "MODES": "reco._request_kernel",
    "Manifest": "reco._manifest",
    "NONE_PRODUCT": "reco._features",
    "NO_PRODUCT": "reco._catalog",
    "N_PREVIOUS": "reco._features",
    "NativeLibrary": "reco._native",
    "ONNX_FILE": "reco._bundle",
    "ONNX_INPUT_NAME": "reco._onnx_model",
    "ONNX_PROBABILITIES_OUTPUT": "reco._onnx_model",
    "OnnxModel": "reco._onnx_model",
    "OutsideRootError": "reco._verified_copy",
    "ParityError": "reco._parity",
    "ParityProbe": "reco._manifest",
    "ProductTables": "reco._catalog",
    "REQUEST_KERNEL_HEADER": "reco._request_kernel",
    "REQUIRED_KEYS": "reco._bundle",
    "RequestKernel": "reco._request_kernel",
    "RequestKernelError": "reco._request_kernel",
    "SEQUENCE_FEATURES": "reco._sequence",
    "SERVED_FILES": "reco._loader",
    "SERVING_SLOT": "reco._sequence",
    "SESSION_FEATURES": "reco._features",
    "SESSION_INPUTS": "reco._request_kernel",
    "SIGNATURE_FILE": "reco._signing",
    "SequenceTables": "reco._sequence",
    "SessionContext": "reco._context",
    "SessionInputs": "reco._features",
    "SessionValues": "reco._features",
    "SignatureError": "reco._signing",
    "SigningKey": "reco._signing",
    "SigningKeyError": "reco._signing",
    "TOLERANCES": "reco._parity",
    "TRAIN_SAMPLE_FILE": "reco._bundle",
    "UNKNOWN_CODE": "reco._features",
    "Vocabulary": "reco._features",
    "build_features": "reco._features",
    "bundle_request_kernel": "reco._request_kernel",
    "catalog_columns": "reco._features",
    "context_history": "reco._features",
    "check_keys": "reco._bundle",
    "check_library": "reco._native",
    "choose_kernel": "reco._request_kernel",
    "pack_history": "reco._request_kernel",
    "compare": "reco._parity",
    "copy_verified": "reco._verified_copy",
    "cpu_flags": "reco._cpu",
    "cpu_model": "reco._cpu",
    "generate_key_file": "reco._signing",
    "hash_files": "reco._bundle",
    "history_columns": "reco._sequence",
    "ViewHistory": "reco._sequence",
    "input_column": "reco._features",
    "key_file_is_private": "reco._signing",
    "load_backend": "reco._backends",
    "load_bundle": "reco._loader",
    "load_key": "reco._signing",
    "load_tables": "reco._catalog",
    "missing_cpu_flags": "reco._cpu",
    "name_under_root": "reco._verified_copy",
    "open_booster": "reco._backends",
    "probe_from_manifest": "reco._manifest",
    "probe_to_manifest": "reco._bundle",
    "read_manifest": "reco._bundle",
    "resolve_under_root": "reco._verified_copy",
    "SequenceInputs": "reco._features",
    "sequence_inputs": "reco._features",
    "session_feature_columns": "reco._features",
    "session_inputs": "reco._features",
    "session_values": "reco._features",
    "sha256_file": "reco._bundle",
    "shared_session_rows": "reco._request_kernel",
    "signing_key_for": "reco._signing",
    "verify_files": "reco._bundle",
    "write_manifest": "reco._bundle",
}

__all__ = [
    "AFFINITY_COLUMNS",
    "AFFINITY_CSV_FILE",
    "AFFINITY_FILES",
    "BACKEND_KINDS",
    "CANDIDATE_FEATURES",
    "CANDIDATE_SETS",
    "CATALOG_COLUMNS",
    "CATALOG_FILE",
    "DECAY",
    "EXPLAIN_TOP",
    "FEATURE_NAMES",
    "FEATURE_SETS",
    "FORMAT_VERSION",
    "KERNELS",
    "KEY_ENV",
    "KEY_FILE_ENV",
    "LIBRARY_FILE",
    "LOG_FILE_PATTERN",
    "LOG_KINDS",
    "MANIFEST_FILE",
    "MAX_HISTORY",
    "MIN_KEY_CHARS",
    "MODEL_FILE",
    "MODES",
    "NONE_PRODUCT",
    "NO_PRODUCT",
    "N_PREVIOUS",
    "ONNX_FILE",
    "ONNX_INPUT_NAME",
    "ONNX_PROBABILITIES_OUTPUT",
    "REQUEST_KERNEL_HEADER",
    "REQUIRED_KEYS",
    "SEQUENCE_FEATURES",
    "SERVED_FILES",
    "SERVING_SLOT",
    "SESSION_FEATURES",
    "SESSION_INPUTS",
    "SIGNATURE_FILE",
    "TOLERANCES",
    "TRAIN_SAMPLE_FILE",
    "UNKNOWN_CODE",
    "Z95",
    "Backend",
    "BackendError",
    "BackendUnavailableError",
    "Bundle",
    "BundleError",
    "CandidateInputs",
    "Catalog",
    "Contribution",
    "Difference",
    "Encodings",
    "Estimate",
    "Explainer",
    "GroupedCheck",
    "Histories",
    "LibraryCheckError",
    "Manifest",
    "NativeLibrary",
    "OnnxModel",
    "OutsideRootError",
    "ParityError",
    "ParityProbe",
    "ProductTables",
    "RequestKernel",
    "RequestKernelError",
    "SequenceInputs",
    "SequenceTables",
    "SessionContext",
    "SessionInputs",
    "SessionValues",
    "SignatureError",
    "SigningKey",
    "SigningKeyError",
    "SparseAffinity",
    "ViewHistory",
    "Vocabulary",
    "binomial_se",
    "build_features",
    "bundle_request_kernel",
    "catalog_columns",
    "check_keys",
    "check_library",
    "chi_square_survival",
    "choose_kernel",
    "compare",
    "context_history",
    "copy_verified",
    "cpu_flags",
    "cpu_model",
    "difference",
    "generate_key_file",
    "hash_files",
    "history_columns",
    "input_column",
    "key_file_is_private",
    "load_backend",
    "load_bundle",
    "load_key",
    "load_tables",
    "log_file_name",
    "log_kind",
    "missing_cpu_flags",
    "name_under_root",
    "normal_two_sided_p",
    "open_booster",
    "pack_history",
    "probe_from_manifest",
    "probe_to_manifest",
    "read_manifest",
    "resolve_under_root",
    "sample_ratio_p_value",
    "sequence_inputs",
    "session_feature_columns",
    "session_inputs",
    "session_values",
    "sha256_file",
    "shared_session_rows",
    "signing_key_for",
    "verify_files",
    "wilson",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    """Imports the defining module on first use (PEP 562) and caches the name here."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'reco' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULES])
