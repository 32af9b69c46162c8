import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_VIEW: _ClassVar[EventType]
    EVENT_TYPE_ADD_TO_CART: _ClassVar[EventType]
    EVENT_TYPE_REMOVE_FROM_CART: _ClassVar[EventType]
    EVENT_TYPE_PURCHASE: _ClassVar[EventType]
    EVENT_TYPE_IMAGE_CLICK: _ClassVar[EventType]
    EVENT_TYPE_SCROLL: _ClassVar[EventType]
    EVENT_TYPE_RECOMMENDATION_CLICK: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_VIEW: EventType
EVENT_TYPE_ADD_TO_CART: EventType
EVENT_TYPE_REMOVE_FROM_CART: EventType
EVENT_TYPE_PURCHASE: EventType
EVENT_TYPE_IMAGE_CLICK: EventType
EVENT_TYPE_SCROLL: EventType
EVENT_TYPE_RECOMMENDATION_CLICK: EventType

class SessionContext(_message.Message):
    __slots__ = ("session_id", "customer_id", "current_product_id", "current_category", "current_price", "previous_product_ids", "products_in_cart", "device_type", "traffic_source", "time_on_page_sec", "scroll_depth", "clicked_product_image", "session_length_mins", "products_viewed_count")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PRICE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_IN_CART_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TIME_ON_PAGE_SEC_FIELD_NUMBER: _ClassVar[int]
    SCROLL_DEPTH_FIELD_NUMBER: _ClassVar[int]
    CLICKED_PRODUCT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    SESSION_LENGTH_MINS_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_VIEWED_COUNT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    customer_id: str
    current_product_id: str
    current_category: str
    current_price: float
    previous_product_ids: _containers.RepeatedScalarFieldContainer[str]
    products_in_cart: int
    device_type: str
    traffic_source: str
    time_on_page_sec: float
    scroll_depth: float
    clicked_product_image: bool
    session_length_mins: float
    products_viewed_count: int
    def __init__(self, session_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., current_product_id: _Optional[str] = ..., current_category: _Optional[str] = ..., current_price: _Optional[float] = ..., previous_product_ids: _Optional[_Iterable[str]] = ..., products_in_cart: _Optional[int] = ..., device_type: _Optional[str] = ..., traffic_source: _Optional[str] = ..., time_on_page_sec: _Optional[float] = ..., scroll_depth: _Optional[float] = ..., clicked_product_image: _Optional[bool] = ..., session_length_mins: _Optional[float] = ..., products_viewed_count: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("product_id", "category", "price")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    category: str
    price: float
    def __init__(self, product_id: _Optional[str] = ..., category: _Optional[str] = ..., price: _Optional[float] = ...) -> None: ...

class FeatureMatrix(_message.Message):
    __slots__ = ("data", "rows", "cols")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    rows: int
    cols: int
    def __init__(self, data: _Optional[bytes] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ScoreRequest(_message.Message):
    __slots__ = ("context", "candidates", "top_k", "min_score", "features", "skip_unknown", "candidate_ids", "log_impression")
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    SKIP_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    LOG_IMPRESSION_FIELD_NUMBER: _ClassVar[int]
    context: SessionContext
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    top_k: int
    min_score: float
    features: FeatureMatrix
    skip_unknown: bool
    candidate_ids: _containers.RepeatedScalarFieldContainer[str]
    log_impression: bool
    def __init__(self, context: _Optional[_Union[SessionContext, _Mapping]] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., top_k: _Optional[int] = ..., min_score: _Optional[float] = ..., features: _Optional[_Union[FeatureMatrix, _Mapping]] = ..., skip_unknown: _Optional[bool] = ..., candidate_ids: _Optional[_Iterable[str]] = ..., log_impression: _Optional[bool] = ...) -> None: ...

class RankedItem(_message.Message):
    __slots__ = ("product_id", "score", "rank", "index")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    score: float
    rank: int
    index: int
    def __init__(self, product_id: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class ScoreResponse(_message.Message):
    __slots__ = ("scores", "ranked", "model_version", "backend", "server_time_us", "variant", "unknown_product_ids", "request_id")
    SCORES_FIELD_NUMBER: _ClassVar[int]
    RANKED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_US_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    scores: _containers.RepeatedScalarFieldContainer[float]
    ranked: _containers.RepeatedCompositeFieldContainer[RankedItem]
    model_version: str
    backend: str
    server_time_us: int
    variant: str
    unknown_product_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, scores: _Optional[_Iterable[float]] = ..., ranked: _Optional[_Iterable[_Union[RankedItem, _Mapping]]] = ..., model_version: _Optional[str] = ..., backend: _Optional[str] = ..., server_time_us: _Optional[int] = ..., variant: _Optional[str] = ..., unknown_product_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetModelInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("version", "backend", "feature_names", "default_threshold", "file_sha256", "bundle_path", "created_at", "variant", "traffic_share", "rejected_backends")
    class FileSha256Entry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SHARE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_BACKENDS_FIELD_NUMBER: _ClassVar[int]
    version: str
    backend: str
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    default_threshold: float
    file_sha256: _containers.ScalarMap[str, str]
    bundle_path: str
    created_at: str
    variant: str
    traffic_share: float
    rejected_backends: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., backend: _Optional[str] = ..., feature_names: _Optional[_Iterable[str]] = ..., default_threshold: _Optional[float] = ..., file_sha256: _Optional[_Mapping[str, str]] = ..., bundle_path: _Optional[str] = ..., created_at: _Optional[str] = ..., variant: _Optional[str] = ..., traffic_share: _Optional[float] = ..., rejected_backends: _Optional[_Iterable[str]] = ...) -> None: ...

class GetModelInfoResponse(_message.Message):
    __slots__ = ("models", "last_reload_error", "last_reload_time")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    last_reload_error: str
    last_reload_time: _timestamp_pb2.Timestamp
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., last_reload_error: _Optional[str] = ..., last_reload_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "session_id", "customer_id", "type", "product_id", "time_on_page_sec", "scroll_depth", "device_type", "traffic_source", "client_timestamp", "request_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_ON_PAGE_SEC_FIELD_NUMBER: _ClassVar[int]
    SCROLL_DEPTH_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    session_id: str
    customer_id: str
    type: EventType
    product_id: str
    time_on_page_sec: float
    scroll_depth: float
    device_type: str
    traffic_source: str
    client_timestamp: _timestamp_pb2.Timestamp
    request_id: str
    def __init__(self, event_id: _Optional[str] = ..., session_id: _Optional[str] = ..., customer_id: _Optional[str] = ..., type: _Optional[_Union[EventType, str]] = ..., product_id: _Optional[str] = ..., time_on_page_sec: _Optional[float] = ..., scroll_depth: _Optional[float] = ..., device_type: _Optional[str] = ..., traffic_source: _Optional[str] = ..., client_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class TrackEventRequest(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: Event
    def __init__(self, event: _Optional[_Union[Event, _Mapping]] = ...) -> None: ...

class SessionSummary(_message.Message):
    __slots__ = ("session_id", "current_product_id", "previous_product_ids", "cart_product_ids", "products_viewed_count", "session_length_mins", "events_applied")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    CART_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    PRODUCTS_VIEWED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SESSION_LENGTH_MINS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_APPLIED_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    current_product_id: str
    previous_product_ids: _containers.RepeatedScalarFieldContainer[str]
    cart_product_ids: _containers.RepeatedScalarFieldContainer[str]
    products_viewed_count: int
    session_length_mins: float
    events_applied: int
    def __init__(self, session_id: _Optional[str] = ..., current_product_id: _Optional[str] = ..., previous_product_ids: _Optional[_Iterable[str]] = ..., cart_product_ids: _Optional[_Iterable[str]] = ..., products_viewed_count: _Optional[int] = ..., session_length_mins: _Optional[float] = ..., events_applied: _Optional[int] = ...) -> None: ...

class TrackEventResponse(_message.Message):
    __slots__ = ("duplicate", "session", "server_time_us")
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_US_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    session: SessionSummary
    server_time_us: int
    def __init__(self, duplicate: _Optional[bool] = ..., session: _Optional[_Union[SessionSummary, _Mapping]] = ..., server_time_us: _Optional[int] = ...) -> None: ...

class EventError(_message.Message):
    __slots__ = ("index", "event_id", "message")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    index: int
    event_id: str
    message: str
    def __init__(self, index: _Optional[int] = ..., event_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("accepted", "duplicates", "rejected", "errors")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    accepted: int
    duplicates: int
    rejected: int
    errors: _containers.RepeatedCompositeFieldContainer[EventError]
    def __init__(self, accepted: _Optional[int] = ..., duplicates: _Optional[int] = ..., rejected: _Optional[int] = ..., errors: _Optional[_Iterable[_Union[EventError, _Mapping]]] = ...) -> None: ...

class RecommendRequest(_message.Message):
    __slots__ = ("session_id", "k", "min_score", "exclude_product_ids", "explain", "max_per_category")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_PRODUCT_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    MAX_PER_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    k: int
    min_score: float
    exclude_product_ids: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    max_per_category: int
    def __init__(self, session_id: _Optional[str] = ..., k: _Optional[int] = ..., min_score: _Optional[float] = ..., exclude_product_ids: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ..., max_per_category: _Optional[int] = ...) -> None: ...

class FeatureContribution(_message.Message):
    __slots__ = ("feature", "value", "contribution")
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    feature: str
    value: float
    contribution: float
    def __init__(self, feature: _Optional[str] = ..., value: _Optional[float] = ..., contribution: _Optional[float] = ...) -> None: ...

class RecommendedItem(_message.Message):
    __slots__ = ("product_id", "name", "category", "subcategory", "price", "score", "reasons", "contributions", "propensity")
    PRODUCT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    SUBCATEGORY_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    PROPENSITY_FIELD_NUMBER: _ClassVar[int]
    product_id: str
    name: str
    category: str
    subcategory: str
    price: float
    score: float
    reasons: _containers.RepeatedScalarFieldContainer[str]
    contributions: _containers.RepeatedCompositeFieldContainer[FeatureContribution]
    propensity: float
    def __init__(self, product_id: _Optional[str] = ..., name: _Optional[str] = ..., category: _Optional[str] = ..., subcategory: _Optional[str] = ..., price: _Optional[float] = ..., score: _Optional[float] = ..., reasons: _Optional[_Iterable[str]] = ..., contributions: _Optional[_Iterable[_Union[FeatureContribution, _Mapping]]] = ..., propensity: _Optional[float] = ...) -> None: ...

class RecommendResponse(_message.Message):
    __slots__ = ("items", "cold_start", "model_version", "variant", "server_time_us", "backend", "candidates_scored", "request_id")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    COLD_START_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    SERVER_TIME_US_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_SCORED_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[RecommendedItem]
    cold_start: bool
    model_version: str
    variant: str
    server_time_us: int
    backend: str
    candidates_scored: int
    request_id: str
    def __init__(self, items: _Optional[_Iterable[_Union[RecommendedItem, _Mapping]]] = ..., cold_start: _Optional[bool] = ..., model_version: _Optional[str] = ..., variant: _Optional[str] = ..., server_time_us: _Optional[int] = ..., backend: _Optional[str] = ..., candidates_scored: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ForgetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class ForgetSessionResponse(_message.Message):
    __slots__ = ("existed",)
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    existed: bool
    def __init__(self, existed: _Optional[bool] = ...) -> None: ...

class ReloadModelRequest(_message.Message):
    __slots__ = ("bundle_path", "variant", "reload_configured")
    BUNDLE_PATH_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    RELOAD_CONFIGURED_FIELD_NUMBER: _ClassVar[int]
    bundle_path: str
    variant: str
    reload_configured: bool
    def __init__(self, bundle_path: _Optional[str] = ..., variant: _Optional[str] = ..., reload_configured: _Optional[bool] = ...) -> None: ...

class ReloadModelResponse(_message.Message):
    __slots__ = ("swapped", "model_version", "error")
    SWAPPED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    swapped: bool
    model_version: str
    error: str
    def __init__(self, swapped: _Optional[bool] = ..., model_version: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...
