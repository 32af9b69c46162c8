"""The model library's request kernel: one request's feature rows and scores, computed in C.

Plain arguments only (numpy arrays and numbers, nothing from server/ or training/). The C is
compiler/request_kernel.c; the product tables are handed over once, at construction, and every
call scores one session against a batch of candidate catalog indices with no intermediate
array but the output::

    kernel = RequestKernel(bundle / "model.so", feature_names=manifest["feature_names"],
                           category_codes=codes, prices=prices,      # padded: [n] = NaN
                           popularity=tables.popularity, affinity=tables.affinity,
                           cpu_flags=reco.cpu_flags())           # kernel="auto"
    kernel.check_parity(probe_rows, probe_probabilities)             # at load; raises
    scores = kernel.score(inputs, current_index, previous_indices, candidate_indices)

With product_index=catalog.index, kernel.lookup(product_ids) finds a request's candidates in a
hash table built at load (one call into C). A server builds it all with bundle_request_kernel
(reco.load_bundle(..., request_kernel=True) does).

inputs are SessionInputs' SESSION_INPUTS fields (NaN = missing); category_codes and prices
arrays (one per candidate) replace the catalog's when a request overrides them. A library built
for the sequence feature set also takes the SequenceTables at construction and, per request,
the session's view history packed by pack_history (score(..., history=...)).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import cffi
import numpy as np
import numpy.typing as npt

from reco._catalog import NO_PRODUCT, Catalog, ProductTables, SparseAffinity
from reco._features import FEATURE_SETS, N_PREVIOUS, Encodings, catalog_columns
from reco._manifest import Manifest
from reco._sequence import SequenceTables, ViewHistory

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Indices = npt.NDArray[np.int32] | npt.NDArray[np.int64]

ABI_VERSION = 4
# The session's numeric inputs, in the order score() takes them: the first ten fields of
# training.features.SessionInputs (NaN = missing, vocabulary codes already looked up).
SESSION_INPUTS = (
    "category_code",
    "current_price",
    "products_in_cart",
    "device_code",
    "traffic_code",
    "time_on_page_sec",
    "scroll_depth",
    "clicked_product_image",
    "session_length_mins",
    "products_viewed_count",
)
MODES = {"auto": 0, "flat": 1, "fold": 2}  # how rows are scored (see request_kernel.c)
KERNELS = {"portable": 0, "avx2": 1}  # the fold's block scorers
_KERNEL_BITS = {"portable": 1, "avx2": 2}  # reco_request_kernels()'s answer
# check_parity's runs of rows sharing a session: blocks of 8 rows plus a ragged tail.
SHARED_SESSION_RUN = 37

# The kernel's interface, read by the C, the benchmark's driver and the cffi cdef alike.
REQUEST_KERNEL_HEADER = HEADER = Path(__file__).with_name("request_kernel.h")

_FFI = cffi.FFI()
_FFI.cdef(HEADER.read_text())
# The session is packed into one RecoSession: each argument of a cffi call costs about 45 ns.
_SESSION = struct.Struct(f"<{len(SESSION_INPUTS)}d{1 + N_PREVIOUS}q")
_from_buffer = _FFI.from_buffer
_NULL = _FFI.NULL
_I32, _I64, _F32 = np.dtype(np.int32), np.dtype(np.int64), np.dtype(np.float32)
_HISTORY_HEAD = struct.Struct("<qdq")  # RecoHistory: n, total, landing; then n q and n d


def pack_history(history: ViewHistory, catalog_index: Mapping[str, int]) -> bytes:
    """One session's view history as a sequence kernel reads it (RecoHistory): the vectors
    reco.Histories.of builds for it, catalog indices (NO_PRODUCT for ids not in the catalog)
    and weights in first-view order, an empty history as one NO_PRODUCT entry of weight 0."""
    if len(history.weights) != len(history.product_ids):  # a damaged stored session
        raise ValueError(
            f"view history: {len(history.product_ids)} product ids but "
            f"{len(history.weights)} weights"
        )
    get = catalog_index.get
    if history.product_ids:
        index = [get(p, NO_PRODUCT) for p in history.product_ids]
        weights: Sequence[float] = history.weights
    else:
        index, weights = [NO_PRODUCT], (0.0,)
    n = len(index)
    landing = get(history.landing_product_id, NO_PRODUCT)
    return struct.pack(f"<qdq{n}q{n}d", n, history.total, landing, *index, *weights)


def packed_history_length(history: bytes) -> int | None:
    """The entries of a pack_history buffer, None when its length does not match its header."""
    if len(history) < _HISTORY_HEAD.size:
        return None
    n = int(_HISTORY_HEAD.unpack_from(history)[0])
    return n if n >= 1 and len(history) == _HISTORY_HEAD.size + 16 * n else None


_FNV_OFFSET, _FNV_PRIME, _U64 = 14695981039346656037, 1099511628211, (1 << 64) - 1


def id_hash(data: bytes) -> int:
    """64-bit FNV-1a of an id's bytes: the hash reco_request_lookup probes the table with."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _U64
    return h


