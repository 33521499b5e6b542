"""Per-request DataLoaders, so lists cost a fixed number of SQL statements."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from strawberry.dataloader import DataLoader
from tortoise.models import Model

from greenlight import models


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


class Loaders:
    def __init__(self) -> None:
        self.user = _by_id(models.User)
        self.application = _by_id(models.Application)
        self.environment = _by_id(models.Environment)
        self.pipeline = _by_id(models.Pipeline)
        self.image = _by_id(models.Image)
        self.request = _by_id(models.ApprovalRequest)
        self.approvals = _many(models.Approval, "request_id")
        self.named_approvers = _many(models.NamedApprover, "request_id")
        self.rejection = _one(models.Rejection, "request_id")
        self.group = _by_id(models.Group)


LoaderFactory = Callable[[], Loaders]
