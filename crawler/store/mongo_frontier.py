"""The MongoDB store's frontier, leases and job workers (see ``mongo.py``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import TypeVar

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from crawler.frontier import CrawlRequest
from crawler.store import mongo_base
from crawler.store.base import DEFAULT_REQUEST_LEASE_S
from crawler.store.listing import check_lease
from crawler.store.mongo_base import Document

logger = logging.getLogger(__name__)

T = TypeVar("T")


def frontier_document(job_id: str, request: CrawlRequest) -> Document:
    return {
        "_id": ObjectId(),
        "job": job_id,
        "key": request.key,
        "state": "queued",
        "url": request.url,
        "host": request.host,
        "depth": request.depth,
        "referrer": request.referrer,
    }


def request_from_document(document: Document) -> CrawlRequest:
    return CrawlRequest(
        url=document["url"],
        key=document["key"],
        host=document["host"],
        depth=document["depth"],
        referrer=document.get("referrer"),
    )


class MongoFrontier(mongo_base.MongoBase):
    """Frontiers, URL leases, pop budgets, host leases and job workers of
    :class:`~crawler.store.mongo.MongoStore`."""

    async def add_requests(self, job_id: str, requests: Sequence[CrawlRequest]) -> int:
        """Queue the requests whose key the job has not seen and return how many.

        A missing job stores nothing and returns 0. Of two requests with one
        key in ``requests``, the first is queued.
        """
        if not requests:
            return 0
        unique = {request.key: request for request in reversed(requests)}
        documents = [
            frontier_document(job_id, request)
            for request in requests
            if unique.get(request.key) is request
        ]

        with self._errors("add_requests"):
            if not await self._job_exists(job_id):
                return 0
            return await mongo_base.insert_new(self._frontier, documents)

    async def claim_key(self, job_id: str, key: str) -> bool:
        """Mark ``key`` seen (as done) without queueing it.

        Returns False if the job has seen the key, or the job is missing.
        """
        document = {"_id": ObjectId(), "job": job_id, "key": key, "state": "done"}
        with self._errors("claim_key"):
            if not await self._job_exists(job_id):
                return False
            return await mongo_base.insert_new(self._frontier, [document]) == 1

    async def pop_request(
        self,
        job_id: str,
        busy_hosts: Collection[str],
        worker_id: str,
        *,
        lease_s: float = DEFAULT_REQUEST_LEASE_S,
        now: float | None = None,
        max_pops: int | None = None,
        only_hosts: Collection[str] | None = None,
    ) -> CrawlRequest | None:
        """Mark the oldest queued request of a host not in ``busy_hosts`` as in
        progress for ``worker_id`` until ``now + lease_s`` and return it.

        With ``max_pops``, return None once the job's popped count reaches it:
        the request is popped first and put back in its place when the budget
        is spent, so a missing job or an empty queue writes nothing. With
        ``only_hosts``, take only requests of those hosts.
        """
        check_lease(lease_s)
        expires_at = (time.time() if now is None else now) + lease_s
        query: Document = {"job": job_id, "state": "queued"}
        host_filter: Document = {}
        if busy_hosts:
            host_filter["$nin"] = list(busy_hosts)
        if only_hosts is not None:
            host_filter["$in"] = list(only_hosts)
        if host_filter:
            query["host"] = host_filter

        # The server skips the queued entries of busy hosts one by one, so a pop
        # reads every queued entry of the busy hosts that is older than the
        # first free one.
        with self._errors("pop_request"):
            async with self._locked(f"frontier:{job_id}"):
                document = await self._frontier.find_one_and_update(
                    query,
                    {
                        "$set": {
                            "state": "in_progress",
                            "owner": worker_id,
                            "expires_at": expires_at,
                        }
                    },
                    sort=[("_id", ASCENDING)],
                    return_document=ReturnDocument.AFTER,
                )
                if document is None:
                    return None
                if not await self._reserve_pop(job_id, max_pops):
                    await self._frontier.update_one(
                        {"_id": document["_id"], "owner": worker_id},
                        {
                            "$set": {"state": "queued"},
                            "$unset": {"owner": "", "expires_at": ""},
                        },
                    )
                    return None
        return request_from_document(document)

    async def return_request(self, job_id: str, key: str, worker_id: str) -> bool:
        """Put one of ``worker_id``'s in-progress requests back in its place in
        the queue; False if it is not in progress for that worker."""
        with self._errors("return_request"):
            async with self._locked(f"frontier:{job_id}"):
                result = await self._frontier.update_one(
                    {
                        "job": job_id,
                        "key": key,
                        "state": "in_progress",
                        "owner": worker_id,
                    },
                    {
                        "$set": {"state": "queued"},
                        "$unset": {"owner": "", "expires_at": ""},
                    },
                )
                if result.modified_count:
                    await self._add_popped(job_id, -1)
        return result.modified_count == 1

    async def complete_request(self, job_id: str, key: str) -> None:
        """Mark an in-progress request done. Other states are left as they are."""
        with self._errors("complete_request"):
            async with self._locked(f"frontier:{job_id}"):
                await self._frontier.update_one(
                    {"job": job_id, "key": key, "state": "in_progress"},
                    {
                        "$set": {"state": "done"},
                        "$unset": {"owner": "", "expires_at": ""},
                    },
                )

    async def renew_requests(
        self, job_id: str, worker_id: str, *, lease_s: float, now: float
    ) -> int:
        """Extend the worker's request leases, host leases and membership in
        the job to ``now + lease_s``. Return how many requests it has leased."""
        check_lease(lease_s)
        expires_at = now + lease_s
        with self._errors("renew_requests"):
            async with self._locked(f"frontier:{job_id}"):
                result = await self._frontier.update_many(
                    {"job": job_id, "state": "in_progress", "owner": worker_id},
                    {"$set": {"expires_at": expires_at}},
                )
            async with self._locked(f"hosts:{job_id}"):
                await self._hosts.update_many(
                    {"job": job_id, "owner": worker_id},
                    {"$set": {"expires_at": expires_at}},
                )
            # One writer per document (the worker itself), so no lock.
            await self._workers.update_one(
                {"job": job_id, "worker": worker_id},
                {"$set": {"expires_at": expires_at}},
                upsert=True,
            )
        return result.matched_count

    async def requeue_in_progress(
        self, job_id: str, *, owner: str | None = None, expired_at: float | None = None
    ) -> int:
        """Return in-progress requests of the job to the queue and count them.

        ``owner`` limits this to one worker's requests and ``expired_at`` to
        requests whose lease ended before that time; with neither, every
        in-progress request goes back. Requeued requests keep their place, so
        they are popped before newer ones, and leave the popped count.
        """
        query: Document = {"job": job_id, "state": "in_progress"}
        if owner is not None:
            query["owner"] = owner
        if expired_at is not None:
            query["$or"] = [{"expires_at": {"$lt": expired_at}}, {"expires_at": None}]
        with self._errors("requeue_in_progress"):
            async with self._locked(f"frontier:{job_id}"):
                result = await self._frontier.update_many(
                    query,
                    {
                        "$set": {"state": "queued"},
                        "$unset": {"owner": "", "expires_at": ""},
                    },
                )
                if result.modified_count:
                    await self._add_popped(job_id, -result.modified_count)
        if result.modified_count:
            logger.info(
                "Requeued %d in-progress requests of job %s",
                result.modified_count,
                job_id,
            )
        return result.modified_count

    async def acquire_host(
        self, job_id: str, host: str, worker_id: str, *, lease_s: float, now: float
    ) -> bool:
        """Lease ``host`` in the job to ``worker_id`` until ``now + lease_s``.

        Succeeds when the worker holds the lease already (it is extended), or
        when no worker does (never leased, released or expired) and the host's
        ``free_at`` has passed. An upsert that finds the host leased to another
        worker breaks the unique (job, host) index, which reads as "taken".
        """
        check_lease(lease_s)
        query = {
            "job": job_id,
            "host": host,
            "$or": [
                {"owner": worker_id},
                {"owner": None, "free_at": {"$lte": now}},
                {"expires_at": {"$lt": now}, "free_at": {"$lte": now}},
            ],
        }
        update = {
            "$set": {"owner": worker_id, "expires_at": now + lease_s},
            "$setOnInsert": {"free_at": 0.0},
        }
        with self._errors("acquire_host"):
            if not await self._job_exists(job_id):
                return False
            async with self._locked(f"hosts:{job_id}"):
                try:
                    await self._hosts.update_one(query, update, upsert=True)
                except DuplicateKeyError:
                    return False
        return True

    async def held_hosts(self, job_id: str, *, now: float) -> dict[str, str | None]:
        """Map each leased host of the job to its worker, and each host
        waiting for its ``free_at`` to None."""
        query = {
            "job": job_id,
            "$or": [
                {"owner": {"$ne": None}, "expires_at": {"$gte": now}},
                {"free_at": {"$gt": now}},
            ],
        }
        held: dict[str, str | None] = {}
        with self._errors("held_hosts"):
            async for document in self._hosts.find(query):
                live = (
                    document.get("owner") is not None
                    and document.get("expires_at", 0) >= now
                )
                held[document["host"]] = document["owner"] if live else None
        return held

    async def release_hosts(
        self,
        job_id: str,
        worker_id: str,
        free_at: Mapping[str, float],
        *,
        hosts: Collection[str] | None = None,
    ) -> int:
        """Drop the worker's leases on ``hosts`` in the job; return how many.

        With ``hosts`` None, drop all of them and the worker's membership in
        the job's workers: the worker leaves the job. ``free_at`` maps a host
        to the earliest time (epoch seconds) another worker may start a
        request to it; hosts missing from it are free at once.
        """
        query: Document = {"job": job_id, "owner": worker_id}
        if hosts is not None:
            query["host"] = {"$in": list(hosts)}
        with self._errors("release_hosts"):
            async with self._locked(f"hosts:{job_id}"):
                held = [
                    document["host"]
                    async for document in self._hosts.find(query, {"host": True})
                ]
                for host in held:
                    await self._hosts.update_one(
                        {"job": job_id, "host": host, "owner": worker_id},
                        {
                            "$set": {
                                "owner": None,
                                "expires_at": None,
                                "free_at": free_at.get(host, 0.0),
                            }
                        },
                    )
            if hosts is None:
                await self._workers.delete_one({"job": job_id, "worker": worker_id})
        return len(held)

    async def queued_hosts(self, job_id: str) -> set[str]:
        """Return the job's hosts that have queued requests."""
        with self._errors("queued_hosts"):
            hosts = await self._frontier.distinct(
                "host", {"job": job_id, "state": "queued"}
            )
        return set(hosts)

    async def live_workers(self, job_id: str, *, now: float) -> set[str]:
        """Return the workers whose membership in the job lasts past ``now``."""
        with self._errors("live_workers"):
            return {
                document["worker"]
                async for document in self._workers.find(
                    {"job": job_id, "expires_at": {"$gt": now}}, {"worker": True}
                )
            }

    async def _reserve_pop(self, job_id: str, max_pops: int | None) -> bool:
        """Count one pop in the job's budget unless it has reached ``max_pops``.

        Runs inside the frontier lock on FerretDB, where the read and the write
        are therefore one step. On MongoDB a conditional upsert does it: when
        the budget is spent, the filter misses and the upsert's new document
        breaks the unique ``_id``.
        """
        if max_pops is None:
            await self._add_popped(job_id, 1)
            return True
        if max_pops <= 0:
            return False
        try:
            await self._budgets.update_one(
                {"_id": job_id, "popped": {"$lt": max_pops}},
                {"$inc": {"popped": 1}},
                upsert=True,
            )
        except DuplicateKeyError:
            return False
        return True

    async def _add_popped(self, job_id: str, delta: int) -> None:
        await self._budgets.update_one(
            {"_id": job_id}, {"$inc": {"popped": delta}}, upsert=True
        )
