// Administration, for super-admins (R2): users and their role bindings, applications,
// environments, pipelines and approval policies, groups, freezes, API tokens, the audit log.
// The API refuses everyone else; the console only hides the menu. Every form here is one
// component, Form (form.tsx), given its fields; a refusal shows the API's words and code.
import { useMutation, useQuery, type CombinedError } from "@urql/preact";
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { readFragment, type ResultOf } from "./graphql";
import {
  AddMemberMutation,
  AdminUsersQuery,
  AuditQuery,
  CreateApplicationMutation,
  CreateEnvironmentMutation,
  CreateFreezeMutation,
  CreateGroupMutation,
  CreatePipelineMutation,
  CreateUserMutation,
  DeleteFreezeMutation,
  FreezesQuery,
  GrantGroupRoleMutation,
  GrantRoleMutation,
  GroupsQuery,
  IssueTokenMutation,
  PoliciesQuery,
  PolicyFields,
  RemoveMemberMutation,
  RevokeGroupRoleMutation,
  RevokeRoleMutation,
  RevokeTokenMutation,
  TokensQuery,
  UpdatePolicyMutation,
} from "./ops";
import { Form, type Field, type Option, type Value, type Values } from "./form";
import { ErrorNote, When } from "./ui";

const SECTIONS: [string, string][] = [
  ["users", "Users and roles"],
  ["pipelines", "Applications, environments and pipelines"],
  ["policies", "Approval policies"],
  ["groups", "Groups"],
  ["freezes", "Freezes"],
  ["tokens", "API tokens"],
  ["audit", "Audit log"],
];
const ROLES = ["SUPER_ADMIN", "BUILD_AND_DEPLOY", "IMAGE_APPROVER", "VIEWER", "DEPLOY_AGENT"] as const;
type Role = (typeof ROLES)[number];
const roleName = (role: string) => role.toLowerCase().replace(/_/g, "-");

export function Admin({ section }: { section?: string }) {
  const current = SECTIONS.find(([key]) => key === section)?.[0] ?? "users";
  return (
    <>
      <h1>Administration</h1>
      <nav aria-label="Administration" class="tabs">
        {SECTIONS.map(([key, title]) => (
          <a key={key} href={`#/admin/${key}`} aria-current={key === current ? "page" : undefined}>
            {title}
          </a>
        ))}
      </nav>
      {current === "users" && <Users />}
      {current === "pipelines" && <Pipelines />}
      {current === "policies" && <Policies />}
      {current === "groups" && <Groups />}
      {current === "freezes" && <Freezes />}
      {current === "tokens" && <Tokens />}
      {current === "audit" && <Audit />}
    </>
  );
}

/** For buttons outside a form (Revoke, Remove, Delete): the same refusal note. */
function useAction() {
  const [error, setError] = useState<CombinedError | undefined>();
  const [done, setDone] = useState<string | null>(null);
  const run = async (what: string, action: () => Promise<{ error?: CombinedError }>) => {
    const result = await action();
    setError(result.error);
    setDone(result.error ? null : what);
  };
  const note = (
    <>
      <ErrorNote error={error} />
      {done && <p role="status">{done}</p>}
    </>
  );
  return { run, note };
}

const named = (list: { id: string; name: string }[] | undefined, by: "id" | "name" = "id"): Option[] =>
  (list ?? []).map((x) => [x[by], x.name]);
const people = (list: { id: string; name: string; email: string }[] | undefined): Option[] =>
  (list ?? []).map((u) => [u.id, `${u.name} (${u.email})`]);
const scopeFields = (apps: Option[], envs: Option[]): Field[] => [
  { name: "role", label: "Role", kind: "select", options: ROLES.map((r) => [r, roleName(r)]) },
  { name: "application", label: "Application", kind: "select", options: [["*", "every application (*)"], ...apps] },
  { name: "environment", label: "Environment", kind: "select", options: [["*", "every environment (*)"], ...envs] },
];
const SCOPE = { role: "IMAGE_APPROVER", application: "*", environment: "*" };
const scopeOf = (v: Values) => ({ role: v.role as Role, application: v.application as string, environment: v.environment as string });

