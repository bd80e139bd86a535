"""Photo intake: an upload or a URL becomes an Asset, validated by decoding and encrypted before it is stored;
a refused photo leaves nothing behind."""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import Q
from django.utils import timezone

from lab.accounts.erased import account_not_erased
from lab.accounts.models import User
from lab.lib import safe_http
from lab.lib.clock import database_now
from lab.lib.errors import CommonError, Conflict, DomainError, Unavailable
from lab.lib.seals import seal_holds, seal_of
from lab.lib.tasks import enqueue
from lab.orders import imaging
from lab.orders.errors import OrderError
from lab.orders.models import Asset, AssetUploadKey
from lab.privacy.vault import data_key_create, data_key_destroy, vault_delete, vault_write

logger = logging.getLogger(__name__)

# A URL photo's fetch is claimed by the worker that makes it (`fetch_claimed_at`) for longer than the task's
# hard time limit (120 s, workers/tasks.py): a claim older than this belongs to a worker that died. A photo
# whose fetch was claimed this many times without an outcome fails rather than staying `pending`.
FETCH_CLAIM_LEASE = timedelta(seconds=180)
FETCH_ATTEMPTS_MAX = 3
FETCH_SWEEP_BATCH = 200
# A photo refused because the store is at its reserve: room comes back when the retention sweep deletes photos
# never ordered, or when the operator adds some.
STORAGE_FULL_RETRY_AFTER_SECONDS = 900
UPLOAD_KEY_SALT = "lab.orders.photos.upload_key"
UPLOAD_REQUEST_SALT = "lab.orders.photos.upload_request"


class UploadAdmission(Protocol):
    """A limit the caller puts on the photos it uploads (the API's byte budget per customer or network), told
    only of a photo that is valid and about to be stored."""

    def admit(self, size_bytes: int) -> None:
        """Count the photo's bytes; raising refuses it (nothing is stored)."""

    def release(self) -> None:
        """Give back what `admit` counted: the photo was not stored after all."""


def _store_free_bytes() -> int:
    """Free space of the file system the photo store is on (its nearest existing folder: the vault makes the
    store's folders on its first write)."""
    path = Path(settings.MEDIA_ROOT)
    while not path.exists() and path.parent != path:
        path = path.parent
    return shutil.disk_usage(path).free


def _store_reserve_check(*, size_bytes: int) -> None:
    """Refuse a new photo that would leave the store less free space than its reserve
    (LAB_STORAGE_RESERVE_MB): rasters of paid orders, the readiness probe and everything else that writes
    there keep the reserve. Before, photos took the store to its last byte, and then every raster failed and
    every web host's readiness with them."""
    reserve = settings.LAB_STORAGE_RESERVE_MB * 1024 * 1024
    if reserve <= 0:
        return
    try:
        free = _store_free_bytes()
    except OSError as error:  # the store's state unknown: its write answers (photo_store_unavailable)
        logger.warning("photo store free space unknown errno=%s", errno.errorcode.get(error.errno or 0, "-"))
        return
    if free - size_bytes >= reserve:
        return
    logger.warning(
        "photo refused: the photo store is at its reserve free_mb=%d reserve_mb=%d",
        free // (1024 * 1024),
        settings.LAB_STORAGE_RESERVE_MB,
    )
    raise Unavailable(
        OrderError.STORAGE_FULL,
        "The lab's photo store is full; nothing was kept. Retry later.",
        retry_after_seconds=STORAGE_FULL_RETRY_AFTER_SECONDS,
    )


