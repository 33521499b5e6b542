// Applications, Build & Deploy, Select Image, Approval for deployment, App Details.
import { useMutation, useQuery } from "@urql/preact";
import { Fragment } from "preact";
import { useRef, useState } from "preact/hooks";
import { readFragment, type FragmentOf } from "./graphql";
import { DeploymentLine } from "./live";
import {
  AppDetailsQuery,
  CanDeployQuery,
  CanIQuery,
  CanRequestApprovalQuery,
  ApplicationsQuery,
  ApprovalForDeploymentQuery,
  DeployMutation,
  DeploymentFields,
  EligibleApproversQuery,
  PipelineCardFields,
  PipelineForQuery,
  RegisterImageMutation,
  RequestApprovalMutation,
  RequestFields,
  SelectImageQuery,
} from "./ops";
import { Action, codeOf, ErrorNote, shortDigest, State, When } from "./ui";
import { Form } from "./form";
import type { CombinedError } from "@urql/preact";

const appHref = (app: string) => `#/app/${encodeURIComponent(app)}`;
const pipelineHref = (app: string, env: string, screen: string) =>
  `#/app/${encodeURIComponent(app)}/${encodeURIComponent(env)}/${screen}`;

export function Applications() {
  const [{ data, error }] = useQuery({ query: ApplicationsQuery });
  return (
    <>
      <h1>Applications</h1>
      <ErrorNote error={error} />
      {data && data.applications.length === 0 && (
        <p>No applications you can see yet: an administrator grants you a role on one.</p>
      )}
      <ul class="cards">
        {data?.applications.map((app) => (
          <li key={app.id} class="card">
            <h2>
              <a href={appHref(app.name)}>{app.name}</a>
            </h2>
            <p class="muted">
              {app.pipelines
                .map((p) => readFragment(PipelineCardFields, p))
                .map((p) => `${p.environment.name}: ${p.activeImage ? p.activeImage.tag : "nothing deployed"}`)
                .join(" · ") || "no environments"}
            </p>
            <a href={appHref(app.name)}>Build &amp; Deploy</a>
          </li>
        ))}
      </ul>
    </>
  );
}

export function BuildAndDeploy({ application }: { application: string }) {
  const [{ data: fresh, error }] = useQuery({ query: ApplicationsQuery });
  const data = useLast(fresh);
  const app = data?.applications.find((a) => a.name === application);
  return (
    <>
      <p class="crumbs">
        <a href="#/">Applications</a> / {application}
      </p>
      <h1>Build &amp; Deploy: {application}</h1>
      <ErrorNote error={error} />
      {data && !app && <p>There is no application “{application}” that you can see.</p>}
      <ul class="cards">
        {app?.pipelines.map((pipeline) => (
          <PipelineCard key={(pipeline as { id?: string }).id} pipeline={pipeline} />
        ))}
      </ul>
    </>
  );
}

function PipelineCard(props: { pipeline: FragmentOf<typeof PipelineCardFields> }) {
  const p = readFragment(PipelineCardFields, props.pipeline);
  const app = p.application.name;
  const env = p.environment.name;
  return (
    <li class="card" aria-label={`Environment ${env}`}>
      <h2>{env}</h2>
      <p>
        <strong>Active on {env}:</strong>{" "}
        {p.activeImage ? (
          <>
            <span class="tag">{p.activeImage.tag}</span> <code>{shortDigest(p.activeImage.digest)}</code>
          </>
        ) : (
          <span class="muted">nothing deployed yet</span>
        )}
      </p>
      {p.activeDeployment ? <DeploymentLine deployment={p.activeDeployment} /> : null}
      <p class="muted">
        {p.approvalPolicy.requiredApprovals === 0
          ? "No approval required"
          : `${p.approvalPolicy.requiredApprovals} approval${p.approvalPolicy.requiredApprovals > 1 ? "s" : ""} required`}
        {p.frozenUntil && (
          <>
            {" "}
            · frozen until <When at={p.frozenUntil} />
          </>
        )}
      </p>
      <p class="actions">
        <a class="button primary" href={pipelineHref(app, env, "select")}>
          Select Image
        </a>
        <a class="button" href={pipelineHref(app, env, "approval")}>
          Approval for deployment
        </a>
        <a class="button" href={`${appHref(app)}/details/${encodeURIComponent(env)}`}>
          App Details
        </a>
      </p>
    </li>
  );
}

