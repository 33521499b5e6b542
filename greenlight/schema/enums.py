"""GraphQL enums, the domain's own (greenlight.models.enums) under the contract's names."""

import strawberry

from greenlight import models

Role = strawberry.enum(models.Role, name="Role")
ApprovalState = strawberry.enum(models.ApprovalState, name="ApprovalState")
DeploymentStatus = strawberry.enum(models.DeploymentStatus, name="DeploymentStatus")
DeploymentStrategy = strawberry.enum(models.DeploymentStrategy, name="DeploymentStrategy")
TriggerType = strawberry.enum(models.TriggerType, name="TriggerType")
ApprovalPolicyKind = strawberry.enum(models.ApprovalPolicyKind, name="ApprovalPolicyKind")
Weekday = strawberry.enum(models.Weekday, name="Weekday")
