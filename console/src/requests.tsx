// Approval pending: what awaits my approval, my own requests, and every open request I can
// see. Each action is enabled or disabled, with its reason, from the API's viewerCan answers.
import { useMutation, useQuery, type CombinedError } from "@urql/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { readFragment, type FragmentOf, type ResultOf } from "./graphql";
import { ApproveMutation, CancelMutation, ExpireMutation, PendingQuery, RejectMutation, RequestFields } from "./ops";
import { Action, ErrorNote, shortDigest, State, When } from "./ui";

type Me = { id: string };
type Request = ResultOf<typeof RequestFields>;

export function ApprovalPending({ me }: { me: Me }) {
  const [{ data: fresh, error }, refetch] = useQuery({ query: PendingQuery });
  // The last answer while the next is read: a re-read never blanks the lists.
  const last = useRef(fresh);
  if (fresh) last.current = fresh;
  const data = fresh ?? last.current;
  // Request events arrive over the subscription; a role granted to me publishes none, so
  // the lists are also read again every few seconds.
  useEffect(() => {
    const timer = setInterval(() => refetch({ requestPolicy: "network-only" }), 3000);
    return () => clearInterval(timer);
  }, []);
  const read = (edges: { node: FragmentOf<typeof RequestFields> }[] | undefined) =>
    (edges ?? []).map((edge) => readFragment(RequestFields, edge.node));
  const awaiting = read(data?.awaiting.edges);
  const open = read(data?.open.edges);
  const mine = open.filter((r) => r.requestedBy.id === me.id);
  const others = open.filter((r) => r.requestedBy.id !== me.id && !awaiting.some((a) => a.id === r.id));
  const closed = read(data?.closed.edges);
  return (
    <>
      <h1>Approval pending</h1>
      <ErrorNote error={error} />
      <RequestList title="Awaiting my approval" empty="Nothing awaits your approval." requests={awaiting} />
      <RequestList title="My requests" empty="You have no open requests." requests={mine} />
      <RequestList title="Other open requests" empty="No other open requests." requests={others} />
      <RequestList title="Recently closed" empty="None yet." requests={closed} />
    </>
  );
}

function RequestList(props: { title: string; empty: string; requests: Request[] }) {
  const id = props.title.toLowerCase().replace(/\W+/g, "-");
  return (
    <section aria-labelledby={id}>
      <h2 id={id}>{props.title}</h2>
      {props.requests.length === 0 ? (
        <p class="muted">{props.empty}</p>
      ) : (
        <ul class="cards">
          {props.requests.map((request) => (
            <RequestCard key={request.id} request={request} />
          ))}
        </ul>
      )}
    </section>
  );
}