def asset_store(*, asset: Asset, facts: imaging.ImageFacts) -> None:
    """Encrypt the photo under a new data key and store it; a store that refuses the write (disk full,
    read-only, failing) keeps nothing: the key is destroyed and the answer says to retry later. A store at
    its reserve is not written to (`storage_full`)."""
    _store_reserve_check(size_bytes=facts.size_bytes)
    key = data_key_create()
    try:
        blob_name = vault_write(data_key=key, plaintext=facts.data, purpose="original")
    except OSError as error:
        data_key_destroy(data_key=key)
        reason = errno.errorcode.get(error.errno or 0, "unknown")
        logger.warning("photo store write failed errno=%s", reason)
        raise Unavailable(
            OrderError.PHOTO_STORE_UNAVAILABLE,
            "The photo could not be stored (the lab's photo store refused the write); nothing was kept. "
            "Retry later.",
        ) from error
    asset.blob_name = blob_name
    asset.data_key = key
    asset.sha256 = facts.sha256
    asset.size_bytes = facts.size_bytes
    asset.width_px = facts.width_px
    asset.height_px = facts.height_px
    asset.image_format = facts.image_format
    asset.color_mode = facts.color_mode
    asset.has_icc_profile = facts.has_icc_profile
    asset.icc_description = facts.icc_description
    asset.exif_orientation = facts.exif_orientation
    asset.gps_stripped = facts.gps_stripped
    asset.status = Asset.Status.READY


@dataclass(frozen=True)
class UploadKey:
    """An Idempotency-Key sent with a photo: whose it is (`scope`: a customer's `idempotency_scope`, anyone
    else's network as the upload budget counts it), the key, and the request it came with (`upload_request`,
    `url_request`). Its row keeps neither scope nor key, only `sealed()`: a keyed hash."""

    scope: str
    key: str
    request: str

    def sealed(self, *, secret: str | None = None) -> str:
        return seal_of(UPLOAD_KEY_SALT, f"{self.scope}|{self.key}", secret=secret)


@dataclass(frozen=True)
class AssetReceived:
    asset: Asset
    created: bool  # False: a retry of a photo sent with its Idempotency-Key, answered with that photo


def upload_request(*, data: bytes, md5: str | None, sha256: str | None) -> str:
    """What a key remembers of an upload: the photo's bytes (their SHA-256) and the form's checksums."""
    return "|".join(("file", hashlib.sha256(data).hexdigest(), (md5 or "").lower(), (sha256 or "").lower()))


def url_request(*, url: str) -> str:
    return f"url|{url}"


def _request_message(key_seal: str, asset_id: object, request: str) -> str:
    return f"{key_seal}|{asset_id}|{request}"


def asset_upload_replay(*, upload_key: UploadKey) -> Asset | None:
    """The photo first sent with this key, or None: a new key (or one whose photo was purged: it is spent
    with its photo, and the retry is stored afresh). The same key with another photo, or another URL, is 409
    `idempotency_key_reused`. One indexed query (under SECRET_KEY or a fallback: a key rotation between an
    upload and its retry still finds it)."""
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    seals = [upload_key.sealed(secret=secret) for secret in secrets]
    record = AssetUploadKey.objects.select_related("asset").filter(key_seal__in=seals).first()
    if record is None:
        return None
    if record.asset.status == Asset.Status.PURGED:
        AssetUploadKey.objects.filter(pk=record.pk).delete()
        return None
    message = _request_message(record.key_seal, record.asset_id, upload_key.request)
    if not seal_holds(record.request_seal, UPLOAD_REQUEST_SALT, message):
        raise Conflict(
            OrderError.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was already used with another photo.",
        )
    return record.asset


def _upload_key_remember(*, upload_key: UploadKey, asset: Asset) -> None:
    """In the photo's transaction: a request with the same key at once waits on the unique index, then
    fails and answers this photo (`_replayed_or_raise`)."""
    key_seal = upload_key.sealed()
    AssetUploadKey.objects.create(
        key_seal=key_seal,
        request_seal=seal_of(UPLOAD_REQUEST_SALT, _request_message(key_seal, asset.pk, upload_key.request)),
        asset=asset,
    )


def _replayed_or_raise(error: IntegrityError, upload_key: UploadKey | None) -> AssetReceived:
    replayed = asset_upload_replay(upload_key=upload_key) if upload_key is not None else None
    if replayed is None:
        raise error
    return AssetReceived(asset=replayed, created=False)


def asset_create_from_upload(
    *,
    owner: User | None,
    data: bytes,
    md5: str | None = None,
    sha256: str | None = None,
    admission: UploadAdmission | None = None,
) -> Asset:
    return asset_receive_upload(owner=owner, data=data, md5=md5, sha256=sha256, admission=admission).asset