/** A user's or a group's role bindings, each with its Revoke button. */
function Bindings(props: {
  holder: string;
  bindings: { id: string; role: string; application: string; environment: string }[];
  onRevoke: (id: string) => void;
}) {
  return (
    <ul class="bindings">
      {props.bindings.map((b) => (
        <li key={b.id}>
          {roleName(b.role)} on {b.application}/{b.environment}{" "}
          <button
            type="button"
            aria-label={`Revoke ${b.role} on ${b.application}/${b.environment} from ${props.holder}`}
            onClick={() => props.onRevoke(b.id)}
          >
            Revoke
          </button>
        </li>
      ))}
    </ul>
  );
}

/** A table with its caption and column headers (a header given as [name, true] is for screen readers only). */
function Table(props: { caption: string; headers: (string | [string, true])[]; children: ComponentChildren }) {
  return (
    <table>
      <caption>{props.caption}</caption>
      <thead>
        <tr>
          {props.headers.map((h) => (
            <th key={String(h)} scope="col">
              {typeof h === "string" ? h : <span class="sr-only">{h[0]}</span>}
            </th>
          ))}
        </tr>
      </thead>
      <tbody>{props.children}</tbody>
    </table>
  );
}

// --- Sections -----------------------------------------------------------------------------

function Users() {
  const [{ data, error }] = useQuery({ query: AdminUsersQuery });
  const [, grant] = useMutation(GrantRoleMutation);
  const [, revoke] = useMutation(RevokeRoleMutation);
  const [, create] = useMutation(CreateUserMutation);
  const { run, note } = useAction();
  return (
    <section>
      <ErrorNote error={error} />
      <h2>Grant a role</h2>
      <Form
        fields={[
          { name: "userId", label: "User", kind: "select", required: true, placeholder: "choose…", options: people(data?.users) },
          ...scopeFields(named(data?.applications, "name"), named(data?.environments, "name")),
        ]}
        initial={SCOPE}
        submit="Grant role"
        done="Role granted."
        onSubmit={(v) => grant({ input: { userId: v.userId as string, ...scopeOf(v) } })}
      />
      {note}
      <h2>Users</h2>
      <Table caption="Users and their role bindings" headers={["Name", "Email", "Roles"]}>
        {data?.users.map((u) => (
          <tr key={u.id}>
            <td>
              {u.name}
              {!u.isActive && <span class="muted"> (deactivated)</span>}
            </td>
            <td>{u.email}</td>
            <td>
              <Bindings holder={u.name} bindings={u.roleBindings} onRevoke={(id) => run("Role revoked.", () => revoke({ id }))} />
            </td>
          </tr>
        ))}
      </Table>
      <h2>New user</h2>
      <Form
        fields={[
          { name: "email", label: "Email", kind: "email", required: true },
          { name: "name", label: "Name", required: true },
        ]}
        submit="Create user"
        reset
        done="User created."
        onSubmit={(v) => create({ input: { email: v.email as string, name: v.name as string } })}
      />
    </section>
  );
}

