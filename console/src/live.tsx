// Live rollout status: the deploymentStatus subscription writes each change into the
// normalised cache, so every card and page showing that deployment changes with it.
import { useQuery, useSubscription } from "@urql/preact";
import { useEffect } from "preact/hooks";
import { readFragment, type FragmentOf } from "./graphql";
import { DeploymentFields, DeploymentQuery, DeploymentStatusSubscription } from "./ops";
import { Status, When } from "./ui";

export function useLiveDeployment(id: string | undefined, progressing: boolean, withSteps = false) {
  useSubscription({ query: DeploymentStatusSubscription, variables: { id: id ?? "" }, pause: !id || !progressing });
  // The subscription speaks on status changes; the steps between them are read again.
  const [, refetch] = useQuery({ query: DeploymentQuery, variables: { id: id ?? "" }, pause: true });
  useEffect(() => {
    if (!id || !progressing || !withSteps) return;
    const timer = setInterval(() => refetch({ requestPolicy: "network-only" }), 1000);
    return () => clearInterval(timer);
  }, [id, progressing, withSteps]);
}

export function DeploymentLine(props: { deployment: FragmentOf<typeof DeploymentFields>; steps?: boolean }) {
  const deployment = readFragment(DeploymentFields, props.deployment);
  useLiveDeployment(deployment.id, deployment.status === "PROGRESSING", props.steps);
  return (
    <div class="deployment" aria-live="polite">
      <div>
        Latest deployment: <Status status={deployment.status} /> <span class="tag">{deployment.image.tag}</span>{" "}
        <span class="muted">
          by {deployment.triggeredBy.name}, <When at={deployment.startedAt} />
        </span>
      </div>
      {deployment.message && <div class="muted">{deployment.message}</div>}
      {props.steps && deployment.steps.length > 0 && (
        <ol class="steps" aria-label="Strategy steps">
          {deployment.steps.map((step) => (
            <li key={step.name} class={`step step-${step.status.toLowerCase()}`}>
              {step.name}: {step.status.toLowerCase()}
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}