def asset_receive_upload(
    *,
    owner: User | None,
    data: bytes,
    md5: str | None = None,
    sha256: str | None = None,
    admission: UploadAdmission | None = None,
    upload_key: UploadKey | None = None,
) -> AssetReceived:
    """Validate by decoding, then encrypt and store; a refused photo leaves nothing behind. `admission` is
    told of a valid photo's bytes just before it is stored (a refused or invalid one costs nothing), and given
    them back if it is not stored after all.

    `upload_key` (the caller looked it up first: `asset_upload_replay`) is remembered in the photo's
    transaction; of requests with the same key at once one photo is stored, and the others give back their
    bytes, keep nothing and answer it."""
    imaging.check_client_checksums(data=data, md5=md5, sha256=sha256)
    facts = imaging.inspect_image(
        data=data, max_bytes=settings.ASSET_MAX_BYTES, max_pixels=settings.ASSET_MAX_PIXELS
    )
    asset = Asset(owner=owner)
    if admission is not None:
        admission.admit(facts.size_bytes)  # raising refuses the photo before anything is written
    try:
        asset_store(asset=asset, facts=facts)
        try:
            with transaction.atomic():
                asset.save()
                if upload_key is not None:
                    _upload_key_remember(upload_key=upload_key, asset=asset)
                if owner is not None:
                    account_not_erased(owner.pk)
        except BaseException:
            # Nothing behind: the stored copy's key is destroyed (no copy of the blob, backups included, can
            # be read again) and the blob deleted.
            if asset.data_key is not None:
                data_key_destroy(data_key=asset.data_key)
            vault_delete(name=asset.blob_name)
            raise
    except BaseException as error:
        if admission is not None:
            admission.release()
        if isinstance(error, IntegrityError):
            return _replayed_or_raise(error, upload_key)
        raise
    logger.info(
        "asset stored asset=%s format=%s bytes=%d sequential_from=%s",
        asset.pk,
        asset.image_format,
        asset.size_bytes,
        facts.made_sequential_from or "-",
    )
    return AssetReceived(asset=asset, created=True)


def asset_create_from_url(*, owner: User | None, url: str) -> Asset:
    return asset_receive_url(owner=owner, url=url).asset


def asset_receive_url(*, owner: User | None, url: str, upload_key: UploadKey | None = None) -> AssetReceived:
    """A photo to fetch from `url` (a worker fetches it: `asset_fetch`), remembered with its `upload_key` as
    an upload is."""
    # A web request waits on this lookup: given URL_CHECK_TIMEOUT_SECONDS, then refused as unresolvable.
    safe_http.check_url(
        url,
        allow_private=settings.ASSET_FETCH_ALLOW_PRIVATE,
        allow_http=settings.ASSET_FETCH_ALLOW_HTTP,
        timeout=settings.URL_CHECK_TIMEOUT_SECONDS,
    )
    try:
        with transaction.atomic():
            asset = Asset.objects.create(
                owner=owner, source_url=url, status=Asset.Status.PENDING, fetch_sent_at=timezone.now()
            )
            if upload_key is not None:
                _upload_key_remember(upload_key=upload_key, asset=asset)
            if owner is not None:  # as an upload: a photo sent while the account is erased is refused
                account_not_erased(owner.pk)
            transaction.on_commit(lambda: enqueue("intake.asset_fetch", asset_id=str(asset.pk)))
    except IntegrityError as error:
        return _replayed_or_raise(error, upload_key)
    return AssetReceived(asset=asset, created=True)


def _fetch_claim(*, asset_id: str) -> bool:
    """Claim a pending photo's fetch for this worker: a conditional UPDATE, committed before the fetch. False
    when it is done, or another worker's claim is live (a duplicate or redelivered message: nothing to do)."""
    now = database_now()  # the lease is judged on the clock every host shares (lab/lib/clock.py)
    claimed = (
        Asset.objects.filter(pk=asset_id, status=Asset.Status.PENDING)
        .filter(Q(fetch_claimed_at__isnull=True) | Q(fetch_claimed_at__lt=now - FETCH_CLAIM_LEASE))
        .update(fetch_claimed_at=now, fetch_attempts=models.F("fetch_attempts") + 1)
    )
    return claimed == 1