function Pipelines() {
  const [{ data, error }] = useQuery({ query: AdminUsersQuery });
  const [{ data: policies }] = useQuery({ query: PoliciesQuery });
  const [, createApp] = useMutation(CreateApplicationMutation);
  const [, createEnv] = useMutation(CreateEnvironmentMutation);
  const [, createPipeline] = useMutation(CreatePipelineMutation);
  return (
    <section>
      <ErrorNote error={error} />
      <Form
        fields={[{ name: "name", label: "Application name", required: true }]}
        submit="Create application"
        reset
        done="Application created."
        onSubmit={(v) => createApp({ name: v.name as string })}
      />
      <Form
        fields={[{ name: "name", label: "Environment name", required: true }]}
        submit="Create environment"
        reset
        done="Environment created."
        onSubmit={(v) => createEnv({ name: v.name as string })}
      />
      <Form
        fields={[
          { name: "applicationId", label: "Application", kind: "select", required: true, placeholder: "choose…", options: named(data?.applications) },
          { name: "environmentId", label: "Environment", kind: "select", required: true, placeholder: "choose…", options: named(data?.environments) },
          { name: "requiredApprovals", label: "Required approvals", kind: "number", min: 0, max: 6 },
          { name: "ttlHours", label: "Approvals last (hours, empty: forever)", kind: "number", min: 1, max: 8760 },
        ]}
        initial={{ requiredApprovals: "1" }}
        submit="Create pipeline"
        done="Pipeline created."
        onSubmit={(v) =>
          createPipeline({
            input: {
              applicationId: v.applicationId as string,
              environmentId: v.environmentId as string,
              requiredApprovals: Number(v.requiredApprovals || 0),
              ttlHours: v.ttlHours ? Number(v.ttlHours) : null,
            },
          })
        }
      />
      <p>
        Each pipeline's approval policy is edited under <a href="#/admin/policies">Approval policies</a>:
      </p>
      <ul>
        {policies?.applications.flatMap((app) =>
          app.pipelines.map((p) => (
            <li key={p.id}>
              {app.name} / {p.environment.name}: {describe(readFragment(PolicyFields, p.approvalPolicy))}
            </li>
          )),
        )}
      </ul>
    </section>
  );
}

type Policy = ResultOf<typeof PolicyFields>;

function describe(policy: Policy): string {
  const parts = [
    policy.requiredApprovals === 0 ? "no approval needed" : `${policy.requiredApprovals} approval(s)`,
    policy.kind === "SPECIFIC_USERS" ? `from each of ${policy.approvers.map((u) => u.name).join(", ")}` : "",
    policy.kind === "GROUP_QUORUMS"
      ? `with ${policy.groupQuorums.map((q) => `${q.minApprovals} from ${q.group.name}`).join(", ")}`
      : "",
    policy.ttlHours ? `approvals last ${policy.ttlHours} h` : "",
    policy.approversCanDeploy ? "approvers may deploy" : "",
    policy.exceptionUsers.length || policy.exceptionGroups.length
      ? `exceptions: ${[...policy.exceptionUsers, ...policy.exceptionGroups].map((x) => x.name).join(", ")}`
      : "",
    policy.cancelStaleRequests ? "stale requests cancelled" : "",
  ];
  return parts.filter(Boolean).join(", ");
}

const KINDS: Option[] = [
  ["ANY", "anyone eligible"],
  ["SPECIFIC_USERS", "specific users, each of them"],
  ["GROUP_QUORUMS", "quorums of groups"],
];

