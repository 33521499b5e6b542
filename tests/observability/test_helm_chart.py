"""The Helm chart (deploy/helm/greenlight) and the plain manifest (deploy/kubernetes): what they
render, and that checkov finds no failed check in either. `helm` cannot be installed on these
machines (neither Debian nor PyPI ship it), so the chart is rendered by
tests/observability/helm_render.py, over the chart's own values.yaml."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from greenlight import config
from greenlight.config import SECRET_VARIABLES, Settings
from tests.observability.helm_render import TemplateError, render_chart

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "greenlight"
MANIFEST = ROOT / "deploy" / "kubernetes" / "greenlight.yaml"
DIGEST = "sha256:" + "ab" * 32
EVERYTHING = {
    "image": {"digest": DIGEST},
    "serviceMonitor": {"enabled": True},
    "ingress": {"enabled": True, "className": "nginx", "tlsSecretName": "greenlight-tls"},
    "secrets": {
        "GREENLIGHT_SECRET_KEY": {"secretName": "greenlight"},
        "GREENLIGHT_SMTP_PASSWORD": {"secretName": "smtp"},
    },
    "settings": {
        "GREENLIGHT_SMTP_HOST": "smtp.example.com",
        "GREENLIGHT_SMTP_FROM": "greenlight@example.com",
        "GREENLIGHT_INTROSPECTION": "false",
    },
}


def _documents(values: dict) -> list[dict]:
    rendered = render_chart(CHART, values)
    return [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]


def _one(documents: list[dict], kind: str) -> dict:
    (document,) = [d for d in documents if d["kind"] == kind]
    return document


def test_chart_renders_every_kind_it_offers():
    """Default values: Deployment, Service, migration Job, PodDisruptionBudget, NetworkPolicy;
    ServiceMonitor and Ingress when enabled. Every object is in the release's namespace."""
    kinds = sorted(d["kind"] for d in _documents({"image": {"digest": DIGEST}}))
    assert kinds == ["Deployment", "Job", "NetworkPolicy", "PodDisruptionBudget", "Service"]
    everything = _documents(EVERYTHING)
    assert sorted(d["kind"] for d in everything) == sorted(kinds + ["Ingress", "ServiceMonitor"])
    assert {d["metadata"]["namespace"] for d in everything} == {"greenlight"}


def test_chart_refuses_to_render_without_an_image_digest():
    """Pods must all run the same bytes: no digest, no manifests."""
    with pytest.raises(TemplateError, match="image.digest is required"):
        render_chart(CHART)


def test_chart_refuses_to_render_without_a_database_secret():
    with pytest.raises(TemplateError, match="GREENLIGHT_DATABASE_URL"):
        render_chart(
            CHART, {"image": {"digest": DIGEST}, "secrets": {"GREENLIGHT_DATABASE_URL": {"secretName": ""}}}
        )


def _pod(document: dict) -> dict:
    return document["spec"]["template"]["spec"]