def id_hashes(encoded: list[bytes]) -> npt.NDArray[np.uint64]:
    """id_hash of every id at once: the ids' bytes as a zero-padded matrix, hashed one byte
    column at a time (uint64 arithmetic wraps as the & _U64 does), each row only up to its
    own length. A million ids take a fraction of a second, not seconds."""
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    width = int(lengths.max(initial=0))
    within = np.arange(width) < lengths[:, None]
    matrix = np.zeros((len(encoded), width), dtype=np.uint8)
    matrix[within] = np.frombuffer(b"".join(encoded), dtype=np.uint8)  # row-major: in order
    h = np.full(len(encoded), _FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(_FNV_PRIME)
    for column in range(width):
        h = np.where(within[:, column], (h ^ matrix[:, column]) * prime, h)
    return h


def _probe_slots(home: npt.NDArray[np.int64], n_slots: int) -> npt.NDArray[np.int64]:
    """A linear-probing table of n_slots (a power of two, more than the entries) holding
    entry e at or after slot home[e], every slot between occupied: in rounds, each empty
    wanted slot goes to the first entry wanting it, the others try the next slot."""
    slot = np.full(n_slots, -1, dtype=np.int64)
    waiting = np.arange(len(home), dtype=np.int64)
    wanted = home.copy()
    while len(waiting):
        free = slot[wanted] < 0
        _, first = np.unique(np.where(free, wanted, -1), return_index=True)
        won = np.zeros(len(waiting), dtype=bool)
        won[first] = True
        won &= free
        slot[wanted[won]] = waiting[won]
        waiting, wanted = waiting[~won], (wanted[~won] + 1) & (n_slots - 1)
    return slot


class IdTable:
    """The catalog's id -> index mapping as reco_request_lookup reads it (RecoIdTable): built
    once at load, read-only afterwards."""

    def __init__(self, index: Mapping[str, int]) -> None:
        """Raises ValueError for an id holding a NUL (the lookup's separator)."""
        entries = list(index.items())
        encoded = [product_id.encode() for product_id, _ in entries]
        if any(b"\0" in data for data in encoded):
            raise ValueError("a product id holds a NUL character")
        n_slots = 1 << max(1, (2 * len(entries)).bit_length())  # at most half full
        home = (id_hashes(encoded) & np.uint64(n_slots - 1)).astype(np.int64)
        slot = _probe_slots(home, n_slots)
        offset = np.zeros(len(entries) + 1, dtype=np.int64)
        offset[1:] = np.cumsum([len(data) for data in encoded])
        value = np.array([i for _, i in entries], dtype=np.int64)
        self._arrays = (slot, offset, value, np.frombuffer(b"".join(encoded) or b"\0", np.uint8))
        for array in self._arrays:
            array.flags.writeable = False
        types = ("int64_t[]", "int64_t[]", "int64_t[]", "char[]")
        buffers = [_from_buffer(t, a) for t, a in zip(types, self._arrays, strict=True)]
        self.struct = _FFI.new("RecoIdTable*", [n_slots, *buffers])
        self._buffers = buffers  # keep them alive as long as the struct


class RequestKernelError(Exception):
    """The library has no usable request kernel (or it failed a parity check); says why."""


def _table(
    name: str, values: npt.ArrayLike, shape: tuple[int, ...], dtype: type = np.float32
) -> npt.NDArray[Any]:
    array: npt.NDArray[Any] = np.array(values, dtype=dtype, order="C", copy=True)
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    array.flags.writeable = False  # the C reads it for the kernel's lifetime
    return array


def _shared(values: npt.NDArray[Any], dtype: type) -> npt.NDArray[Any]:
    """values as the C reads them (C-contiguous, of dtype), without a copy when they are."""
    array: npt.NDArray[Any] = np.ascontiguousarray(values, dtype=dtype)
    return array


def choose_kernel(
    requested: str, usable: Collection[str], cpu_flags: Collection[str] | None
) -> str:
    """The block scorer to use: the one requested, or for "auto" AVX2 when this CPU's flags
    (compiler.cpu.cpu_flags(); None = unknown) and the library both allow it, else portable."""
    if requested == "auto":
        return (
            "avx2"
            if "avx2" in usable and cpu_flags is not None and "avx2" in cpu_flags
            else "portable"
        )
    if requested not in KERNELS:
        raise ValueError(f"kernel must be 'auto' or one of {list(KERNELS)}, got {requested!r}")
    if requested not in usable:
        raise RequestKernelError(f"the {requested} block scorer cannot run on this CPU")
    return requested


class RequestKernel:
    """A model library's request kernel bound to one catalog's product tables.

    Tables are padded like training.catalog.ProductTables: entry n_products (index -1) is the
    unknown product (NaN code, price and popularity; zero affinity row and column).
    """

    def __init__(
        self,
        library: Path,
        *,
        feature_names: Sequence[str],
        category_codes: npt.ArrayLike,
        prices: npt.ArrayLike,
        popularity: npt.ArrayLike,
        affinity: SparseAffinity,
        kernel: str = "auto",
        cpu_flags: Collection[str] | None = None,
        product_index: Mapping[str, int] | None = None,
        sequence_tables: SequenceTables | None = None,
    ) -> None:
        """Opens library; raises RequestKernelError when it has no request kernel, or one for
        other features than feature_names, and ValueError for tables of the wrong shape (or a
        sequence kernel without sequence_tables, the catalog's reco.SequenceTables).
        product_index (the catalog's id -> index) enables lookup()."""
        try:
            self._lib = _FFI.dlopen(str(library))
            version = int(self._lib.reco_request_abi_version())
            names = _FFI.string(self._lib.reco_request_feature_names()).decode().split(",")
            usable_bits = int(self._lib.reco_request_kernels())
        except (OSError, AttributeError) as exc:  # cffi: a missing symbol is an AttributeError
            raise RequestKernelError(f"{library} has no request kernel: {exc}") from exc
        if version != ABI_VERSION:
            raise RequestKernelError(
                f"{library}'s request kernel has interface {version}, expected {ABI_VERSION}"
            )
        if names != list(feature_names):
            raise RequestKernelError(
                f"{library}'s request kernel builds {len(names)} features {names[:3]}..., "
                f"the model expects {len(feature_names)} {list(feature_names)[:3]}..."
            )
        self.path = library
        self.feature_names = tuple(names)
        self.n_session = int(self._lib.reco_request_session_columns())  # they lead every row
        self.usable_kernels = tuple(k for k, bit in _KERNEL_BITS.items() if usable_bits & bit)
        self.kernel = choose_kernel(kernel, self.usable_kernels, cpu_flags)
        self._kernel = KERNELS[self.kernel]
        n_products = len(np.asarray(category_codes)) - 1
        if n_products < 0:
            raise ValueError("category_codes must hold the padding entry for index -1")
        padded = (n_products + 1,)
        if affinity.n_products != n_products:
            raise ValueError(
                f"the affinity table has {affinity.n_products} products, the tables {n_products}"
            )
        self._arrays = (
            _table("category_codes", category_codes, padded),
            _table("prices", prices, padded),
            _table("popularity", popularity, padded),
            # Already checked by SparseAffinity (and perhaps memory-mapped): not copied.
            _shared(affinity.indptr, np.int64),
            _shared(affinity.related, np.int32),
            _shared(affinity.strength, np.float32),
        )
        types = ("float[]", "float[]", "float[]", "int64_t[]", "int32_t[]", "float[]")
        self._buffers = [_from_buffer(t, a) for t, a in zip(types, self._arrays, strict=True)]
        self.sequence = tuple(names) == FEATURE_SETS["sequence"]  # needs a history per request
        sequence_fields: list[object] = [_NULL, _NULL, 0, _NULL]
        if self.sequence:
            if sequence_tables is None:
                raise ValueError(f"{library} builds the sequence feature set: pass sequence_tables")
            sequence_fields = self._sequence_fields(sequence_tables, padded)
        self._tables = _FFI.new("RecoProductTables*", [n_products, *self._buffers,
                                                        *sequence_fields])  # fmt: skip
        self.n_products = n_products
        self._score = self._lib.reco_request_score
        self._rows = self._lib.reco_request_rows
        self._predict_rows = self._lib.reco_request_predict_rows
        self._lookup = self._lib.reco_request_lookup
        self._ids: object | None = None  # the RecoIdTable*, when lookup() can answer
        self._id_table: IdTable | None = None
        if product_index is not None:
            try:
                self._id_table = IdTable(product_index)
                self._ids = self._id_table.struct
            except ValueError:
                pass  # lookup() answers None: the caller looks ids up in the dict

    def _sequence_fields(self, tables: SequenceTables, padded: tuple[int]) -> list[object]:
        """RecoProductTables' sequence fields from tables (kept alive with the kernel); raises
        ValueError for shapes or codes the C could index out of range with."""
        n_sub = int(tables.n_subcategories)
        subcategory = _table("subcategory", tables.subcategory, padded, np.int64)
        category = _table("category", tables.category, padded, np.int64)
        affinity = _table(
            "subcategory_affinity", tables.subcategory_affinity, (n_sub + 1, n_sub + 1), np.float64
        )
        if len(subcategory) and (subcategory.min() < 0 or subcategory.max() > n_sub):
            raise ValueError(f"subcategory codes must lie in 0..{n_sub}")
        arrays = (subcategory, category, affinity)
        self._sequence_arrays = arrays
        self._sequence_buffers = [
            _from_buffer(t, a) for t, a in zip(("int64_t[]", "int64_t[]", "double[]"), arrays,
                                               strict=True)
        ]  # fmt: skip
        first, second, third = self._sequence_buffers
        return [first, second, n_sub, third]

    def lookup(self, product_ids: list[str]) -> tuple[npt.NDArray[np.int64], int] | None:
        """The catalog indices of product_ids (-1 = unknown) and how many are unknown, looked
        up in C (one join, one call); None when this kernel has no id table or an id holds a
        NUL (look them up in Python then)."""
        if self._ids is None:
            return None
        joined = "\0".join(product_ids).encode()
        out = np.empty(len(product_ids), dtype=np.int64)
        unknown = self._lookup(self._ids, joined, len(joined), len(product_ids), _from_buffer(out))
        return None if unknown < 0 else (out, int(unknown))

    @classmethod
    def for_rows(
        cls, library: Path, feature_names: Sequence[str], cpu_flags: Collection[str] | None = None
    ) -> RequestKernel:
        """The library's kernel over an empty catalog: for predict_rows and check_parity."""
        nothing = np.full(1, np.nan, dtype=np.float32)
        no_affinity = SparseAffinity.empty(0)
        no_codes = np.zeros(1, dtype=np.int64)
        return cls(
            library,
            feature_names=feature_names,
            category_codes=nothing,
            prices=nothing,
            popularity=nothing,
            affinity=no_affinity,
            cpu_flags=cpu_flags,
            sequence_tables=SequenceTables(
                no_codes, no_codes, 0, 0, no_affinity, np.zeros((1, 1), dtype=np.float64)
            ),
        )

    def score(
        self,
        session: Sequence[float],
        current_index: int,
        previous_indices: Sequence[int],
        candidates: Indices,
        category_codes: F32 | None = None,
        prices: F32 | None = None,
        mode: str = "auto",
        history: bytes | None = None,
    ) -> F64:
        """Click probabilities of the candidates (1-D int32/int64 catalog indices, -1 = unknown)
        for one session: its SESSION_INPUTS values in order, the current product's index and
        N_PREVIOUS previous products' indices (-1 = none). category_codes and prices (float32,
        one per candidate) replace the catalog's for every candidate when given; an unknown
        candidate needs them. history (pack_history): the session's views, which a sequence
        kernel needs and a candidate kernel ignores. Raises ValueError naming the bad
        argument."""
        args = self._request(
            session, current_index, previous_indices, candidates, category_codes, prices
        )
        out = np.empty(args[3])
        status = self._score(
            self._tables,
            args[0],
            self._history(history),
            MODES[mode],
            self._kernel,
            *args[1:],
            _from_buffer(out),
        )
        if status:
            raise ValueError(self._describe(status, candidates, current_index, previous_indices))
        return out

    def rows(
        self,
        session: Sequence[float],
        current_index: int,
        previous_indices: Sequence[int],
        candidates: Indices,
        category_codes: F32 | None = None,
        prices: F32 | None = None,
        history: bytes | None = None,
    ) -> F32:
        """The feature rows score() scores, (n, len(feature_names)) float32 (for checks)."""
        args = self._request(
            session, current_index, previous_indices, candidates, category_codes, prices
        )
        out = np.empty((args[3], len(self.feature_names)), dtype=np.float32)
        status = self._rows(self._tables, args[0], self._history(history), *args[1:],
                            _from_buffer(out))  # fmt: skip
        if status:
            raise ValueError(self._describe(status, candidates, current_index, previous_indices))
        return out

    def predict_rows(self, rows: F32, mode: str = "fold", kernel: str | None = None) -> F64:
        """Scores given feature rows (2-D float32, C-contiguous) as score() would, each run of
        rows sharing their session columns folded once: for parity checks on any rows.
        kernel: a block scorer of usable_kernels (default: the chosen one)."""
        if not (
            isinstance(rows, np.ndarray)
            and rows.ndim == 2
            and rows.dtype == _F32
            and rows.flags.c_contiguous
            and rows.shape[1] == len(self.feature_names)
        ):
            raise ValueError(
                f"rows must be a C-contiguous float32 array of shape (n, "
                f"{len(self.feature_names)}), got {getattr(rows, 'shape', type(rows).__name__)}"
            )
        out = np.empty(len(rows), dtype=np.float64)
        status = self._predict_rows(
            MODES[mode],
            self._kernel
            if kernel is None
            else KERNELS[choose_kernel(kernel, self.usable_kernels, None)],
            _from_buffer(rows),
            len(rows),
            rows.shape[1],
            _from_buffer(out),
        )
        if status:
            raise RequestKernelError(f"reco_request_predict_rows refused: status {status}")
        return out

    def check_parity(self, rows: F32, expected: F64, tolerance: float = 0.0) -> float:
        """The largest difference from expected (LightGBM's probabilities for rows) over every
        mode and every kernel this CPU can run; and, with the rows regrouped into runs sharing
        one session (as requests are), the largest difference of the fold from the flat walk.
        Raises RequestKernelError above tolerance. The load-time check: the bundle's parity
        probe is the natural rows."""
        shared = shared_session_rows(rows, self.n_session)
        shared_flat = self.predict_rows(shared, "flat")
        worst = 0.0
        for kernel in self.usable_kernels:
            for mode in MODES:
                for given, reference in ((rows, expected), (shared, shared_flat)):
                    diff = np.abs(self.predict_rows(given, mode, kernel) - reference)
                    worst = max(worst, float(np.max(np.nan_to_num(diff, nan=np.inf), initial=0)))
        if worst > tolerance:
            raise RequestKernelError(
                f"request kernel parity failed: max abs diff {worst:.3g} > {tolerance:g} over "
                f"{len(rows)} rows"
            )
        return worst

    def _request(
        self,
        session: Sequence[float],
        current_index: int,
        previous_indices: Sequence[int],
        candidates: Indices,
        codes: F32 | None,
        prices: F32 | None,
    ) -> tuple[bytes, object, int, int, object, object]:
        """The C arguments of one request: the packed RecoSession, the candidates' buffer,
        index width and count, the codes' and prices' buffers (NULL when not given). Raises
        ValueError naming what is wrong."""
        if type(candidates) is not np.ndarray or candidates.ndim != 1:
            raise ValueError(
                f"candidates must be a 1-D int32 or int64 array, got {type(candidates).__name__}"
                + (f" of shape {candidates.shape}" if isinstance(candidates, np.ndarray) else "")
            )
        dtype = candidates.dtype
        if dtype == _I64:
            width = 8
        elif dtype == _I32:
            width = 4
        else:
            raise ValueError(f"candidates must be int32 or int64, got {dtype}")
        try:
            index = _from_buffer(candidates)
            packed = _SESSION.pack(*session, current_index, *previous_indices)
        except (BufferError, ValueError, TypeError) as exc:
            raise ValueError(f"candidates must be a contiguous array: {exc}") from exc
        except struct.error as exc:
            raise ValueError(
                f"session must be {len(SESSION_INPUTS)} numbers ({', '.join(SESSION_INPUTS)}) and "
                f"the indices {1 + N_PREVIOUS} integers: {exc}"
            ) from exc
        n = len(candidates)
        return (
            packed,
            index,
            width,
            n,
            _NULL if codes is None else self._column("category_codes", codes, n),
            _NULL if prices is None else self._column("prices", prices, n),
        )

    def _history(self, history: bytes | None) -> object:
        """The history argument: NULL for a candidate kernel; raises ValueError when a
        sequence kernel has none, or it is not a pack_history buffer."""
        if not self.sequence:
            return _NULL
        if not isinstance(history, bytes) or packed_history_length(history) is None:
            raise ValueError(
                "history must be the session's views packed by reco.pack_history (this kernel "
                f"builds the sequence feature set), got {type(history).__name__}"
            )
        return history

    @staticmethod
    def _column(name: str, values: F32, n: int) -> object:
        if not (
            isinstance(values, np.ndarray)
            and values.dtype == _F32
            and values.shape == (n,)
            and values.flags.c_contiguous
        ):
            raise ValueError(
                f"{name} must be None or a contiguous float32 array of shape ({n},), got "
                f"{getattr(values, 'dtype', type(values).__name__)} "
                f"{getattr(values, 'shape', '')}"
            )
        return _from_buffer(values)

    def _describe(
        self, status: int, candidates: Indices, current: int, previous: Sequence[int]
    ) -> str:
        valid = f"-1..{self.n_products - 1}"
        if status > 0:
            i = status - 1
            return f"candidates[{i}]: index {int(candidates[i])} is outside the catalog ({valid})"
        if status == -2:
            return (
                f"current_index {current}, previous_indices {list(previous)} or the history's "
                f"product indices outside the catalog ({valid})"
            )
        return f"reco_request_score refused the request (status {status})"


def bundle_request_kernel(
    library: Path,
    manifest: Manifest,
    encodings: Encodings,
    catalog: Catalog,
    tables: ProductTables,
    cpu_flags: Collection[str] | None,
) -> RequestKernel:
    """A loaded bundle's request kernel: model.so's (`library`, the very file the compiled
    backend opened) bound to the bundle's product tables, and reproducing the manifest's
    parity probe exactly (tolerance 0.0, every mode and block scorer this CPU runs).

    Raises RequestKernelError saying why the bundle cannot be scored natively: the build
    recorded no kernel (e.g. a feature set the kernel does not cover), the library's kernel
    builds other features than the manifest's, or a parity failure."""
    record = manifest.compiler.get("request_kernel") or {}
    if record.get("built") is False:
        raise RequestKernelError(f"the build made no request kernel: {record.get('reason')}")
    codes, prices = catalog_columns(encodings, catalog)
    sequence_tables = None
    if manifest.feature_set == "sequence":
        sequence_tables = SequenceTables.build(catalog, tables)
    try:
        kernel = RequestKernel(
            library,
            feature_names=manifest.feature_names,
            category_codes=codes,
            prices=prices,
            popularity=tables.popularity,
            affinity=tables.affinity,
            cpu_flags=cpu_flags,
            product_index=catalog.index,
            sequence_tables=sequence_tables,
        )
    except ValueError as exc:  # tables of the wrong shape: a catalog the kernel cannot bind
        raise RequestKernelError(str(exc)) from exc
    kernel.check_parity(manifest.probe.rows, manifest.probe.probabilities)
    return kernel


def shared_session_rows(rows: F32, n_session: int, run: int = SHARED_SESSION_RUN) -> F32:
    """A copy of rows in runs of `run` rows sharing their first row's n_session leading
    (session) columns: the shape of requests (one session, many candidates) out of rows of
    independent sessions."""
    shared = np.array(rows, dtype=np.float32, order="C", copy=True)
    for start in range(0, len(shared), run):
        shared[start : start + run, :n_session] = shared[start, :n_session]
    return shared