/** The whole policy of one pipeline, as updateApprovalPolicy sets it (every field given). */
function PolicyEditor(props: { pipelineId: string; title: string; policy: Policy; users: Option[]; groups: Option[] }) {
  const [, update] = useMutation(UpdatePolicyMutation);
  const { policy, groups } = props;
  const quorum = (groupId: string) => policy.groupQuorums.find((q) => q.group.id === groupId)?.minApprovals;
  const quorums = (v: Values) => v.kind === "GROUP_QUORUMS";
  return (
    <section class="card" aria-label={`Policy of ${props.title}`}>
      <h2>{props.title}</h2>
      <p class="muted">Now: {describe(policy)}.</p>
      <Form
        label={`Approval policy of ${props.title}`}
        fields={[
          { name: "requiredApprovals", label: "Required approvals", kind: "number", min: 0, max: 6, required: true },
          { name: "ttlHours", label: "Approvals last (hours, empty: forever)", kind: "number", min: 1, max: 8760 },
          { name: "approversCanDeploy", label: "Approvers may deploy", kind: "checkbox" },
          { name: "kind", label: "Whose approvals count", kind: "select", options: KINDS },
          { name: "approverIds", label: "Approvers (each must approve)", kind: "checks", options: props.users, when: (v) => v.kind === "SPECIFIC_USERS" },
          ...groups.map(([id, name]): Field => ({ name: `quorum:${id}`, label: `Approvals from ${name}`, kind: "number", min: 0, max: 20, when: quorums })),
          { name: "countOncePerPerson", label: "One person counts toward one group only", kind: "checkbox", when: quorums },
          { name: "exceptionUserIds", label: "Exceptions: users who may deploy without approval", kind: "checks", options: props.users },
          { name: "exceptionGroupIds", label: "Exceptions: groups whose members may deploy without approval", kind: "checks", options: groups },
          { name: "cancelStaleRequests", label: "Cancel requests for older images when a newer one is deployed", kind: "checkbox" },
        ]}
        initial={{
          requiredApprovals: String(policy.requiredApprovals),
          ttlHours: policy.ttlHours ? String(policy.ttlHours) : "",
          approversCanDeploy: policy.approversCanDeploy,
          kind: policy.kind,
          approverIds: policy.approvers.map((u) => u.id),
          ...Object.fromEntries(groups.map(([id]) => [`quorum:${id}`, String(quorum(id) ?? 0)])),
          countOncePerPerson: policy.countOncePerPerson,
          exceptionUserIds: policy.exceptionUsers.map((u) => u.id),
          exceptionGroupIds: policy.exceptionGroups.map((g) => g.id),
          cancelStaleRequests: policy.cancelStaleRequests,
        }}
        submit="Save policy"
        done="Policy saved."
        onSubmit={(v) =>
          update({
            pipelineId: props.pipelineId,
            input: {
              requiredApprovals: Number(v.requiredApprovals || 0),
              ttlHours: v.ttlHours ? Number(v.ttlHours) : null,
              approversCanDeploy: v.approversCanDeploy as boolean,
              kind: v.kind as "ANY" | "SPECIFIC_USERS" | "GROUP_QUORUMS",
              approverIds: v.kind === "SPECIFIC_USERS" ? (v.approverIds as string[]) : [],
              groupQuorums:
                v.kind === "GROUP_QUORUMS"
                  ? groups
                      .map(([id]) => ({ groupId: id, minApprovals: Number(v[`quorum:${id}`] || 0) }))
                      .filter((q) => q.minApprovals > 0)
                  : [],
              countOncePerPerson: v.countOncePerPerson as boolean,
              exceptionUserIds: v.exceptionUserIds as string[],
              exceptionGroupIds: v.exceptionGroupIds as string[],
              cancelStaleRequests: v.cancelStaleRequests as boolean,
            },
          })
        }
      />
    </section>
  );
}

function Policies() {
  const [{ data, error }] = useQuery({ query: PoliciesQuery });
  const users = people(data?.users);
  const groups = named(data?.groups.edges.map((e) => e.node));
  return (
    <section>
      <ErrorNote error={error} />
      <p class="muted">
        Saving sets the whole policy. Requests already made keep the policy they were made under; 0 required
        approvals cancels the live requests.
      </p>
      {data?.applications.flatMap((app) =>
        app.pipelines.map((p) => (
          <PolicyEditor
            key={p.id}
            pipelineId={p.id}
            title={`${app.name} / ${p.environment.name}`}
            policy={readFragment(PolicyFields, p.approvalPolicy)}
            users={users}
            groups={groups}
          />
        )),
      )}
      {data && data.applications.every((app) => app.pipelines.length === 0) && (
        <p class="empty">
          No pipelines yet: create one under <a href="#/admin/pipelines">Applications, environments and pipelines</a>.
        </p>
      )}
    </section>
  );
}