def test_chart_servers_are_hardened_probed_and_never_migrate():
    """Probes on /healthz (liveness) and /readyz (readiness), resources, seccomp RuntimeDefault,
    a read-only root filesystem with an emptyDir on /tmp, not root, no privilege escalation,
    every capability dropped, a preStop sleep, no service account token; `serve --no-migrate`."""
    deployment = _one(_documents(EVERYTHING), "Deployment")
    pod = _pod(deployment)
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/example/greenlight:0.1.0@{DIGEST}"
    assert container["args"][:2] == ["greenlight", "serve"] and "--no-migrate" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"http": 8000}
    assert container["args"][container["args"].index("--port") + 1] == "8000"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert container["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert (
        pod["terminationGracePeriodSeconds"]
        > int(container["lifecycle"]["preStop"]["exec"]["command"][1]) + 30
    )
    _assert_hardened(pod, container)
    assert pod["automountServiceAccountToken"] is False
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _assert_hardened(pod: dict, container: dict) -> None:
    security = container["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True and security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0 and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_chart_migration_job_is_a_pre_install_and_pre_upgrade_hook():
    """`greenlight migrate` in a hook Job, with the servers' image, settings and secrets (it
    validates the same configuration), hardened the same way."""
    documents = _documents(EVERYTHING)
    job, deployment = _one(documents, "Job"), _one(documents, "Deployment")
    hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
    assert sorted(hooks) == ["pre-install", "pre-upgrade"]
    assert "before-hook-creation" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    pod = _pod(job)
    (container,) = pod["containers"]
    (server,) = _pod(deployment)["containers"]
    assert container["args"] == ["greenlight", "migrate"]
    assert container["image"] == server["image"]
    assert container["env"] == server["env"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    _assert_hardened(pod, container)


def _secret_files(pod: dict, container: dict) -> dict[str, tuple[str, str]]:
    """Path in the container -> (Secret name, key), from the container's mounts."""
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    files = {}
    for volume in pod["volumes"]:
        if volume["name"] not in mounts:
            continue
        base = mounts[volume["name"]]
        sources = volume.get("projected", {}).get("sources", [])
        if "secret" in volume:
            sources = [{"secret": {"name": volume["secret"]["secretName"], "items": None}}]
        for source in sources:
            secret = source.get("secret")
            if not secret:
                continue
            for item in secret["items"] or []:
                files[f"{base}/{item['path']}"] = (secret["name"], item["key"])
            if secret["items"] is None:
                files[f"{base}/*"] = (secret["name"], "*")
    return files


def test_chart_secrets_reach_the_pods_as_files_through_the_file_twins(tmp_path):
    """Each secret referenced in values is mounted as a file and named by NAME_FILE; no secret
    is in the environment; and the rendered environment, with those files in place, is a
    configuration Greenlight accepts."""
    deployment = _one(_documents(EVERYTHING), "Deployment")
    pod = _pod(deployment)
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert not [e for e in container["env"] if "valueFrom" in e]
    assert not set(SECRET_VARIABLES) & env.keys()
    files = _secret_files(pod, container)
    wanted = {
        "GREENLIGHT_DATABASE_URL": ("greenlight", "database-url"),
        "GREENLIGHT_SECRET_KEY": ("greenlight", "secret-key"),
        "GREENLIGHT_SMTP_PASSWORD": ("smtp", "smtp-password"),
    }
    for name, source in wanted.items():
        assert files[env[f"{name}_FILE"]["value"]] == source
    assert {n for n in env if n.endswith("_FILE")} == {f"{n}_FILE" for n in wanted}
    # With the secrets' files where the pod would have them, the configuration is valid.
    values = {
        "GREENLIGHT_DATABASE_URL": "postgres://greenlight:p4ss@db:5432/greenlight",
        "GREENLIGHT_SECRET_KEY": "k" * 40,
        "GREENLIGHT_SMTP_PASSWORD": "smtp-password",
    }
    plain = {}
    for name, entry in env.items():
        if name.endswith("_FILE"):
            local = tmp_path / name
            local.write_text(values[name.removesuffix("_FILE")] + "\n")
            plain[name] = str(local)
        else:
            plain[name] = entry["value"]
    settings = Settings.from_env(plain)
    assert settings.database_url == values["GREENLIGHT_DATABASE_URL"]
    assert settings.smtp_password == "smtp-password" and settings.introspection is False


def test_chart_values_cover_every_setting():
    """values.yaml offers every variable greenlight/config.py reads: each secret under
    `secrets` (a reference to a Kubernetes Secret), every other one under `settings`."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    read = set(re.findall(r"\bGREENLIGHT_[A-Z0-9_]*[A-Z0-9]\b", Path(config.__file__).read_text()))
    # The chart decides these itself: no .env file in a pod, and the hook Job migrates.
    not_settings = {"GREENLIGHT_ENV_FILE", "GREENLIGHT_MIGRATE_ON_START"}
    assert set(values["secrets"]) == set(SECRET_VARIABLES)
    missing = read - not_settings - set(SECRET_VARIABLES) - set(values["settings"])
    assert not missing, f"not in values.yaml's settings: {sorted(missing)}"
    assert all(isinstance(v, str) for v in values["settings"].values())


def test_chart_service_pdb_networkpolicy_and_servicemonitor_select_the_servers():
    documents = _documents(EVERYTHING)
    labels = _one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = _one(documents, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    pdb = _one(documents, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["minAvailable"] >= 1
    policy = _one(documents, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]] == ["http"]
    monitor = _one(documents, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    ingress = _one(documents, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "greenlight-tls"


# --- checkov ------------------------------------------------------------------------------------


def _checkov() -> str:
    found = ROOT / ".venv-checkov" / "bin" / "checkov"
    if found.exists():
        return str(found)
    on_path = shutil.which("checkov")
    if on_path is None:
        pytest.skip("checkov is not installed: `make checkov` installs it (.ci/run does)")
    return on_path


def _run_checkov(target: Path) -> dict:
    done = subprocess.run(
        [
            _checkov(),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",
            "--quiet",
            *(["-d", str(target)] if target.is_dir() else ["-f", str(target)]),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    if isinstance(report, list):
        (report,) = [r for r in report if r.get("check_type") == "kubernetes"]
    return report


def _failures(report: dict) -> list[str]:
    return [
        f"{c['check_id']} {c['check_name']} ({c['resource']})"
        for c in report.get("results", {}).get("failed_checks", [])
    ]


@pytest.mark.parametrize(
    "values", [{"image": {"digest": DIGEST}}, EVERYTHING], ids=["default values", "everything enabled"]
)
def test_checkov_finds_no_failed_check_in_the_rendered_chart(values, tmp_path):
    _checkov()
    rendered = render_chart(CHART, values)
    for name, text in rendered.items():
        if text.strip():
            (tmp_path / name).write_text(text)
    report = _run_checkov(tmp_path)
    assert report["summary"]["resource_count"] >= len(_documents(values)), report["summary"]
    assert report["summary"]["passed"] > 100, report["summary"]
    assert not _failures(report), "\n".join(_failures(report))


def test_checkov_finds_no_failed_check_in_the_plain_manifest():
    _checkov()
    report = _run_checkov(MANIFEST)
    documents = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    assert report["summary"]["resource_count"] >= len(documents), report["summary"]
    assert report["summary"]["passed"] > 100, report["summary"]
    assert not _failures(report), "\n".join(_failures(report))