function usePipeline(application: string, environment: string) {
  const [{ data: fresh, error }] = useQuery({ query: PipelineForQuery, variables: { application, environment } });
  const data = useLast(fresh);
  return { pipeline: data?.pipelineFor, error, missing: !!data && !data.pipelineFor };
}

function Crumbs(props: { application: string; environment: string; screen: string }) {
  return (
    <p class="crumbs">
      <a href="#/">Applications</a> / <a href={appHref(props.application)}>{props.application}</a> /{" "}
      {props.environment} / {props.screen}
    </p>
  );
}

export function SelectImage({ application, environment }: { application: string; environment: string }) {
  const { pipeline, error, missing } = usePipeline(application, environment);
  // The rollout being followed outlives the list's re-reads.
  const [following, setFollowing] = useState<FragmentOf<typeof DeploymentFields> | null>(null);
  return (
    <>
      <Crumbs application={application} environment={environment} screen="Select Image" />
      <h1>Select Image for {environment}</h1>
      <ErrorNote error={error} />
      {missing && <p>There is no pipeline for {application} on {environment} that you can see.</p>}
      {following && <DeploymentLine deployment={following} steps />}
      {pipeline && (
        <SelectImageList
          pipelineId={pipeline.id}
          application={application}
          environment={environment}
          onDeployed={setFollowing}
        />
      )}
    </>
  );
}

/** The last answer while the next is read: a re-read after a change never blanks the screen. */
function useLast<T>(value: T | undefined | null): T | undefined | null {
  const last = useRef(value);
  if (value) last.current = value;
  return value ?? last.current;
}

