// Small shared pieces: errors in plain words with their contract code, dates, digests.
import type { CombinedError } from "@urql/preact";
import type { ComponentChildren } from "preact";

export function codeOf(error: CombinedError): string | undefined {
  const code = error.graphQLErrors[0]?.extensions?.code;
  return typeof code === "string" ? code : undefined;
}

export function ErrorNote({ error }: { error?: CombinedError | null }) {
  if (!error) return null;
  const first = error.graphQLErrors[0];
  const message = first ? first.message : "Greenlight could not be reached; try again.";
  const code = first ? codeOf(error) : "NETWORK";
  return (
    <p class="error" role="alert">
      {message} {code && <code title="the API's error code">{code}</code>}
    </p>
  );
}

export const shortDigest = (digest: string) => digest.replace(/^sha256:/, "").slice(0, 12);

export function When({ at }: { at?: string | null }) {
  if (!at) return <span>never</span>;
  const date = new Date(at);
  return <time dateTime={at}>{date.toLocaleString()}</time>;
}

export function Status({ status }: { status: string }) {
  const words: Record<string, string> = {
    PROGRESSING: "Progressing",
    HEALTHY: "Healthy",
    DEGRADED: "Degraded",
    FAILED: "Failed",
    SUPERSEDED: "Superseded",
  };
  return <span class={`status status-${status.toLowerCase()}`}>{words[status] ?? status}</span>;
}

export function State({ state }: { state: string | null | undefined }) {
  if (!state) return <span class="state state-none">not requested</span>;
  return <span class={`state state-${state.toLowerCase()}`}>{state.toLowerCase()}</span>;
}

/** An action the user cannot take now is shown disabled with the API's reason beside it. */
export function Action(props: {
  label: string;
  allowed: boolean;
  reason?: string | null;
  onClick: () => void;
  busy?: boolean;
  kind?: "primary" | "danger";
  id?: string;
}) {
  const reasonId = props.id ? `${props.id}-why` : undefined;
  return (
    <span class="action">
      <button
        type="button"
        class={props.kind ?? ""}
        disabled={!props.allowed || props.busy}
        aria-describedby={!props.allowed && props.reason ? reasonId : undefined}
        onClick={props.onClick}
      >
        {props.label}
      </button>
      {!props.allowed && props.reason && (
        <small class="why" id={reasonId}>
          {props.reason}
        </small>
      )}
    </span>
  );
}

export function Section(props: { title: string; children: ComponentChildren }) {
  return (
    <section>
      <h2>{props.title}</h2>
      {props.children}
    </section>
  );
}
