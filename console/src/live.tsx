// Live rollout status: the deploymentStatus subscription writes each change into the
// normalised cache, so every card and page showing that deployment changes with it.
import { useQuery, useSubscription } from "@urql/preact";
import { useEffect } from "preact/hooks";
import { readFragment, type FragmentOf } from "./graphql";
import { DeploymentFields, DeploymentQuery, DeploymentStatusSubscription } from "./ops";
import { Status, When } from "./ui";

/** The deployment as the cache holds it now, kept live while it progresses. */
function useLiveDeployment(initial: FragmentOf<typeof DeploymentFields>, withSteps: boolean) {
  const first = readFragment(DeploymentFields, initial);
  // Read from the normalised cache (filled by the answer that showed it), so that what the
  // subscription writes into it shows here.
  const [{ data }, refetch] = useQuery({ query: DeploymentQuery, variables: { id: first.id }, requestPolicy: "cache-first" });
  const deployment = data?.deployment ? readFragment(DeploymentFields, data.deployment) : first;
  const progressing = deployment.status === "PROGRESSING";
  useSubscription({ query: DeploymentStatusSubscription, variables: { id: first.id }, pause: !progressing });
  // The subscription speaks on status changes; the steps between them are read again.
  useEffect(() => {
    if (!progressing || !withSteps) return;
    const timer = setInterval(() => refetch({ requestPolicy: "network-only" }), 1000);
    return () => clearInterval(timer);
  }, [first.id, progressing, withSteps]);
  return deployment;
}

export function DeploymentLine(props: { deployment: FragmentOf<typeof DeploymentFields>; steps?: boolean }) {
  const deployment = useLiveDeployment(props.deployment, !!props.steps);
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