function Tokens() {
  const [{ data, error }] = useQuery({ query: TokensQuery });
  const [{ data: users }] = useQuery({ query: AdminUsersQuery });
  const [, issue] = useMutation(IssueTokenMutation);
  const [, revoke] = useMutation(RevokeTokenMutation);
  const [secret, setSecret] = useState<string | null>(null);
  const { run, note } = useAction();
  return (
    <section>
      <ErrorNote error={error} />
      <Form
        fields={[
          { name: "userId", label: "User", kind: "select", required: true, placeholder: "choose…", options: people(users?.users) },
          { name: "name", label: "Token name", required: true },
        ]}
        submit="Issue token"
        reset
        done="Token issued."
        onSubmit={async (v) => {
          const result = await issue({ input: { userId: v.userId as string, name: v.name as string } });
          setSecret(result.data?.issueApiToken.token ?? null);
          return result;
        }}
      />
      {secret && (
        <p role="status">
          The token, shown once: <code class="secret">{secret}</code>
        </p>
      )}
      {note}
      <Table caption="API tokens (never their secrets)" headers={["Name", "User", "Created", "Last used", "State"]}>
        {data?.apiTokens.edges.map(({ node: t }) => (
          <tr key={t.id}>
            <td>{t.name}</td>
            <td>{t.user.name}</td>
            <td>
              <When at={t.createdAt} />
            </td>
            <td>
              <When at={t.lastUsedAt} />
            </td>
            <td>
              {t.revokedAt ? (
                <>
                  revoked <When at={t.revokedAt} />
                </>
              ) : (
                <button type="button" aria-label={`Revoke token ${t.name}`} onClick={() => run("Token revoked.", () => revoke({ id: t.id }))}>
                  Revoke
                </button>
              )}
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}

function Audit() {
  const [filter, setFilter] = useState<Values>({});
  const iso = (local: Value | undefined) => (local ? new Date(local as string).toISOString() : null);
  const [{ data, error }] = useQuery({
    query: AuditQuery,
    variables: {
      filter: {
        actorId: (filter.actorId as string) || null,
        action: (filter.action as string) || null,
        application: (filter.application as string) || null,
        environment: (filter.environment as string) || null,
        since: iso(filter.since),
        until: iso(filter.until),
      },
    },
  });
  return (
    <section>
      <Form
        label="Audit log filters"
        live
        fields={[
          { name: "actorId", label: "Who", kind: "select", placeholder: "anyone", options: people(data?.users) },
          { name: "action", label: "Action", placeholder: "e.g. deploy" },
          { name: "application", label: "Application" },
          { name: "environment", label: "Environment" },
          { name: "since", label: "From", kind: "datetime-local" },
          { name: "until", label: "Until", kind: "datetime-local" },
        ]}
        submit="Filter"
        onSubmit={(v) => setFilter(v)}
      />
      <ErrorNote error={error} />
      <Table caption="Audit log, newest first" headers={["When", "Who", "Action", "Where", "Change"]}>
        {data?.auditEvents.edges.map(({ node: e }) => (
          <tr key={e.id}>
            <td data-label="When">
              <When at={e.at} />
            </td>
            <td data-label="Who">{e.actor ? e.actor.name : "Greenlight"}</td>
            <td data-label="Action">
              {e.action} <span class="muted">{e.objectId}</span>
            </td>
            <td data-label="Where">
              {e.application ?? ""}
              {e.environment ? ` / ${e.environment}` : ""}
            </td>
            <td data-label="Change">
              <code class="json">
                {JSON.stringify(e.before ?? null)} → {JSON.stringify(e.after ?? null)}
              </code>
            </td>
          </tr>
        ))}
      </Table>
      {data && data.auditEvents.edges.length === 0 && <p class="empty">No event matches these filters.</p>}
    </section>
  );
}

function Groups() {
  const [{ data, error }] = useQuery({ query: GroupsQuery });
  const [, createGroup] = useMutation(CreateGroupMutation);
  const [, addMember] = useMutation(AddMemberMutation);
  const [, removeMember] = useMutation(RemoveMemberMutation);
  const [, grant] = useMutation(GrantGroupRoleMutation);
  const [, revoke] = useMutation(RevokeGroupRoleMutation);
  const { run, note } = useAction();
  const apps = named(data?.applications, "name");
  const envs = named(data?.environments, "name");
  return (
    <section>
      <ErrorNote error={error} />
      <Form
        fields={[{ name: "name", label: "Group name", required: true }]}
        submit="Create group"
        reset
        done="Group created."
        onSubmit={(v) => createGroup({ name: v.name as string })}
      />
      {note}
      {data?.groups.edges.map(({ node: group }) => (
        <section key={group.id} class="card" aria-label={`Group ${group.name}`}>
          <h2>{group.name}</h2>
          <h3>Members</h3>
          <ul>
            {group.members.edges.map(({ node: user }) => (
              <li key={user.id}>
                {user.name} <span class="muted">{user.email}</span>{" "}
                <button
                  type="button"
                  aria-label={`Remove ${user.name} from ${group.name}`}
                  onClick={() => run("Member removed.", () => removeMember({ groupId: group.id, userId: user.id }))}
                >
                  Remove
                </button>
              </li>
            ))}
          </ul>
          <Form
            fields={[{ name: "userId", label: "Add member", kind: "select", required: true, placeholder: "choose…", options: people(data.users) }]}
            submit="Add"
            done="Member added."
            onSubmit={(v) => addMember({ groupId: group.id, userId: v.userId as string })}
          />
          <h3>Roles</h3>
          <Bindings holder={group.name} bindings={group.roleBindings} onRevoke={(id) => run("Role revoked.", () => revoke({ id }))} />
          <Form
            fields={scopeFields(apps, envs)}
            initial={SCOPE}
            submit="Grant role to group"
            done="Role granted."
            onSubmit={(v) => grant({ input: { groupId: group.id, ...scopeOf(v) } })}
          />
        </section>
      ))}
    </section>
  );
}

function Freezes() {
  const [{ data, error }] = useQuery({ query: FreezesQuery });
  const [, create] = useMutation(CreateFreezeMutation);
  const [, remove] = useMutation(DeleteFreezeMutation);
  const { run, note } = useAction();
  const iso = (local: Value) => (local ? new Date(local as string).toISOString() : null);
  return (
    <section>
      <ErrorNote error={error} />
      <Form
        fields={[
          { name: "name", label: "Name", required: true },
          { name: "environmentId", label: "Environment", kind: "select", required: true, placeholder: "choose…", options: named(data?.environments) },
          { name: "startsAt", label: "From", kind: "datetime-local", required: true },
          { name: "endsAt", label: "Until", kind: "datetime-local", required: true },
        ]}
        submit="Create freeze"
        reset
        done="Freeze created."
        onSubmit={(v) =>
          create({
            input: { name: v.name as string, environmentId: v.environmentId as string, startsAt: iso(v.startsAt), endsAt: iso(v.endsAt) },
          })
        }
      />
      {note}
      <Table caption="Deploy freezes" headers={["Name", "Where", "When", "By", ["Delete", true]]}>
        {data?.deployFreezes.map((f) => (
          <tr key={f.id}>
            <td data-label="Name">{f.name}</td>
            <td data-label="Where">
              {f.environment ? f.environment.name : f.pipeline ? `${f.pipeline.application.name} / ${f.pipeline.environment.name}` : ""}
            </td>
            <td data-label="When">
              {f.weekly ? (
                `weekly ${f.weekly.startDay.toLowerCase()} ${f.weekly.startTime} to ${f.weekly.endDay.toLowerCase()} ${f.weekly.endTime} (${f.weekly.timeZone})`
              ) : (
                <>
                  <When at={f.startsAt} /> to <When at={f.endsAt} />
                </>
              )}
            </td>
            <td data-label="By">{f.createdBy.name}</td>
            <td>
              <button type="button" aria-label={`Delete freeze ${f.name}`} onClick={() => run("Freeze deleted.", () => remove({ id: f.id }))}>
                Delete
              </button>
            </td>
          </tr>
        ))}
      </Table>
    </section>
  );
}
