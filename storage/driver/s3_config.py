"""``storage.s3`` parameters: Distribution's keys, checked once at start-up, and the boto3 client.

Values may arrive as YAML scalars or as strings (``REGISTRY_STORAGE_S3_*`` environment overrides), so
numbers and booleans are accepted in both forms.  Errors name the key as ``storage.s3.KEY``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from pydantic import PlainValidator, model_validator

from configkit import Bool, Invalid, PositiveDuration, Section, Str, choice, convert, integer

if TYPE_CHECKING:
    from botocore.client import BaseClient

MiB = 1 << 20
GiB = 1 << 30
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART = 5 * GiB  # S3's largest part, and the largest single CopyObject
STORAGE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
    "NONE",
)
OptionalStr = Str | None  # "" counts as absent


def to_timeout(value: Any) -> float:
    seconds = convert(PositiveDuration, value, "")
    if seconds > 3600:
        raise Invalid(f"expected a duration from 0 to 1h, got {value!r}")
    return seconds


Timeout = Annotated[float, PlainValidator(to_timeout)]  # seconds (or 500ms, 5s, 1m), at most 1h


class S3Parameters(Section):
    KEY = "storage.s3"
    IGNORED = ("loglevel",)  # Distribution's: it only tunes its Go SDK's logging

    bucket: OptionalStr = None  # required
    region: OptionalStr = None  # required unless regionendpoint is set (then us-east-1)
    regionendpoint: OptionalStr = None
    accesskey: OptionalStr = None
    secretkey: OptionalStr = None
    sessiontoken: OptionalStr = None
    rootdirectory: Str = ""
    secure: Bool = True
    skipverify: Bool = False
    v4auth: Bool = True
    forcepathstyle: Bool | None = None  # None: path style exactly when regionendpoint is set
    accelerate: Bool = False
    usedualstack: Bool = False
    chunksize: integer(MIN_PART, MAX_PART) = 10 * MiB
    multipartcopychunksize: integer(MIN_PART, MAX_PART) = 32 * MiB
    multipartcopymaxconcurrency: integer(1, 10_000) = 100
    multipartcopythresholdsize: integer(0, MAX_PART) = 32 * MiB
    storageclass: choice(*STORAGE_CLASSES, upper=True) = "STANDARD"
    encrypt: Bool = False
    keyid: OptionalStr = None
    objectacl: OptionalStr = None
    useragent: OptionalStr = None
    maxthreads: integer(1, 1024) = 32
    uploadconcurrency: integer(1, 64) = 4  # Moorage's: parts of one upload sent at once
    # Moorage's: how long an unreachable or hanging endpoint can hold a request, and failing fast after
    connecttimeout: Timeout = 3.0  # seconds to establish a connection
    readtimeout: Timeout = 20.0  # seconds without a byte from the endpoint
    maxattempts: integer(1, 20) = 3  # tries of one request (throttling and 5xx answers are retried)
    breakerthreshold: integer(0, 1000) = 5  # consecutive failures that open the breaker (0: never)
    breakercooldown: Timeout = 10.0  # seconds requests are refused at once before one tries again
    probeafter: Timeout = 2.0  # a request slower than this makes a probe check that the endpoint answers
    probetimeout: Timeout = 5.0  # how long the probe waits (connect and answer) before the endpoint is dead

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: v for k, v in raw.items() if v is not None and v != ""}
        return raw

    @model_validator(mode="after")
    def _complete(self) -> S3Parameters:
        if self.region is None:
            if self.regionendpoint is None:
                raise Invalid("required (unless regionendpoint is set)", "region")
            self.region = "us-east-1"
        if self.bucket is None:
            raise Invalid("required", "bucket")
        if bool(self.accesskey) != bool(self.secretkey):
            raise Invalid("accesskey and secretkey go together (or leave both out for the AWS chain)",
                          "secretkey" if self.accesskey else "accesskey")
        return self

    @property
    def endpoint_url(self) -> str | None:
        """``regionendpoint`` with a scheme (``secure`` picks it when the value has none)."""
        if not self.regionendpoint:
            return None
        if "://" in self.regionendpoint:
            return self.regionendpoint
        return f"{'https' if self.secure else 'http'}://{self.regionendpoint}"

    def object_args(self) -> dict[str, str]:
        """Arguments for every request that creates an object (put, multipart create, copy)."""
        args: dict[str, str] = {}
        if self.storageclass != "NONE":
            args["StorageClass"] = self.storageclass
        if self.encrypt:
            args["ServerSideEncryption"] = "aws:kms" if self.keyid else "AES256"
            if self.keyid:
                args["SSEKMSKeyId"] = self.keyid
        if self.objectacl:
            args["ACL"] = self.objectacl
        return args

    def client(self, probe: bool = False) -> BaseClient:
        """A thread-safe boto3 client; keys absent means the standard AWS credential chain. (boto3 is
        imported here, not with the config: reading a config stays fast.)  ``probe``: one connection,
        one try, ``probetimeout`` to connect and to answer."""
        import boto3
        from botocore.config import Config

        pathstyle = self.forcepathstyle if self.forcepathstyle is not None else bool(self.regionendpoint)
        config = Config(
            region_name=self.region,
            signature_version="s3v4" if self.v4auth else "s3",
            s3={
                "addressing_style": "path" if pathstyle else "auto",
                "use_accelerate_endpoint": self.accelerate,
                "use_dualstack_endpoint": self.usedualstack,
            },
            max_pool_connections=1 if probe else self.maxthreads,
            retries={"mode": "standard", "max_attempts": 1 if probe else self.maxattempts},
            connect_timeout=self.probetimeout if probe else self.connecttimeout,
            read_timeout=self.probetimeout if probe else self.readtimeout,
            user_agent_extra=self.useragent,
            # the payload is signed (plain HTTP) or sent over TLS already: skip a second checksum pass
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = boto3.session.Session(
            aws_access_key_id=self.accesskey,
            aws_secret_access_key=self.secretkey,
            aws_session_token=self.sessiontoken,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, use_ssl=self.secure,
                              verify=not self.skipverify, config=config)