function SelectImageList(props: {
  pipelineId: string;
  application: string;
  environment: string;
  onDeployed: (deployment: FragmentOf<typeof DeploymentFields>) => void;
}) {
  const [{ data: fresh, error }] = useQuery({ query: SelectImageQuery, variables: { pipelineId: props.pipelineId } });
  const data = useLast(fresh);
  if (!data?.pipeline) return <ErrorNote error={error} />;
  const p = readFragment(PipelineCardFields, data.pipeline);
  const approved = new Map(
    data.approvalRequests.edges
      .map((edge) => readFragment(RequestFields, edge.node))
      .map((request) => [request.image.id, request] as const),
  );
  const images = data.pipeline.deployableImages;
  return (
    <>
      <ErrorNote error={error} />
      <p>
        <strong>Active on {props.environment}:</strong>{" "}
        {p.activeImage ? <span class="tag">{p.activeImage.tag}</span> : <span class="muted">nothing deployed yet</span>}
      </p>
      {images.length === 0 ? (
        <p class="empty" role="status">
          {p.approvalPolicy.requiredApprovals > 0
            ? "No approved images: request approval first."
            : p.activeImage
              ? "The current image is already deployed."
              : "No images registered yet."}{" "}
          <a href={pipelineHref(props.application, props.environment, "approval")}>Approval for deployment</a>
        </p>
      ) : (
        <table>
          <caption>Deployable images, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Tag</th>
              <th scope="col">Digest</th>
              <th scope="col">Built by</th>
              <th scope="col">Approved by</th>
              <th scope="col">Approval expires</th>
              <th scope="col">
                <span class="sr-only">Deploy</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {images.map((image) => {
              const request = approved.get(image.id);
              return (
                <tr key={image.id}>
                  <td class="tag" data-label="Tag">{image.tag}</td>
                  <td data-label="Digest">
                    <code title={image.digest}>{shortDigest(image.digest)}</code>
                  </td>
                  <td data-label="Built by">{image.builtBy.name}</td>
                  <td data-label="Approved by">
                    {request
                      ? request.approvals.map((a) => (
                          <div key={a.user.id}>
                            {a.user.name}, <When at={a.decidedAt} />
                          </div>
                        ))
                      : "no approval needed"}
                  </td>
                  <td data-label="Approval expires">{request ? <When at={request.expiresAt} /> : "—"}</td>
                  <td>
                    <DeployButton
                      pipelineId={props.pipelineId}
                      imageId={image.id}
                      tag={image.tag}
                      environment={props.environment}
                      onDeployed={props.onDeployed}
                    />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </>
  );
}

/** Deploy asks to confirm; a STALE_IMAGE refusal offers the acknowledgement the API asks for. */
export function DeployButton(props: {
  pipelineId: string;
  imageId: string;
  tag: string;
  environment: string;
  label?: string;
  onDeployed: (deployment: FragmentOf<typeof DeploymentFields>) => void;
}) {
  const [confirming, setConfirming] = useState(false);
  const [stale, setStale] = useState(false);
  const [acknowledged, setAcknowledged] = useState(false);
  const [result, deploy] = useMutation(DeployMutation);
  const [error, setError] = useState<CombinedError | undefined>();
  const [{ data: can }] = useQuery({
    query: CanDeployQuery,
    variables: { pipelineId: props.pipelineId, imageId: props.imageId },
    requestPolicy: "cache-and-network",
  });
  const label = props.label ?? "Deploy";
  const decision = can?.pipeline?.viewerCanDeploy;
  // STALE_IMAGE is not a refusal of the person: the confirmation asks for the tick.
  const staleOnly = decision?.code === "STALE_IMAGE";
  if (!confirming)
    return (
      <Action
        id={`deploy-${props.imageId}`}
        label={label}
        kind="primary"
        allowed={!!decision && (decision.allowed || staleOnly)}
        reason={decision?.reason}
        onClick={() => {
          setStale(staleOnly);
          setConfirming(true);
        }}
      />
    );
  const go = async () => {
    const done = await deploy({
      input: { pipelineId: props.pipelineId, imageId: props.imageId, acknowledgeStale: acknowledged },
    });
    if (done.error) {
      setError(done.error);
      if (codeOf(done.error) === "STALE_IMAGE") setStale(true);
      return;
    }
    setConfirming(false);
    setError(undefined);
    if (done.data) props.onDeployed(done.data.deployImage);
  };
  return (
    <div class="confirm" role="group" aria-label={`Confirm deploying ${props.tag}`}>
      <p>
        Deploy <span class="tag">{props.tag}</span> to {props.environment}?
      </p>
      {stale && (
        <label>
          <input type="checkbox" checked={acknowledged} onChange={(e) => setAcknowledged((e.target as HTMLInputElement).checked)} />{" "}
          I know this image is older than the active one
        </label>
      )}
      <ErrorNote error={error} />
      <button type="button" class="primary" disabled={result.fetching || (stale && !acknowledged)} onClick={go}>
        Confirm deploy
      </button>{" "}
      <button
        type="button"
        onClick={() => {
          setConfirming(false);
          setError(undefined);
        }}
      >
        Back
      </button>
    </div>
  );
}

export function ApprovalForDeployment(props: { application: string; environment: string; notifications: boolean }) {
  const { pipeline, error, missing } = usePipeline(props.application, props.environment);
  return (
    <>
      <Crumbs application={props.application} environment={props.environment} screen="Approval for deployment" />
      <h1>Approval for deployment to {props.environment}</h1>
      <ErrorNote error={error} />
      {missing && <p>There is no pipeline for {props.application} on {props.environment} that you can see.</p>}
      {pipeline && (
        <ImagesForApproval
          application={props.application}
          pipelineId={pipeline.id}
          applicationId={pipeline.application.id}
          environment={props.environment}
          notifications={props.notifications}
        />
      )}
    </>
  );
}

function ImagesForApproval(props: { application: string; pipelineId: string; applicationId: string; environment: string; notifications: boolean }) {
  const [{ data: fresh, error }] = useQuery({
    query: ApprovalForDeploymentQuery,
    variables: { pipelineId: props.pipelineId, applicationId: props.applicationId },
  });
  const data = useLast(fresh);
  const [open, setOpen] = useState<string | null>(null);
  if (!data) return <ErrorNote error={error} />;
  const images = data.images.edges.map((e) => e.node);
  return (
    <>
      <ErrorNote error={error} />
      {images.length === 0 && <p>No images registered yet: CI registers them (registerImage), or register one below.</p>}
      <table>
        <caption>Images and their state for {props.environment}</caption>
        <thead>
          <tr>
            <th scope="col">Tag</th>
            <th scope="col">Digest</th>
            <th scope="col">Built by</th>
            <th scope="col">Built</th>
            <th scope="col">State</th>
            <th scope="col">
              <span class="sr-only">Request</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {images.map((image) => (
            <Fragment key={image.id}>
              <tr>
                <td class="tag" data-label="Tag">{image.tag}</td>
                <td data-label="Digest">
                  <code title={image.digest}>{shortDigest(image.digest)}</code>
                </td>
                <td data-label="Built by">{image.builtBy.name}</td>
                <td data-label="Built">
                  <When at={image.createdAt} />
                </td>
                <td data-label="State">
                  {image.activeOn.some((env) => env.name === props.environment) ? (
                    <span class="state state-active">Active on {props.environment}</span>
                  ) : (
                    <State state={image.approvalState} />
                  )}
                </td>
                <td>
                  <RequestButton
                    pipelineId={props.pipelineId}
                    imageId={image.id}
                    open={open === image.id}
                    onToggle={() => setOpen(open === image.id ? null : image.id)}
                  />
                </td>
              </tr>
              {open === image.id && (
                <tr>
                  <td colSpan={6}>
                    <RequestForm
                      pipelineId={props.pipelineId}
                      imageId={image.id}
                      tag={image.tag}
                      notifications={props.notifications}
                      onDone={() => setOpen(null)}
                    />
                  </td>
                </tr>
              )}
            </Fragment>
          ))}
        </tbody>
      </table>
      <RegisterImage application={props.application} environment={props.environment} />
    </>
  );
}

/** What CI does with registerImage, by hand: shown to those who may register images (R3). */
function RegisterImage(props: { application: string; environment: string }) {
  const [{ data }] = useQuery({
    query: CanIQuery,
    variables: { action: "REGISTER_IMAGE", application: props.application, environment: props.environment },
  });
  const [, register] = useMutation(RegisterImageMutation);
  if (!data?.canI.allowed) return null;
  return (
    <section aria-label="Register an image">
      <h2>Register an image</h2>
      <p class="muted">What CI does after each build, with its own token (registerImage).</p>
      <Form
        label="Register an image"
        fields={[
          { name: "repository", label: "Repository", required: true, placeholder: "registry.example.com/acme/shop" },
          { name: "tag", label: "Tag", required: true, placeholder: "1.4.2" },
          { name: "digest", label: "Digest", required: true, placeholder: "sha256:…" },
        ]}
        submit="Register image"
        reset
        done="Image registered."
        onSubmit={(v) =>
          register({
            input: {
              application: props.application,
              repository: (v.repository as string).trim(),
              tag: (v.tag as string).trim(),
              digest: (v.digest as string).trim(),
            },
          })
        }
      />
    </section>
  );
}

function RequestButton(props: { pipelineId: string; imageId: string; open: boolean; onToggle: () => void }) {
  const [{ data }] = useQuery({
    query: CanRequestApprovalQuery,
    variables: { pipelineId: props.pipelineId, imageId: props.imageId },
    requestPolicy: "cache-and-network",
  });
  const decision = data?.pipeline?.viewerCanRequestApproval;
  return (
    <Action
      id={`request-${props.imageId}`}
      label="Request Approval"
      allowed={!!decision?.allowed}
      reason={decision?.reason}
      onClick={props.onToggle}
    />
  );
}

function RequestForm(props: { pipelineId: string; imageId: string; tag: string; notifications: boolean; onDone: () => void }) {
  const [comment, setComment] = useState("");
  const [picked, setPicked] = useState<string[]>([]);
  const [{ data: approvers }] = useQuery({
    query: EligibleApproversQuery,
    variables: { pipelineId: props.pipelineId, imageId: props.imageId },
    pause: !props.notifications,
  });
  const [result, request] = useMutation(RequestApprovalMutation);
  const [error, setError] = useState<CombinedError | undefined>();
  return (
    <form
      class="panel"
      aria-label={`Request approval for ${props.tag}`}
      onSubmit={async (event) => {
        event.preventDefault();
        const done = await request({
          input: { pipelineId: props.pipelineId, imageId: props.imageId, comment: comment || null, approverIds: picked },
        });
        if (done.error) setError(done.error);
        else {
          window.location.hash = "#/pending";
          props.onDone();
        }
      }}
    >
      <label for={`comment-${props.imageId}`}>Comment</label>
      <textarea id={`comment-${props.imageId}`} value={comment} onInput={(e) => setComment((e.target as HTMLTextAreaElement).value)} />
      {props.notifications && (
        <fieldset>
          <legend>Approvers to notify by email</legend>
          {approvers?.eligibleApprovers.length === 0 && <p class="muted">Nobody else could approve this request.</p>}
          {approvers?.eligibleApprovers.map((user) => (
            <label key={user.id} class="check">
              <input
                type="checkbox"
                checked={picked.includes(user.id)}
                onChange={(e) =>
                  setPicked((e.target as HTMLInputElement).checked ? [...picked, user.id] : picked.filter((id) => id !== user.id))
                }
              />{" "}
              {user.name} <span class="muted">{user.email}</span>
            </label>
          ))}
        </fieldset>
      )}
      <ErrorNote error={error} />
      <button type="submit" class="primary" disabled={result.fetching}>
        Submit Request
      </button>
    </form>
  );
}

export function AppDetails({ application, environment }: { application: string; environment?: string }) {
  const [{ data: fresh, error }] = useQuery({ query: ApplicationsQuery });
  const data = useLast(fresh);
  const app = data?.applications.find((a) => a.name === application);
  const pipelines = (app?.pipelines ?? []).map((p) => readFragment(PipelineCardFields, p));
  const chosen = pipelines.find((p) => p.environment.name === environment) ?? pipelines[0];
  return (
    <>
      <p class="crumbs">
        <a href="#/">Applications</a> / <a href={appHref(application)}>{application}</a> / App Details
      </p>
      <h1>App Details: {application}</h1>
      <ErrorNote error={error} />
      {pipelines.length > 1 && (
        <nav aria-label="Environments" class="tabs">
          {pipelines.map((p) => (
            <a key={p.id} href={`${appHref(application)}/details/${encodeURIComponent(p.environment.name)}`} aria-current={p === chosen ? "page" : undefined}>
              {p.environment.name}
            </a>
          ))}
        </nav>
      )}
      {chosen && <PipelineDetails pipelineId={chosen.id} environment={chosen.environment.name} />}
    </>
  );
}

function PipelineDetails(props: { pipelineId: string; environment: string }) {
  const [{ data: fresh, error }] = useQuery({ query: AppDetailsQuery, variables: { pipelineId: props.pipelineId } });
  const data = useLast(fresh);
  const [following, setFollowing] = useState<FragmentOf<typeof DeploymentFields> | null>(null);
  if (!data?.pipeline) return <ErrorNote error={error} />;
  const p = readFragment(PipelineCardFields, data.pipeline);
  const history = data.pipeline.deployments.edges.map((e) => readFragment(DeploymentFields, e.node));
  return (
    <>
      <h2>{props.environment}</h2>
      <p>
        Strategy {p.strategy.toLowerCase().replace("_", " ")}, trigger {p.triggerType.toLowerCase()}.{" "}
        <strong>Active on {props.environment}:</strong>{" "}
        {p.activeImage ? <span class="tag">{p.activeImage.tag}</span> : <span class="muted">nothing deployed yet</span>}
      </p>
      {following ? (
        <DeploymentLine deployment={following} steps />
      ) : p.activeDeployment ? (
        <DeploymentLine deployment={p.activeDeployment} steps />
      ) : null}
      <table>
        <caption>Deployment history, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Image</th>
            <th scope="col">Status</th>
            <th scope="col">By</th>
            <th scope="col">Started</th>
            <th scope="col">Finished</th>
            <th scope="col">
              <span class="sr-only">Roll back</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {history.map((d) => (
            <tr key={d.id}>
              <td class="tag" data-label="Image">{d.image.tag}</td>
              <td data-label="Status">{d.status.toLowerCase()}</td>
              <td data-label="By">{d.triggeredBy.name}</td>
              <td data-label="Started">
                <When at={d.startedAt} />
              </td>
              <td data-label="Finished">{d.finishedAt ? <When at={d.finishedAt} /> : "—"}</td>
              <td>
                {p.activeImage?.id !== d.image.id && (
                  // Rolling back is deploying an earlier image, under the same rules.
                  <DeployButton
                    pipelineId={props.pipelineId}
                    imageId={d.image.id}
                    tag={d.image.tag}
                    environment={props.environment}
                    label="Roll back to this"
                    onDeployed={setFollowing}
                  />
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
