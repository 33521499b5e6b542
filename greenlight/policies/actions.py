"""The actions the policy decides on; the same names appear in policy.csv."""

from enum import StrEnum


class Action(StrEnum):
    VIEW = "view"  # R1: see a scope's pipelines, images, requests and deployments
    REGISTER_IMAGE = "register_image"  # R3
    REQUEST_APPROVAL = "request_approval"  # R3
    DEPLOY = "deploy"  # R3
    APPROVE = "approve"  # R4: approve or reject
    CLOSE_ANY_REQUEST = "close_any_request"  # R14, R15: cancel or expire another's request
    # CI reports check results on an application's images: whoever registers its images
    REPORT_IMAGE_CHECK = "report_image_check"
    REPORT_DEPLOYMENT_STATUS = "report_deployment_status"  # deploy-agent only
    ADMINISTER = "administer"  # R2: users, tokens, applications, pipelines, bindings
