"""Per-request DataLoaders, so lists cost a fixed number of SQL statements.

A list's relations are read once per level of the query: the list's resolver asks the
loaders for what its query selects below it (`prefetch_requests`, `prefetch_images`),
each relation in one statement, and the relation fields then answer from what was read
(`now_or_later`) without a coroutine per object. Asked for without a prefetch (one
object, or a list that does not prefetch), the same loaders batch as before: the same
statements, at another moment."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.types.nodes import SelectedField
from tortoise.exceptions import NoValuesFetched
from tortoise.models import Model

from greenlight import internals, models
from greenlight.errors import BadUserInput
from greenlight.policies import Actor
from greenlight.schema import ids
from greenlight.workflow import deployments, freezes, reads, states


def now_or_later(loader: DataLoader, key: Any, make: Callable[[Any], Any]) -> Any:
    """`make(value)` at once when `loader` holds the value for `key` already (prefetched,
    primed, or loaded for another field); else an awaitable of it, which GraphQL awaits."""
    future = loader.cache_map.get(key)
    if future is not None and future.done() and not future.cancelled() and future.exception() is None:
        return make(future.result())
    return _later(loader.load(key), make)


async def _later(pending: Awaitable[Any], make: Callable[[Any], Any]) -> Any:
    return make(await pending)


class Selected:
    """The fields a query selects below one field, by name (fragments flattened; aliases
    and directives ignored: reading a relation that is skipped costs a statement, never a
    wrong answer)."""

    def __init__(self, selections: list[Any]) -> None:
        self.fields: dict[str, list[Any]] = defaultdict(list)
        self.arguments: dict[str, list[dict]] = defaultdict(list)
        self._add(selections)

    def _add(self, selections: list[Any]) -> None:
        for selection in selections:
            if isinstance(selection, SelectedField):
                self.fields[selection.name].extend(selection.selections)
                self.arguments[selection.name].append(selection.arguments)
            else:  # a fragment, spread or inline
                self._add(selection.selections)

    @classmethod
    def below(cls, info: Any, *path: str) -> Selected:
        """What is selected below the field being resolved, along `path` ("edges", "node")."""
        found = cls([child for field in info.selected_fields for child in field.selections])
        for name in path:
            found = found.child(name)
        return found

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def child(self, name: str) -> Selected:
        return Selected(self.fields.get(name, []))


def _by_id(model: type[Model]) -> DataLoader:
    async def load(keys: list[int]) -> list[Model | None]:
        rows = {row.pk: row for row in await model.filter(id__in=set(keys))}
        return [rows.get(key) for key in keys]

    return DataLoader(load_fn=load)


def _many(model: type[Model], key_field: str, order: str = "id") -> DataLoader:
    async def load(keys: list[int]) -> list[list[Model]]:
        grouped: dict[int, list[Model]] = defaultdict(list)
        for row in await model.filter(**{f"{key_field}__in": set(keys)}).order_by(order):
            grouped[getattr(row, key_field)].append(row)
        return [grouped.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


def _one(model: type[Model], key_field: str) -> DataLoader:
    async def load(keys: list[int]) -> list[Model | None]:
        rows = {getattr(r, key_field): r for r in await model.filter(**{f"{key_field}__in": set(keys)})}
        return [rows.get(key) for key in keys]

    return DataLoader(load_fn=load)


def _batch(fetch: Callable[[list[Any]], Awaitable[dict[Any, Any]]], missing: Any = None) -> DataLoader:
    """A loader over a workflow function that answers many keys at once, as a dict."""

    async def load(keys: list[Any]) -> list[Any]:
        found = await fetch(list(dict.fromkeys(keys)))
        return [found.get(key, missing) for key in keys]

    return DataLoader(load_fn=load)


def _pages(fetch: Callable[[list[int], int | None, int | None], Awaitable[dict[int, Any]]]) -> DataLoader:
    """Pages of many parents: keys are (parent id, first, after id); one fetch per distinct
    (first, after), which is one for a list of parents asked the same way."""

    async def load(keys: list[tuple[int, int | None, int | None]]) -> list[Any]:
        by_window: dict[tuple[int | None, int | None], list[int]] = {}
        for parent, first, after in keys:
            by_window.setdefault((first, after), []).append(parent)
        found = {
            window: await fetch(list(dict.fromkeys(parents)), *window)
            for window, parents in by_window.items()
        }
        return [found[(first, after)][parent] for parent, first, after in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """One set per request (or per subscription event), so nothing outlives what it read."""

    def __init__(self) -> None:
        self.user = _by_id(models.User)
        self.application = _by_id(models.Application)
        self.environment = _by_id(models.Environment)
        self.pipeline = _by_id(models.Pipeline)
        self.image = _by_id(models.Image)
        self.request = _by_id(models.ApprovalRequest)
        self.next_request = _one(models.ApprovalRequest, "previous_request_id")
        self.approvals = _many(models.Approval, "request_id")
        self.named_approvers = _many(models.NamedApprover, "request_id")
        self.rejection = _one(models.Rejection, "request_id")
        self.group = _by_id(models.Group)
        self.active_deployment = _batch(states.active_deployments)
        self.policy_approvers = _many(models.PolicyApprover, "pipeline_id")
        self.group_quorums = _many(models.GroupQuorum, "pipeline_id")
        self.approval_exceptions = _many(models.ApprovalException, "pipeline_id")
        self.freezes = _batch(freezes.of_pipelines, missing=[])
        self.deployable_images = _batch(self._deployable_images, missing=[])
        self.deployable_images_filtered = _batch(self._deployable_images_filtered, missing=[])
        self.image_labels = _many(models.ImageLabel, "image_id", order="key")
        self.image_checks = _many(models.ImageCheck, "image_id", order="name")
        self.deployments = _pages(reads.deployments_of)
        self._for_actor: dict[str, DataLoader] = {}

    def prime_request(self, request: models.ApprovalRequest, *users: models.User) -> None:
        """Rows a workflow function already read deciding on `request` (its image, pipeline,
        application, environment, approvals and their users, as far as it fetched them) and
        `users`, so the mutation's answer does not read them again. A loader that
        has a key already keeps what it has."""
        self.request.prime(request.id, request)
        image = request.image
        if isinstance(image, models.Image):
            self.image.prime(image.id, image)
        pipeline = request.pipeline
        if isinstance(pipeline, models.Pipeline):
            self.pipeline.prime(pipeline.id, pipeline)
            if isinstance(pipeline.application, models.Application):
                self.application.prime(pipeline.application.id, pipeline.application)
            if isinstance(pipeline.environment, models.Environment):
                self.environment.prime(pipeline.environment.id, pipeline.environment)
        try:
            approvals = list(request.approvals)
        except NoValuesFetched:
            pass
        else:
            self.approvals.prime(request.id, sorted(approvals, key=lambda a: a.id))
            # the users fetched with them already; `a.user` would build a query
            fetched = (internals.fetched_related(a, "user") for a in approvals)
            users += tuple(user for user in fetched if isinstance(user, models.User))
        for user in users:
            self.user.prime(user.id, user)

    async def prefetch_requests(self, requests: list[models.ApprovalRequest], selected: Selected) -> None:
        """Read, for a list of requests, the relations its query selects: their images,
        requesters, pipelines (with their applications and environments) and approvals (with
        their users), one statement each, all at once."""
        reads: list[Awaitable[Any]] = []
        if "image" in selected:
            reads.append(self.image.load_many({r.image_id for r in requests}))
        if "requestedBy" in selected:
            reads.append(self.user.load_many({r.requested_by_id for r in requests}))
        if "pipeline" in selected:
            reads.append(self._pipelines({r.pipeline_id for r in requests}, selected.child("pipeline")))
        if "approvals" in selected:
            reads.append(self._approvals({r.id for r in requests}, selected.child("approvals")))
        await asyncio.gather(*reads)

    async def prefetch_images(self, images: list[models.Image], selected: Selected, actor: Actor) -> None:
        """Read, for a list of images, the builders and the approval states on the pipelines
        its query selects."""
        reads: list[Awaitable[Any]] = []
        if "builtBy" in selected:
            reads.append(self.user.load_many({i.built_by_id for i in images}))
        for arguments in selected.arguments.get("approvalState", []):
            try:
                pipeline_id = ids.decode("Pipeline", arguments.get("pipelineId"), "pipelineId")
            except BadUserInput:  # the field itself refuses it, in its place
                continue
            loader = self.approval_state(actor)
            reads.append(loader.load_many([(i.id, pipeline_id) for i in images]))
        await asyncio.gather(*reads)

    async def _pipelines(self, pipeline_ids: set[int], selected: Selected) -> None:
        pipelines = [p for p in await self.pipeline.load_many(pipeline_ids) if p is not None]
        reads = []
        if "application" in selected:
            reads.append(self.application.load_many({p.application_id for p in pipelines}))
        if "environment" in selected:
            reads.append(self.environment.load_many({p.environment_id for p in pipelines}))
        await asyncio.gather(*reads)

    async def _approvals(self, request_ids: set[int], selected: Selected) -> None:
        lists = await self.approvals.load_many(request_ids)
        if "user" in selected:
            await self.user.load_many({a.user_id for approvals in lists for a in approvals})

    async def _deployable_images(self, pipeline_ids: list[int]) -> dict[int, list[models.Image]]:
        pipelines = [p for p in await self.pipeline.load_many(pipeline_ids) if p is not None]
        return await deployments.deployable_images_of(pipelines)

    async def _deployable_images_filtered(self, keys: list[tuple]) -> dict[tuple, list[models.Image]]:
        """(pipeline id, ImageFilter) -> Select Image with the filter applied in SQL; one
        fetch per distinct filter."""
        by_filter: dict[Any, list[int]] = defaultdict(list)
        for pipeline_id, found in keys:
            by_filter[found].append(pipeline_id)
        result: dict[tuple, list[models.Image]] = {}
        for found, pipeline_ids in by_filter.items():
            pipelines = [p for p in await self.pipeline.load_many(pipeline_ids) if p is not None]
            lists = await deployments.deployable_images_of(pipelines, found.q())
            result.update({(p.id, found): lists[p.id] for p in pipelines})
        return result

    def _actor_loader(self, name: str, actor: Actor, fetch) -> DataLoader:
        """Loaders whose answers depend on who asks (R1); a request has one actor."""
        loader = self._for_actor.get(name)
        if loader is None:

            async def load(keys: list[Any]) -> list[Any]:
                return await fetch(actor, keys)

            loader = self._for_actor[name] = DataLoader(load_fn=load)
        return loader

    def approval_state(self, actor: Actor) -> DataLoader:
        """(image id, pipeline id) -> the latest request's state."""
        return self._actor_loader("approval_state", actor, reads.latest_request_states)

    def active_on(self, actor: Actor) -> DataLoader:
        """image id -> the environments it is active on."""

        async def fetch(actor: Actor, image_ids: list[int]) -> list[list[models.Environment]]:
            images = await self.image.load_many(image_ids)
            return await reads.active_on(actor, images)

        return self._actor_loader("active_on", actor, fetch)

    def pipelines(self, actor: Actor) -> DataLoader:
        """application id -> its pipelines that the actor can see."""

        async def fetch(actor: Actor, application_ids: list[int]) -> list[list[models.Pipeline]]:
            found = await reads.pipelines_of(actor, application_ids)
            return [found[a] for a in application_ids]

        return self._actor_loader("pipelines", actor, fetch)

    def members(self, actor: Actor) -> DataLoader:
        """(group id, first, after id) -> a page of its members (super-admins only)."""
        loader = self._for_actor.get("members")
        if loader is None:

            async def fetch(group_ids: list[int], first: int | None, after: int | None) -> dict[int, Any]:
                return await reads.members_of(actor, group_ids, first, after)

            loader = self._for_actor["members"] = _pages(fetch)
        return loader

    def group_bindings(self, actor: Actor) -> DataLoader:
        """group id -> the roles granted to it (super-admins only)."""

        async def fetch(actor: Actor, group_ids: list[int]) -> list[list[models.RoleBinding]]:
            found = await reads.group_bindings_of(actor, group_ids)
            return [found[g] for g in group_ids]

        return self._actor_loader("group_bindings", actor, fetch)

    def role_bindings(self, actor: Actor) -> DataLoader:
        """user id -> their role bindings, where the actor may see them."""

        async def fetch(actor: Actor, user_ids: list[int]) -> list[list[models.RoleBinding]]:
            found = await reads.role_bindings_of(actor, user_ids)
            return [found[u] for u in user_ids]

        return self._actor_loader("role_bindings", actor, fetch)


LoaderFactory = Callable[[], Loaders]
