"""``storage.s3`` parameters: Distribution's keys, validated once at start-up, and the boto3 client.

Values may arrive as YAML scalars or as strings (``REGISTRY_STORAGE_S3_*`` environment overrides), so
numbers and booleans are accepted in both forms.  Errors name the key as ``storage.s3.KEY``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config

MiB = 1 << 20
GiB = 1 << 30
MIN_PART = 5 * MiB  # S3's smallest part (all but the last)
MAX_PART = 5 * GiB  # S3's largest part, and the largest single CopyObject
STORAGE_CLASSES = (
    "STANDARD", "REDUCED_REDUNDANCY", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR",
    "NONE",
)
DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m)?")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0}
# Distribution's keys we accept but do not act on: they only tune its Go SDK's logging.
IGNORED = ("loglevel",)


@dataclass(frozen=True, slots=True)
class S3Parameters:
    bucket: str
    region: str
    regionendpoint: str | None = None
    accesskey: str | None = None
    secretkey: str | None = None
    sessiontoken: str | None = None
    rootdirectory: str = ""
    secure: bool = True
    skipverify: bool = False
    v4auth: bool = True
    forcepathstyle: bool | None = None  # None: path style exactly when regionendpoint is set
    accelerate: bool = False
    usedualstack: bool = False
    chunksize: int = 10 * MiB
    multipartcopychunksize: int = 32 * MiB
    multipartcopymaxconcurrency: int = 100
    multipartcopythresholdsize: int = 32 * MiB
    storageclass: str = "STANDARD"
    encrypt: bool = False
    keyid: str | None = None
    objectacl: str | None = None
    useragent: str | None = None
    maxthreads: int = 32
    uploadconcurrency: int = 4  # Moorage's: parts of one upload sent at once
    # Moorage's: how long an unreachable or hanging endpoint can hold a request, and failing fast after
    connecttimeout: float = 3.0  # seconds to establish a connection
    readtimeout: float = 20.0  # seconds without a byte from the endpoint
    maxattempts: int = 3  # tries of one request (throttling and 5xx answers are retried)
    breakerthreshold: int = 5  # consecutive failures that open the breaker (0: never)
    breakercooldown: float = 10.0  # seconds requests are refused at once before one tries again

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> S3Parameters:
        """Validate Distribution-style parameters; raises ValueError naming the bad key."""
        known = set(cls.__dataclass_fields__) | set(IGNORED)
        for key in raw:
            if key not in known:
                raise ValueError(f"storage.s3.{key}: unknown parameter")
        endpoint = _string(raw, "regionendpoint")
        region = _string(raw, "region") or ("us-east-1" if endpoint else None)
        if region is None:
            raise ValueError("storage.s3.region: required (unless regionendpoint is set)")
        bucket = _string(raw, "bucket")
        if not bucket:
            raise ValueError("storage.s3.bucket: required")
        accesskey, secretkey = _string(raw, "accesskey"), _string(raw, "secretkey")
        if bool(accesskey) != bool(secretkey):
            raise ValueError(f"storage.s3.{'secretkey' if accesskey else 'accesskey'}: "
                             "accesskey and secretkey go together (or leave both out for the AWS chain)")
        storageclass = (_string(raw, "storageclass") or "STANDARD").upper()
        if storageclass not in STORAGE_CLASSES:
            choices = ", ".join(STORAGE_CLASSES)
            raise ValueError(f"storage.s3.storageclass: {storageclass!r} is not one of {choices}")
        forcepathstyle = raw.get("forcepathstyle")
        return cls(
            bucket=bucket,
            region=region,
            regionendpoint=endpoint,
            accesskey=accesskey,
            secretkey=secretkey,
            sessiontoken=_string(raw, "sessiontoken"),
            rootdirectory=_string(raw, "rootdirectory") or "",
            secure=_boolean(raw, "secure", True),
            skipverify=_boolean(raw, "skipverify", False),
            v4auth=_boolean(raw, "v4auth", True),
            forcepathstyle=None if forcepathstyle is None else _boolean(raw, "forcepathstyle", False),
            accelerate=_boolean(raw, "accelerate", False),
            usedualstack=_boolean(raw, "usedualstack", False),
            chunksize=_integer(raw, "chunksize", 10 * MiB, MIN_PART, MAX_PART),
            multipartcopychunksize=_integer(raw, "multipartcopychunksize", 32 * MiB, MIN_PART, MAX_PART),
            multipartcopymaxconcurrency=_integer(raw, "multipartcopymaxconcurrency", 100, 1, 10_000),
            multipartcopythresholdsize=_integer(raw, "multipartcopythresholdsize", 32 * MiB, 0, MAX_PART),
            storageclass=storageclass,
            encrypt=_boolean(raw, "encrypt", False),
            keyid=_string(raw, "keyid"),
            objectacl=_string(raw, "objectacl"),
            useragent=_string(raw, "useragent"),
            maxthreads=_integer(raw, "maxthreads", 32, 1, 1024),
            uploadconcurrency=_integer(raw, "uploadconcurrency", 4, 1, 64),
            connecttimeout=_seconds(raw, "connecttimeout", 3.0),
            readtimeout=_seconds(raw, "readtimeout", 20.0),
            maxattempts=_integer(raw, "maxattempts", 3, 1, 20),
            breakerthreshold=_integer(raw, "breakerthreshold", 5, 0, 1000),
            breakercooldown=_seconds(raw, "breakercooldown", 10.0),
        )

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

    def client(self) -> BaseClient:
        """A thread-safe boto3 client; keys absent means the standard AWS credential chain."""
        pathstyle = self.forcepathstyle if self.forcepathstyle is not None else bool(self.regionendpoint)
        config = Config(
            region_name=self.region,
            signature_version="s3v4" if self.v4auth else "s3",
            s3={
                "addressing_style": "path" if pathstyle else "auto",
                "use_accelerate_endpoint": self.accelerate,
                "use_dualstack_endpoint": self.usedualstack,
            },
            max_pool_connections=self.maxthreads,
            retries={"mode": "standard", "max_attempts": self.maxattempts},
            connect_timeout=self.connecttimeout,
            read_timeout=self.readtimeout,
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


def _string(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"storage.s3.{key}: expected a string, got {value!r}")
    return str(value)


def _boolean(raw: Mapping[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ValueError(f"storage.s3.{key}: expected true or false, got {value!r}")


def _seconds(raw: Mapping[str, Any], key: str, default: float) -> float:
    """Seconds as a number, or a duration with a unit: ``500ms``, ``5s``, ``1m``."""
    value = raw.get(key, default)
    if isinstance(value, str):
        match = DURATION_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"storage.s3.{key}: expected seconds or a duration like 5s, got {value!r}")
        value = float(match.group(1)) * DURATION_UNITS[match.group(2) or "s"]
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= 3600:
        raise ValueError(f"storage.s3.{key}: expected a duration from 0 to 1h, got {value!r}")
    return float(value)


def _integer(raw: Mapping[str, Any], key: str, default: int, minimum: int, maximum: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"storage.s3.{key}: expected an integer, got {value!r}") from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"storage.s3.{key}: expected an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"storage.s3.{key}: {value} is outside {minimum}..{maximum}")
    return value