def asset_fetch(*, asset_id: str) -> None:
    """Worker side of a URL upload: claim it, fetch with size/time limits and the SSRF guard, then validate.
    A message may be delivered twice, or re-sent by the sweep: only the claim's holder fetches."""
    if not _fetch_claim(asset_id=asset_id):
        return
    asset = Asset.objects.get(pk=asset_id)
    try:
        data = safe_http.fetch(
            asset.source_url,
            max_bytes=settings.ASSET_MAX_BYTES,
            timeout=settings.ASSET_FETCH_TIMEOUT_SECONDS,
            allow_private=settings.ASSET_FETCH_ALLOW_PRIVATE,
            allow_http=settings.ASSET_FETCH_ALLOW_HTTP,
        )
        facts = imaging.inspect_image(
            data=data, max_bytes=settings.ASSET_MAX_BYTES, max_pixels=settings.ASSET_MAX_PIXELS
        )
    except DomainError as error:
        Asset.objects.filter(pk=asset.pk, status=Asset.Status.PENDING).update(
            status=Asset.Status.FAILED, failure_code=error.code, failure_message=error.message[:300]
        )
        logger.info("asset fetch failed asset=%s code=%s", asset.pk, error.code)
        return
    try:
        with transaction.atomic():
            locked = Asset.objects.select_for_update().get(pk=asset.pk)
            if locked.status != Asset.Status.PENDING:
                return
            asset_store(asset=locked, facts=facts)
            locked.save()
    except Unavailable as error:
        # Not left `pending` for ever: the customer sees why and sends the URL again later.
        Asset.objects.filter(pk=asset.pk, status=Asset.Status.PENDING).update(
            status=Asset.Status.FAILED, failure_code=error.code, failure_message=error.message[:300]
        )
        return
    logger.info("asset fetched asset=%s bytes=%d", asset.pk, facts.size_bytes)


def asset_fetches_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """The durable record of a URL photo still to fetch is the photo itself, `pending`: its task message is a
    nudge, and one lost (a broker down at enqueue or restarted without persistence, a worker killed
    mid-fetch, whose message was acknowledged on receipt) is sent again here. A message is sent again when
    the last one went out at least one sweep interval ago and no live claim holds the photo; a photo whose
    fetch was claimed FETCH_ATTEMPTS_MAX times and never finished (each worker died on it) fails with
    `url_fetch_failed`, so that the customer sees it and no photo stays `pending` for ever."""
    now = now or database_now()
    sent_before = now - timedelta(seconds=settings.ASSET_FETCH_SWEEP_SECONDS)
    unclaimed = Q(fetch_claimed_at__isnull=True) | Q(fetch_claimed_at__lt=now - FETCH_CLAIM_LEASE)
    due = Asset.objects.filter(unclaimed, status=Asset.Status.PENDING).filter(
        Q(fetch_sent_at__isnull=True) | Q(fetch_sent_at__lt=sent_before)
    )
    given_up = due.filter(fetch_attempts__gte=FETCH_ATTEMPTS_MAX).update(
        status=Asset.Status.FAILED,
        failure_code=CommonError.URL_FETCH_FAILED,
        failure_message=f"The photo could not be fetched: {FETCH_ATTEMPTS_MAX} attempts did not finish. "
        "Send its URL again.",
    )
    resent = 0
    for asset_id in due.order_by("created_at").values_list("pk", flat=True)[:FETCH_SWEEP_BATCH]:
        # Conditional on the photo still being due: a sweep running beside this one sends nothing twice.
        if due.filter(pk=asset_id).update(fetch_sent_at=now):
            enqueue("intake.asset_fetch", asset_id=str(asset_id))
            resent += 1
    if given_up or resent:
        logger.info("asset fetches swept resent=%d failed=%d", resent, given_up)
    return {"resent": resent, "failed": given_up}