function RequestCard({ request }: { request: Request }) {
  const [panel, setPanel] = useState<"approve" | "reject" | null>(null);
  const [error, setError] = useState<CombinedError | undefined>();
  const [, cancel] = useMutation(CancelMutation);
  const [, expire] = useMutation(ExpireMutation);
  const can = request.viewerCan;
  const app = request.pipeline.application.name;
  const env = request.pipeline.environment.name;
  const run = async (action: () => Promise<{ error?: CombinedError }>) => {
    const done = await action();
    setError(done.error);
  };
  return (
    <li class="card request" aria-label={`Request ${request.image.tag} for ${app} on ${env}`}>
      <h3>
        <span class="tag">{request.image.tag}</span> → {app} / {env} <State state={request.state} />
      </h3>
      <p class="muted">
        <code>{shortDigest(request.image.digest)}</code> built by {request.image.builtBy.name}; requested by{" "}
        {request.requestedBy.name}, <When at={request.requestedAt} />
        {request.expiresAt && (
          <>
            ; approval expires <When at={request.expiresAt} />
          </>
        )}
      </p>
      {request.comment && <p class="comment">“{request.comment}”</p>}
      <p class="progress">
        {request.requirements[0]
          ? `${request.requirements[0].approved} of ${request.requirements[0].required} approvals`
          : `${request.approvals.length} of ${request.requiredApprovals} approvals`}
        {request.requirements.length > 1 && (
          <span class="muted">
            {" "}
            (
            {request.requirements
              .slice(1)
              .map((r) => `${r.description}: ${r.approved} of ${r.required}`)
              .join(", ")}
            )
          </span>
        )}
      </p>
      {request.approvals.length > 0 && (
        <ul class="approvals">
          {request.approvals.map((a) => (
            <li key={a.user.id}>
              Approved by {a.user.name}, <When at={a.decidedAt} />
              {a.comment && <> “{a.comment}”</>}
            </li>
          ))}
        </ul>
      )}
      {request.rejection && (
        <p>
          Rejected by {request.rejection.user.name}: “{request.rejection.comment}”
        </p>
      )}
      {request.stale && <p class="warning">This image is older than the one active on {env}.</p>}
      {(request.state === "PENDING" || request.state === "APPROVED") && (
        <p class="actions">
          <Action
            id={`approve-${request.id}`}
            label="Approve"
            kind="primary"
            allowed={can.approve.allowed || can.approve.code === "STALE_IMAGE"}
            reason={can.approve.reason}
            onClick={() => setPanel(panel === "approve" ? null : "approve")}
          />
          <Action
            id={`reject-${request.id}`}
            label="Reject"
            kind="danger"
            allowed={can.reject.allowed}
            reason={can.reject.reason}
            onClick={() => setPanel(panel === "reject" ? null : "reject")}
          />
          <Action
            id={`cancel-${request.id}`}
            label="Cancel"
            allowed={can.cancel.allowed}
            reason={can.cancel.reason}
            onClick={() => run(() => cancel({ id: request.id }))}
          />
          {request.state === "APPROVED" && (
            <Action
              id={`expire-${request.id}`}
              label="Let approval expire"
              allowed={can.expire.allowed}
              reason={can.expire.reason}
              onClick={() => run(() => expire({ id: request.id }))}
            />
          )}
        </p>
      )}
      {panel === "approve" && <ApprovePanel request={request} onDone={() => setPanel(null)} />}
      {panel === "reject" && <RejectPanel request={request} onDone={() => setPanel(null)} />}
      <ErrorNote error={error} />
    </li>
  );
}

function ApprovePanel({ request, onDone }: { request: Request; onDone: () => void }) {
  const [comment, setComment] = useState("");
  const [acknowledged, setAcknowledged] = useState(false);
  const [result, approve] = useMutation(ApproveMutation);
  const [error, setError] = useState<CombinedError | undefined>();
  const needsTick = request.stale;
  return (
    <form
      class="panel"
      aria-label="Approve"
      onSubmit={async (event) => {
        event.preventDefault();
        const done = await approve({ id: request.id, comment: comment || null, acknowledgeStale: acknowledged });
        if (done.error) setError(done.error);
        else onDone();
      }}
    >
      <label for={`approve-comment-${request.id}`}>Comment (optional)</label>
      <textarea id={`approve-comment-${request.id}`} value={comment} onInput={(e) => setComment((e.target as HTMLTextAreaElement).value)} />
      {needsTick && (
        <label class="check">
          <input type="checkbox" checked={acknowledged} onChange={(e) => setAcknowledged((e.target as HTMLInputElement).checked)} /> I know
          this image is older than the active one
        </label>
      )}
      <ErrorNote error={error} />
      <button type="submit" class="primary" disabled={result.fetching || (needsTick && !acknowledged)}>
        Approve Request
      </button>
    </form>
  );
}

function RejectPanel({ request, onDone }: { request: Request; onDone: () => void }) {
  const [reason, setReason] = useState("");
  const [result, reject] = useMutation(RejectMutation);
  const [error, setError] = useState<CombinedError | undefined>();
  return (
    <form
      class="panel"
      aria-label="Reject"
      onSubmit={async (event) => {
        event.preventDefault();
        const done = await reject({ id: request.id, reason });
        if (done.error) setError(done.error);
        else onDone();
      }}
    >
      <label for={`reason-${request.id}`}>Reason (required)</label>
      <textarea id={`reason-${request.id}`} required value={reason} onInput={(e) => setReason((e.target as HTMLTextAreaElement).value)} />
      <ErrorNote error={error} />
      <button type="submit" class="danger" disabled={result.fetching || !reason.trim()}>
        Reject Request
      </button>
    </form>
  );
}
